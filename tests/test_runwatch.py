"""RunWatch: one shared, GUI-free watch per run.

First its state machine, on a fake clock with a fake poller (no sockets, no sleeps): every
transition of ``runstate.TRANSITIONS`` is driven by a test, and views see only allowed moves.
Then, over real sockets to the simulator: several views of one run (cards, a board row, the
terminal) make one request stream; a view that closes leaves the others live; board rows and
the command line learn step durations."""

from __future__ import annotations

import ast
import inspect
import io
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest

from modelslab_widget import RunBoard, WorkflowRunWidget, WorkflowsClient, runwatch
from modelslab_widget.cli import watch_and_report
from modelslab_widget.errors import (
    NotFoundError,
    RunAlreadyEndedError,
    ServerError,
    ValidationError,
)
from modelslab_widget.models import RunSnapshot, Step
from modelslab_widget.poller import PollPolicy, WatchTimeout
from modelslab_widget.registry import watch_for
from modelslab_widget.runstate import TRANSITIONS, IllegalTransition, Phase, RunState
from modelslab_widget.runwatch import RunWatch
from modelslab_widget.simulator import DEMO_WORKFLOW_ID, Fault

from .conftest import wait_for
from .fake_clock import FakePoller, fake_runtime

STEPS = [("Text to Image", 0.6), ("Image Upscaler", 0.6)]
FAST = [("Text to Image", 0.1), ("Image Upscaler", 0.1)]


def status_requests(sim, eid: int) -> int:
    return sim.request_count("status", execution_id=eid)


# -- the state machine, on a fake clock --------------------------------------------------------


class CancellingClient(WorkflowsClient):
    """A client whose cancel answers as told (the fake runtime sends nothing anywhere)."""

    refusal: Exception | None = None

    def cancel_run(self, workflow_id, execution_id) -> str:
        if self.refusal is not None:
            raise self.refusal
        return "Execution cancelled."


class Phases:
    """A view that keeps every state it is shown."""

    def __init__(self) -> None:
        self.states: list[RunState] = []

    def show(self, state: RunState) -> None:
        self.states.append(state)

    @property
    def phases(self) -> list[Phase]:
        return [state.phase for state in self.states]


class Machine:
    """A watch on a fake runtime, one view attached, and its fake poller at hand."""

    def __init__(self, *, timeout: float | None = None) -> None:
        runtime, pollers = fake_runtime()
        self.runtime = runtime
        self.clock = runtime.scheduler
        self.client = CancellingClient("sk-test", base_url="http://127.0.0.1:9/api/v1")
        self.watch = RunWatch(self.client, "wf", 7, runtime=runtime)
        [self.poller] = pollers
        self.view = Phases()
        self.watch.attach(self.view, PollPolicy(interval=1.0, timeout=timeout),
                          thumbnail_size=32, max_thumbnails=4)

    @property
    def phase(self) -> Phase:
        return self.watch.state.phase

    def close(self) -> None:
        self.watch.detach(self.view)


def snap(status: str = "running", outputs: tuple[str, ...] = ()) -> RunSnapshot:
    return RunSnapshot(status=status, execution_id=7, workflow_id="wf", outputs=outputs)


OUTPUT = ("s3://bucket/a.png",)  # never fetched: not http(s), so its thumbnail says why


def polling(m: Machine) -> None:
    m.watch.want(m.view)
    m.poller.answer(snap())


def retrying(m: Machine) -> None:
    polling(m)
    m.poller.fail(ServerError("HTTP 502"))


def paced(m: Machine) -> None:
    polling(m)
    m.poller.pace(6.0)


def stopped(m: Machine) -> None:
    polling(m)
    m.watch.pause(m.view)


def ended(m: Machine) -> None:
    polling(m)
    m.poller.answer(snap("completed", OUTPUT))
    m.poller.finish(snap("completed", OUTPUT))  # its thumbnail is a job not run yet


def settled(m: Machine) -> None:
    ended(m)
    m.clock.run_due()


