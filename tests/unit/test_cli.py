"""One command line per operation: the Invoke task and the script take the same flags with the
same name, type, default and help; the vocabulary is one across commands; an operator's
mistake is one `error:` line and exit 1, never a traceback."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from invoke import Collection

from ops.cli import COMMANDS
from ops.cli.spec import Command, flags_of
from tests.support.processes import ROOT

INVOKE = Path(sys.executable).parent / "invoke"
SCRIPTS = {
    "backup": "scripts/backup.py",
    "restore": "scripts/restore.py",
    "reindex": "scripts/reindex.py",
    "logs-clean": "scripts/logclean.py",
}
DESTRUCTIVE = {
    "backup",
    "restore",
    "logs-clean",
    "down",
    "swarm.rm",
    "secrets.generate",
    "keys.revoke",
}
BY_NAME = {c.name: c for c in COMMANDS}


def _collection() -> Collection:
    import tasks  # noqa: PLC0415 - the root tasks.py, as `invoke` loads it

    return tasks.ns


def _invoke_task(name: str) -> Any:
    group, _, task = name.rpartition(".")
    collection = _collection()
    return (collection.collections[group] if group else collection).tasks[task]


def _argparse_flags(parser: argparse.ArgumentParser) -> dict[str, dict[str, Any]]:
    flags = {}
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        long = next(o for o in action.option_strings if o.startswith("--"))
        kind = (
            bool
            if isinstance(action, argparse._StoreTrueAction)
            else list
            if isinstance(action, argparse._AppendAction)
            else {"int": int}.get(getattr(action.type, "__name__", ""), str)
        )
        default = action.default
        flags[long] = {
            "short": sorted(o for o in action.option_strings if not o.startswith("--")),
            "kind": kind,
            "default": [] if kind is list else (str(default) if default is not None else None),
            "help": action.help,
        }
    return flags


def _invoke_flags(task: Any) -> dict[str, dict[str, Any]]:
    flags = {}
    for argument in task.get_arguments():
        long = "--" + next(n for n in argument.names if len(n) > 1)
        default = argument.default
        if argument.kind is bool:
            default = False if default in (None, False) else default
        flags[long] = {
            "short": sorted(f"-{n}" for n in argument.names if len(n) == 1),
            "kind": argument.kind,
            "default": default if argument.kind in (list, bool) or default is None
            else str(default),
            "help": argument.help,
        }  # fmt: skip
    return flags


@pytest.mark.parametrize("name", [*sorted(SCRIPTS), "up"])
def test_script_and_task_take_identical_flags(name: str) -> None:
    """Every flag: same name, short flag, type, default and help in both front ends."""
    command = BY_NAME[name]
    from_script = _argparse_flags(command.parser())
    from_invoke = _invoke_flags(_invoke_task(name))
    for flags in (from_script, from_invoke):
        for flag in flags.values():
            if flag["kind"] is bool:
                flag["default"] = flag["default"] not in (None, False, "False")
    assert from_script.keys() == from_invoke.keys()
    for long in from_script:
        assert from_script[long] == from_invoke[long], long
    if name == "up":  # production on local stores only when asked, in either front end
        assert from_invoke["--allow-local-stores"]["kind"] is bool
        assert from_invoke["--allow-local-stores"]["default"] is False


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_scripts_are_shims_of_the_one_definition(name: str) -> None:
    path = ROOT / SCRIPTS[name]
    code = [
        line
        for line in path.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith(("#", '"""', "from __future__"))
    ]
    assert len(code) <= 10, f"{path.name} should only run ops.cli's definition"
    done = subprocess.run(
        [sys.executable, str(path), "--help"], capture_output=True, text=True, check=True
    )
    for flag in flags_of(BY_NAME[name].options):
        assert flag.long in done.stdout


def test_no_module_under_ops_imports_scripts_or_tasks() -> None:
    for path in (ROOT / "ops").rglob("*.py"):
        text = path.read_text()
        assert "from scripts" not in text and "import scripts" not in text, path
        assert "import tasks" not in text, path


def test_one_vocabulary_across_commands() -> None:
    """The same idea has the same flag everywhere; a short flag means one long flag."""
    shorts: dict[str, str] = {}
    for command in COMMANDS:
        flags = flags_of(command.options)
        longs = {f.long for f in flags}
        assert not longs & {"--env", "--only", "--stack"}, command.name
        taken = [f.short for f in flags if f.short]
        assert len(taken) == len(set(taken)), f"{command.name}: short flags collide"
        for flag in flags:
            if flag.short:
                assert shorts.setdefault(flag.short, flag.long) == flag.long, (
                    f"-{flag.short} is {shorts[flag.short]} elsewhere, {flag.long} in "
                    f"{command.name}"
                )
            if flag.kind is int:
                assert not isinstance(flag.default, str), f"{command.name} {flag.long}"


