"""The request budget per workflow (issue 10), over real sockets against the simulator's rate
limiter, in a compressed minute: polling untouched before the first 429; after it, never more
than the limit in any window across every watch, launch and cancel; runs shown completed soon
after they end; launches wait their turn, none lost, none doubled; 429s are never failures."""

from __future__ import annotations

import itertools
import statistics
import threading
import time
from collections.abc import Iterator

import pytest

from modelslab_widget import WorkflowRunWidget, budget
from modelslab_widget.budget import (
    FIRST,
    POLL,
    SCHEMA,
    RequestKind,
    SendInSlot,
    WorkflowBudget,
    budget_for,
    send_in_slot,
)
from modelslab_widget.errors import (
    NetworkError,
    QueueFullError,
    RateLimitError,
    ServerError,
    ValidationError,
)
from modelslab_widget.launcher import WorkflowLauncher
from modelslab_widget.queued import QueuedRunWidget
from modelslab_widget.simulator import DEMO_WORKFLOW_ID, Fault, Simulator

from .conftest import wait_for
from .fake_clock import FakeClock, FakeScheduler

WINDOW = 3.0  # seconds: the compressed minute of these tests
SCALE = WINDOW / 60.0


@pytest.fixture
def window() -> Iterator[float]:
    """The process's budgets play the compressed minute (and are forgotten afterwards)."""
    budget.shared_budgets().reset(window=WINDOW)
    yield WINDOW
    budget.shared_budgets().reset(window=budget.WINDOW)


@pytest.fixture
def rsim() -> Iterator[Simulator]:
    with Simulator(rate_window=WINDOW) as simulator:
        yield simulator


@pytest.fixture
def cards(rsim):
    from modelslab_widget import WorkflowsClient

    client = WorkflowsClient(rsim.api_key, base_url=rsim.base_url, timeout=(2.0, 2.0),
                             backoff_factor=0.01)
    made: list[WorkflowRunWidget] = []

    def build(workflow_id, execution_id, **kwargs):
        kwargs.setdefault("client", client)
        widget = WorkflowRunWidget(workflow_id, execution_id, **kwargs)
        made.append(widget)
        return widget

    build.client = client  # type: ignore[attr-defined]
    yield build
    for widget in made:
        widget.close()
    client.close()


def attempts(sim: Simulator, workflow_id: str) -> tuple[list[float], list[float]]:
    """Every request of the workflow the simulator saw (accepted and 429), and the 429s."""
    refused = sim.refused_request_times(workflow_id)
    return sorted(sim.accepted_request_times(workflow_id) + refused), refused


def most_in_a_window(times: list[float], since: float, window: float) -> int:
    """The most requests any window (t - window, t] held, for every t at or after ``since``."""
    return max((sum(1 for u in times if t - window < u <= t) for t in times if t >= since),
               default=0)


def steps_of(seconds: float) -> list[tuple[str, float]]:
    return [("Text to Image", seconds / 2), ("Image Upscaler", seconds / 2)]


# -- the budget on its own ----------------------------------------------------------------


def test_a_budget_grants_everything_before_a_429_then_the_limit_in_priority_order():
    clock = FakeClock()
    plan = WorkflowBudget("w", window=0.5, scheduler=clock, clock=clock)
    plan.note_limit(2)
    slots = [plan.request(POLL) for _ in range(5)]
    assert all(slot.granted for slot in slots) and not plan.limited  # no 429 yet: no change
    for slot in slots[:-1]:
        slot.done()
    slots[-1].rate_limited(0.2)
    assert plan.limited and plan.allowed == 2
    granted: list[str] = []
    poll = plan.request(POLL, on_grant=lambda s: granted.append("poll"))
    launch = plan.request(FIRST, on_grant=lambda s: granted.append("launch"))
    assert not poll.granted and not launch.granted
    assert launch.starts_in() == pytest.approx(0.2)  # the server's word, not our window
    clock.advance(0.19)
    assert granted == []
    clock.advance(0.02)
    assert granted == ["launch"]  # the launch asked later, and went first
    clock.advance(0.5 / 2)  # then one request per window / limit: the server has room for one
    assert granted == ["launch", "poll"]