def gave_up(m: Machine) -> None:
    polling(m)
    m.poller.finish(error=NotFoundError("no such run"))


REACH: dict[Phase, Callable[[Machine], None]] = {
    Phase.NOT_STARTED: lambda m: None, Phase.POLLING: polling, Phase.RETRYING: retrying,
    Phase.PACED: paced, Phase.STOPPED: stopped, Phase.ENDED: ended, Phase.SETTLED: settled,
    Phase.GAVE_UP: gave_up,
}


def bigger_view(m: Machine) -> None:
    big = Phases()
    m.big = big  # type: ignore[attr-defined]  (held: the watch holds views weakly)
    m.watch.attach(big, PollPolicy(), thumbnail_size=64, max_thumbnails=4)
    m.watch.want(big)


def finish_with(outputs: tuple[str, ...]) -> Callable[[Machine], None]:
    def finish(m: Machine) -> None:
        m.poller.answer(snap("completed", outputs))  # a poller's last answer, then its end
        m.poller.finish(snap("completed", outputs))
    return finish


def launch_refused(m: Machine) -> None:
    """The watch of a launch not answered yet (no execution ID) hears that it started no run."""
    m.watch, m.view = RunWatch(m.client, "wf", None, runtime=m.runtime), Phases()
    m.watch.attach(m.view, PollPolicy())
    m.watch.want(m.view)  # (a view may want it: there is nothing to poll yet)
    m.watch.launch_failed(ValidationError("prompt: required", errors={"prompt": ["required"]}))


MOVES: dict[tuple[Phase, Phase], Callable[[Machine], None]] = {
    (Phase.NOT_STARTED, Phase.GAVE_UP): launch_refused,
    (Phase.NOT_STARTED, Phase.POLLING): lambda m: m.watch.want(m.view),
    (Phase.POLLING, Phase.RETRYING): lambda m: m.poller.fail(ServerError("HTTP 502")),
    (Phase.POLLING, Phase.PACED): lambda m: m.poller.pace(6.0),
    (Phase.RETRYING, Phase.POLLING): lambda m: m.poller.answer(snap()),
    (Phase.RETRYING, Phase.PACED): lambda m: (m.poller.pace(6.0), m.poller.answer(snap())),
    (Phase.PACED, Phase.POLLING): lambda m: m.poller.pace(None),
    (Phase.PACED, Phase.RETRYING): lambda m: m.poller.fail(ServerError("HTTP 502")),
    (Phase.STOPPED, Phase.POLLING): lambda m: m.watch.want(m.view),
    (Phase.ENDED, Phase.SETTLED): lambda m: m.clock.run_due(),
    (Phase.SETTLED, Phase.ENDED): bigger_view,
    (Phase.GAVE_UP, Phase.POLLING): lambda m: m.watch.want(m.view),  # Retry
}
for _phase in (Phase.POLLING, Phase.PACED):
    MOVES[(_phase, Phase.ENDED)] = finish_with(OUTPUT)
for _phase in (Phase.POLLING, Phase.PACED, Phase.STOPPED):
    MOVES[(_phase, Phase.SETTLED)] = finish_with(())
for _phase in (Phase.POLLING, Phase.RETRYING, Phase.PACED, Phase.STOPPED):
    MOVES[(_phase, Phase.GAVE_UP)] = lambda m: m.poller.finish(error=NotFoundError("gone"))
for _phase in (Phase.POLLING, Phase.RETRYING, Phase.PACED):
    MOVES[(_phase, Phase.STOPPED)] = lambda m: m.watch.pause(m.view)
for _phase in REACH:
    MOVES[(_phase, Phase.UNWATCHED)] = Machine.close

EDGES = sorted(((a, b) for a, moves in TRANSITIONS.items() for b in moves),
               key=lambda edge: (edge[0].name, edge[1].name))


def test_every_transition_of_the_table_has_a_test_and_no_test_an_illegal_move():
    assert set(MOVES) == set(EDGES)


