"""Data operations: backup, restore, reindex and log cleanup, the manifest of a backup, its
off-site copies (encrypted, read back, fetched), the private modes of what it writes, and the
targets they operate on (a compose stack or a bare PostgreSQL container). Imports the core and
every room below it (host, images, stack, swarm) and the application core (coach)."""
