"""`invoke doctor` against this machine's engine and Compose: what the unit tests
(tests/unit/test_doctor.py) cannot show with their faked Probe."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ops.images.resolve import Resolved
from ops.paths import COMPOSE_DIR, ROOT
from ops.stack import doctor
from ops.stack.project import Project


def test_doctor_on_this_machine() -> None:
    findings = doctor.diagnose()
    assert findings
    assert all(f.level in {"ok", "warn", "blocker"} for f in findings)
    [engine] = [f for f in findings if f.check == "engine"]
    assert engine.level == "ok"
    assert doctor.render(findings)


def test_invoke_doctor_exits_1_on_a_faked_low_disk() -> None:
    invoke = Path(sys.executable).parent / "invoke"
    done = subprocess.run(
        [invoke, "doctor"],
        cwd=ROOT,
        env={**os.environ, "COACH_DOCTOR_FAKE_FREE_DISK_BYTES": "1000000000"},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert re.search(r"^\W*disk\W+blocker\W", output, re.MULTILINE), output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    assert "disk" in errors[0]
    assert "Traceback" not in output


class NoImages(doctor.Probe):
    """The real host and compose model; the image checks, slow and beside the point, skipped."""

    def images(self) -> list[Resolved]:
        return []


@pytest.mark.parametrize("prod", [False, True], ids=["dev", "prod"])
def test_the_doctor_checks_the_ports_compose_publishes(
    prod: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_BIND", "HTTP_PORT"):  # the documented defaults below
        monkeypatch.delenv(name, raising=False)
    if prod:
        env_file = tmp_path / ".env.prod"
        shutil.copyfile(COMPOSE_DIR / ".env.prod.example", env_file)
        monkeypatch.setenv("PROD_ENV_FILE", str(env_file))
    done = Project("prod" if prod else "dev").run(
        "config", "--format", "json", capture=True, quiet=True
    )
    published = {
        (name, entry.get("host_ip") or doctor.ANY_ADDRESS, int(entry["published"]))
        for name, spec in json.loads(done.stdout)["services"].items()
        for entry in spec.get("ports") or []
    }
    probe = NoImages()
    wanted = {(p.service, p.address, p.port) for p in doctor.published_ports(probe.config(prod))}
    assert wanted == published
    # docs/deployment.md: nginx's HTTP port is 127.0.0.1:8080 in development, 0.0.0.0:80 in prod.
    assert (("nginx", doctor.ANY_ADDRESS, 80) if prod else ("nginx", "127.0.0.1", 8080)) in wanted
    checked = {
        f.check for f in doctor.diagnose(prod=prod, probe=probe) if f.check.startswith("port")
    }
    assert checked == {f"port {port}" for _, _, port in published}
