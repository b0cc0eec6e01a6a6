"""Least privilege in PostgreSQL: the roles the migrate step keeps, connected as the bootstrap
superuser (the only process that holds its password besides the server's own container).

    owner     (POSTGRES_OWNER_ROLE, NOLOGIN) owns every table; migrations run as it (SET ROLE)
    app       (POSTGRES_APP_USER) logs in; SELECT/INSERT/UPDATE/DELETE and sequences, nothing
              else: no DDL, no DROP, no TRUNCATE, no role or server-side program
    exporter  (POSTGRES_EXPORTER_USER) logs in; pg_monitor, no table

Idempotent and run on every migrate: roles are created when missing and their attributes and
passwords set each time (a rotated password file takes effect on the next migrate), and tables
of a database made before these roles (owned by the superuser) are handed to the owner.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import unicodedata

from sqlalchemy import Connection, String, text

from coach.settings import Settings

SCHEMA = "public"
SCRAM_ITERATIONS = 4096  # PostgreSQL's own default (scram_iterations)
# ALTER TABLE ... OWNER TO per relation kind; sequences owned by a column follow their table.
OWNER_DDL = {"r": "TABLE", "p": "TABLE", "v": "VIEW", "m": "MATERIALIZED VIEW", "S": "SEQUENCE"}
NOT_OWNED_SQL = """
SELECT c.relkind::text, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = :schema AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
  AND pg_get_userbyid(c.relowner) <> :owner
  AND NOT (c.relkind = 'S' AND EXISTS (
    SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i')))
ORDER BY c.relkind DESC, c.relname
"""
NOTHING_ELSE = "NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
# Read by the app (is the schema at its head?), written by migrations only.
ALEMBIC_VERSION = "alembic_version"


def managed(settings: Settings) -> bool:
    """Whether this migrate keeps the roles: it was given the app's password."""
    return bool(settings.postgres_app_password.get_secret_value())


def scram_verifier(password: str, *, salt: bytes | None = None) -> str:
    """What PostgreSQL stores for a SCRAM-SHA-256 password (RFC 5802/7677), computed here as
    libpq's PQencryptPasswordConn does: the statement that sets it carries no plaintext, so
    neither a server log line nor pg_stat_activity can show the password."""
    salt = salt or secrets.token_bytes(16)
    # SASLprep, as far as it differs for printable passwords: NFKC (generated ones are ASCII).
    raw = unicodedata.normalize("NFKC", password).encode()
    salted = hashlib.pbkdf2_hmac("sha256", raw, salt, SCRAM_ITERATIONS)
    stored = hashlib.sha256(hmac.new(salted, b"Client Key", hashlib.sha256).digest()).digest()
    server = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return f"SCRAM-SHA-256${SCRAM_ITERATIONS}:{b64(salt)}${b64(stored)}:{b64(server)}"


def _ident(connection: Connection, name: str) -> str:
    return connection.dialect.identifier_preparer.quote(name)


def _literal(connection: Connection, value: str) -> str:
    """A string literal quoted by the dialect (DDL takes no bind parameters)."""
    quote = String().literal_processor(connection.dialect)  # type: ignore[no-untyped-call]
    assert quote is not None
    return str(quote(value))


def _login_role(connection: Connection, name: str, password: str) -> None:
    role = _ident(connection, name)
    if not _exists(connection, name):
        connection.execute(text(f"CREATE ROLE {role}"))
    verifier = _literal(connection, scram_verifier(password))
    # As the driver gets it: text() would read the verifier's ":..." as bind parameters.
    connection.exec_driver_sql(f"ALTER ROLE {role} LOGIN {NOTHING_ELSE} PASSWORD {verifier}")


def _exists(connection: Connection, name: str) -> bool:
    found = connection.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :n"), {"n": name})
    return found.first() is not None


def ensure_roles(connection: Connection, settings: Settings) -> None:
    """Before the migrations: the roles exist with exactly these rights, the owner owns what
    is there. The caller holds the migration lock (roles are cluster-wide, CREATE ROLE races)."""
    owner = _ident(connection, settings.postgres_owner_role)
    app = _ident(connection, settings.postgres_app_user)
    schema = _ident(connection, SCHEMA)
    if not _exists(connection, settings.postgres_owner_role):
        connection.execute(text(f"CREATE ROLE {owner}"))
    connection.execute(text(f"ALTER ROLE {owner} NOLOGIN {NOTHING_ELSE}"))
    _login_role(
        connection, settings.postgres_app_user, settings.postgres_app_password.get_secret_value()
    )
    # PostgreSQL < 15 lets every role create tables in public; 15+ already does not.
    connection.execute(text(f"REVOKE CREATE ON SCHEMA {schema} FROM PUBLIC"))
    connection.execute(text(f"GRANT USAGE, CREATE ON SCHEMA {schema} TO {owner}"))
    connection.execute(text(f"GRANT USAGE ON SCHEMA {schema} TO {app}"))
    # Tables the owner makes later (new migrations, a restore) are the app's to use at once.
    default = f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} GRANT"
    connection.execute(text(f"{default} SELECT, INSERT, UPDATE, DELETE ON TABLES TO {app}"))
    connection.execute(text(f"{default} USAGE, SELECT ON SEQUENCES TO {app}"))
    exporter_password = settings.postgres_exporter_password.get_secret_value()
    if exporter_password:
        _login_role(connection, settings.postgres_exporter_user, exporter_password)
        exporter = _ident(connection, settings.postgres_exporter_user)
        connection.execute(text(f"GRANT pg_monitor TO {exporter}"))
    rows = connection.execute(
        text(NOT_OWNED_SQL), {"schema": SCHEMA, "owner": settings.postgres_owner_role}
    ).all()
    for kind, name in rows:
        relation = f"{schema}.{_ident(connection, name)}"
        connection.execute(text(f"ALTER {OWNER_DDL[kind]} {relation} OWNER TO {owner}"))


def grant_app(connection: Connection, settings: Settings) -> None:
    """After the migrations (and after a restore): the app's rights on every table there is,
    whoever made it; the schema revision is the app's to read only."""
    app = _ident(connection, settings.postgres_app_user)
    schema = _ident(connection, SCHEMA)
    connection.execute(
        text(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {app}")
    )
    connection.execute(text(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {app}"))
    version = f"{schema}.{_ident(connection, ALEMBIC_VERSION)}"
    if connection.execute(text("SELECT to_regclass(:t)"), {"t": version}).scalar() is not None:
        connection.execute(text(f"REVOKE INSERT, UPDATE, DELETE ON {version} FROM {app}"))


def set_owner_role(connection: Connection, settings: Settings) -> None:
    """Make what the migrations create the owner's (session-wide, until RESET ROLE)."""
    connection.execute(text(f"SET ROLE {_ident(connection, settings.postgres_owner_role)}"))


def reset_role(connection: Connection) -> None:
    connection.execute(text("RESET ROLE"))