def test_a_429_for_a_request_sent_under_the_current_allowance_halves_it():
    plan = WorkflowBudget("w", window=10.0)
    first = plan.request(POLL)
    stale = plan.request(POLL)  # sent before the budget knew of any limit
    first.rate_limited(None)
    assert plan.limited and plan.allowed == budget.DEFAULT_LIMIT
    stale.rate_limited(None)
    assert plan.allowed == budget.DEFAULT_LIMIT  # one event, already acted on
    current = plan.request(POLL)
    assert current.granted
    current.rate_limited(None)
    assert plan.allowed == budget.DEFAULT_LIMIT / 2


# -- on a fake clock: the server's word decides, and the budget recovers ----------------------


def poll_through(plan: WorkflowBudget, clock: FakeClock, answer, interval: float,
                 seconds: float) -> tuple[list[float], list[float]]:
    """One run polled as the poller does (next poll ``interval`` after an answer) through
    ``plan`` for ``seconds`` of fake time; ``answer(t)`` is the server: None to accept, else
    the ``retry_after`` of a 429. Returns the times requests went and the times refused."""
    sent: list[float] = []
    refused: list[float] = []
    end = clock.now + seconds

    def send(slot) -> None:
        sent.append(clock.now)
        retry_after = answer(clock.now)
        if retry_after is None:
            slot.done()
        else:
            refused.append(clock.now)
            slot.rate_limited(retry_after)
        if clock.now + interval < end:
            clock.call_later(interval, due)

    def due() -> None:
        slot = plan.request(POLL, on_grant=send)
        if slot.granted:
            send(slot)

    due()
    clock.advance(seconds)
    return sent, refused


def one_offs(at: set[int], retry_after: float):
    """A server that refuses only its requests number ``at`` (counting from 0)."""
    count = iter(range(10**9))
    return lambda t: retry_after if next(count) in at else None


def sliding_limit(limit: int, window: float = 60.0):
    """A server with a real limit: ``limit`` accepted requests in any ``window``."""
    accepted: list[float] = []

    def answer(t: float) -> float | None:
        recent = [u for u in accepted if u > t - window]
        if len(recent) >= limit:
            return recent[0] + window - t
        accepted.append(t)
        return None
    return answer


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_the_next_request_goes_when_retry_after_says_not_a_window_later(clock):
    plan = WorkflowBudget("w", scheduler=clock, clock=clock)
    sent, refused = poll_through(plan, clock, one_offs({20, 26}, 1.5), interval=1.0,
                                 seconds=90)
    assert len(refused) == 2
    for refusal in refused:  # the request after each 429: retry_after, then within a second
        after = next(t for t in sent if t > refusal)
        assert after - refusal <= 1.5 + 1.0, (refusal, after)


def test_after_a_one_off_429_the_budget_lifts_within_two_minutes(clock):
    plan = WorkflowBudget("w", scheduler=clock, clock=clock)
    sent, refused = poll_through(plan, clock, one_offs({5}, 1.5), interval=1.0, seconds=300)
    assert len(refused) == 1 and not plan.limited
    lifted = refused[0] + 120
    late = [t for t in sent if t >= lifted]
    gaps = [b - a for a, b in itertools.pairwise(late)]
    assert gaps and max(gaps) <= 1.0 + 1e-9  # polled at the user's interval again
    assert any(b - a > 1.5 for a, b in itertools.pairwise(sent))  # it was paced


