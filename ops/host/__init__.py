"""The host: a Docker engine and Compose v2 that answer (provisioned on Debian as root) and the
one way we change a host, Debian packages. Imports only the core (ops.errors, ops.paths,
ops.settings, ops.console, ops.proc)."""
