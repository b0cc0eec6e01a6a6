"""docker.ensure, docker.stop and doctor: the engine this project runs on, and the preflight."""

from __future__ import annotations

from dataclasses import dataclass

from ops.cli.common import JsonOption
from ops.cli.spec import Command, opt
from ops.console import Reporter
from ops.errors import HostError
from ops.host import engine
from ops.stack import doctor


@dataclass(frozen=True)
class NoOptions:
    pass


def run_ensure(options: NoOptions, reporter: Reporter) -> None:
    report = engine.ensure()
    reporter.result(report.summary(), actions=report.actions)


def run_stop(options: NoOptions, reporter: Reporter) -> None:
    reporter.result(engine.stop())


ENSURE = Command(
    "docker.ensure",
    NoOptions,
    run_ensure,
    "Make a Docker engine and Compose v2 answer (installs and starts them on Debian as root).",
)
STOP = Command(
    "docker.stop",
    NoOptions,
    run_stop,
    "Stop the dockerd that docker.ensure started (never an engine started by someone else).",
)


@dataclass(frozen=True)
class DoctorOptions(JsonOption):
    prod: bool = opt(False, "also check the production configuration (.env.prod, secrets)")


def run_doctor(options: DoctorOptions, reporter: Reporter) -> None:
    findings = doctor.diagnose(prod=options.prod)
    reporter.result(
        doctor.render(findings),
        findings=[
            {"check": f.check, "level": f.level, "detail": f.detail, "hint": f.hint}
            for f in findings
        ],
    )
    if blocked := doctor.blockers(findings):
        raise HostError(
            f"{len(blocked)} blocker(s): {', '.join(f.check for f in blocked)}",
            hint="fix what the table's hints say, then run `invoke doctor` again",
        )


DOCTOR = Command(
    "doctor",
    DoctorOptions,
    run_doctor,
    """Check this host before (or after) `up`: a table of ok / warn / blocker, exit 1 on a blocker.

CPU, memory, free disk under the engine's data-root, engine and Compose versions (warns below
the tested ones), cgroup version, the ports the stack publishes, where each image would come
from, and with --prod the production configuration (.env.prod, secrets, the LLM key). It
changes nothing: no pull, bake or install. `invoke up` runs the same checks and stops on a
blocker.

examples:
  ./run invoke doctor
  ./run invoke doctor --prod --json
""",
)

COMMANDS = (DOCTOR, ENSURE, STOP)
