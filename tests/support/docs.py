"""The operator docs read the way a reader uses them: the commands in their code, the settings
they document and the links between them, each checked against the repository. Shared by the
unit docs test (one case per command or link) and the acceptance test of the deployment docs.

What counts as a command: a shell line of a fenced block (no language, sh, bash, shell,
console) or an inline code span, split at `|`, `&&`, `;`. Checked: `invoke` tasks and their
flags (from the Invoke collection in tasks.py), `nox -s` sessions (from noxfile.py),
`python -m` modules of this repository, `scripts/...` paths, and `docker compose -f` files.
"""

from __future__ import annotations

import itertools
import re
import shlex
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import unquote

from invoke import Program
from invoke.parser import Argument

from ops.paths import COMPOSE_DIR, ROOT

DOCS = ROOT / "docs"
ENV_PROD_EXAMPLE = COMPOSE_DIR / ".env.prod.example"
SHELL_FENCES = {"", "sh", "bash", "shell", "console", "zsh"}
# Words that may stand before the command itself: `./run invoke up`, `sudo`, `uv run nox`.
WRAPPERS = {"./run", "run", "uv", "sudo", "env", "exec", "time"}
PYTHONS = {"python", "python3"}
COMPOSE_VALUE_FLAGS = {
    "-f",
    "--file",
    "-p",
    "--project-name",
    "--profile",
    "--env-file",
    "--project-directory",
    "--ansi",
    "--parallel",
    "--progress",
}
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})\s*([\w+-]*)")
_CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)")
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s.*)?$")
_ATX = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_HTML_ANCHOR = re.compile(r"<a\s[^>]*(?:id|name)=\"([^\"]+)\"", re.IGNORECASE)
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)
_COMMENT = re.compile(r"(?:^|\s)#.*$")


@dataclass(frozen=True)
class Stated:
    """One thing a doc states: a command or a link, where it stands."""

    doc: Path
    line: int
    text: str

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"

    @property
    def id(self) -> str:
        return f"{self.where}: {self.text}"


def doc_files() -> list[Path]:
    """README.md, its translations, and everything under docs/."""
    return sorted(ROOT.glob("README*.md")) + sorted(DOCS.rglob("*.md"))


def _lines(doc: Path) -> Iterator[tuple[int, str, str | None]]:
    """(line number, text, fence language or None outside fenced code), fences themselves
    left out."""
    fence: tuple[str, str] | None = None
    for number, text in enumerate(doc.read_text().splitlines(), 1):
        opened = _FENCE.match(text)
        if fence is None and opened:
            fence = (opened.group(1), opened.group(2).lower())
            continue
        closing = fence is not None and text.strip().startswith(fence[0][0] * len(fence[0]))
        if fence is not None and closing and not text.strip().strip(fence[0][0]):
            fence = None
            continue
        yield number, text, None if fence is None else fence[1]


def _without_code(text: str) -> str:
    return _CODE_SPAN.sub("", text)


# --- commands ----------------------------------------------------------------------------


def code(doc: Path) -> list[Stated]:
    """Shell lines of fenced blocks (continuations joined) and inline code spans."""
    found: list[Stated] = []
    pending: tuple[int, str] | None = None
    for number, text, fence in _lines(doc):
        if fence is None:
            found += [Stated(doc, number, m.group(2).strip()) for m in _CODE_SPAN.finditer(text)]
            continue
        if fence not in SHELL_FENCES:
            continue
        line = text.strip().removeprefix("$ ")
        start, joined = pending if pending else (number, "")
        joined = f"{joined} {line}".strip()
        if joined.endswith("\\"):
            pending = (start, joined[:-1])
            continue
        pending = None
        if joined:
            found.append(Stated(doc, start, joined))
    return found


