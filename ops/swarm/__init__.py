"""The production stack on Docker Swarm: the stack file rendered from the compose files, and
deploy / scale / rollback / remove. Imports the core, ops.host, ops.images and ops.stack."""
