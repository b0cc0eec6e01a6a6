"""One definition per command line, read by both front ends.

A command's options are a frozen dataclass whose fields carry their help, short flag and
metavar (`opt(...)`). From it come the argparse parser of scripts/*.py and the arguments of
the Invoke task, so a flag has the same name, type, default and help in both; a unit test
compares the two for every command. The command's body gets the typed options object and a
Reporter, and every failure leaves through `execute`: an OpsError or CoachError (or a bad
setting, or the host or a data service refusing: OSError, httpx errors) is one `error:` line
(plus `hint:`) and exit 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import traceback
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import httpx
import structlog
from invoke import Context, Task
from invoke.exceptions import Exit, ParseError
from invoke.parser import Argument
from pydantic import ValidationError

from coach.errors import CoachError
from coach.log import scrub
from ops.console import Reporter
from ops.errors import OpsError, UsageError

EXPECTED = (OpsError, CoachError)
Opts = TypeVar("Opts")


def opt(
    default: Any = None,
    help: str = "",
    *,
    short: str | None = None,
    metavar: str | None = None,
    required: bool = False,
    shown: str | None = None,
    positional: bool = False,
) -> Any:
    """A command-line option: the field's name is the flag (`keep_days` -> `--keep-days`).
    `shown` is the default as --help says it, where the value itself is machine-specific.
    `positional`: a bare argument (`keys.revoke ID`), so required; Invoke also takes --flag."""
    meta = {
        "help": help,
        "short": short,
        "metavar": metavar,
        "required": required or positional,
        "shown": shown,
        "positional": positional,
    }
    if isinstance(default, list):
        return dataclasses.field(default_factory=list, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class Flag:
    """One option as both front ends see it."""

    name: str  # the dataclass field
    kind: type  # bool, int, str, Path or list (of str)
    default: Any
    help: str
    short: str | None
    metavar: str | None
    required: bool
    shown: str | None = None
    positional: bool = False

    @property
    def long(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def option_strings(self) -> list[str]:
        return [self.long, *([f"-{self.short}"] if self.short else [])]

    @property
    def full_help(self) -> str:
        """The help with the default said once, in the same words for both front ends."""
        if self.required:
            return f"{self.help} (required)"
        if self.kind is bool or self.default in (None, "", []):
            return self.help
        return f"{self.help} (default {self.shown or self.default})"

    def convert(self, raw: Any) -> Any:
        """A value from either parser (strings from the command line) to the field's type."""
        if raw is None or self.kind is bool:
            return bool(raw) if self.kind is bool else raw
        if self.kind is list:
            return [str(v) for v in raw]
        if self.kind is int:
            try:
                return int(raw)
            except (TypeError, ValueError):
                raise UsageError(f"{self.long} takes a whole number, not {raw!r}") from None
        if self.kind is Path:
            return Path(raw)
        return str(raw)


def _kind(annotation: Any) -> type:
    """bool / int / str / Path / list from `int`, `int | None`, `list[str]`, ..."""
    origin = typing.get_origin(annotation)
    if origin is list:
        return list
    if origin in (typing.Union, types.UnionType):
        [inner] = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _kind(inner)
    if annotation in (bool, int, str, Path):
        return typing.cast(type, annotation)
    raise TypeError(f"unsupported option type {annotation!r}")


def flags_of(options: type) -> list[Flag]:
    hints = typing.get_type_hints(options)
    flags = []
    for field in dataclasses.fields(options):
        default = [] if field.default_factory is not dataclasses.MISSING else field.default
        meta = field.metadata
        flags.append(
            Flag(
                field.name,
                _kind(hints[field.name]),
                default,
                meta.get("help", ""),
                meta.get("short"),
                meta.get("metavar"),
                bool(meta.get("required")),
                meta.get("shown"),
                bool(meta.get("positional")),
            )
        )
    return flags