def _segments(text: str) -> list[list[str]]:
    """Shell words of each simple command on the line (comments dropped)."""
    lexer = shlex.shlex(_COMMENT.sub("", text), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        words = list(lexer)
    except ValueError:  # an unbalanced quote in prose-like code: plain words will do
        words = text.split()
    segments: list[list[str]] = [[]]
    for word in words:
        if word and all(c in "();<>|&" for c in word):
            segments.append([])
        else:
            segments[-1].append(word)
    return [s for s in segments if s]


def _command(words: list[str]) -> list[str]:
    """The words from the command name on: wrappers and VAR=value prefixes skipped."""
    for i, word in enumerate(words):
        if word not in WRAPPERS and not _ASSIGNMENT.match(word):
            return words[i:]
    return []


def commands() -> list[Stated]:
    """Every simple command the docs show that this module can check."""
    found: list[Stated] = []
    for doc in doc_files():
        for stated in code(doc):
            for words in _segments(stated.text):
                if _checkable(words):
                    found.append(Stated(stated.doc, stated.line, shlex.join(words)))
    return found


def _checkable(words: list[str]) -> bool:
    command = _command(words)
    name = Path(command[0]).name if command else ""
    return (
        name in {"invoke", "nox", "docker-compose"}
        or (name == "docker" and command[1:2] == ["compose"])
        or any(Path(w).name in PYTHONS or _script(w) for w in words)
    )


def _script(word: str) -> bool:
    return word.removeprefix("./").startswith("scripts/")


def command_problems(text: str) -> list[str]:
    words = shlex.split(text)
    command = _command(words)
    name = Path(command[0]).name if command else ""
    problems = [
        f"no such file {w}"
        for w in words
        if _script(w) and not (ROOT / w.removeprefix("./").rstrip(",.")).exists()
    ]
    # Anywhere on the line: `docker compose exec backend python -m coach.probe` too.
    for i, word in enumerate(words):
        if Path(word).name in PYTHONS:
            problems += _module_problems(words[i + 1 :])
    if name == "invoke":
        problems += _invoke_problems(command[1:])
    elif name == "nox":
        problems += _nox_problems(command[1:])
    elif name == "docker-compose" or (name == "docker" and command[1:2] == ["compose"]):
        problems += _compose_problems(command[1 if name == "docker-compose" else 2 :])
    return problems


# flag -> whether the next word is its value: "yes", "no", or "maybe" (an optional value).
Flags = dict[str, str]


def _flags(arguments: Iterable[Argument]) -> Flags:
    flags: Flags = {}
    for argument in arguments:
        takes = "no"
        if argument.takes_value:
            takes = "maybe" if argument.optional else "yes"
        for name in argument.names:
            flags[f"--{name}" if len(name) > 1 else f"-{name}"] = takes
        if argument.kind is bool and argument.default is True:
            flags[f"--no-{argument.names[0]}"] = "no"
    return flags


@cache
def invoke_tasks() -> dict[str, Flags]:
    """Task name (and alias) -> its flags, from the collection `invoke` itself loads."""
    import tasks  # noqa: PLC0415 - the repository's tasks.py, only when docs are checked

    found: dict[str, Flags] = {}
    for context in tasks.ns.to_contexts():
        flags = _flags(context.args.values())
        found |= {name: flags for name in (context.name, *context.aliases) if name}
    return found


@cache
def _invoke_core() -> Flags:
    """Options before the first task (--list, --help, ...)."""
    program = Program()
    return _flags([*program.core_args(), *program.task_args()])


@cache
def invoke_positionals() -> dict[str, int]:
    """Task name -> how many bare arguments it takes (`keys.revoke ID`)."""
    import tasks  # noqa: PLC0415 - as invoke_tasks

    return {
        name: len(context.positional_args)
        for context in tasks.ns.to_contexts()
        for name in (context.name, *context.aliases)
        if name
    }


def _invoke_problems(words: list[str]) -> list[str]:
    known = invoke_tasks()
    task: str | None = None
    expecting = "no"
    bare = 0  # bare arguments the task still takes
    for raw in words:
        word = raw.strip("[]")  # [--optional] in usage lines
        if not word:
            continue
        if expecting == "yes" or (
            expecting == "maybe" and not word.startswith("-") and word not in known
        ):
            expecting = "no"
            continue
        if bare and not word.startswith("-"):
            bare -= 1
            continue
        flag, has_value, _ = word.partition("=")
        if flag.startswith("-") and flag != "-":
            if task is not None and flag in ("-h", "--help"):
                return []
            flags = _invoke_core() if task is None else known[task]
            if flag not in flags:
                return [f"invoke {task}: no flag {flag}" if task else f"invoke: no flag {flag}"]
            expecting = "no" if has_value else flags[flag]
            continue
        if word not in known:
            return [f"invoke: no task {word!r}"]
        task, expecting, bare = word, "no", invoke_positionals()[word]
    return []


@cache
def nox_sessions() -> frozenset[str]:
    import nox.registry  # noqa: PLC0415

    import noxfile  # noqa: F401, PLC0415 - importing it registers its sessions

    return frozenset(nox.registry.get())


def _nox_problems(words: list[str]) -> list[str]:
    problems: list[str] = []
    naming = False
    for word in words:
        if word == "--":
            break
        flag, has_value, value = word.partition("=")
        if flag in ("-s", "--session", "--sessions", "-e"):
            naming = not has_value
            names = [value] if has_value else []
        elif word.startswith("-"):
            naming, names = False, []
        else:
            names = [word] if naming else []
        problems += [f"nox: no session {n!r}" for n in names if n not in nox_sessions()]
    return problems


def _compose_problems(words: list[str]) -> list[str]:
    """`-f` files among the global options (after the subcommand, -f is --follow)."""
    problems: list[str] = []
    i = 0
    while i < len(words) and words[i].startswith("-"):
        flag, has_value, value = words[i].partition("=")
        if flag in COMPOSE_VALUE_FLAGS and not has_value:
            value = words[i + 1] if i + 1 < len(words) else ""
            i += 1
        if flag in ("-f", "--file"):
            # Written from infra/compose (as the compose files' own comments do) or the root.
            candidates = [(base / value).resolve() for base in (COMPOSE_DIR, ROOT)]
            if not any(c.is_file() and c.is_relative_to(COMPOSE_DIR) for c in candidates):
                problems.append(f"docker compose: no compose file {value} in infra/compose")
        i += 1
    return problems


def _module_problems(words: list[str]) -> list[str]:
    """`python -m pkg.mod` where pkg is this repository's: the module must exist."""
    if len(words) < 2 or words[0] != "-m":
        return []
    parts = words[1].split(".")
    if not (ROOT / parts[0] / "__init__.py").is_file():
        return []  # a third-party module (uvicorn, celery): not ours to check
    path = ROOT.joinpath(*parts)
    if (path / "__init__.py").is_file() or path.with_suffix(".py").is_file():
        return []
    return [f"python -m: no module {words[1]} in this repository"]


def undocumented_tasks() -> list[str]:
    """Invoke tasks no doc shows, as `invoke NAME ...` or as a code span of its own."""
    shown: set[str] = set()
    for doc in doc_files():
        for stated in code(doc):
            words = stated.text.split()
            shown.update(words[:1])
            shown.update(b for a, b in itertools.pairwise(words) if a == "invoke")
    return sorted(set(invoke_tasks()) - shown)


# --- settings ------------------------------------------------------------------------------


def env_example_variables() -> list[tuple[int, str]]:
    """(line, NAME) of every variable infra/compose/.env.prod.example sets."""
    return [
        (number, line.split("=", 1)[0].strip())
        for number, line in enumerate(ENV_PROD_EXAMPLE.read_text().splitlines(), 1)
        if _ASSIGNMENT.match(line.strip())
    ]


@cache
def settings_variables() -> frozenset[str]:
    """The environment names coach/settings.py reads: a field's alias, else its name, upper."""
    from coach.settings import Settings  # noqa: PLC0415

    return frozenset((info.alias or name).upper() for name, info in Settings.model_fields.items())


@cache
def alert_variables() -> frozenset[str]:
    """The COACH_ALERT_* names ops/stack/alerting.py renders Alertmanager's config from."""
    from ops.stack.alerting import PREFIX, AlertSettings  # noqa: PLC0415

    return frozenset(PREFIX + name.upper() for name in AlertSettings.model_fields)


def variable_problems(name: str) -> list[str]:
    problems: list[str] = []
    word = re.compile(rf"\b{re.escape(name)}\b")
    if not any(word.search(doc.read_text()) for doc in sorted(DOCS.glob("*.md"))):
        problems.append(f"{name} is documented in no docs/*.md")
    # ${NAME} interpolation, or NAME as an environment entry (map key or list item).
    escaped = re.escape(name)
    interpolated = re.compile(rf"\$\{{?{escaped}\b|^\s+{escaped}:|^\s+-\s+{escaped}=", re.MULTILINE)
    in_compose = any(interpolated.search(f.read_text()) for f in COMPOSE_DIR.glob("*.yml"))
    if name not in settings_variables() | alert_variables() and not in_compose:
        problems.append(
            f"{name} is read by neither coach/settings.py, ops/stack/alerting.py nor a compose file"
        )
    return problems


# --- links ---------------------------------------------------------------------------------


def links() -> list[Stated]:
    """Every relative link target (inline, image or reference definition) outside code."""
    found: list[Stated] = []
    for doc in doc_files():
        for number, text, fence in _lines(doc):
            if fence is not None:
                continue
            prose = _without_code(text)
            targets = [m.group(1) for m in _LINK.finditer(prose)]
            if reference := _REFERENCE.match(prose):
                targets.append(reference.group(1))
            found += [
                Stated(doc, number, t)
                for t in targets
                if t and not _SCHEME.match(t) and not t.startswith("//")
            ]
    return found


def link_target(doc: Path, target: str) -> Path:
    """The file a relative link points at (the doc itself for a bare #anchor)."""
    path_part = target.partition("#")[0]
    return (doc.parent / unquote(path_part)).resolve() if path_part else doc


def link_problem(doc: Path, target: str) -> str | None:
    fragment = target.partition("#")[2]
    path = link_target(doc, target)
    if not path.is_relative_to(ROOT):
        return f"{target}: outside the repository"
    if not path.exists():
        return f"{target}: no such file"
    if fragment and path.suffix == ".md" and unquote(fragment) not in anchors(path):
        return f"{target}: no heading with anchor #{fragment} in {path.relative_to(ROOT)}"
    return None


def anchors(doc: Path) -> set[str]:
    """The anchors GitHub makes for a file's headings (and explicit <a id/name>)."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    previous = ""
    for _, text, fence in _lines(doc):
        heading: str | None = None
        if fence is None:
            if atx := _ATX.match(text):
                heading = atx.group(2)
            elif re.fullmatch(r"\s{0,3}(=+|-+)\s*", text) and _paragraph(previous):
                heading = previous
            found.update(_HTML_ANCHOR.findall(text))
        previous = text if fence is None else ""
        if heading is None:
            continue
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def _paragraph(line: str) -> bool:
    """A line a setext underline turns into a heading (not a table, list or blank line)."""
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith(("|", "-", "*", "+", ">", "#"))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading (github-slugger): the rendered text lower-cased, every
    character but letters, marks, digits, connector punctuation, spaces and hyphens dropped,
    spaces turned into hyphens."""
    text = _rendered(heading).strip().lower()
    kept = "".join(
        ch
        for ch in text
        if ch in " -" or unicodedata.category(ch)[0] in "LMN" or unicodedata.category(ch) == "Pc"
    )
    return kept.replace(" ", "-")


def _rendered(markdown: str) -> str:
    """Heading text as rendered: links and code spans keep their text, markup goes."""
    parts: list[str] = []
    last = 0
    for span in _CODE_SPAN.finditer(markdown):
        parts += [_unmarked(markdown[last : span.start()]), span.group(2).strip()]
        last = span.end()
    parts.append(_unmarked(markdown[last:]))
    return "".join(parts)


def _unmarked(text: str) -> str:
    text = re.sub(r"!\[([^\]]*)\]\([^)]*\)", "", text)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"<[^>]+>", "", text)
    text = re.sub(r"(\*\*|\*)(?=\S)(.+?)(?<=\S)\1", r"\2", text)
    return re.sub(r"(?<!\w)(__|_)(?=\S)(.+?)(?<=\S)\1(?!\w)", r"\2", text)


