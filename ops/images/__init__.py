"""Images: the pinned references (infra/compose/.env), where each comes from (local, pulled
through a mirror, baked from Debian in infra/standins/, loaded from a tarball) and builds
outside a stack. Imports the core and ops.host."""
