"""QueuedRunWidget: the card of a launch that waits its turn, showing its PendingRun.

On a fake runtime (fake clock, fake pollers) with a scripted client: what the card says while
the launch waits for its slot or for room in the account's queue, Remove, a refusal, a lost
answer, and the run watched once it started. Then once over loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from modelslab_widget import RunBoard
from modelslab_widget.account import AccountQueues
from modelslab_widget.errors import NetworkError, QueueFullError, ValidationError
from modelslab_widget.models import RunSnapshot
from modelslab_widget.pending import LaunchPhase, PendingRun
from modelslab_widget.queued import QueuedRunWidget
from modelslab_widget.registry import watch_for
from modelslab_widget.runstate import Phase

from .conftest import fast_client
from .fake_clock import fake_runtime
from .test_pending import LaunchingClient

QUEUE_FULL = QueueFullError("Maximum 3 queued requests allowed.", retry_after=30.0, limit=3)


class Cards:
    """Queued cards on one fake runtime, closed afterwards."""

    def __init__(self) -> None:
        runtime, self.pollers = fake_runtime()
        self.clock = runtime.scheduler
        self.runtime = runtime.with_parts(accounts=AccountQueues(self.clock, self.clock))
        self.made: list[QueuedRunWidget] = []
        self.told: list[str] = []

    def card(self, *answers: Any, **kwargs: Any) -> tuple[QueuedRunWidget, LaunchingClient]:
        client = kwargs.pop("client", None) or LaunchingClient(*answers, clock=self.clock)
        card = QueuedRunWidget("wf", {"prompt": "a cat"}, client=client, runtime=self.runtime,
                               on_state=lambda c: self.told.append(c.launch_state), **kwargs)
        self.made.append(card)
        return card, client

    def limit_budget(self, seconds: float) -> None:
        """The workflow's budget was just answered 429: nothing goes for ``seconds``."""
        budget = self.runtime.budgets.for_workflow(LaunchingClient().account, "wf")
        budget.request(0).rate_limited(seconds)


@pytest.fixture
def cards() -> Iterator[Cards]:
    made = Cards()
    yield made
    for card in made.made:
        card.close()


def test_over_the_rate_limit_it_says_when_it_starts_then_watches_the_run(cards):
    cards.limit_budget(10.0)
    card, client = cards.card(61)
    watch = card.run_watch
    assert card.launch_state == "queued" and card.queued and card.execution_id is None
    assert set(card.buttons) == {"Remove"} and "Queued here" in card.header_html
    assert card.starts_in() == pytest.approx(10.0)
    assert "Queued here: starts in 10 s" in card.message_html
    assert "rate limit is reached" in card.message_html
    assert repr(card) == "Run queued here · starts in 10 s"
    cards.clock.advance(4.0)  # the message counts down
    assert "Queued here: starts in 6 s" in card.message_html and client.sent == []
    cards.clock.advance(6.1)
    assert card.launch_state == "started" and card.execution_id == 61 and len(client.sent) == 1
    assert card.run_watch is card.pending.watch and not card.queued
    assert cards.told[-2:] == ["sending", "started"]
    cards.pollers[-1].answer(RunSnapshot(status="running", execution_id=61, workflow_id="wf"))
    assert card.status == "running" and card.run_watch is watch  # one watch, all along
    assert set(card.buttons) == {"Stop", "Cancel run"} and "Run 61" in card.header_html


def test_with_the_accounts_queue_full_it_waits_for_one_of_its_runs(cards):
    card, client = cards.card(QUEUE_FULL, 62)
    account = cards.runtime.accounts.for_account(client.account)
    account.run_active(("wf", "1"))  # a run of ours holds the queue: its end opens it
    cards.clock.advance(1.0)  # the next refresh of the message
    assert card.pending.phase is LaunchPhase.HELD and card.starts_in() is None
    assert "Queued here: starts when one of the account&#x27;s runs ends" in card.message_html
    assert "ModelsLab allows 3 queued runs at a time" in card.message_html
    account.run_ended(("wf", "1"))
    cards.clock.run_due()
    assert card.launch_state == "started" and card.execution_id == 62 and len(client.sent) == 2


def test_remove_drops_a_queued_launch_and_nothing_is_sent(cards):
    cards.limit_budget(10.0)
    card, client = cards.card(63)
    card.remove_button.click()
    assert card.launch_state == "removed" and "Removed: this run was not started" in \
        card.message_html
    assert repr(card) == "Run removed before it started" and not card.remove()
    cards.clock.advance(60)
    assert client.sent == []
    with pytest.raises(RuntimeError, match="removed"):
        card.wait(0)


def test_a_refusal_is_shown_and_raised_and_never_sent_again(cards):
    refusal = ValidationError("prompt: required", errors={"prompt": ["required"]})
    card, client = cards.card(refusal, 64)
    cards.clock.advance(60)
    assert card.launch_state == "failed" and card.launch_error is refusal
    assert "The run was not started" in card.message_html and card.error == str(refusal)
    assert "Not started" in card.header_html and card.step_rows_html == ()  # no steps to await
    assert "not watched" not in card.header_html and "Run not started<" in card.header_html
    assert repr(card).startswith("Run not started · error: prompt: required")
    assert len(client.sent) == 1 and not card.remove()
    with pytest.raises(ValidationError):
        card.wait(0)


def test_a_lost_answer_says_the_run_may_have_started(cards):
    card, client = cards.card(NetworkError("connection reset"), 65)
    cards.clock.advance(60)
    assert card.launch_state == "failed" and len(client.sent) == 1
    assert "No answer from ModelsLab" in card.message_html
    assert "may have started anyway" in card.message_html