@pytest.mark.parametrize("name", sorted(DESTRUCTIVE))
def test_destructive_commands_have_dry_run_and_yes(name: str) -> None:
    longs = {f.long for f in flags_of(BY_NAME[name].options)}
    assert {"--dry-run", "--yes"} <= longs


def test_every_command_is_an_invoke_task() -> None:
    for command in COMMANDS:
        assert _invoke_task(command.name).command is command


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(INVOKE), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1", **(env or {})},
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )


def _one_error(done: subprocess.CompletedProcess[str], expected: str) -> None:
    said = done.stdout + done.stderr
    assert done.returncode == 1, said
    assert "Traceback" not in said, said
    errors = [line for line in said.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, said
    assert expected in errors[0], said


def test_bad_flag_value_is_one_error_line() -> None:
    _one_error(_cli("backup", "--keep", "abc"), "--keep takes a whole number, not 'abc'")
    done = subprocess.run(
        [sys.executable, str(ROOT / SCRIPTS["backup"]), "--keep", "abc"],
        capture_output=True,
        text=True,
        check=False,
    )
    _one_error(done, "takes a whole number, not 'abc'")


def test_missing_backup_name_is_one_error_line(tmp_path: Path) -> None:
    done = _cli("restore", "--backup", "20250101T000000Z", "--backups-dir", str(tmp_path))
    _one_error(done, "no backup '20250101T000000Z'")
    assert "hint: " in done.stderr


def test_offsite_settings_are_checked_before_any_backup_is_made(tmp_path: Path) -> None:
    dest = str(tmp_path / "backups")
    unset = {"COACH_OFFSITE_URL": ""}
    _one_error(_cli("backup", "--offsite", "--dest", dest, env=unset), "no off-site destination")
    on = {"COACH_BACKUP_OFFSITE": "true", "COACH_OFFSITE_URL": "s3://b/p"}
    missing = {"COACH_OFFSITE_ACCESS_KEY_ID": "k", "COACH_OFFSITE_SECRET_KEY_FILE": dest + ".x"}
    _one_error(_cli("backup", "--dest", dest, env=on | missing), "No such file or directory")
    assert not (tmp_path / "backups").exists(), "nothing backed up, nothing written"


def test_required_flag_missing_is_one_error_line() -> None:
    _one_error(_cli("restore"), "--backup is required")


def test_unreachable_engine_is_one_error_line(tmp_path: Path) -> None:
    done = _cli("ps", env={"DOCKER_HOST": f"unix://{tmp_path}/no-such.sock"})
    _one_error(done, "exited")


def test_destructive_command_without_a_terminal_needs_yes(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("live\n")
    rotated = tmp_path / "app.log.1"
    rotated.write_text("old\n")
    os.utime(rotated, (0, 0))
    done = _cli("logs-clean", "--log-file", str(log), "--older-than-days", "1")
    _one_error(done, "pass --yes to go ahead")
    assert rotated.exists(), "refused: nothing deleted"
    assert "would delete" in done.stderr, "the plan is shown first"
    dry = _cli("logs-clean", "--log-file", str(log), "--older-than-days", "1", "--dry-run")
    assert dry.returncode == 0 and rotated.exists(), dry.stderr
    done = _cli("logs-clean", "--log-file", str(log), "--older-than-days", "1", "--yes")
    assert done.returncode == 0, done.stderr
    assert not rotated.exists() and log.exists()


def test_a_bare_argument_in_both_front_ends() -> None:
    """`keys.revoke ID`: positional for argparse and Invoke alike, and never a flag taken for
    its value (Invoke fills a missing positional with the next word, even --help)."""
    assert BY_NAME["keys.revoke"].parse(["coach_Ab3dE9xY", "--yes"]).key == "coach_Ab3dE9xY"
    [argument] = [a for a in _invoke_task("keys.revoke").get_arguments() if a.positional]
    assert argument.name == "key"
    _one_error(_cli("keys.revoke", "--help"), "takes ID_OR_PREFIX first, not '--help'")


def test_command_bodies_get_typed_options() -> None:
    options = BY_NAME["logs-clean"].build({"older_than_days": "3", "log_file": ["/x"]})
    assert options.older_than_days == 3
    assert isinstance(BY_NAME["backup"].parse(["--dest", "d"]).dest, Path)


def test_commands_are_typed_command_objects() -> None:
    assert all(isinstance(c, Command) for c in COMMANDS)
