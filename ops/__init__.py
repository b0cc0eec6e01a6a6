"""Deployment and operations tooling for the Code Learning Coach, in rooms ranked from the
ground up; a room imports only rooms below it (tests/unit/test_architecture.py holds it to that):

    core    errors, paths, settings, console, proc,  what every room stands on
            reports, releases (CHANGELOG.md)
    host    the Docker engine, Compose plugin, Debian packages
    images  the pinned catalog, resolve, pull, bake, build, archives
    stack   the compose project, its roles, secrets, up/down, fallback, embedded, doctor
    swarm   the production stack rendered and run on Docker Swarm
    data    backup, restore, reindex, log cleanup, and what they operate on (targets)
    cli     one command line per operation, for Invoke (tasks.py) and scripts/

The application (coach, backend, worker) never imports this package.
"""
