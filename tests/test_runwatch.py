"""RunWatch: one shared, GUI-free watch per run, over real sockets to the simulator.

Several views of one run (cards, a board row, the terminal) make one request stream; a view
that closes leaves the others live; board rows and the command line learn step durations."""

from __future__ import annotations

import io
import threading
import time

import pytest

from modelslab_widget import RunBoard, WorkflowRunWidget, WorkflowsClient
from modelslab_widget.cli import watch_and_report
from modelslab_widget.poller import PollPolicy
from modelslab_widget.runwatch import watch_for
from modelslab_widget.simulator import DEMO_WORKFLOW_ID, Fault

from .conftest import wait_for

STEPS = [("Text to Image", 0.6), ("Image Upscaler", 0.6)]
FAST = [("Text to Image", 0.1), ("Image Upscaler", 0.1)]


def status_requests(sim, eid: int) -> int:
    return sim.request_count("status", execution_id=eid)


def test_three_cards_and_a_board_row_make_one_request_stream(sim, client):
    alone = sim.add_run(steps=STEPS, images=2)
    card = WorkflowRunWidget(DEMO_WORKFLOW_ID, alone, client=client, poll_interval=0.1)
    card.wait(10)
    card.close()
    one_view = status_requests(sim, alone)

    shared = sim.add_run(steps=STEPS, images=2)
    cards = [WorkflowRunWidget(DEMO_WORKFLOW_ID, shared, client=client, poll_interval=0.1)
             for _ in range(3)]
    board = RunBoard(client=client, poll_interval=0.1)
    row = board.add(DEMO_WORKFLOW_ID, shared)
    assert len({id(c.run_watch) for c in cards} | {id(row.run_watch)}) == 1
    for view in cards:
        assert view.wait(10).status == "completed"
        assert len(view.thumbnails) == 2 and view.status == "completed"
    assert board.wait(10) == {"completed": 1} and row.view.value.count("<img ") == 2
    assert status_requests(sim, shared) <= 1.2 * one_view
    for view in cards:
        view.close()
    board.close()


def test_closing_one_view_leaves_the_others_live(sim, client):
    eid = sim.add_run(steps=[("Long", 1.0)], images=1)
    first = WorkflowRunWidget(DEMO_WORKFLOW_ID, eid, client=client, poll_interval=0.05)
    second = WorkflowRunWidget(DEMO_WORKFLOW_ID, eid, client=client, poll_interval=0.05)
    wait_for(lambda: second.status == "running")
    first.close()
    assert second.watching
    assert second.wait(10).status == "completed" and len(second.thumbnails) == 1
    second.close()


def test_stop_pauses_one_view_and_polling_goes_on_for_the_other(sim, client):
    eid = sim.add_run(steps=[("Long", 1.0)])
    paused = WorkflowRunWidget(DEMO_WORKFLOW_ID, eid, client=client, poll_interval=0.05)
    live = WorkflowRunWidget(DEMO_WORKFLOW_ID, eid, client=client, poll_interval=0.05)
    wait_for(lambda: live.status == "running")
    paused.stop()
    assert not paused.watching and live.watching and live.run_watch.polling
    assert live.wait(10).status == "completed"
    assert paused.status == "running"  # a stopped card stays as it was
    paused.start()  # ... and catches up without a request: the run has ended
    assert paused.status == "completed" and paused.wait(5).status == "completed"
    live.close()
    paused.close()


def test_the_last_view_to_go_stops_polling(sim, client):
    eid = sim.add_run(steps=[("Long", 30)])
    views = [WorkflowRunWidget(DEMO_WORKFLOW_ID, eid, client=client, poll_interval=0.05)
             for _ in range(2)]
    watch = views[0].run_watch
    wait_for(lambda: watch.polls >= 2)
    views[0].close()
    assert watch.polling
    views[1].close()
    assert not watch.polling
    assert watch_for(client, DEMO_WORKFLOW_ID, eid) is not watch  # forgotten: a new one


def test_views_with_another_key_or_server_do_not_share(sim, client):
    eid = sim.add_run(steps=[("Long", 30)])
    same = WorkflowsClient(sim.api_key, base_url=sim.base_url)
    other_key = WorkflowsClient("sk-someone-else", base_url=sim.base_url)
    try:
        watch = watch_for(client, DEMO_WORKFLOW_ID, eid)
        assert watch_for(same, DEMO_WORKFLOW_ID, eid) is watch
        assert watch_for(other_key, DEMO_WORKFLOW_ID, eid) is not watch
        assert watch_for(client, DEMO_WORKFLOW_ID, eid + 1) is not watch
        assert sim.api_key not in repr(watch.registry_key)
    finally:
        same.close()
        other_key.close()


def test_a_board_row_alone_gets_the_estimate_and_polls_less_on_a_repeat_run(sim, client):
    workflow = sim.add_workflow(steps=STEPS)
    first = RunBoard(client=client, poll_interval=0.05)
    first.add(workflow, sim.add_run(workflow, steps=[("Text to Image", 1.0),
                                                     ("Image Upscaler", 1.0)]))
    first.wait(10)
    new_workflow_polls = sim.request_count("status")
    first.close()

    board = RunBoard(client=client, poll_interval=0.05)
    row = board.add(workflow, sim.add_run(workflow, steps=[("Text to Image", 1.0),
                                                           ("Image Upscaler", 1.0)]))
    wait_for(lambda: row.status == "running")
    assert row.run_watch.estimate() is not None  # learnt from the first run, via a row
    board.wait(10)
    repeat_polls = sim.request_count("status") - new_workflow_polls
    assert repeat_polls < new_workflow_polls
    board.close()


@pytest.mark.parametrize("live", [False, True], ids=["lines", "live-terminal"])
def test_the_command_line_gets_the_estimate_and_polls_less_on_a_repeat_run(sim, client, live):
    workflow = sim.add_workflow(steps=STEPS)
    steps = [("Text to Image", 1.0), ("Image Upscaler", 1.0)]

    def watch_once() -> tuple[int, str]:
        eid = sim.add_run(workflow, steps=steps)
        out, err = io.StringIO(), io.StringIO()
        out.isatty = lambda: live  # type: ignore[method-assign]
        before = sim.request_count("status")
        code = watch_and_report(client, workflow, eid, policy=PollPolicy(interval=0.05),
                                stdout=out, stderr=err)
        assert code == 0, err.getvalue()
        return sim.request_count("status") - before, out.getvalue()

    first_polls, _ = watch_once()
    repeat_polls, shown = watch_once()
    assert repeat_polls < first_polls
    if live:
        assert "left" in shown  # the live view shows the estimate ("~1.8 s left")


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


def test_close_while_thumbnails_load_wakes_wait(sim, client):
    eid = sim.add_run(steps=[("Only", 0.05)], images=1,
                      image_faults={0: Fault("slow", delay=3)})
    widget = WorkflowRunWidget(DEMO_WORKFLOW_ID, eid, client=client, poll_interval=0.05)
    wait_for(lambda: widget.status == "completed")
    threading.Timer(0.2, widget.close).start()
    with pytest.raises(RuntimeError, match="closed"):
        widget.wait(5)
