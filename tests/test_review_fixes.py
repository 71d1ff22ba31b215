"""Regressions found in review: nothing may hang, kill the shared timer, or show the key."""

from __future__ import annotations

import gc
import math
import threading
import time
import weakref

import pytest

from modelslab_widget import RunBoard, WorkflowRunWidget, WorkflowsClient
from modelslab_widget.errors import NotFoundError
from modelslab_widget.models import RunSnapshot
from modelslab_widget.poller import PollPolicy
from modelslab_widget.scheduler import Scheduler
from modelslab_widget.simulator import DEMO_WORKFLOW_ID, Fault

from .conftest import wait_for

FAST = [("Text to Image", 0.1), ("Image Upscaler", 0.1)]


def running_body(**execution):
    return {"status": "success", "steps": [],
            "execution": {"id": 1, "status": "running", **execution}}


@pytest.mark.parametrize(
    "body",
    [
        running_body(execution_time=10**400),
        {"status": "success", "execution": {"id": 1, "status": "running"},
         "steps": [{"name": "x", "status": "completed",
                    "started_at": "0001-01-01T00:00:00+05:00", "completed_at": None}]},
    ],
    ids=["huge-number", "year-one-with-offset"],
)
def test_extreme_values_are_tolerated(body):
    snapshot = RunSnapshot.from_api(body)
    [step.to_dict() for step in snapshot.steps]
    assert snapshot.execution_time is None


def test_an_unforeseen_exception_ends_watching_instead_of_hanging(sim, client, monkeypatch):
    widget = WorkflowRunWidget(DEMO_WORKFLOW_ID, sim.add_run(steps=FAST), client=client,
                               poll_interval=0.05, autostart=False)
    monkeypatch.setattr(client, "get_run", lambda *a, **k: 1 / 0)
    widget.start()
    with pytest.raises(ZeroDivisionError):
        widget.wait(5)
    assert not widget.watching and "division" in widget.error
    widget.close()


def test_wait_in_the_moment_between_the_poller_ending_and_the_widget_hearing_of_it(
    sim, client, monkeypatch
):
    """The poller goes inactive just before it calls on_finished. wait() arriving in that
    gap once restarted polling (CI caught it); it must instead wait for the end it missed.
    The end is held back until wait() is inside, so the gap is hit every time."""
    widget = WorkflowRunWidget(DEMO_WORKFLOW_ID, sim.add_run(steps=FAST), client=client,
                               poll_interval=0.05, autostart=False)
    monkeypatch.setattr(client, "get_run", lambda *a, **k: 1 / 0)
    watch = widget.run_watch
    told = watch.on_finished
    waiting = threading.Event()

    class NotingCondition(threading.Condition):
        def wait_for(self, predicate, timeout=None):  # wait() decided whether to start
            waiting.set()
            return super().wait_for(predicate, timeout)

    def hear_late(snapshot, error):
        assert waiting.wait(5), "wait() was not called"  # the gap stays open until then
        told(snapshot, error)

    watch._changed = NotingCondition(watch._lock)
    watch.on_finished = hear_late  # the poller calls its listener's attribute
    widget.start()
    wait_for(lambda: not watch.polling)
    with pytest.raises(ZeroDivisionError):
        widget.wait(5)
    assert not widget.watching and watch.polls == 1
    widget.close()


@pytest.mark.parametrize("retry_after", [math.inf, 1e12])
def test_absurd_retry_after_does_not_kill_the_timer(retry_after):
    assert PollPolicy(interval=1).backoff(1, retry_after) <= 3600
    scheduler = Scheduler()
    far = scheduler.call_later(1e12, lambda: None)
    ran = threading.Event()
    scheduler.call_later(0.05, ran.set)
    assert ran.wait(2), "the timer thread stopped serving jobs"
    far.cancel()


def test_client_caps_retry_after():
    from modelslab_widget.client import _seconds

    assert _seconds("Infinity") is None and _seconds(1e12) == 86_400 and _seconds(-5) == 0