def test_a_sustained_limit_costs_about_one_429_every_two_minutes(clock):
    plan = WorkflowBudget("w", scheduler=clock, clock=clock)
    plan.note_limit(10)
    sent, refused = poll_through(plan, clock, sliding_limit(10), interval=1.0, seconds=300)
    first = refused[0]
    later = [t for t in refused if first < t <= first + 240]
    assert len(later) <= 3, refused
    assert plan.limited  # the server really limits: the budget stays engaged
    # and the run is still checked at about the limit's pace: 10 a minute, not fewer
    in_last_minutes = [t for t in sent if first + 60 <= t < first + 240]
    assert len(in_last_minutes) >= 0.8 * 10 * 3


def test_429s_in_a_row_while_honouring_retry_after_lower_the_pace(clock):
    plan = WorkflowBudget("w", scheduler=clock, clock=clock)
    first = plan.request(POLL)
    first.rate_limited(1.0)  # engaged at the documented 10 a minute
    clock.advance(1.0)
    again = plan.request(POLL)
    assert again.granted
    again.rate_limited(1.0)  # refused again right after waiting as asked
    assert plan.allowed == budget.DEFAULT_LIMIT / 2


def test_a_queue_full_429_leaves_the_workflow_budget_alone(clock):
    plan = WorkflowBudget("w", scheduler=clock, clock=clock)
    slot = plan.request(FIRST)
    with pytest.raises(QueueFullError), plan.spending(slot):
        raise QueueFullError("Maximum 5 queued requests allowed.", retry_after=30, limit=5)
    assert not plan.limited and plan.allowed == budget.DEFAULT_LIMIT
    assert plan.request(POLL).granted


# -- one call for every kind of request: send_in_slot / SendInSlot, on a fake clock -----------


class Server:
    """A request a test scripts: each call takes the next answer (an exception is raised)."""

    def __init__(self, *answers) -> None:
        self.answers = list(answers)
        self.sent: list[float] = []
        self.threads: list[int] = []

    def __call__(self, clock: FakeClock | None = None):
        def send():
            self.sent.append(clock.now if clock is not None else 0.0)
            self.threads.append(threading.get_ident())
            answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
            if isinstance(answer, BaseException):
                raise answer
            return answer
        return send


@pytest.fixture
def fresh() -> tuple[FakeScheduler, WorkflowBudget]:
    """A fake clock and a budget on it that has heard no 429."""
    clock = FakeScheduler()
    return clock, WorkflowBudget("w", scheduler=clock, clock=clock)


def limited(clock: FakeScheduler, retry_after: float = 2.0) -> WorkflowBudget:
    """A budget that has just been answered 429 (``retry_after``): nothing goes before it."""
    plan = WorkflowBudget("w", window=60.0, scheduler=clock, clock=clock)
    plan.request(POLL).rate_limited(retry_after)
    return plan


def sending(plan, kind, server, clock, **kwargs) -> SendInSlot:
    done: list[SendInSlot] = []
    request = SendInSlot(plan, kind, server(clock), submit=clock.submit,
                         on_done=done.append, **kwargs)
    request.done_calls = done  # type: ignore[attr-defined]
    return request


def test_a_launch_answered_429_goes_again_when_the_429_says_and_only_then(fresh):
    clock, plan = fresh
    server = Server(RateLimitError("slow down", retry_after=3.0), "exec-1")
    launch = sending(plan, RequestKind.LAUNCH, server, clock)
    launch.start()
    clock.run_due()
    assert server.sent == [1000.0] and not launch.done  # refused: it waits its turn again
    clock.advance(2.9)
    assert len(server.sent) == 1
    clock.advance(0.2)
    assert server.sent == [1000.0, 1003.0] and launch.result() == "exec-1"
    assert launch.attempts == 2 and launch.done_calls == [launch]


