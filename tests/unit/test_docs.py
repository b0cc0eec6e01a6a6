"""The docs say what exists: every command they show runs something real (Invoke tasks and
flags, Nox sessions, scripts, modules, compose files), every production setting is documented
and read, every relative link lands on a file and heading. One case per command, setting and
link, named after the doc and line (parsing in tests/support/docs.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import docs

COMMANDS = docs.commands()
LINKS = docs.links()
VARIABLES = docs.env_example_variables()


@pytest.mark.parametrize("stated", COMMANDS, ids=[c.id for c in COMMANDS])
def test_command_exists(stated: docs.Stated) -> None:
    problems = docs.command_problems(stated.text)
    assert not problems, f"{stated.where}: {'; '.join(problems)}"


@pytest.mark.parametrize(("line", "name"), VARIABLES, ids=[name for _, name in VARIABLES])
def test_production_variable_is_documented_and_read(line: int, name: str) -> None:
    problems = docs.variable_problems(name)
    assert not problems, f"infra/compose/.env.prod.example:{line}: {'; '.join(problems)}"


@pytest.mark.parametrize("stated", LINKS, ids=[link.id for link in LINKS])
def test_relative_link_resolves(stated: docs.Stated) -> None:
    problem = docs.link_problem(stated.doc, stated.text)
    assert problem is None, f"{stated.where}: {problem}"


# The parser itself, on small documents: a check that reads nothing would pass everything.


def test_the_docs_state_commands_links_and_variables() -> None:
    assert {Path(c.text.split()[1]).name for c in COMMANDS if c.text.startswith("./run")} >= {
        "invoke",
        "nox",
    }
    assert any(link.text == "docs/images.md" for link in LINKS)
    assert "LOG_LEVEL" in {name for _, name in VARIABLES}


@pytest.mark.parametrize(
    ("command", "problem"),
    [
        ("./run invoke up --prod --profile observability", None),
        ("COACH_PULL=never ./run invoke images.load --input x.tar", None),
        ("./run invoke backup [--prod] [--keep 7] [--keep-days 30]", None),
        ("./run invoke up --no-build", None),
        ("./run invoke --list", None),
        ("./run invoke up --production", "invoke up: no flag --production"),
        ("./run invoke backups", "invoke: no task 'backups'"),
        ("./run invoke ps --volumes", "invoke ps: no flag --volumes"),
        ("./run invoke keys.revoke coach_Ab3dE9xY --prod --yes", None),
        ("./run invoke keys.revoke coach_Ab3dE9xY coach_x", "invoke: no task 'coach_x'"),
        ("./run nox -s unit lint -- -k x", None),
        ("./run nox -s units", "nox: no session 'units'"),
        ("./run python scripts/backup.py --help", None),
        ("./run python scripts/backups.py", "no such file scripts/backups.py"),
        ("python -m coach.probe http://x", None),
        ("python -m coach.probes", "python -m: no module coach.probes in this repository"),
        ("python -m uvicorn app:app", None),
        (
            "docker compose -p coach exec backend python -m coach.nope",
            "python -m: no module coach.nope in this repository",
        ),
        ("docker compose -f docker-compose.yml -f docker-compose.prod.yml up -d", None),
        ("docker compose -f infra/compose/docker-compose.yml logs -f backend", None),
        (
            "docker compose -f docker-compose.staging.yml up",
            "docker compose: no compose file docker-compose.staging.yml in infra/compose",
        ),
    ],
)
def test_command_checks(command: str, problem: str | None) -> None:
    assert docs.command_problems(command) == ([problem] if problem else [])


def test_commands_are_found_in_shell_blocks_and_inline_code(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text(
        "Run `./run invoke up --prod` first.\n"
        "```sh\n"
        "./run invoke backup \\\n"
        "  --keep 7   # retention\n"
        "./run nox -s unit && ./run invoke ps | grep backend\n"
        "```\n"
        "```yaml\n"
        "command: invoke nothing\n"
        "```\n"
    )
    found = [(s.line, s.text) for s in docs.code(doc)]
    assert found == [
        (1, "./run invoke up --prod"),
        (3, "./run invoke backup  --keep 7   # retention"),
        (5, "./run nox -s unit && ./run invoke ps | grep backend"),
    ]
    segments = [w for s in docs.code(doc) for w in docs._segments(s.text)]
    assert ["./run", "invoke", "backup", "--keep", "7"] in segments
    assert ["./run", "invoke", "ps"] in segments and ["grep", "backend"] in segments


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("Alert: BackendDown", "alert-backenddown"),
        ("Baked stand-ins (`invoke images.bake`)", "baked-stand-ins-invoke-imagesbake"),
        ("Backup, restore, reindex, log cleanup", "backup-restore-reindex-log-cleanup"),
        ("`LOG_LEVEL` and *friends*", "log_level-and-friends"),
        ("[Images](docs/images.md) & registries", "images--registries"),
        ("快速开始：一条命令", "快速开始一条命令"),  # noqa: RUF001 - the full-width colon goes
    ],
)
def test_github_anchor_slugs(heading: str, anchor: str) -> None:
    assert docs.slug(heading) == anchor


def test_links_resolve_to_files_and_headings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(docs, "ROOT", tmp_path)
    target = tmp_path / "guide.md"
    target.write_text("# Guide\n## Set up\n## Set up\n```\n# not a heading\n```\n")
    doc = tmp_path / "README.md"
    doc.write_text("[a](guide.md#set-up-1) [b](guide.md#not-a-heading) [c](nope.md) [d](#top)\n")
    assert docs.anchors(target) == {"guide", "set-up", "set-up-1"}
    assert docs.link_problem(doc, "guide.md#set-up-1") is None
    assert "no heading with anchor #not-a-heading" in str(
        docs.link_problem(doc, "guide.md#not-a-heading")
    )
    assert docs.link_problem(doc, "nope.md") == "nope.md: no such file"
    assert "#top" in str(docs.link_problem(doc, "#top"))


@pytest.mark.parametrize("english", docs.english_docs(), ids=lambda p: p.name)
def test_every_english_section_has_its_zh_cn_twin(english: Path) -> None:
    assert docs.twin_problems(english) == []


def test_a_missing_twin_section_is_found(tmp_path: Path) -> None:
    english = tmp_path / "guide.md"
    english.write_text("# Guide\n\n## Backups\n\ntext\n\n## Restore\n\ntext\n")
    twin = tmp_path / "zh.md"
    twin.write_text('# 指南 <a id="guide"></a>\n\n## 备份 <a id="backups"></a>\n\n正文\n')
    assert docs.twin_problems(english, twin) == [
        'zh.md: no heading with <a id="restore"> after the previous section\'s '
        "(twin of guide.md's 'restore')"
    ]
    twin.write_text(twin.read_text() + '\n### 恢复 <a id="restore"></a>\n')
    assert docs.twin_problems(english, twin) == ["zh.md: 'restore' is level 3, not 2"]
    assert docs.twin_problems(english, tmp_path / "none.md") == [
        "none.md: missing (the zh-CN twin of guide.md)"
    ]