class _Argument(Argument):
    """Invoke's argument, with a bad value reported as a one-line error, not a traceback."""

    def __init__(self, flag: Flag, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.flag = flag

    def set_value(self, value: Any, cast: bool = True) -> None:
        try:
            super().set_value(value, cast)
        except ValueError:
            raise ParseError(
                f"error: {self.flag.long} takes a whole number, not {value!r}"
            ) from None


class _SpecTask(Task[Callable[..., None]]):
    """An Invoke task whose arguments come from a command's options dataclass."""

    def __init__(self, command: Command[Any], body: Callable[..., None]) -> None:
        super().__init__(body, name=command.name.rpartition(".")[2], positional=[])
        self.command = command
        self.auto_shortflags = False

    def get_arguments(self, ignore_unknown_help: bool | None = None) -> list[Argument]:
        arguments: list[Argument] = []
        for flag in flags_of(self.command.options):
            kind: type = str if flag.kind is Path else flag.kind
            default = str(flag.default) if isinstance(flag.default, Path) else flag.default
            names = (flag.long.removeprefix("--"), *((flag.short,) if flag.short else ()))
            arguments.append(
                _Argument(
                    flag,
                    names=names,
                    kind=kind,
                    default=default if kind is not list else [],
                    help=flag.full_help,
                    attr_name=flag.name if "_" in flag.name else None,
                    positional=flag.positional,
                )
            )
        return arguments


@dataclass(frozen=True)
class Command(Generic[Opts]):
    """A command: its name (`backup`, `images.resolve`), options, and body."""

    name: str
    options: type[Opts]
    body: Callable[[Opts, Reporter], None]
    doc: str  # first line: the summary; the rest: details and examples for --help

    json_field: ClassVar[str] = "json"

    @property
    def summary(self) -> str:
        return self.doc.strip().split("\n\n", 1)[0].replace("\n", " ")

    @property
    def details(self) -> str:
        return self.doc.strip().partition("\n\n")[2]

    # --- scripts: argparse ---------------------------------------------------------------

    def parser(self, prog: str | None = None) -> argparse.ArgumentParser:
        parser = _Parser(
            prog=prog,
            description=self.summary,
            epilog=self.details,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        for flag in flags_of(self.options):
            common: dict[str, Any] = {"help": flag.full_help, "dest": flag.name}
            if flag.positional:
                parser.add_argument(
                    flag.name, help=flag.full_help, metavar=flag.metavar, type=_argparse_type(flag)
                )
            elif flag.kind is bool:
                parser.add_argument(*flag.option_strings, action="store_true", **common)
            elif flag.kind is list:
                parser.add_argument(
                    *flag.option_strings, action="append", metavar=flag.metavar, **common
                )
            else:
                parser.add_argument(
                    *flag.option_strings,
                    default=flag.default,
                    metavar=flag.metavar,
                    type=_argparse_type(flag),
                    **common,
                )
        return parser

    def parse(self, argv: Sequence[str] | None = None, prog: str | None = None) -> Opts:
        namespace = self.parser(prog).parse_args(argv)
        return self.build(vars(namespace))

    def build(self, raw: dict[str, Any]) -> Opts:
        """The options object from either parser's values, required ones checked."""
        values = {}
        for flag in flags_of(self.options):
            value = flag.convert(raw.get(flag.name, flag.default))
            if flag.kind is list and value is None:
                value = []
            if flag.required and value in (None, ""):
                raise UsageError(f"{self.name}: {flag.long} is required")
            if flag.positional and str(value).startswith("-"):
                # Invoke fills a missing positional with the next word, even `--help`.
                raise UsageError(
                    f"{self.name} takes {flag.metavar or flag.name} first, not {value!r} "
                    f"(`invoke --help {self.name}` lists the options)"
                )
            values[flag.name] = value
        return self.options(**values)

    def main(self, argv: Sequence[str] | None = None, prog: str | None = None) -> int:
        """scripts/*.py: parse (a malformed command line exits 1 with one line), then run."""
        try:
            options = self.parse(argv, prog)
        except UsageError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return execute(self, options)

    # --- Invoke ----------------------------------------------------------------------------

    def task(self) -> Task[Callable[..., None]]:
        command = self

        def body(c: Context, **raw: Any) -> None:
            try:
                options = command.build(raw)
            except UsageError as exc:
                raise Exit(f"error: {exc}", code=1) from None
            code = execute(command, options)
            if code:
                raise Exit(code=code)

        body.__doc__ = self.doc
        body.__name__ = self.name.rpartition(".")[2].replace("-", "_")
        return _SpecTask(self, body)


class _Parser(argparse.ArgumentParser):
    """A malformed command line is one `error:` line and exit 1, as every other refusal."""

    def error(self, message: str) -> typing.NoReturn:
        print(f"error: {message}\nhint: {self.prog} --help lists the options", file=sys.stderr)
        raise SystemExit(1)


def _argparse_type(flag: Flag) -> Callable[[str], Any]:
    def convert(raw: str) -> Any:
        try:
            return flag.convert(raw)
        except UsageError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix(f"{flag.long} ")) from None

    convert.__name__ = flag.kind.__name__
    return convert


def execute(command: Command[Opts], options: Opts) -> int:
    """Run a command's body: 0 when it returns, 1 with one clear line when it fails."""
    reporter = Reporter(json_lines=bool(getattr(options, Command.json_field, False)))
    try:
        with _app_logs_to_stderr():
            command.body(options, reporter)
    except KeyboardInterrupt:
        reporter.error("interrupted")
        return 130
    except ValidationError as exc:  # a setting from the environment the operator mistyped
        reporter.error(
            "invalid setting: " + scrub("; ".join(_setting_problem(e) for e in exc.errors())),
            "check the COACH_* (or the app's) environment variables named above",
        )
        return 1
    except EXPECTED as exc:
        hint = getattr(exc, "hint", None)
        reporter.error(scrub(str(exc)) or type(exc).__name__, scrub(hint) if hint else None)
        return 1
    except (OSError, httpx.HTTPError) as exc:
        # The host or a data service said no (a file the operator named, a port, a refused
        # connection): operational, so one line; the exception's class says which kind.
        reporter.error(f"{type(exc).__name__}: {scrub(str(exc))}")
        return 1
    except Exit:
        reporter.close()
        raise
    except Exception as exc:
        # A bug, not an operational failure: show where, but only frames and source lines (the
        # message goes through scrub; it might carry a URL with a password).
        reporter.close()
        sys.stderr.write("Traceback (most recent call last):\n")
        sys.stderr.write("".join(traceback.format_tb(exc.__traceback__)))
        reporter.error(f"{type(exc).__name__}: {scrub(str(exc))} (a bug: please report it)")
        return 1
    finally:
        reporter.close()
    return 0


def _setting_problem(error: Any) -> str:
    where = ".".join(str(part) for part in error.get("loc", ())) or "settings"
    return f"{where}: {error.get('msg', 'invalid')}"


class _CurrentStderr:
    """Whatever sys.stderr is when a line is written (a test's capture comes and goes)."""

    def write(self, text: str) -> None:
        sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


@contextmanager
def _app_logs_to_stderr() -> Iterator[None]:
    """The app's own log lines (coach.* logs through structlog) go to stderr while a command
    runs: stdout is the command's output, JSON lines only with --json. Put back afterwards."""
    previous = structlog.get_config()
    stderr: Any = _CurrentStderr()  # PrintLogger calls only write() and flush()
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(stderr))
    try:
        yield
    finally:
        structlog.configure(**previous)