@pytest.mark.parametrize("failure", [
    NetworkError("connection reset"),  # the answer was lost: the run may have started
    ServerError("HTTP 502"), ValidationError("prompt is required", errors={}),
    QueueFullError("Maximum 5 queued requests allowed.", retry_after=30, limit=5),
])
def test_a_post_is_never_sent_again_after_any_other_failure(failure, fresh):
    clock, plan = fresh
    server = Server(failure, "exec-2")
    launch = sending(plan, RequestKind.LAUNCH, server, clock)
    launch.start()
    clock.advance(600)
    assert len(server.sent) == 1 and launch.error is failure
    with pytest.raises(type(failure)):
        launch.result()


def test_a_post_refused_429_every_time_gives_up_after_its_tries(fresh):
    clock, plan = fresh
    server = Server(RateLimitError("slow down", retry_after=1.0))
    cancel = sending(plan, RequestKind.CANCEL, server, clock, tries=3)
    cancel.start()
    clock.advance(600)
    assert len(server.sent) == 3 and isinstance(cancel.error, RateLimitError)
    assert all(b - a >= 1.0 for a, b in itertools.pairwise(server.sent))


def test_a_get_answered_429_is_sent_once_its_caller_has_its_own_schedule(fresh):
    clock, plan = fresh
    server = Server(RateLimitError("slow down", retry_after=1.0), "schema")
    read = sending(plan, RequestKind.SCHEMA, server, clock)
    read.start()
    clock.advance(60)
    assert len(server.sent) == 1 and isinstance(read.error, RateLimitError)
    assert plan.limited  # the budget heard the 429


def test_waiting_requests_go_cancel_first_then_schema_then_poll():
    clock = FakeScheduler()
    plan = limited(clock, retry_after=2.0)
    order: list[str] = []
    made = []
    for kind in (RequestKind.POLL, RequestKind.SCHEMA, RequestKind.CANCEL):
        made.append(SendInSlot(plan, kind, lambda kind=kind: order.append(kind.value),
                               submit=clock.submit))
        made[-1].start()
    assert order == []
    clock.advance(600)
    assert order == ["cancel", "schema read", "poll"]
    assert [k.priority for k in (RequestKind.LAUNCH, RequestKind.CANCEL, RequestKind.SCHEMA,
                                 RequestKind.POLL)] == [FIRST, FIRST, SCHEMA, POLL]


def test_a_withdrawn_request_is_never_sent_and_gives_its_place_back():
    clock = FakeScheduler()
    plan = limited(clock)
    server = Server("exec-3")
    launch = sending(plan, RequestKind.LAUNCH, server, clock)
    launch.start()
    assert plan.waiting == 1 and launch.waiting and launch.starts_in() == pytest.approx(2.0)
    assert launch.withdraw()
    clock.advance(600)
    assert server.sent == [] and plan.waiting == 0 and not launch.done
    assert launch.done_calls == []


def test_a_grant_already_handed_to_the_pool_is_not_sent_once_withdrawn(fresh):
    clock, plan = fresh
    server = Server("exec-4")
    launch = sending(plan, RequestKind.LAUNCH, server, clock)
    launch.start()  # granted at once: the send is queued on the (fake) pool
    assert launch.withdraw()
    clock.run_due()
    assert server.sent == [] and plan.request(FIRST).granted


def test_once_on_its_way_a_request_cannot_be_withdrawn(fresh):
    clock, plan = fresh
    holder: list[SendInSlot] = []
    withdrawn: list[bool] = []

    def request():
        withdrawn.append(holder[0].withdraw())
        return "exec-5"

    launch = SendInSlot(plan, RequestKind.LAUNCH, request, submit=clock.submit)
    holder.append(launch)
    launch.start()
    clock.run_due()
    assert withdrawn == [False] and launch.result() == "exec-5"


def test_send_in_slot_sends_on_the_calling_thread_when_the_slot_is_free(fresh):
    clock, plan = fresh
    server = Server("Execution cancelled.")
    assert send_in_slot(plan, RequestKind.CANCEL, server(clock)) == "Execution cancelled."
    assert server.threads == [threading.get_ident()] and not plan.limited


