"""The request budget per workflow (issue 10), over real sockets against the simulator's rate
limiter, in a compressed minute: polling untouched before the first 429; after it, never more
than the limit in any window across every watch, launch and cancel; runs shown completed soon
after they end; launches wait their turn, none lost, none doubled; 429s are never failures."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator

import pytest

from modelslab_widget import WorkflowRunWidget, budget
from modelslab_widget.budget import FIRST, POLL, WorkflowBudget, acquire_slot, budget_for
from modelslab_widget.launcher import WorkflowLauncher
from modelslab_widget.queued import QueuedRunWidget
from modelslab_widget.simulator import DEMO_WORKFLOW_ID, Fault, Simulator

from .conftest import wait_for

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
    plan = WorkflowBudget("w", window=0.5)
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
    assert not poll.granted and not launch.granted and launch.starts_in() > 0.2
    wait_for(lambda: len(granted) == 2, timeout=5)
    assert granted == ["launch", "poll"]  # the launch asked later, and went first


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


# -- over real sockets ----------------------------------------------------------------------


def test_before_any_429_polling_keeps_the_users_interval(window, rsim, cards):
    workflow = rsim.add_workflow(rate_limit=1000, steps=steps_of(1.5))
    widget = cards(workflow, rsim.add_run(workflow, steps=steps_of(1.5)), poll_interval=0.05)
    widget.wait(10)
    times, refused = attempts(rsim, workflow)
    assert not refused and not budget_for(cards.client.account, workflow).limited
    assert len(times) >= 15  # 1.5 s at 0.05 s: about 30 polls, nothing held back
    assert widget.message_html == ""


def test_after_the_first_429_no_window_holds_more_than_the_limit(window, rsim, cards):
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
    slot = acquire_slot(account, workflow, FIRST, timeout=10)
    assert slot is not None
    cards.client.cancel_run(workflow, extra)
    slot.done()
    launched = budget_for(account, workflow).acquire(FIRST, timeout=10)
    assert launched is not None
    launched_id = cards.client.run_workflow(workflow, {"prompt": "a lighthouse"})
    launched.done()
    widgets.append(cards(workflow, launched_id, poll_interval=0.05))
    for widget in widgets:
        assert widget.wait(30).status == "completed"
    times, refused = attempts(rsim, workflow)
    # Requests already on their way when the first 429 was answered are not the budget's.
    assert most_in_a_window(times, refused[0] + 0.3, WINDOW) <= limit
    assert len(refused) <= 3
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
