"""aio.py and the card's travelling forms, in process: the saved card's final state (HTML
and text), ``await wait_async()`` on cards and boards, and the Colab fallback (updates applied
by the waiting thread). The same in real kernels: tests/test_travel_notebooks.py."""

from __future__ import annotations

import asyncio
import sys
import threading
import types
from html.parser import HTMLParser

import pytest

from modelslab_widget import RunBoard, WorkflowRunWidget
from modelslab_widget.errors import NotFoundError
from modelslab_widget.simulator import DEMO_WORKFLOW_ID

from .conftest import wait_for

FAST = [("Text to Image", 0.3), ("Image Upscaler", 0.3)]
SLOW = [("Text to Image", 30.0)]


@pytest.fixture
def make(sim, client):
    made: list[WorkflowRunWidget] = []

    def build(execution_id, **kwargs):
        kwargs.setdefault("client", client)
        kwargs.setdefault("poll_interval", 0.1)
        widget = WorkflowRunWidget(DEMO_WORKFLOW_ID, execution_id, **kwargs)
        made.append(widget)
        return widget

    yield build
    for widget in made:
        widget.close()


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def test_settled_card_carries_its_final_state_as_html_and_text(sim, make):
    eid = sim.add_run(steps=FAST, images=3, outputs=None)
    widget = make(eid, thumbnail_size=96, max_thumbnails=2)
    assert "text/html" not in widget.mimebundle()  # live: only the view and the words
    widget.wait(10)
    bundle = widget.mimebundle()
    assert bundle["text/plain"].startswith(f"Run {eid} · completed · 2/2 steps")
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == widget.model_id
    html = bundle["text/html"]
    assert html == widget.static_html()
    parser = _Tags()
    parser.feed(html)
    names = [tag for tag, _ in parser.tags]
    assert "script" not in names and "iframe" not in names
    assert "style" in names  # the card's CSS travels with it
    images = [attrs["src"] or "" for tag, attrs in parser.tags if tag == "img"]
    assert len(images) == 2 and all(src.startswith("data:image/jpeg;base64,") for src in images)
    assert all(len(src) < 20_000 for src in images), [len(src) for src in images]
    links = [attrs["href"] for tag, attrs in parser.tags if tag == "a"]
    assert links == list(widget.output_urls), links  # two captions and the third as "1 more"
    assert "mlw-badge mlw-s-completed" in html and "Image Upscaler" in html
    assert 'class="mlw-progress mlw-s-completed"' in html  # the bar travels too
    assert sim.api_key not in html and sim.api_key not in bundle["text/plain"]


def test_saved_card_keeps_every_kind_of_output_in_order(sim, make):
    eid = sim.add_run(steps=FAST, outputs=("mp4", "png", "wav", "glb"))
    widget = make(eid)
    widget.wait(10)
    parser = _Tags()
    parser.feed(widget.mimebundle()["text/html"])
    order = [tag for tag, _ in parser.tags if tag in ("video", "img", "audio")]
    assert order == ["video", "img", "audio"]  # the output order; the GLB is a tile
    sources = [attrs.get("src") for tag, attrs in parser.tags if tag in ("video", "audio")]
    assert sources == [widget.output_urls[0], widget.output_urls[2]]  # streamed, not inlined
    assert widget.output_urls[3] in [attrs.get("href") for tag, attrs in parser.tags]


def test_failed_run_saves_its_error(sim, make):
    eid = sim.add_run(steps=FAST, outcome="failed", error="bad <prompt>")
    widget = make(eid)
    widget.wait(10)
    html = widget.mimebundle()["text/html"]
    assert "mlw-s-failed" in html and "bad &lt;prompt&gt;" in html and "<img" not in html


def _ticking(until) -> tuple[asyncio.Task, list[int]]:
    """A coroutine that counts event-loop turns while ``until()`` is false."""
    ticks = [0]

    async def tick() -> None:
        while not until():
            ticks[0] += 1
            await asyncio.sleep(0.01)

    return asyncio.ensure_future(tick()), ticks


