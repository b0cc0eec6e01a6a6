"""API keys, the operators' side, without Docker: the development key among the dev secrets
(and nowhere in production), its compose wiring, and `invoke keys.*` against a stand-in for
the app's key command (what it is given, what it prints, what it refuses)."""

from __future__ import annotations

import json
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from coach.apikeys import read_key_file
from coach.errors import InvalidInput
from ops.cli import keys as cli
from ops.cli.spec import execute
from ops.errors import ConfigError, OpsError
from ops.paths import COMPOSE_DIR
from ops.stack import keys, secrets
from ops.stack.project import Project
from tests.unit.test_compose_static import load

KEY_ID = "0b7c8a52-3c9e-4c0f-9a57-2f4a1d1e6b10"
PREFIX = "coach_AbCdEfGh"
ENTRY: dict[str, Any] = {
    "id": KEY_ID,
    "prefix": PREFIX,
    "tenant": "acme",
    "scopes": ["read", "write"],
    "name": "ci",
    "created_at": "2026-12-02T01:00:00+00:00",
    "revoked_at": None,
}
SECRET = "coach_" + "k" * 43


# --- the dev key among the secrets ------------------------------------------------------------


def test_dev_key_is_made_once_and_kept_through_a_rotation(tmp_path: Path) -> None:
    secrets.generate("dev", root=tmp_path)
    path = tmp_path / "dev" / "api_key"
    key = path.read_text()
    assert key.startswith("coach_") and len(key) == len("coach_") + 43
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700, "no other user of the host"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600, "the key file is the host user's alone"
    digest = (tmp_path / "dev" / "api_key_sha256").read_text()
    assert key.strip() not in digest, "containers get the hash, never the key"
    assert read_key_file(tmp_path / "dev" / "api_key_sha256") == read_key_file(path)
    assert secrets.dev_api_key(tmp_path) == path and path.read_text() == key, "never overwritten"
    rotated = {w.name: w.action for w in secrets.generate("dev", root=tmp_path, force=True)}
    assert rotated["postgres_password"] == "replaced"
    assert rotated["api_key"] == "kept" and path.read_text() == key, "clients keep working"
    named = secrets.generate("dev", root=tmp_path, force=True, only=["api_key"])
    assert {w.name: w.action for w in named}["api_key"] == "replaced"
    assert path.read_text() != key
    assert read_key_file(tmp_path / "dev" / "api_key_sha256") == read_key_file(path), "follows"


def test_production_has_no_dev_key(tmp_path: Path) -> None:
    written = secrets.generate("prod", root=tmp_path)
    assert "api_key" not in {w.name for w in written}
    assert not (tmp_path / "prod" / "api_key").exists()
    with pytest.raises(ConfigError, match="no secret api_key"):
        secrets.generate("prod", root=tmp_path, force=True, only=["api_key"])
    assert keys.dev_key_file(Project("prod")) is None


def test_the_note_says_where_the_key_is_and_how_to_send_it_never_the_key(tmp_path: Path) -> None:
    path = secrets.dev_api_key(tmp_path)
    note = secrets.dev_api_key_note(path)
    assert str(path) in note and "Authorization: Bearer" in note
    assert path.read_text() not in note
    in_repo = secrets.dev_api_key_note(COMPOSE_DIR / "secrets" / "dev" / "api_key")
    assert "in infra/compose/secrets/dev/api_key;" in in_repo, "relative to the checkout"
    dev = keys.dev_key_file(Project("dev"))
    assert dev is not None and dev.parent == Path(Project("dev").environ()["SECRETS_DIR"])


def test_only_the_dev_migrate_gets_the_dev_key() -> None:
    override = load("docker-compose.override.yml")
    migrate = override["services"]["migrate"]
    assert migrate["secrets"] == ["api_key_sha256"]
    assert migrate["environment"]["API_KEY_BOOTSTRAP_FILE"] == "/run/secrets/api_key_sha256"
    assert override["secrets"]["api_key_sha256"]["file"].endswith("/api_key_sha256")
    assert "api_key" not in override["secrets"], "the plaintext key is never mounted"
    others = [
        n for n, s in override["services"].items() if "api_key_sha256" in s.get("secrets", [])
    ]
    assert others == ["migrate"], "the backend, worker and beat never read it"
    # Production and Swarm read no override: the key is neither defined nor used there.
    for name in ("docker-compose.yml", "docker-compose.prod.yml", "docker-compose.swarm.yml"):
        text = (COMPOSE_DIR / name).read_text()
        assert "API_KEY_BOOTSTRAP_FILE" not in text and "/api_key" not in text, name