@pytest.mark.parametrize("edge", EDGES, ids=lambda e: f"{e[0].name}->{e[1].name}")
def test_each_allowed_transition(edge):
    start, end = edge
    m = Machine()
    REACH[start](m)
    assert m.phase is start
    MOVES[edge](m)
    assert m.phase is end
    moves = list(zip(m.view.phases, m.view.phases[1:], strict=False))
    assert all(b is a or b in TRANSITIONS[a] for a, b in moves), moves
    if end is not Phase.UNWATCHED:
        assert m.view.phases[-1] is end  # the view was shown where the watch is
        m.close()


def test_only_the_transition_function_replaces_the_state():
    tree = ast.parse(inspect.getsource(runwatch))
    writers = {
        function.name
        for function in ast.walk(tree) if isinstance(function, ast.FunctionDef)
        for node in ast.walk(function) if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Attribute) and target.attr == "_state"
    }
    assert writers == {"__init__", "_transition"}


def test_an_illegal_move_raises_under_test_and_changes_nothing_for_the_views():
    m = Machine()
    gave_up(m)
    m.close()
    shown = len(m.view.states)
    with pytest.raises(IllegalTransition, match="UNWATCHED -> POLLING"), m.watch._changing():
        m.watch._transition(Phase.POLLING)
    assert len(m.view.states) == shown


def test_views_are_shown_each_state_in_order_outside_the_lock():
    m = Machine()
    held: list[bool] = []

    class Probe(Phases):
        def show(self, state: RunState) -> None:
            # another thread can take the lock while a view draws: it is not held
            taker = threading.Thread(target=lambda: held.append(
                not m.watch._lock.acquire(timeout=1) or m.watch._lock.release()))
            taker.start()
            taker.join()
            super().show(state)

    probe = Probe()
    m.watch.attach(probe, PollPolicy())
    polling(m)
    m.poller.finish(snap("completed"))
    serials = [state.serial for state in probe.states]
    assert serials == sorted(serials) and len(set(serials)) == len(serials)
    assert probe.states[-1].phase is Phase.SETTLED and held and not any(held)
    m.close()


def test_wait_returns_only_once_every_view_was_shown_the_end():
    m = Machine()
    polling(m)
    order: list[str] = []

    class Slow(Phases):
        def show(self, state: RunState) -> None:
            if state.final:
                order.append("shown")

    slow = Slow()
    m.watch.attach(slow, PollPolicy())
    waiter = threading.Thread(target=lambda: (m.watch.wait(m.view, 5), order.append("woke")))
    waiter.start()
    m.poller.finish(snap("completed"))
    waiter.join(5)
    assert order == ["shown", "woke"]
    m.close()


def test_a_view_that_restarts_on_the_end_does_not_begin_a_second_session():
    """A view shown the end may call want() at once (a card's start() did, from wait_async):
    the run ended or watching gave up, so no second session begins and the error stays."""
    m = Machine()

    class RestartsOnEnd(Phases):
        def show(self, state: RunState) -> None:
            if state.phase is Phase.GAVE_UP:
                m.watch.want(self)

    view = RestartsOnEnd()
    m.watch.attach(view, PollPolicy())
    m.watch.want(view)
    m.poller.finish(error=NotFoundError("no such run"))
    with pytest.raises(NotFoundError):
        m.watch.wait(view, 0)
    assert m.poller.starts == 1 and m.phase is Phase.GAVE_UP
    m.close()


def test_a_late_end_of_a_replaced_session_is_ignored():
    m = Machine()
    gave_up(m)
    m.watch.want(m.view)  # Retry: a new session
    m.poller.listener.on_finished(None, NotFoundError("old news"))  # while the new one runs
    assert m.phase is Phase.POLLING and m.watch.error is None
    m.close()