def test_a_stale_timeout_does_not_end_a_resumed_watch(sim, client):
    widget = WorkflowRunWidget(DEMO_WORKFLOW_ID, sim.add_run(steps=[("Long", 5)]),
                               client=client, poll_interval=0.05, timeout=0.3)
    with pytest.raises(TimeoutError):
        widget.wait(5)
    resumed = time.monotonic()
    widget.start()  # a fresh time limit: the first one's job must not end it early
    with pytest.raises(TimeoutError):
        widget.wait(5)
    assert time.monotonic() - resumed >= 0.29  # a timer never fires early
    widget.close()


def test_on_complete_runs_outside_the_widget_lock(sim, client):
    seen = []

    def other_thread_can_lock(lock) -> bool:
        got = lock.acquire(timeout=1)
        if got:
            lock.release()
        return got

    def callback(w):
        probe = threading.Thread(target=lambda: seen.append(other_thread_can_lock(w._lock)))
        probe.start()
        probe.join()

    widget = WorkflowRunWidget(DEMO_WORKFLOW_ID, sim.add_run(steps=FAST), client=client,
                               poll_interval=0.05, on_complete=callback)
    widget.wait(10)
    wait_for(lambda: seen)
    assert seen == [True]
    widget.close()


def test_close_while_thumbnails_load_wakes_wait(sim, client):
    eid = sim.add_run(steps=[("Only", 0.05)], images=1,
                      image_faults={0: Fault("slow", delay=3)})
    widget = WorkflowRunWidget(DEMO_WORKFLOW_ID, eid, client=client, poll_interval=0.05)
    wait_for(lambda: widget.status == "completed")
    threading.Timer(0.2, widget.close).start()
    with pytest.raises(RuntimeError, match="closed"):
        widget.wait(5)


def test_a_forgotten_closed_widget_is_collected(sim, client):
    widget = WorkflowRunWidget(DEMO_WORKFLOW_ID, sim.add_run(steps=[("Long", 5)]),
                               client=client, poll_interval=0.05)
    ref = weakref.ref(widget)
    wait_for(lambda: ref().polls >= 2)
    widget.close()
    del widget
    gc.collect()
    assert ref() is None, "the scheduler or the poller still holds the widget"


def test_malformed_output_url_gets_a_placeholder_and_wait_returns(sim, client):
    body = {"status": "success", "steps": [],
            "execution": {"id": 1, "status": "completed"},
            "output": {"output": ["http://[::1/x.png"]}}
    eid = sim.add_run(steps=FAST, status_faults=[Fault("json", body=body)])
    widget = WorkflowRunWidget(DEMO_WORKFLOW_ID, eid, client=client, poll_interval=0.05)
    assert widget.wait(5).status == "completed"
    assert widget.thumbnails == [] and len(widget.thumbnail_errors) == 1
    widget.close()


@pytest.mark.parametrize("key", ["sk-SECRET-KEY-123\n", "  sk-SECRET-KEY-123  "])
def test_whitespace_around_the_key_is_dropped(sim, key):
    eid = sim.add_run(steps=FAST)
    client = WorkflowsClient(key.replace("sk-SECRET-KEY-123", sim.api_key),
                             base_url=sim.base_url)
    assert client.get_run(DEMO_WORKFLOW_ID, eid).execution_id == eid


def test_a_key_that_cannot_be_a_header_is_refused_without_showing_it():
    with pytest.raises(ValueError) as info:
        WorkflowsClient("sk-SECRET\u201c-KEY", base_url="http://127.0.0.1:1/api/v1")
    assert "SECRET" not in str(info.value)


def test_board_settles_an_added_widget_whose_watching_already_failed(sim, client):
    widget = WorkflowRunWidget(DEMO_WORKFLOW_ID, 999_999, client=client, poll_interval=0.05)
    with pytest.raises(NotFoundError):
        widget.wait(5)
    board = RunBoard(client=client)
    board.add(widget)
    board.wait(2)
    assert board.counts() == {"error": 1}
    board.close()
    widget.close()


def test_board_without_thumbnails_settles(sim, client):
    board = RunBoard(client=client, max_thumbnails=0, poll_interval=0.05)
    board.add(DEMO_WORKFLOW_ID, sim.add_run(steps=FAST, images=2))
    board.wait(10)
    assert board.counts() == {"completed": 1}
    board.close()