def test_send_in_slot_raises_a_post_failure_without_sending_it_again(fresh):
    clock, plan = fresh
    server = Server(NetworkError("no answer"), "exec-6")
    with pytest.raises(NetworkError):
        send_in_slot(plan, RequestKind.LAUNCH, server(clock))
    assert len(server.sent) == 1


@pytest.mark.parametrize("hurry", ["timeout", "cancel"])
def test_send_in_slot_past_its_timeout_or_cancelled_goes_without_a_slot(hurry):
    clock = FakeScheduler()  # never advanced: the slot would never come
    plan = limited(clock, retry_after=30.0)
    server = Server(RateLimitError("still busy", retry_after=30.0), "exec-7")
    stop = threading.Event()
    stop.set()
    kwargs = {"timeout": 0.0} if hurry == "timeout" else {"cancel": stop}
    with pytest.raises(RateLimitError):  # sent without a slot; its 429 waits in the budget
        send_in_slot(plan, RequestKind.CANCEL, server(clock), tries=1, **kwargs)
    assert len(server.sent) == 1 and plan.waiting == 0


def test_send_in_slot_without_a_budget_sends_once():
    server = Server(RateLimitError("slow down", retry_after=1.0), "x")
    with pytest.raises(RateLimitError):
        send_in_slot(None, RequestKind.CANCEL, server())
    assert len(server.sent) == 1


# -- over real sockets ----------------------------------------------------------------------


def test_before_any_429_polling_keeps_the_users_interval(window, rsim, cards):
    workflow = rsim.add_workflow(rate_limit=1000, steps=steps_of(1.5))
    widget = cards(workflow, rsim.add_run(workflow, steps=steps_of(1.5)), poll_interval=0.05)
    widget.wait(10)
    times, refused = attempts(rsim, workflow)
    assert not refused and not budget_for(cards.client.account, workflow).limited
    assert len(times) >= 15  # 1.5 s at 0.05 s: about 30 polls, nothing held back
    assert widget.message_html == ""


def test_after_the_first_429_the_budget_keeps_to_the_limit_and_its_probes(window, rsim, cards):
    """Beyond the limit only while probing whether it still holds: at most twice the limit
    in any window, and the few 429s a probe costs."""
    limit = 8
    workflow = rsim.add_workflow(rate_limit=limit, steps=steps_of(5 * WINDOW / 3))
    account = cards.client.account
    # The schema says the limit (as it does when a launcher opens the workflow).
    budget.note_limit(account, workflow, cards.client.get_workflow(workflow).rate_limit)
    runs = [rsim.add_run(workflow, steps=steps_of(5 * WINDOW / 3)) for _ in range(3)]
    widgets = [cards(workflow, eid, poll_interval=0.05) for eid in runs]
    wait_for(lambda: budget_for(account, workflow).limited, timeout=5)  # heard the 429
    # A cancel and a launch of the same workflow go through the same budget.
    extra = rsim.add_run(workflow, steps=steps_of(30))
    plan = budget_for(account, workflow)
    send_in_slot(plan, RequestKind.CANCEL, lambda: cards.client.cancel_run(workflow, extra),
                 timeout=10)
    launched_id = send_in_slot(plan, RequestKind.LAUNCH,
                               lambda: cards.client.run_workflow(workflow, {"prompt": "a"}),
                               timeout=10)
    widgets.append(cards(workflow, launched_id, poll_interval=0.05))
    for widget in widgets:
        assert widget.wait(30).status == "completed"
    times, refused = attempts(rsim, workflow)
    # Requests already on their way when the first 429 was answered are not the budget's.
    assert most_in_a_window(times, refused[0] + 0.3, WINDOW) <= budget.PROBE * limit
    on_their_way = [t for t in refused if t <= refused[0] + 0.3]
    assert len(on_their_way) <= len(runs), refused  # at most one in flight per card
    assert len(refused) - len(on_their_way) <= 2, refused  # the budget's own: refused probes
    assert rsim.request_count("cancel", execution_id=extra) == 1


