"""RunWatch: one shared, GUI-free watch per run, over real sockets to the simulator.

Several views of one run (cards, a board row, the terminal) make one request stream; a view
that closes leaves the others live; board rows and the command line learn step durations."""

from __future__ import annotations

import io
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from modelslab_widget import RunBoard, WorkflowRunWidget, WorkflowsClient, runwatch
from modelslab_widget.cli import watch_and_report
from modelslab_widget.errors import NotFoundError
from modelslab_widget.models import RunSnapshot, Step
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


# -- outputs by kind and cancel, in the shared model ---------------------------------------


class Recorder:
    """A GUI-free view: records what its watch tells it."""

    def __init__(self) -> None:
        self.changes: list[tuple[str, object]] = []

    def watch_changed(self, watch, change, detail) -> None:
        self.changes.append((change, detail))


def test_the_watch_describes_each_output_and_thumbnails_images_only(sim, client):
    from modelslab_widget import runwatch
    from modelslab_widget.media import OutputKind

    eid = sim.add_run(steps=[("Render", 0.2)], outputs=("mp4?noext", "png", "wav", "glb"),
                      video_bytes=6_000_000)
    watch = watch_for(client, DEMO_WORKFLOW_ID, eid)
    view = Recorder()
    watch.attach(view, PollPolicy(interval=0.05), thumbnail_size=64, max_thumbnails=4)
    watch.want(view)
    assert watch.wait(view, 10).status == "completed"
    kinds = [info.kind for info in watch.outputs_in_order()]
    assert kinds == [OutputKind.VIDEO, OutputKind.IMAGE, OutputKind.AUDIO, OutputKind.MODEL3D]
    assert watch.output_kinds() == kinds
    assert sorted(watch.thumbnails) == [1] and watch.thumbnails[1].ok
    assert sim.bytes_served(eid) - len(client.fetch_image(watch.snapshot.outputs[1])) <= 4096
    told = [change for change, _ in view.changes]
    assert told.count(runwatch.OUTPUT) == 4 and told.count(runwatch.THUMBNAIL) == 1
    # each output's kind is told before settling, and the image's before its thumbnail
    assert told.index(runwatch.SETTLED) > max(
        i for i, change in enumerate(told) if change == runwatch.OUTPUT)
    watch.detach(view)


def test_a_bigger_view_reloads_thumbnails_but_never_probes_again(sim, client):
    eid = sim.add_run(steps=[("Render", 0.1)], outputs=("png", "mp4?noext"))
    small = WorkflowRunWidget(DEMO_WORKFLOW_ID, eid, client=client, poll_interval=0.05,
                              thumbnail_size=32)
    small.wait(10)
    big = WorkflowRunWidget(DEMO_WORKFLOW_ID, eid, client=client, poll_interval=0.05,
                            thumbnail_size=128)
    big.wait(10)
    assert [t.size[0] for t in big.thumbnails] == [128]
    assert sim.request_count("head", eid) == 1 and sim.request_count("image", eid) == 2
    assert "<video" in "".join(c.value for c in big._gallery.captions)
    small.close()
    big.close()


def test_a_board_strip_shows_thumbnails_for_images_and_kinds_for_the_rest(sim, client):
    eid = sim.add_run(steps=[("Render", 0.1)], outputs=("png", "mp4", "wav", "glb"))
    board = RunBoard(client=client, poll_interval=0.05)
    row = board.add(DEMO_WORKFLOW_ID, eid)
    board.wait(10)
    wait_for(lambda: "mlw-kind" in row.view.value)
    html = row.view.value
    assert html.count("<img ") == 1 and html.count('class="mlw-kind"') == 3
    assert html.index("<img ") < html.index("Video") < html.index("Audio") < html.index("3D")
    assert [item if isinstance(item, str) else "thumb" for item in row.strip] == [
        "thumb", "video", "audio", "model3d"]
    board.close()


def test_a_cancel_from_one_view_is_followed_by_every_view(sim, client):
    from modelslab_widget import runwatch

    eid = sim.add_run(steps=[("Render", 60.0)])
    card = WorkflowRunWidget(DEMO_WORKFLOW_ID, eid, client=client, poll_interval=20.0)
    board = RunBoard(client=client, poll_interval=20.0)
    row = board.add(DEMO_WORKFLOW_ID, eid)
    view = Recorder()
    watch = card.run_watch
    watch.attach(view, PollPolicy(interval=20.0))
    watch.want(view)
    wait_for(lambda: card.status == "running")
    before = status_requests(sim, eid)
    assert watch.cancel() == "Execution cancelled."
    assert card.cancel_button.description == "Cancelling…" or card.status == "cancelled"
    assert watch.wait(view, 10).status == "cancelled"
    assert card.status == "cancelled" and row.status == "cancelled" and not watch.cancelling
    assert (runwatch.CANCEL, None) in view.changes
    # the poll right after the accepted cancel is the one that saw it (polls are 20 s apart)
    assert status_requests(sim, eid) - before <= 2
    watch.detach(view)
    card.close()
    board.close()


