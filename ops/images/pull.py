"""Image pulls: through the mirror, a few at a time, with byte progress, given up only when a
pull stops moving (not after a fixed time: a slow mirror that keeps delivering is fine).

Why the Engine API (the docker SDK) and not `docker pull`: piped, the CLI prints one line per
layer phase and no byte counts (those are drawn only on a terminal), while the API streams
`progressDetail.current/total` for every layer, as JSON, to whoever reads it. The engine is the
one the CLI would use: DOCKER_HOST (and DOCKER_TLS_VERIFY, DOCKER_CERT_PATH), else the current
`docker context`.

A stall is `pull_stall_timeout` seconds without progress, progress being more bytes downloaded
or extracted on any layer, or a layer (or the image) reporting a phase it had not reported
before. Two guards enforce it: a check on every event (an engine that keeps talking without
progress), and the socket's read timeout set to the same value (an engine, or a mirror behind
it, that says nothing at all; the SDK itself reads a pull with no timeout).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import docker
import requests
import urllib3
from docker.context import ContextAPI
from docker.utils import kwargs_from_env

from ops.console import Reporter, human_size
from ops.errors import HostError
from ops.images.catalog import ImageRef
from ops.settings import OpsSettings

Event = Mapping[str, Any]
Clock = Callable[[], float]
Puller = Callable[[ImageRef], "PullResult"]

# TimeoutError first: it is an OSError too. requests' errors are OSErrors as well.
_TIMEOUTS = (TimeoutError, urllib3.exceptions.TimeoutError, requests.exceptions.Timeout)
_TRANSPORT = (OSError, urllib3.exceptions.HTTPError)
_REPORTING = threading.Lock()  # Reporter is not thread-safe; pulls report from a pool
_CONNECT_TIMEOUT = 30.0


@dataclass(frozen=True)
class PullResult:
    image: ImageRef
    ok: bool
    detail: str = ""  # ok: "via <mirror host>" or ""; failed: the cause, one short line
    downloaded: int = 0  # bytes


class PullFailed(Exception):
    """A pull that cannot finish; the message is its cause in one short line."""


def short_cause(message: str) -> str:
    """The cause without the daemon's URL chatter: 'Get "https://x/v2/": ...: no such host'
    becomes 'no such host'."""
    lines = message.strip().splitlines() or ["pull failed"]
    return lines[-1].rsplit(": ", 1)[-1].strip()[:120] or "pull failed"


@dataclass
class Layers:
    """What a pull's events said so far, per layer; `take` tells progress from chatter."""

    sizes: dict[str, int] = field(default_factory=dict)
    downloaded: dict[str, int] = field(default_factory=dict)
    extracted: dict[str, int] = field(default_factory=dict)
    phases: set[tuple[str, str]] = field(default_factory=set)

    @property
    def completed(self) -> int:
        return sum(self.downloaded.values())

    @property
    def total(self) -> int | None:
        return sum(self.sizes.values()) or None

    def take(self, event: Event) -> bool:
        """Record one event; True when it is progress (more bytes, or a phase not seen yet)."""
        layer = str(event.get("id") or "")
        status = str(event.get("status") or "")
        detail = event.get("progressDetail") or {}
        current, size = int(detail.get("current") or 0), int(detail.get("total") or 0)
        moved = False
        if status == "Downloading":
            moved = current > self.downloaded.get(layer, 0)
            # Stored even when lower: a retried layer starts again from zero.
            self.downloaded[layer] = current
            if size:
                self.sizes[layer] = size
        elif status == "Extracting":
            moved = current > self.extracted.get(layer, 0)
            self.extracted[layer] = current
        elif status in ("Download complete", "Pull complete") and layer in self.sizes:
            self.downloaded[layer] = self.sizes[layer]
        # Digits out: "Retrying in 5 seconds", "in 4 seconds"... is one phase, not five.
        phase = (layer, re.sub(r"\d+", "#", status))
        if phase not in self.phases:
            self.phases.add(phase)
            moved = True
        return moved


def follow(
    events: Iterable[Event],
    *,
    stall_timeout: float,
    clock: Clock = time.monotonic,
    on_progress: Callable[[Layers], None] | None = None,
    cancel: threading.Event | None = None,
    layers: Layers | None = None,
) -> Layers:
    """Read a pull's events to the end, into `layers` (so a failed pull still tells how far it
    got). Raises PullFailed on an error event, a broken stream, or `stall_timeout` seconds
    without progress."""
    layers = Layers() if layers is None else layers
    stalled = f"no progress for {stall_timeout:g}s"
    last = clock()
    stream = iter(events)
    while True:
        try:
            event = next(stream)
        except StopIteration:
            return layers
        except _TIMEOUTS as exc:  # the socket's read timeout: nothing at all came
            raise PullFailed(stalled) from exc
        except _TRANSPORT as exc:
            raise PullFailed(short_cause(str(exc))) from exc
        if cancel is not None and cancel.is_set():
            raise PullFailed("cancelled")
        if event.get("error") or event.get("errorDetail"):
            error = (event.get("errorDetail") or {}).get("message") or event.get("error")
            raise PullFailed(short_cause(str(error)))
        now = clock()
        # Checked before the event counts: progress after a longer silence is too late.
        if now - last > stall_timeout:
            raise PullFailed(stalled)
        if layers.take(event):
            last = now
            if on_progress is not None:
                on_progress(layers)


