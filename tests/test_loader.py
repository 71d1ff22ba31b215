"""OutputsLoader: each output described once, thumbnails for images only, and the idle word
(on which a watch settles) only after every load's thumbnail, on real download lanes."""

from __future__ import annotations

import threading

from modelslab_widget import WorkflowsClient
from modelslab_widget.images import Thumbnail
from modelslab_widget.loader import OutputsLoader
from modelslab_widget.media import OutputInfo, OutputKind
from modelslab_widget.models import RunSnapshot
from modelslab_widget.scheduler import Scheduler

from .conftest import wait_for

# Not http(s): never fetched, so each load ends at once with a thumbnail saying why.
NOT_WEB = ("file:///etc/a.png", "javascript:alert(1)", "ftp://host/c.png")


class Heard:
    """What a loader reports, in order; the first thumbnail's report is held up a while."""

    def __init__(self, hold_first: float = 0.0) -> None:
        self.events: list[str] = []
        self.outputs: list[OutputInfo] = []
        self.idle = threading.Event()
        self._hold_first = hold_first
        self._lock = threading.Lock()

    def on_output(self, info: OutputInfo) -> None:
        with self._lock:
            self.outputs.append(info)

    def on_thumbnail(self, thumb: Thumbnail) -> None:
        with self._lock:
            first = not any(event.startswith("thumbnail") for event in self.events)
            self.events.append(f"thumbnail start {thumb.index}")
        if first and self._hold_first:
            # Another load finishing meanwhile must not say "idle" before this one is told.
            self.idle.wait(self._hold_first)
        with self._lock:
            self.events.append(f"thumbnail {thumb.index}")

    def on_idle(self) -> None:
        with self._lock:
            self.events.append("idle")
        self.idle.set()


def loader_for(heard: Heard, scheduler: Scheduler) -> OutputsLoader:
    client = WorkflowsClient("sk-test", base_url="http://127.0.0.1:9/api/v1")
    return OutputsLoader(client, scheduler, on_output=heard.on_output,
                         on_thumbnail=heard.on_thumbnail, on_idle=heard.on_idle)


def completed(*outputs: str) -> RunSnapshot:
    return RunSnapshot(status="completed", execution_id=1, workflow_id="wf", outputs=outputs)


def test_idle_comes_after_every_thumbnail_whichever_load_ends_last():
    heard = Heard(hold_first=0.3)
    loader = loader_for(heard, Scheduler(max_per_host=4))
    plan = loader.need(completed(*NOT_WEB), size=64, count=3)
    assert plan.busy
    wait_for(lambda: "idle" in heard.events, timeout=5)
    done = [event for event in heard.events if not event.startswith("thumbnail start")]
    assert done[-1] == "idle" and sorted(done[:-1]) == [f"thumbnail {i}" for i in range(3)]
    assert not loader.busy and heard.events.count("idle") == 1


def test_non_web_outputs_are_described_without_a_request_and_shown_as_why():
    heard = Heard()
    loader = loader_for(heard, Scheduler())
    loader.need(completed(*NOT_WEB), size=64, count=3)
    wait_for(heard.idle.is_set, timeout=5)
    assert sorted(info.index for info in heard.outputs) == [0, 1, 2]
    assert all(info.kind is OutputKind.IMAGE and info.error for info in heard.outputs)
    assert loader.kinds(NOT_WEB) == [OutputKind.IMAGE] * 3


def test_a_bigger_size_starts_over_and_the_same_size_loads_only_what_is_new():
    heard = Heard()
    loader = loader_for(heard, Scheduler())
    snapshot = completed(*NOT_WEB)
    loader.need(snapshot, size=64, count=1)
    wait_for(heard.idle.is_set, timeout=5)
    assert not loader.need(snapshot, size=64, count=1).busy  # nothing new to load
    heard.idle.clear()
    assert not loader.need(snapshot, size=64, count=3).restart  # two more, same size
    wait_for(heard.idle.is_set, timeout=5)
    assert loader.need(snapshot, size=128, count=3).restart  # bigger: all again
    loader.close()
