"""The Code Learning Coach core: settings, data model, adapters and the coach agent, shared by
the HTTP backend (backend/) and the Celery worker and beat (worker/)."""

__version__ = "0.1.0"
