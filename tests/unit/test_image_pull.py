"""Pulls give up after a stretch without progress, never after a fixed time, and run a few at
a time: the stall logic on fake event streams (a fake clock, or a short real timeout), the pool
with a fake puller. No engine needed."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3

from ops.console import Reporter
from ops.errors import HostError, ImageError
from ops.images import resolve as resolving
from ops.images.catalog import ImageRef
from ops.images.pull import (
    Engine,
    Event,
    Layers,
    PullFailed,
    PullResult,
    follow,
    pull,
    pull_all,
    short_cause,
)
from ops.settings import OpsSettings

STALL = 120.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def downloading(layer: str, current: int, total: int) -> Event:
    return {
        "status": "Downloading",
        "id": layer,
        "progressDetail": {"current": current, "total": total},
    }


def timed(clock: FakeClock, steps: list[tuple[float, Event]]) -> Iterator[Event]:
    """Each event arrives `wait` fake seconds after the one before."""
    for wait, event in steps:
        clock.now += wait
        yield event


def test_a_slow_pull_that_keeps_moving_outlives_the_stall_timeout() -> None:
    clock = FakeClock()
    # 100 MB at 1 MB every 60 s: 100 minutes in all, never 120 s without a byte.
    steps: list[tuple[float, Event]] = [(0, {"status": "Pulling fs layer", "id": "a"})]
    steps += [(60, downloading("a", mb * 1_000_000, 100_000_000)) for mb in range(1, 101)]
    steps += [(1, {"status": "Download complete", "id": "a"})]
    steps += [(1, {"status": "Pull complete", "id": "a"})]
    layers = follow(timed(clock, steps), stall_timeout=STALL, clock=clock)
    assert clock.now - 1000 > 40 * STALL
    assert layers.completed == layers.total == 100_000_000


def test_a_stream_silent_for_longer_than_the_stall_timeout_fails() -> None:
    clock = FakeClock()
    steps: list[tuple[float, Event]] = [
        (0, downloading("a", 1_000, 10_000)),
        (STALL + 1, downloading("a", 2_000, 10_000)),  # too late, even though it is progress
    ]
    with pytest.raises(PullFailed, match=r"^no progress for 120s$"):
        follow(timed(clock, steps), stall_timeout=STALL, clock=clock)


def test_chatter_without_progress_is_a_stall() -> None:
    clock = FakeClock()
    same = downloading("a", 1_000, 10_000)
    steps: list[tuple[float, Event]] = [(30, same) for _ in range(10)]
    with pytest.raises(PullFailed, match=r"no progress for 120s"):
        follow(timed(clock, steps), stall_timeout=STALL, clock=clock)
    # The first event (30 s) is progress; the first one more than 120 s after it ends the pull.
    assert clock.now - 1000 == 6 * 30


@pytest.mark.parametrize(
    "timeout",
    [
        TimeoutError("timed out"),
        urllib3.exceptions.ReadTimeoutError(
            urllib3.HTTPConnectionPool("localhost"), "/", "timed out"
        ),
    ],
)
def test_a_silent_socket_is_a_stall(timeout: Exception) -> None:
    """The socket's read timeout (set to the stall timeout) ends a stream that says nothing."""

    def silent() -> Iterator[Event]:
        yield downloading("a", 1_000, 10_000)
        raise timeout

    with pytest.raises(PullFailed, match=r"^no progress for 0.5s$"):
        follow(silent(), stall_timeout=0.5)


def test_a_new_layer_phase_is_progress_a_retry_countdown_is_one() -> None:
    clock = FakeClock()
    steps: list[tuple[float, Event]] = [
        (0, {"status": "Pulling fs layer", "id": "a"}),
        (100, {"status": "Waiting", "id": "a"}),
        (100, {"status": "Retrying in 5 seconds", "id": "a"}),
        (50, {"status": "Retrying in 4 seconds", "id": "a"}),
        (50, {"status": "Retrying in 3 seconds", "id": "a"}),
        (50, {"status": "Retrying in 2 seconds", "id": "a"}),  # 150 s after the first retry
    ]
    with pytest.raises(PullFailed, match="no progress"):
        follow(timed(clock, steps), stall_timeout=STALL, clock=clock)
    assert clock.now - 1000 == 350


def test_bytes_are_summed_over_layers_and_a_restarted_layer_counts_again() -> None:
    layers = Layers()
    assert layers.take(downloading("a", 5, 10)) and layers.take(downloading("b", 1, 30))
    assert (layers.completed, layers.total) == (6, 40)
    assert layers.take({"status": "Download complete", "id": "a"})
    assert (layers.completed, layers.total) == (11, 40)
    assert not layers.take(downloading("b", 1, 30))  # nothing moved
    layers.take(downloading("b", 0, 30))  # retried from zero
    assert layers.take(downloading("b", 1, 30))
    assert layers.take({"status": "Already exists", "id": "c"}) and layers.total == 40


def test_an_error_event_fails_with_its_cause_in_one_line() -> None:
    error = 'Get "https://m.example/v2/": dial tcp: lookup m.example on 10.0.0.1:53: no such host'
    events: list[Event] = [{"errorDetail": {"message": error}, "error": error}]
    with pytest.raises(PullFailed, match=r"^no such host$"):
        follow(events, stall_timeout=STALL)
    assert short_cause("manifest for x:1 not found: manifest unknown") == "manifest unknown"


