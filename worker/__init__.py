"""Celery worker and beat of the Code Learning Coach (the same image as the backend)."""
