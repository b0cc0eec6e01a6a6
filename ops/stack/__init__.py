"""The compose stack: the project (files, env files, names), service roles read from compose
labels, secrets and Alertmanager's config rendered from settings (alerting), up/down and
status, the local-stores fallback, the embedded single-process app, and the preflight
(doctor). Imports the core, ops.host and ops.images."""