def test_wait_async_returns_the_snapshot_while_the_loop_keeps_running(sim, make):
    eid = sim.add_run(steps=FAST, images=2)
    widget = make(eid)

    async def main():
        task, ticks = _ticking(lambda: widget.settled)
        snapshot = await widget.wait_async(timeout=10)
        await task
        return snapshot, ticks[0]

    snapshot, ticks = asyncio.run(main())
    assert snapshot is widget.snapshot and snapshot.status == "completed"
    assert len(widget.thumbnails) == 2  # like wait(): the thumbnails are in
    assert ticks >= 5, ticks  # the loop ran other coroutines meanwhile


def test_wait_async_raises_what_wait_raises(sim, make):
    missing = make(987654321)
    with pytest.raises(NotFoundError):
        asyncio.run(missing.wait_async(timeout=10))
    with pytest.raises(NotFoundError):
        missing.wait(0)
    slow = make(sim.add_run(steps=SLOW))
    with pytest.raises(TimeoutError, match=r"did not finish within 0\.2 s"):
        asyncio.run(slow.wait_async(timeout=0.2))
    with pytest.raises(TimeoutError, match=r"did not finish within 0\.2 s"):
        slow.wait(0.2)
    slow.stop()
    with pytest.raises(RuntimeError, match="stopped before the run ended"):
        asyncio.run(slow.wait_async())


def test_wait_async_starts_a_card_made_with_autostart_false(sim, make):
    widget = make(sim.add_run(steps=FAST), autostart=False)
    assert asyncio.run(widget.wait_async(timeout=10)).status == "completed"


def test_board_wait_async_returns_the_counts(sim, client):
    board = RunBoard(client=client, poll_interval=0.1)
    try:
        board.add(DEMO_WORKFLOW_ID, sim.add_run(steps=FAST))
        board.add(DEMO_WORKFLOW_ID, sim.add_run(steps=FAST, outcome="failed"))

        async def main():
            task, ticks = _ticking(lambda: all(row.settled for row in board.runs))
            counts = await board.wait_async(timeout=10)
            await task
            return counts, ticks[0]

        counts, ticks = asyncio.run(main())
        assert counts == {"completed": 1, "failed": 1} and ticks >= 5
        board.add(DEMO_WORKFLOW_ID, sim.add_run(steps=SLOW))
        with pytest.raises(TimeoutError, match="1 run"):
            asyncio.run(board.wait_async(timeout=0.2))
    finally:
        board.close()


@pytest.fixture
def colab(monkeypatch):
    """Pretend to be in Colab: its package is loaded."""
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))


def _threads_setting(widget: WorkflowRunWidget) -> set[str]:
    seen: set[str] = set()
    widget.observe(lambda _: seen.add(threading.current_thread().name), names="status")
    widget.header_view.observe(
        lambda _: seen.add(threading.current_thread().name), names="value"
    )
    return seen


def test_colab_card_is_drawn_only_by_the_waiting_thread(sim, make, colab):
    eid = sim.add_run(steps=FAST, images=2)
    widget = make(eid)
    assert widget.updates_wait_for_waiter
    assert "call run.wait()" in widget.children[2].value  # the hint, under the header
    seen = _threads_setting(widget)
    wait_for(lambda: widget.run_watch.settled)  # the run ended; nobody waited
    assert widget.status == "unknown" and not seen  # nothing drawn from background threads
    snapshot = widget.wait(5)
    assert snapshot.status == widget.status == "completed"
    assert seen == {threading.main_thread().name}, seen
    assert len(widget.thumbnails) == 2 and "text/html" in widget.mimebundle()
    assert widget.children[2].layout.display == "none"  # the hint goes once settled


def test_colab_card_is_drawn_by_wait_async_on_the_loop(sim, make, colab):
    widget = make(sim.add_run(steps=FAST))
    seen = _threads_setting(widget)
    snapshot = asyncio.run(widget.wait_async(timeout=10))
    assert snapshot.status == widget.status == "completed"
    assert seen == {threading.main_thread().name}, seen


def test_outside_colab_background_threads_draw(sim, make):
    widget = make(sim.add_run(steps=FAST))
    assert not widget.updates_wait_for_waiter
    seen = _threads_setting(widget)
    wait_for(lambda: widget.status == "completed")  # nobody waits: it still draws
    assert seen and threading.main_thread().name not in seen, seen