# --- ops/stack/keys.py against a stand-in for `python -m coach keys` -------------------------


@dataclass
class FakeApp:
    """Answers as `python -m coach keys ...` does: JSON lines out, JSON logs and `error:` err."""

    stored: list[dict[str, Any]] = field(default_factory=lambda: [dict(ENTRY)])
    calls: list[list[str]] = field(default_factory=list)
    fail: str | None = None

    def __call__(self, args: Sequence[str]) -> tuple[int, str, str]:
        self.calls.append(list(args))
        log = json.dumps({"event": "api key something", "level": "info"}) + "\n"
        if self.fail:
            return 2, "", log + f"error: {self.fail}\n"
        action = args[0]
        if action == "create":
            made = dict(ENTRY, id="new-id", prefix="coach_NewKey12", tenant=args[2], key=SECRET)
            return 0, json.dumps({k: made[k] for k in (*list(ENTRY)[:5], "key")}) + "\n", log
        if action == "list":
            return 0, "".join(json.dumps(e) + "\n" for e in self.stored), log
        [entry] = [e for e in self.stored if e["id"] == args[1]]
        entry["revoked_at"] = "2026-12-02T02:00:00+00:00"
        return 0, json.dumps(entry) + "\n", log


def test_app_refusals_are_found_among_its_log_lines() -> None:
    stderr = '{"event": "x", "level": "info"}\nerror: no api key with id or prefix \'q\'\n'
    assert keys.refusal(stderr) == "no api key with id or prefix 'q'"
    usage = "usage: python -m coach keys [-h]\npython -m coach: error: argument command: bad\n"
    assert keys.refusal(usage) == "argument command: bad"
    assert keys.refusal("") == "no output"
    assert keys.entries('{"event": "log"}\nnoise\n' + json.dumps(ENTRY)) == [ENTRY]


def test_create_checks_its_input_before_running_anything() -> None:
    app = FakeApp()
    with pytest.raises(InvalidInput, match="tenant"):
        keys.create(app, tenant="Bad Tenant!", scope="read")
    with pytest.raises(OpsError, match="unknown scope 'root'"):
        keys.create(app, tenant="acme", scope="root")
    with pytest.raises(InvalidInput, match="name"):
        keys.create(app, tenant="acme", scope="read", name="")
    assert app.calls == [], "a bad value runs nothing"
    made = keys.create(app, tenant="acme", scope="write", name="ci")
    assert app.calls == [["create", "--tenant", "acme", "--scope", "write", "--name", "ci"]]
    assert made.secret == SECRET and made.key.prefix == "coach_NewKey12"
    assert "key" not in made.key.to_dict(), "a key's entry never carries the key"


def test_app_refusal_is_one_clear_error() -> None:
    with pytest.raises(keys.KeyRefused, match="keys list: database schema is at 0001"):
        keys.list_keys(FakeApp(fail="database schema is at 0001"))


def test_find_by_id_or_prefix_unknown_or_ambiguous() -> None:
    listed = [keys.Key.of(ENTRY), keys.Key.of(dict(ENTRY, id="other", name="twin"))]
    assert keys.find(listed, KEY_ID).name == "ci"
    with pytest.raises(keys.KeyRefused, match="no API key with id or prefix 'coach_nope'"):
        keys.find(listed, "coach_nope")
    with pytest.raises(keys.KeyRefused, match="names 2 keys"):
        keys.find(listed, PREFIX)