class FakeApi:
    def __init__(self, events: Iterator[Event]) -> None:
        self.events = events
        self.tags: list[tuple[str, str, str]] = []

    def __enter__(self) -> FakeApi:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def pull(self, remote: str, *, stream: bool, decode: bool) -> Iterator[Event]:
        assert stream and decode
        return self.events

    def tag(self, image: str, repository: str, tag: str) -> bool:
        self.tags.append((image, repository, tag))
        return True


class FakeEngine(Engine):
    def __init__(self, api: FakeApi) -> None:
        super().__init__({}, "1.41")
        object.__setattr__(self, "api", api)

    def client(self, read_timeout: float) -> Any:
        return self.api  # type: ignore[attr-defined]


def progress_events(out: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [e for e in lines if e["event"] == "progress"]


def test_a_pull_through_the_mirror_reports_bytes_and_retags(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def moving() -> Iterator[Event]:  # 0.05 s apart, 1.5 s in all, stall timeout 1 s
        for step in range(1, 31):
            time.sleep(0.05)
            yield downloading("a", step * 100, 3_000)

    api = FakeApi(moving())
    image = ImageRef.parse("docker.io/library/postgres:17")
    settings = OpsSettings(registry_mirror="m.example", pull_stall_timeout=1)
    result = pull(
        image,
        engine=FakeEngine(api),
        settings=settings,
        reporter=Reporter(json_lines=True, progress_every_s=0),
    )
    assert result == PullResult(image, ok=True, detail="via m.example", downloaded=3_000)
    assert api.tags == [(f"m.example/{image}", "docker.io/library/postgres", "17")]
    events = progress_events(capsys.readouterr().out)
    assert events[-1]["done"] and events[-1]["completed"] == 3_000
    assert {e["unit"] for e in events} == {"bytes"} and events[-1]["total"] == 3_000


def test_a_pull_that_goes_silent_fails_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    def stalling() -> Iterator[Event]:
        yield downloading("a", 100, 1_000)
        time.sleep(0.5)
        yield downloading("a", 200, 1_000)

    image = ImageRef.parse("docker.io/library/redis:8")
    result = pull(
        image,
        engine=FakeEngine(FakeApi(stalling())),
        settings=OpsSettings(pull_stall_timeout=0.2),
        reporter=Reporter(json_lines=True),
    )
    assert (result.ok, result.detail, result.downloaded) == (False, "no progress for 0.2s", 100)
    last = progress_events(capsys.readouterr().out)[-1]
    assert last["done"] and "failed: no progress for 0.2s" in last["message"]


def test_images_are_pulled_a_few_at_a_time_results_in_order() -> None:
    images = [ImageRef.parse(f"docker.io/library/img{i}:1") for i in range(7)]
    lock = threading.Lock()
    running = 0
    peak = 0

    def fake(image: ImageRef) -> PullResult:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.3 - 0.04 * images.index(image))  # the first to start ends last
        with lock:
            running -= 1
        return PullResult(image, ok=image.repository != "library/img3", detail=str(image))

    results = pull_all(images, OpsSettings(pull_parallel=3), puller=fake)
    assert peak == 3
    assert [r.image for r in results] == images and [r.detail for r in results] == list(
        map(str, images)
    )
    assert [r.ok for r in results] == [True, True, True, False, True, True, True]


def test_nothing_to_pull_needs_no_engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/none.sock")
    assert pull_all([], OpsSettings()) == []


def test_an_engine_that_does_not_answer_is_a_host_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/none.sock")
    with pytest.raises(HostError, match=r"no Docker engine answers at unix://.*none\.sock") as e:
        pull_all([ImageRef.parse("docker.io/library/redis:8")], OpsSettings())
    assert e.value.hint and "DOCKER_HOST" in e.value.hint


def test_resolve_pulls_what_is_missing_in_one_batch_in_file_order(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    images_file = tmp_path / ".env"
    images_file.write_text(
        "A_IMAGE=docker.io/library/a:1\nB_IMAGE=docker.io/library/b:1\n"
        "C_IMAGE=docker.io/library/c:1\nD_IMAGE=docker.io/library/d:1\n"
    )
    batches: list[list[str]] = []

    def fake_pull_all(
        images: list[ImageRef], settings: OpsSettings, reporter: Reporter | None = None
    ) -> list[PullResult]:
        batches.append([str(i) for i in images])
        return [
            PullResult(i, ok=i.repository != "library/c", detail="no such host") for i in images
        ]

    monkeypatch.setattr(resolving, "present", lambda ref: ref.endswith("/b:1"))
    monkeypatch.setattr(resolving, "pull_all", fake_pull_all)
    resolved = resolving.resolve(settings=OpsSettings(), images_file=images_file, allow_bake=False)
    assert batches == [["docker.io/library/a:1", "docker.io/library/c:1", "docker.io/library/d:1"]]
    assert [(r.var, r.source) for r in resolved] == [
        ("A_IMAGE", "pulled"),
        ("B_IMAGE", "local"),
        ("C_IMAGE", "unavailable"),
        ("D_IMAGE", "pulled"),
    ]
    assert resolved[2].detail.startswith("pull failed: no such host")


def test_an_unknown_variable_is_an_image_error(tmp_path: Path) -> None:
    images_file = tmp_path / ".env"
    images_file.write_text("A_IMAGE=docker.io/library/a:1\n")
    with pytest.raises(ImageError, match=r"unknown image variable.*NOPE_IMAGE") as raised:
        resolving.resolve(["NOPE_IMAGE"], settings=OpsSettings(), images_file=images_file)
    assert raised.value.hint == "known: A_IMAGE"