def test_three_runs_under_the_limit_are_shown_completed_soon_after_they_end(
        window, rsim, cards):
    """Three 90 s runs of a workflow limited to 10 a minute (all scaled to the window)."""
    duration, interval = 90 * SCALE, 2 * SCALE
    workflow = rsim.add_workflow(rate_limit=10, steps=steps_of(duration))
    shown: dict[int, float] = {}
    ends: dict[int, float] = {}
    widgets = []
    for _ in range(3):
        ends_at = time.monotonic() + duration  # the run's end is a little after this
        eid = rsim.add_run(workflow, steps=steps_of(duration))
        ends[eid] = ends_at
        widget = cards(workflow, eid, poll_interval=interval)

        def seen(change, eid=eid):
            if change["new"] == "completed":
                shown[eid] = time.monotonic()

        widget.observe(seen, "status")
        widgets.append(widget)
    for widget in widgets:
        assert widget.wait(duration + 30).status == "completed"
    lags = [shown[eid] - ends[eid] for eid in ends]
    assert max(lags) <= 25 * SCALE, lags
    assert rsim.rate_limited_count(workflow) <= 3
    assert statistics.median(lags) >= 0


def test_the_card_says_calmly_how_often_the_limit_lets_it_check(window, rsim, cards):
    workflow = rsim.add_workflow(rate_limit=4, steps=steps_of(3 * WINDOW))
    runs = [rsim.add_run(workflow, steps=steps_of(3 * WINDOW)) for _ in range(3)]
    widgets = [cards(workflow, eid, poll_interval=0.05) for eid in runs]
    wait_for(lambda: "Rate limited: checking every" in widgets[0].message_html, timeout=10)
    notice = widgets[0].message_html
    assert "mlw-note" in notice and "mlw-error" not in notice
    assert widgets[0].error == ""
    # The card learned the limit (4 per 3 s) from the workflow list: shared by 3 runs, each
    # run every 2.25 s.
    wait_for(lambda: (widgets[0].run_watch.paced or 0) >= 2.0, timeout=10)
    assert widgets[0].run_watch.paced <= 4.0
    assert "checking every 2." in widgets[0].message_html
    for widget in widgets:
        assert widget.wait(30).status == "completed"
    assert all(widget.message_html == "" for widget in widgets)  # gone once the runs ended


def test_a_run_watched_through_20_consecutive_429s_still_ends_completed(window, sim, client):
    budget.shared_budgets().reset(window=0.3)
    faults = [Fault("rate_limit", retry_after=0, times=20)]
    eid = sim.add_run(steps=[("Text to Image", 0.0)], status_faults=faults)
    widget = WorkflowRunWidget(DEMO_WORKFLOW_ID, eid, client=client, poll_interval=0.02,
                               max_failures=2)
    try:
        snapshot = widget.wait(60)
        assert snapshot.status == "completed" and widget.error == ""
        assert sim.request_count("status", execution_id=eid) == 21
    finally:
        widget.close()


def test_six_quick_launches_all_start_none_lost_none_doubled(window, rsim, cards):
    workflow = rsim.add_workflow(rate_limit=4, steps=steps_of(0.5), parameters=[
        {"key": "prompt", "type": "string", "required": True}])
    launcher = WorkflowLauncher(workflow, client=cards.client, poll_interval=0.05)
    try:
        runs = []
        for number in range(6):
            launcher.inputs["prompt"].value = f"lighthouse {number}"
            runs.append(launcher.launch())
        assert all(run is not None for run in runs)
        queued = [run for run in runs if isinstance(run, QueuedRunWidget)]
        assert queued, "over the limit some launches must have waited their turn"
        assert "Queued here: starts in" in queued[-1].message_html or not queued[-1].queued
        for run in runs:
            assert run.wait(30).status == "completed"
        ids = [run.execution_id for run in runs]
        assert len(set(ids)) == 6 and rsim.runs_started(workflow) == 6
        rows = [row.text.value for row in launcher.history]
        assert all(f"Run {eid}" in row for eid, row in zip(ids, rows, strict=True))
    finally:
        launcher.close()