def test_no_running_backend_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    config = {
        "services": {
            "backend": {"labels": {"coach.role": "writer", "coach.settings": "true"}},
            "nginx": {"labels": {"coach.role": "edge"}},
        }
    }
    monkeypatch.setattr(Project, "config", lambda self: config)
    monkeypatch.setattr(Project, "ps", lambda self: [{"Service": "backend", "State": "exited"}])
    with pytest.raises(keys.NoStack, match="no running backend in compose project coach-prod"):
        keys.list_keys(keys.in_project(Project("prod")))


# --- the commands -----------------------------------------------------------------------------


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> FakeApp:
    """The commands' stack, whichever --prod / --project name: the stand-in."""
    fake = FakeApp()
    monkeypatch.setattr(keys, "in_project", lambda project: fake)
    return fake


def run(command: Any, *argv: str) -> int:
    return execute(command, command.parse(list(argv)))


def test_create_prints_the_key_alone_once(app: FakeApp, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(cli.CREATE, "--tenant", "acme", "--scope", "read", "--prod") == 0
    out, err = capsys.readouterr()
    assert out == SECRET + "\n", "stdout: the key and nothing else"
    assert "shown this once" in err and SECRET not in err


def test_create_into_a_file_of_mode_0600(
    app: FakeApp, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "ci.key"
    assert run(cli.CREATE, "--tenant", "acme", "--scope", "write", "--out", str(out_file)) == 0
    out, err = capsys.readouterr()
    assert out == f"{out_file}\n" and SECRET not in out + err
    assert out_file.read_text() == SECRET + "\n"
    assert stat.S_IMODE(out_file.stat().st_mode) == 0o600


def test_create_refuses_an_existing_file_and_makes_no_key(
    app: FakeApp, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "taken.key"
    out_file.write_text("someone's\n")
    assert run(cli.CREATE, "--tenant", "acme", "--scope", "read", "--out", str(out_file)) == 1
    assert "exists; nothing created" in capsys.readouterr().err
    assert app.calls == [] and out_file.read_text() == "someone's\n"


def test_a_refused_create_leaves_no_file(
    app: FakeApp, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app.fail = "database schema is at 0001"
    out_file = tmp_path / "ci.key"
    assert run(cli.CREATE, "--tenant", "acme", "--scope", "read", "--out", str(out_file)) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert errors == ["error: keys create: database schema is at 0001"]
    assert not out_file.exists()


def test_list_as_a_table_or_json(app: FakeApp, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(cli.LIST) == 0
    header, _, row = capsys.readouterr().out.splitlines()
    assert header.split() == cli.LIST_HEADERS
    assert row.split()[:5] == [ENTRY["id"], ENTRY["prefix"], "acme", "read,write", "ci"]
    assert run(cli.LIST, "--json", "--tenant", "acme") == 0
    [line] = capsys.readouterr().out.splitlines()
    assert json.loads(line)["keys"] == [ENTRY]
    assert app.calls[-1] == ["list", "--tenant", "acme"]


def test_revoke_asks_first_and_changes_nothing_unconfirmed(
    app: FakeApp, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(cli.REVOKE, "coach_AbCdEfGh") == 1  # no terminal here, no --yes
    assert "pass --yes" in capsys.readouterr().err
    assert run(cli.REVOKE, "coach_AbCdEfGh", "--dry-run") == 0
    assert "would revoke API key coach_AbCdEfGh" in capsys.readouterr().out
    assert [c[0] for c in app.calls] == ["list", "list"]
    assert run(cli.REVOKE, "coach_AbCdEfGh", "--yes") == 0
    assert app.calls[-1] == ["revoke", KEY_ID], "by id: unambiguous"
    assert "revoked API key coach_AbCdEfGh" in capsys.readouterr().out
    assert run(cli.REVOKE, KEY_ID, "--yes") == 0
    assert "nothing changed" in capsys.readouterr().out
    assert [c[0] for c in app.calls].count("revoke") == 1, "a revoked key is left as it is"


def test_revoke_of_an_unknown_key_is_one_error_line(
    app: FakeApp, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(cli.REVOKE, "coach_nope", "--yes") == 1
    err = capsys.readouterr().err
    assert "error: no API key with id or prefix 'coach_nope'" in err and "hint:" in err
    assert "revoke" not in [c[0] for c in app.calls]