def test_it_shows_a_launch_started_elsewhere(cards):
    client = LaunchingClient(66, clock=cards.clock)
    pending = PendingRun(client, "wf", {"prompt": "a cat"}, runtime=cards.runtime)
    pending.start()
    cards.clock.run_due()  # launched before the card was made
    card, _ = cards.card(client=client, pending=pending)
    assert card.launch_state == "started" and card.execution_id == 66
    assert len(client.sent) == 1 and cards.told == ["started"]  # told once, however late


def test_a_card_closed_while_its_launch_is_on_its_way_leaves_the_run_a_live_watch(cards):
    card, client = cards.card(68)
    client.during = card.close  # closed while the POST is on its way: it cannot be removed
    cards.clock.run_due()
    closed_watch = card.run_watch
    assert card.pending.phase is LaunchPhase.LAUNCHED and len(client.sent) == 1
    assert closed_watch.state.phase is Phase.UNWATCHED and not closed_watch.launched
    live = watch_for(client, "wf", 68, runtime=cards.runtime)  # e.g. a card made by its ID
    assert live is card.pending.watch and live is not closed_watch
    assert live.state.phase is Phase.NOT_STARTED and live.execution_id == 68


def test_closing_a_queued_card_removes_its_launch_and_says_so(cards):
    cards.limit_budget(10.0)
    card, client = cards.card(69)
    watch = card.run_watch
    card.close()
    assert card.launch_state == "removed" and not card.queued and cards.told == ["removed"]
    assert repr(card) == "Run removed before it started"
    cards.clock.advance(60)
    assert client.sent == [] and watch.state.phase is Phase.UNWATCHED


def test_stop_before_the_launch_went_means_its_run_is_not_watched(cards):
    cards.limit_budget(5.0)
    card, client = cards.card(70)
    card.stop()
    cards.clock.advance(5.1)
    assert card.launch_state == "started" and len(client.sent) == 1
    assert not card.watching and not cards.pollers[-1].active and "Resume" in card.buttons
    card.start()
    assert card.watching and cards.pollers[-1].active


def test_a_refused_launch_ends_every_view_of_its_watch(cards):
    refusal = ValidationError("prompt: required", errors={"prompt": ["required"]})
    card, _ = cards.card(refusal)
    board = RunBoard(scheduler=cards.clock)
    row = board.add(card)
    assert row.execution_id is None and not row.wait(0)
    cards.clock.advance(1)
    assert row.wait(0) and card.run_watch.state.phase is Phase.GAVE_UP
    assert card.run_watch.error is refusal and "The run was not started" in card.message_html
    with pytest.raises(RuntimeError, match="no run to cancel"):
        card.cancel()
    board.close()


def test_a_board_row_of_a_queued_card_follows_its_run(cards):
    cards.limit_budget(2.0)
    card, _ = cards.card(71)
    board = RunBoard(scheduler=cards.clock)
    row = board.add(card)
    cards.clock.advance(2.1)
    assert row.execution_id == 71 and card.watching
    cards.pollers[-1].answer(RunSnapshot(status="running", execution_id=71, workflow_id="wf"))
    assert row.status == "running"
    board.close()


def test_a_card_refuses_a_launch_it_cannot_show(cards):
    client = LaunchingClient(72, clock=cards.clock)
    pending = PendingRun(client, "wf", {"prompt": "a cat"}, runtime=cards.runtime)
    with pytest.raises(ValueError, match="launches workflow 'wf', not 'other'"):
        QueuedRunWidget("other", {}, client=client, pending=pending)
    card, _ = cards.card(client=client, pending=pending)
    refused: list[Exception] = []

    def close_and_try_another() -> None:  # while the POST is on its way
        card.close()
        try:
            QueuedRunWidget("wf", {}, client=client, pending=pending)
        except ValueError as error:
            refused.append(error)

    client.during = close_and_try_another
    cards.clock.run_due()
    assert len(refused) == 1 and "closed while it was on its way" in str(refused[0])
    later, _ = cards.card(client=client, pending=pending)  # once answered: the run's card
    assert later.execution_id == 72 and later.run_watch is not card.run_watch


def test_awaiting_a_queued_card_ends_when_its_launch_is_removed_or_the_time_is_up(cards):
    cards.limit_budget(60.0)
    card, _ = cards.card(73)

    async def remove_while_awaited() -> None:
        waiting = asyncio.ensure_future(card.wait_async(30))
        await asyncio.sleep(0)  # the waiter is registered before the removal
        card.remove()
        with pytest.raises(RuntimeError, match="removed before it started"):
            await waiting

    other, _ = cards.card(74)
    with pytest.raises(TimeoutError, match=r"did not start within 0\.05 s"):
        asyncio.run(other.wait_async(0.05))
    asyncio.run(remove_while_awaited())


def test_a_card_made_not_to_start_watches_once_waited_for(cards):
    card, _ = cards.card(67, autostart=False)
    cards.clock.run_due()  # the budget has room: the launch goes
    assert card.launch_state == "started" and not card.watching  # launched, not watched
    with pytest.raises(TimeoutError):
        card.wait(0)  # wait() starts watching; the fake poller never answers
    assert card.watching and cards.pollers[-1].active


@pytest.mark.parametrize("waiting", ["wait", "wait_async"])
def test_over_sockets_a_queued_card_starts_its_run_once_and_watches_it(sim, waiting):
    workflow = sim.add_workflow(steps=[("Text to Image", 0.1)])
    with fast_client(sim) as client:
        card = QueuedRunWidget(workflow, {"prompt": "a cat"}, client=client,
                               poll_interval=0.05)
        try:
            done = card.wait(10) if waiting == "wait" else asyncio.run(card.wait_async(10))
            assert done.status == "completed"
            assert sim.run_ids(workflow) == [card.execution_id]
        finally:
            card.close()
    assert sim.request_count("run") == 1