def test_a_queued_launch_can_be_removed_and_nothing_is_sent(window, rsim, cards):
    workflow = rsim.add_workflow(rate_limit=1, steps=steps_of(0.2), parameters=[
        {"key": "prompt", "type": "string", "required": True}])
    launcher = WorkflowLauncher(workflow, client=cards.client, poll_interval=0.05)
    try:
        # The schema read used the workflow's one request a window: the POST meets a 429,
        # which started nothing, so the launch waits its turn.
        launcher.inputs["prompt"].value = "removed"
        removed = launcher.launch()
        launcher.inputs["prompt"].value = "kept"
        kept = launcher.launch()
        assert isinstance(removed, QueuedRunWidget) and isinstance(kept, QueuedRunWidget)
        assert removed.queued and removed.execution_id is None
        assert "Queued here: starts in" in removed.message_html
        assert "Queued here" in launcher.history[0].text.value
        assert repr(removed).startswith("Run queued here · starts in")
        removed.remove_button.click()
        assert launcher.runs == [kept] and len(launcher.history) == 1
        with pytest.raises(RuntimeError):
            removed.wait(1)
        # The launch queued after it starts; had the removed one been sent, two would have.
        assert kept.wait(30).status == "completed"
        assert rsim.runs_started(workflow) == 1 and "kept" in launcher.history[0].prompt
        assert f"Run {kept.execution_id}" in launcher.history[0].text.value
    finally:
        launcher.close()


def watched_with_one_off_429s(rsim, cards, at: tuple[int, ...]):
    """A long run watched at 1 s (scaled) whose polls number ``at`` are answered by a one-off
    429 asking 1.5 s (scaled); returns the card, the run and the indexes refused."""
    workflow = rsim.add_workflow(steps=steps_of(10 * WINDOW))
    eid = rsim.add_run(workflow, steps=steps_of(10 * WINDOW), images=0)
    card = cards(workflow, eid, poll_interval=1 * SCALE)
    refused = []
    for count in at:
        wait_for(lambda count=count: rsim.request_count("status", eid) >= count, timeout=10,
                 step=0.005)
        refused.append(rsim.request_count("status", eid))
        rsim.status_faults(eid, [Fault("rate_limit", retry_after=1.5 * SCALE)])
    wait_for(lambda: rsim.request_count("status", eid) > refused[-1] + 1, timeout=10)
    return card, workflow, refused


def test_over_sockets_the_next_request_goes_when_the_429_says(window, rsim, cards):
    card, workflow, refused = watched_with_one_off_429s(rsim, cards, at=(5, 11))
    times = rsim.accepted_request_times(workflow)
    card.close()
    for index in refused:  # times[index] was answered 429
        assert times[index + 1] - times[index] <= (1.5 + 1) * SCALE + 0.05


def test_over_sockets_the_budget_lifts_after_a_one_off_429(window, rsim, cards):
    card, workflow, _ = watched_with_one_off_429s(rsim, cards, at=(5,))
    plan = budget_for(cards.client.account, workflow)
    assert plan.limited
    wait_for(lambda: not plan.limited, timeout=2 * WINDOW)  # lifted by itself in 2 minutes
    lifted = time.monotonic()
    wait_for(lambda: time.monotonic() > lifted + 10 * SCALE, timeout=5)
    card.close()
    recent = [t for t in rsim.accepted_request_times(workflow) if t > lifted]
    assert max(b - a for a, b in itertools.pairwise(recent)) <= 1.5 * SCALE  # at 1 s again