def test_a_view_time_limit_stops_only_that_view_on_the_fake_clock():
    m = Machine(timeout=30)
    other = Phases()
    m.watch.attach(other, PollPolicy())
    polling(m)
    m.watch.want(other)
    m.clock.advance(29.9)
    assert not m.watch.state_for(m.view).paused
    m.clock.advance(0.2)
    mine, theirs = m.watch.state_for(m.view), m.watch.state_for(other)
    assert mine.timed_out and isinstance(mine.trouble, WatchTimeout) and mine.done
    assert theirs.watching and not theirs.paused and m.phase is Phase.POLLING
    with pytest.raises(WatchTimeout):
        m.watch.wait(m.view, 0)
    m.watch.detach(other)
    m.close()


def test_the_state_for_each_view_says_paused_stopped_and_ended_once_for_every_view():
    m = Machine()
    polling(m)
    m.watch.pause(m.view)
    state = m.watch.state_for(m.view)
    assert state.paused and not state.timed_out and state.trouble is None and state.idle
    m.watch.want(m.view)
    m.poller.answer(snap("failed"))
    m.poller.finish(snap("failed"))
    state = m.watch.state_for(m.view)
    assert state.ended and state.final and not state.paused and state.trouble is None
    assert m.watch.wait(m.view, 0).status == "failed"
    m.close()


def test_cancel_moves_the_cancel_state_and_a_refusal_is_kept():
    m = Machine()
    polling(m)
    assert m.watch.cancel() == "Execution cancelled."
    assert m.watch.state.cancelling and m.poller.soon == 1
    m.poller.answer(snap("cancelled"))
    assert not m.watch.state.cancelling
    m.client.refusal = RunAlreadyEndedError("already ended")
    with pytest.raises(RunAlreadyEndedError):
        m.watch.cancel()
    state = m.watch.state
    assert not state.cancelling and isinstance(state.cancel_error, RunAlreadyEndedError)
    m.close()


def test_closing_the_last_view_before_the_end_wakes_waiters_with_an_error():
    m = Machine()
    ended(m)  # a thumbnail still loading
    other = Phases()
    m.watch.attach(other, PollPolicy())
    m.watch.detach(m.view)
    assert m.phase is Phase.ENDED  # another view is left
    m.watch.detach(other)
    assert m.phase is Phase.UNWATCHED
    with pytest.raises(RuntimeError, match="closed before the run settled"):
        m.watch.outcome(other)


def test_the_watch_learns_from_a_run_it_saw_running_only():
    m = Machine()
    polling(m)
    m.poller.answer(RunSnapshot(status="completed", execution_id=7, workflow_id="wf",
                                steps=(Step("Render", "completed",
                                            datetime(2026, 1, 1, tzinfo=timezone.utc),
                                            datetime(2026, 1, 1, 0, 0, 5, tzinfo=timezone.utc)),)))
    m.poller.finish(m.watch.snapshot)
    assert m.watch.history.expected("wf") == {"Render": 5.0}
    seen_ended = Machine()
    seen_ended.watch.want(seen_ended.view)
    seen_ended.poller.answer(snap("completed"))
    seen_ended.poller.finish(snap("completed"))
    assert seen_ended.watch.history.expected("wf") == {}
    m.close()
    seen_ended.close()


def test_runtime_parts_are_what_the_watch_uses():
    m = Machine()
    assert m.watch.scheduler is m.clock and isinstance(m.poller, FakePoller)
    m.close()


# -- over sockets, with the simulator ----------------------------------------------------


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


Recorder = Phases  # a GUI-free view over sockets too


def test_the_watch_describes_each_output_and_thumbnails_images_only(sim, client):
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
    [thumb] = watch.thumbnails_in_order()
    assert thumb.index == 1 and thumb.ok
    assert sim.bytes_served(eid) - len(client.fetch_image(watch.snapshot.outputs[1])) <= 4096
    # each output's kind is shown before settling, and the image's before its thumbnail
    first_settled = next(s for s in view.states if s.phase is Phase.SETTLED)
    assert len(first_settled.outputs) == 4 and len(first_settled.thumbnails) == 1
    with_thumb = next(s for s in view.states if s.thumbnails)
    assert any(info.index == 1 for info in with_thumb.outputs)
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
    assert "<video" in "".join(big.output_slots_html)
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
    assert any(state.cancelling for state in view.states)
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