class _Client(docker.APIClient):  # type: ignore[misc]  # the SDK ships no type hints
    """An API client whose requests without a timeout get `read_timeout`: the SDK sends a pull
    with timeout=None, which would let a silent engine block the read forever."""

    def __init__(self, read_timeout: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._read_timeout = read_timeout

    def send(self, request: Any, **kwargs: Any) -> Any:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._read_timeout
        return super().send(request, **kwargs)


@dataclass(frozen=True)
class Engine:
    """The Docker engine the CLI would talk to, and the API version it speaks."""

    params: Mapping[str, Any]
    version: str

    @classmethod
    def connect(cls) -> Engine:
        params: dict[str, Any] = {}
        try:
            params = dict(kwargs_from_env())
            if "base_url" not in params:  # the CLI's order: DOCKER_HOST, then the context
                params.update(ContextAPI.kwargs_from_context())
            with docker.APIClient(timeout=_CONNECT_TIMEOUT, **params) as api:
                version = str(api.api_version)
        except docker.errors.DockerException as exc:
            where = params.get("base_url") or "the default socket"
            raise HostError(
                f"no Docker engine answers at {where}: {exc}",
                hint="start one with `./run invoke docker.ensure`, or point DOCKER_HOST "
                "at a running engine",
            ) from exc
        return cls(params, version)

    def client(self, read_timeout: float) -> _Client:
        return _Client(read_timeout, version=self.version, **self.params)


def pull(
    image: ImageRef,
    *,
    engine: Engine,
    settings: OpsSettings,
    reporter: Reporter,
    clock: Clock = time.monotonic,
    cancel: threading.Event | None = None,
) -> PullResult:
    """Pull `image` through the mirror and tag it with its pinned name."""
    remote = image.via_mirror(settings)
    step = str(image)

    def tell(message: str, layers: Layers, *, done: bool = False) -> None:
        with _REPORTING:
            reporter.progress(
                step,
                message,
                done=done,
                completed=layers.completed,
                total=layers.total,
                unit="bytes",
            )

    def moving(layers: Layers) -> None:
        size = f" of {human_size(layers.total)}" if layers.total else ""
        tell(f"pulling {remote}: {human_size(layers.completed)}{size}", layers)

    layers = Layers()
    tell(f"pulling {remote}", layers)
    try:
        with engine.client(read_timeout=settings.pull_stall_timeout) as api:
            try:
                events = api.pull(remote, stream=True, decode=True)
            except docker.errors.APIError as exc:  # refused before streaming: host, manifest
                raise PullFailed(short_cause(str(exc.explanation or exc))) from exc
            except _TIMEOUTS as exc:  # the engine sent not even the response's headers
                raise PullFailed(f"no progress for {settings.pull_stall_timeout:g}s") from exc
            except _TRANSPORT as exc:
                raise PullFailed(short_cause(str(exc))) from exc
            try:
                follow(
                    events,
                    stall_timeout=settings.pull_stall_timeout,
                    clock=clock,
                    on_progress=moving,
                    cancel=cancel,
                    layers=layers,
                )
            finally:
                # Drops the response, closing its connection: the engine then cancels a pull
                # we gave up on instead of finishing it unwatched.
                getattr(events, "close", lambda: None)()
            detail = ""
            if remote != str(image):
                try:
                    api.tag(remote, f"{image.registry}/{image.repository}", image.tag)
                except docker.errors.APIError as exc:
                    raise PullFailed(
                        f"pulled, but tagging failed: {short_cause(str(exc.explanation))}"
                    ) from exc
                detail = f"via {remote.split('/')[0]}"
    except PullFailed as failed:
        tell(f"pull of {remote} failed: {failed}", layers, done=True)
        return PullResult(image, ok=False, detail=str(failed), downloaded=layers.completed)
    tell(f"pulled {remote} ({human_size(layers.completed)} downloaded)", layers, done=True)
    return PullResult(image, ok=True, detail=detail, downloaded=layers.completed)


def pull_all(
    images: Sequence[ImageRef],
    settings: OpsSettings,
    reporter: Reporter | None = None,
    *,
    puller: Puller | None = None,
) -> list[PullResult]:
    """Pull `images`, `settings.pull_parallel` at a time; results in the order given.

    Raises HostError when no engine answers (once, before any pull starts)."""
    if not images:
        return []
    cancel = threading.Event()
    if puller is None:
        engine = Engine.connect()
        voice = reporter or Reporter()

        def puller(image: ImageRef) -> PullResult:
            return pull(image, engine=engine, settings=settings, reporter=voice, cancel=cancel)

    pool = ThreadPoolExecutor(
        max_workers=min(settings.pull_parallel, len(images)), thread_name_prefix="pull"
    )
    try:
        return list(pool.map(puller, images))
    except BaseException:
        # Ctrl-C: running pulls end at their next event instead of running to completion.
        cancel.set()
        raise
    finally:
        pool.shutdown(wait=not cancel.is_set(), cancel_futures=True)