def test_poll_soon_during_a_poll_in_flight_polls_right_after_it_never_beside_it(sim, client):
    from modelslab_widget.simulator import Fault

    eid = sim.add_run(steps=[("Render", 60.0)],
                      status_faults=[Fault("slow", delay=0.4, times=None)])
    view = Recorder()
    watch = watch_for(client, DEMO_WORKFLOW_ID, eid)
    watch.attach(view, PollPolicy(interval=3.0))
    watch.want(view)
    wait_for(lambda: status_requests(sim, eid) >= 1)  # the first poll is in flight (slow)
    for _ in range(5):
        watch.poll_soon()
    wait_for(lambda: status_requests(sim, eid) >= 2)
    first, second = sim.accepted_request_times(DEMO_WORKFLOW_ID)[:2]
    # not beside the poll in flight (a second request stream), and not 3 s later either
    assert 0.3 <= second - first < 2.0, second - first
    watch.detach(view)


def test_a_start_while_the_views_hear_the_end_does_not_begin_a_second_session(client):
    """Views are told of the end before the watch settles; a start() or wait() arriving
    then (it did from wait_async in a kernel) must not poll again and wipe the error."""
    watch = watch_for(client, DEMO_WORKFLOW_ID, 999_999)

    class RestartsOnEnd:
        def watch_changed(self, watch, change, detail):
            if change == runwatch.ENDED:
                watch.want(self)  # what a card's start() does

    view = RestartsOnEnd()
    watch.attach(view, PollPolicy(interval=0.05))
    watch.want(view)
    with pytest.raises(NotFoundError):
        watch.wait(view, 5)
    assert watch.polls == 1 and not watch.polling
    watch.detach(view)


def learnt(history, workflow: str, seconds: list[float], runs: int = 3) -> None:
    """Teach the history ``runs`` completed runs of ``workflow`` with these step durations."""
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    steps, at = [], start
    for name, duration in zip(("Text to Image", "Image Upscaler"), seconds, strict=True):
        steps.append(Step(name, "completed", at, at + timedelta(seconds=duration)))
        at += timedelta(seconds=duration)
    for _ in range(runs):
        history.record(RunSnapshot(status="completed", workflow_id=workflow, steps=tuple(steps)))


def shown_by(view: str, client, workflow: str, eid: int, interval: float, closers: list):
    """Start watching in ``view`` and return what it shows of the run's status now."""
    if view == "card":
        card = WorkflowRunWidget(workflow, eid, client=client, poll_interval=interval)
        closers.append(card.close)
        return lambda: card.status
    if view == "board row":
        board = RunBoard(client=client, poll_interval=interval)
        closers.append(board.close)
        row = board.add(workflow, eid)
        return lambda: row.status
    out = io.StringIO()
    thread = threading.Thread(target=watch_and_report, args=(client, workflow, eid),
                              kwargs={"policy": PollPolicy(interval=interval), "stdout": out,
                                      "stderr": io.StringIO()})
    thread.start()
    closers.append(lambda: thread.join(10))
    return lambda: "completed" if "completed" in out.getvalue() else "running"


@pytest.mark.parametrize("view", ["card", "board row", "command line"])
def test_a_run_much_faster_than_its_history_is_seen_ended_soon(sim, client, view,
                                                               fresh_duration_history):
    """Quieter polling on a repeat run never hides an early end: at most 2 intervals."""
    interval = 0.5
    workflow = sim.add_workflow(steps=STEPS)
    learnt(fresh_duration_history, workflow, [4.0, 4.0])
    eid = sim.add_run(workflow, steps=[("Text to Image", 1.0), ("Image Upscaler", 1.0)],
                      images=0)  # four times faster than every run before it
    closers: list = []
    try:
        shown = shown_by(view, client, workflow, eid, interval, closers)
        wait_for(lambda: shown() == "completed", timeout=15, step=0.01)
        seen = time.time()
    finally:
        for close in closers:
            close()
    ended = client.get_run(workflow, eid).completed_at.timestamp()
    assert seen - ended <= 2 * interval + 0.5


def test_a_finished_run_watched_again_teaches_the_history_nothing(sim, client,
                                                                 fresh_duration_history):
    workflow = sim.add_workflow(steps=FAST)
    learnt(fresh_duration_history, workflow, [1.0, 1.0], runs=2)
    eid = sim.add_run(workflow, steps=FAST, images=0)
    for _ in range(3):  # watched live once, then twice more after its end
        card = WorkflowRunWidget(workflow, eid, client=client, poll_interval=0.05)
        card.wait(10)
        card.close()
    # 1 s, 1 s and one 0.1 s sample: the median is still 1 s (three 0.1 s would make it 0.1)
    assert fresh_duration_history.expected(workflow) == {"Text to Image": 1.0,
                                                         "Image Upscaler": 1.0}
    assert fresh_duration_history.earliest(workflow)["Text to Image"] < 0.5  # it did learn