# --- everything at once --------------------------------------------------------------------


def problems() -> list[str]:
    """Every problem the checks above find, one line each, naming the doc and line."""
    found = [f"{c.where}: `{c.text}`: {p}" for c in commands() for p in command_problems(c.text)]
    found += [
        f"{ENV_PROD_EXAMPLE.relative_to(ROOT)}:{line}: {p}"
        for line, name in env_example_variables()
        for p in variable_problems(name)
    ]
    found += [
        f"{link.where}: {problem}"
        for link in links()
        if (problem := link_problem(link.doc, link.text))
    ]
    return found


# --- translations --------------------------------------------------------------------------

ZH_CN = DOCS / "zh-CN"


def headings(doc: Path) -> list[tuple[int, str, set[str]]]:
    """(level, GitHub anchor, explicit <a id> anchors) of every ATX heading, in order."""
    found = []
    for _, text, fence in _lines(doc):
        if fence is None and (atx := _ATX.match(text)):
            found.append((len(atx.group(1)), slug(atx.group(2)), set(_HTML_ANCHOR.findall(text))))
    return found


def english_docs() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def twin_problems(english: Path, twin: Path | None = None) -> list[str]:
    """What the zh-CN twin of an English doc lacks: the file, or a section. Each English
    heading needs a twin heading of the same level carrying `<a id="its-english-anchor">`, in
    the same order (a link or an alert's runbook anchor lands on the same section in both);
    the twin may have sections of its own (e.g. for mainland China)."""
    twin = twin or ZH_CN / english.name
    if not twin.is_file():
        return [f"{twin.name}: missing (the zh-CN twin of {english.name})"]
    theirs = headings(twin)
    problems, position = [], 0
    for level, anchor, _ in headings(english):
        match = next(
            (i for i in range(position, len(theirs)) if anchor in theirs[i][2]),
            None,
        )
        if match is None:
            problems.append(
                f'{twin.name}: no heading with <a id="{anchor}"> after the previous section\'s '
                f"(twin of {english.name}'s '{anchor}')"
            )
            continue
        if theirs[match][0] != level:
            problems.append(f"{twin.name}: '{anchor}' is level {theirs[match][0]}, not {level}")
        position = match + 1
    return problems
