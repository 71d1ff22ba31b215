"""PendingRun: one launch from its turn to its run's watch.

First on a fake clock with a scripted client (no sockets, no sleeps): every phase it moves
through, a POST sent again only after a 429, never after any other failure, the account's
line, cancel before sending. Then over loopback against the simulator: the real POST, a
queue limit of three, a lost answer and a refusal."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from modelslab_widget import WorkflowsClient
from modelslab_widget.account import AccountQueues
from modelslab_widget.errors import (
    NetworkError,
    QueueFullError,
    RateLimitError,
    ValidationError,
)
from modelslab_widget.pending import LaunchPhase, PendingRun
from modelslab_widget.poller import PollPolicy
from modelslab_widget.registry import watch_for
from modelslab_widget.runstate import Phase, RunState
from modelslab_widget.simulator import Fault

from .conftest import fast_client
from .fake_clock import fake_runtime

P = LaunchPhase
QUEUE_FULL = QueueFullError("Maximum 3 queued requests allowed.", retry_after=30.0, limit=3)


class LaunchingClient(WorkflowsClient):
    """A client whose launches answer as scripted (an exception is raised); nothing is sent
    anywhere. ``during`` is called inside the POST (while the launch is on its way)."""

    def __init__(self, *answers: Any, clock: Any = None) -> None:
        super().__init__("sk-test", base_url="http://127.0.0.1:9/api/v1")
        self.answers = list(answers)
        self.sent: list[float] = []
        self.threads: list[int] = []
        self.clock = clock
        self.during: Any = None

    def run_workflow(self, workflow_id: str, params: dict[str, Any]) -> int | str:
        self.sent.append(self.clock.now if self.clock is not None else 0.0)
        self.threads.append(threading.get_ident())
        if self.during is not None:
            self.during()
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


class Launches:
    """Pending runs on one fake runtime (fake clock, fake pollers, the account's line on
    the fake clock), each with the phases its listener heard."""

    def __init__(self) -> None:
        runtime, self.pollers = fake_runtime()
        self.clock = runtime.scheduler
        self.runtime = runtime.with_parts(accounts=AccountQueues(self.clock, self.clock))
        self.heard: dict[PendingRun, list[LaunchPhase]] = {}

    def make(self, client: LaunchingClient, **kwargs: Any) -> PendingRun:
        client.clock = self.clock
        pending = PendingRun(client, "wf", {"prompt": "a cat"}, runtime=self.runtime, **kwargs)
        self.heard[pending] = []
        pending.listen(lambda p: self.heard[p].append(p.phase))
        return pending

    def launch(self, *answers: Any, **kwargs: Any) -> tuple[PendingRun, LaunchingClient]:
        client = LaunchingClient(*answers)
        pending = self.make(client, **kwargs)
        pending.start()
        self.clock.run_due()
        return pending, client

    def budget(self):
        return self.runtime.budgets.for_workflow(LaunchingClient().account, "wf")

    def account(self, client: WorkflowsClient):
        return self.runtime.accounts.for_account(client.account)


@pytest.fixture
def launches() -> Launches:
    return Launches()


def test_a_launch_waits_its_slot_posts_once_and_binds_to_its_runs_watch(launches):
    pending, client = launches.launch(41)
    assert pending.phase is P.LAUNCHED and pending.execution_id == 41 and pending.error is None
    assert launches.heard[pending] == [P.WAITING, P.SENDING, P.LAUNCHED]
    assert len(client.sent) == 1 and pending.wait(0) is P.LAUNCHED
    assert pending.watch is watch_for(client, "wf", 41, runtime=launches.runtime)
    assert not launches.account(client).holding


def test_views_attached_before_the_answer_watch_the_run_on_the_same_watch(launches):
    """A view attaches to the launch's watch before the run exists: nothing is polled (there
    is nothing to poll) until the answer binds the watch, and then that same watch polls."""
    client = LaunchingClient(44, clock=launches.clock)
    pending = PendingRun(client, "wf", {"prompt": "a cat"}, runtime=launches.runtime)
    watch, view = pending.watch, Follower()
    watch.attach(view, PollPolicy(interval=0.05))
    watch.want(view)
    assert not watch.launched and watch.state.phase is Phase.NOT_STARTED
    assert launches.pollers == [] and watch.polls == 0
    pending.start()
    launches.clock.run_due()
    assert pending.phase is P.LAUNCHED and pending.watch is watch and watch.execution_id == 44
    assert watch.state.phase is Phase.POLLING and launches.pollers[-1].active
    assert watch is watch_for(client, "wf", 44, runtime=launches.runtime)  # filed under its run
    with pytest.raises(RuntimeError, match="already watches run 44"):
        watch.bind(45)
    watch.detach(view)


def test_a_429_is_sent_again_when_it_says_and_only_then(launches):
    pending, client = launches.launch(RateLimitError("slow down", retry_after=4.0), 42)
    assert pending.phase is P.WAITING and pending.refusals == 1
    assert pending.starts_in() == pytest.approx(4.0)
    launches.clock.advance(3.9)
    assert len(client.sent) == 1
    launches.clock.advance(0.2)
    assert pending.phase is P.LAUNCHED and pending.execution_id == 42
    assert client.sent[1] - client.sent[0] >= 4.0
    assert launches.heard[pending] == [P.WAITING, P.SENDING, P.WAITING, P.SENDING, P.LAUNCHED]


@pytest.mark.parametrize(("failure", "phase"), [
    (ValidationError("prompt is required", errors={"prompt": ["required"]}), P.REFUSED),
    (NetworkError("connection reset"), P.LOST),  # the run may have started: never re-sent
])
def test_any_other_failure_ends_it_and_nothing_is_sent_again(launches, failure, phase):
    pending, client = launches.launch(failure, 43)
    launches.clock.advance(600)
    assert pending.phase is phase and pending.error is failure
    assert len(client.sent) == 1 and pending.execution_id is None
    assert not pending.watch.launched and pending.watch.execution_id is None
    assert pending.watch.state.phase is Phase.GAVE_UP and pending.watch.error is failure
    assert launches.heard[pending] == [P.WAITING, P.SENDING, phase]


def test_a_launch_429_every_time_is_refused_after_a_bounded_number_of_sends(launches):
    from modelslab_widget.budget import POST_TRIES

    refusals = [RateLimitError("slow down", retry_after=1.0) for _ in range(POST_TRIES)]
    pending, client = launches.launch(*refusals, 44)
    launches.clock.advance(3600)
    assert pending.phase is P.REFUSED and isinstance(pending.error, RateLimitError)
    assert len(client.sent) == POST_TRIES


def test_a_full_queue_holds_it_first_in_the_accounts_line_until_a_run_ends(launches):
    first, client = launches.launch(QUEUE_FULL, 45)
    account = launches.account(client)
    assert first.phase is P.HELD and first.account_limit == 3 and first.starts_in() == 30.0
    later = launches.make(LaunchingClient(46))
    later.start()
    assert later.phase is P.HELD  # behind it, in order
    assert not launches.budget().limited  # the account's queue says nothing of the rate
    account.run_active(("wf", "7"))
    account.run_ended(("wf", "7"))  # one of the account's runs ended: the first goes
    launches.clock.run_due()
    assert first.phase is P.LAUNCHED and first.execution_id == 45 and later.phase is P.HELD
    account.run_active(("wf", "8"))
    account.run_ended(("wf", "8"))
    launches.clock.run_due()
    assert later.phase is P.LAUNCHED and later.execution_id == 46
    assert launches.heard[first] == [P.WAITING, P.SENDING, P.HELD, P.WAITING, P.SENDING,
                                     P.LAUNCHED]


def test_held_with_no_known_run_it_goes_when_the_429s_wait_passed(launches):
    pending, client = launches.launch(QUEUE_FULL, 47)
    launches.clock.advance(29.9)
    assert pending.phase is P.HELD and len(client.sent) == 1
    launches.clock.advance(0.2)
    assert pending.phase is P.LAUNCHED and len(client.sent) == 2


def test_cancel_while_waiting_for_its_slot_sends_nothing(launches):
    launches.budget().request(0).rate_limited(10.0)  # the budget has no room for 10 s
    pending, client = launches.launch(48)
    assert pending.phase is P.WAITING
    assert pending.cancel() and pending.phase is P.CANCELLED
    launches.clock.advance(60)
    assert client.sent == [] and launches.budget().waiting == 0
    assert pending.wait(0) is P.CANCELLED and not pending.cancel()
    assert pending.watch.state.phase is Phase.GAVE_UP  # its views hear that no run started
    assert "removed before it was sent" in str(pending.watch.error)


def test_cancel_while_held_leaves_the_line_and_the_next_one_goes(launches):
    first, _ = launches.launch(QUEUE_FULL)
    second = launches.make(LaunchingClient(49))
    second.start()
    assert first.cancel() and first.phase is P.CANCELLED
    launches.clock.advance(30.1)  # the line's wait passed: the next in line goes
    assert second.phase is P.LAUNCHED


def test_cancel_after_a_rate_429_stops_the_send_it_waits_for(launches):
    pending, client = launches.launch(RateLimitError("slow down", retry_after=2.0), 50)
    assert pending.cancel()
    launches.clock.advance(60)
    assert len(client.sent) == 1 and pending.phase is P.CANCELLED


def test_once_on_its_way_it_cannot_be_cancelled_and_views_hear_outside_its_lock(launches):
    client = LaunchingClient(51)
    pending = launches.make(client)
    answers: list[bool] = []
    client.during = lambda: answers.append(pending.cancel())
    elsewhere: list[float | None] = []

    def view(p: PendingRun) -> None:  # another thread reads it while this view is told
        if p.phase is P.SENDING:
            reader = threading.Thread(target=lambda: elsewhere.append(p.starts_in()))
            reader.start()
            reader.join(5)

    pending.listen(view)
    pending.start()
    launches.clock.run_due()
    assert answers == [False] and pending.phase is P.LAUNCHED
    assert elsewhere == [0.0]  # not blocked: the lock was not held while views were told


def test_a_failing_view_does_not_stop_the_launch(launches, caplog):
    pending = launches.make(LaunchingClient(52))
    pending.listen(lambda p: 1 / 0)
    pending.start()
    launches.clock.run_due()
    assert pending.phase is P.LAUNCHED and "a view of a pending run failed" in caplog.text


def test_inline_it_posts_on_the_calling_thread_when_there_is_room(launches):
    client = LaunchingClient(53)
    pending = launches.make(client)
    pending.start(inline=True)
    assert pending.phase is P.LAUNCHED and client.threads == [threading.get_ident()]


@pytest.mark.parametrize("refusal", [RateLimitError("slow down", retry_after=3.0),
                                     QUEUE_FULL])
def test_sent_now_or_not_at_all_a_429_refuses_it(launches, refusal):
    pending, client = launches.launch(refusal, 54, wait_for_room=False)
    launches.clock.advance(600)
    assert pending.phase is P.REFUSED and pending.error is refusal and len(client.sent) == 1
    assert not launches.account(client).holding


def test_wait_raises_timeout_while_it_waits(launches):
    launches.budget().request(0).rate_limited(10.0)
    pending, _ = launches.launch(55)
    with pytest.raises(TimeoutError):
        pending.wait(0)
    assert repr(pending) == "PendingRun(wf, waiting)"


# -- over loopback, against the simulator ---------------------------------------------------


class Follower:
    """A view that wants its run polled (so the account hears when it ends)."""

    def show(self, state: RunState) -> None:
        pass


def follow(pending: PendingRun, views: dict[PendingRun, Follower]) -> None:
    if pending.phase is P.LAUNCHED:
        views[pending] = Follower()
        pending.watch.attach(views[pending], PollPolicy(interval=0.05))
        pending.watch.want(views[pending])


def test_over_sockets_a_launch_starts_one_run_and_its_watch_follows_it(sim):
    workflow = sim.add_workflow(steps=[("Text to Image", 0.1)])
    with fast_client(sim) as client:
        pending = PendingRun(client, workflow, {"prompt": "a cat"})
        pending.start()
        assert pending.wait(10) is P.LAUNCHED
        assert sim.run_ids(workflow) == [pending.execution_id]
        assert sim.launch_params(pending.execution_id) == {"prompt": "a cat"}
        view = Follower()
        pending.watch.attach(view, PollPolicy(interval=0.05))
        pending.watch.want(view)
        assert pending.watch.wait(view, 10).status == "completed"
        pending.watch.detach(view)
    assert sim.request_count("run") == 1


def test_over_sockets_five_launches_under_a_queue_limit_of_three_all_start_once(qsim):
    workflow = qsim.add_workflow(steps=[("Text to Image", 0.3)], images=0)
    views: dict[PendingRun, Follower] = {}
    with fast_client(qsim) as client:
        launches = [PendingRun(client, workflow, {"prompt": f"p{n}"}) for n in range(5)]
        for pending in launches:
            pending.listen(lambda p: follow(p, views))
            pending.start()
        assert all(pending.wait(20) is P.LAUNCHED for pending in launches)
        for pending, view in views.items():
            pending.watch.detach(view)
    ids = [pending.execution_id for pending in launches]
    assert len(set(ids)) == 5 and qsim.runs_started(workflow) == 5  # none lost, none twice
    assert qsim.queue_full_count >= 1  # some waited in the account's line
    assert [qsim.launch_params(eid)["prompt"] for eid in ids] == [f"p{n}" for n in range(5)]


def test_over_sockets_a_lost_answer_is_never_sent_again(sim):
    workflow = sim.add_workflow("wf-lost", steps=[("Text to Image", 0.1)])
    sim.post_faults(workflow, [Fault("drop")])  # the run is made, its answer lost
    with fast_client(sim) as client:
        pending = PendingRun(client, workflow, {"prompt": "a cat"})
        pending.start()
        assert pending.wait(10) is P.LOST and isinstance(pending.error, NetworkError)
    assert sim.request_count("run") == 1 and len(sim.run_ids(workflow)) == 1


def test_over_sockets_a_refusal_keeps_the_servers_field_messages(sim):
    workflow = sim.add_workflow(parameters=[{"key": "prompt", "type": "string",
                                             "required": True}])
    with fast_client(sim) as client:
        pending = PendingRun(client, workflow, {"seed": 3})
        pending.start()
        assert pending.wait(10) is P.REFUSED
    assert isinstance(pending.error, ValidationError) and "prompt" in pending.error.errors
    assert sim.run_ids(workflow) == []
