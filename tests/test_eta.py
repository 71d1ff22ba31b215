"""Expected durations from earlier runs: estimates, the widget's ETA, and quieter polling."""

from __future__ import annotations

import json
import stat
from datetime import datetime, timedelta, timezone

import pytest

from modelslab_widget import WorkflowRunWidget
from modelslab_widget.eta import MUCH_FASTER, DurationHistory, use_history_file
from modelslab_widget.models import RunSnapshot, Step
from modelslab_widget.simulator import DEMO_WORKFLOW_ID, Fault

from .conftest import card_markup, wait_for

T0 = datetime(2024, 1, 15, 10, 30, tzinfo=timezone.utc)


def completed(a: float, b: float, workflow: str = "wf") -> RunSnapshot:
    end = T0 + timedelta(seconds=a + b)
    return RunSnapshot(
        status="completed",
        workflow_id=workflow,
        steps=(
            Step("Text to Image", "completed", T0, T0 + timedelta(seconds=a)),
            Step("Image Upscaler", "completed", T0 + timedelta(seconds=a), end),
        ),
    )


def running_second_step() -> RunSnapshot:
    return RunSnapshot(
        status="running",
        workflow_id="wf",
        steps=(
            Step("Text to Image", "completed", T0, T0 + timedelta(seconds=5)),
            Step("Image Upscaler", "running", T0 + timedelta(seconds=5)),
        ),
    )


def test_no_estimate_without_history():
    assert DurationHistory().estimate(running_second_step()) is None


def test_estimate_from_medians():
    history = DurationHistory()
    for a, b in [(4, 10), (5, 12), (6, 100)]:
        history.record(completed(a, b))
    now = T0 + timedelta(seconds=5 + 3)  # 3 s into the upscaler, whose median is 12 s
    estimate = history.estimate(running_second_step(), now=now)
    assert estimate.remaining == pytest.approx(9)
    assert estimate.fraction == pytest.approx((5 + 3) / (5 + 12))
    assert estimate.next_change == pytest.approx(10 - 3)  # the shortest upscaler took 10 s


def test_failed_runs_teach_nothing():
    history = DurationHistory()
    history.record(RunSnapshot(status="failed", workflow_id="wf", steps=completed(1, 1).steps))
    assert history.expected("wf") == {}


def test_history_file_round_trip_and_garbage(tmp_path):
    path = tmp_path / "cache" / "durations.json"
    use_history_file(path).record(completed(4, 10))
    assert json.loads(path.read_text())["wf"]["Image Upscaler"] == [10.0]
    assert DurationHistory(path).expected("wf") == {"Text to Image": 4.0, "Image Upscaler": 10.0}
    path.write_text("{not json")
    assert DurationHistory(path).expected("wf") == {}


def test_repeat_run_shows_eta_closer_than_a_step_count_guess(sim, client):
    steps = [("Text to Image", 0.3), ("Image Upscaler", 1.2)]
    first = WorkflowRunWidget(
        DEMO_WORKFLOW_ID, sim.add_run(steps=steps), client=client, poll_interval=0.05
    )
    first.wait(10)
    first.close()
    eid = sim.add_run(steps=steps)
    widget = WorkflowRunWidget(DEMO_WORKFLOW_ID, eid, client=client, poll_interval=0.05)
    try:
        wait_for(lambda: widget.snapshot and widget.snapshot.steps_done == 1, timeout=5)
        estimate = widget.estimate()
        state = sim.run_state(eid)
        started = datetime.fromisoformat(state["execution"]["started_at"].replace("Z", "+00:00"))
        elapsed = (datetime.now(timezone.utc) - started).total_seconds()
        truth = 1.5 - elapsed
        # What a step count alone suggests: the second step will take as long as the first.
        guess_by_steps = elapsed * 2 - elapsed
        assert abs(estimate.remaining - truth) < abs(guess_by_steps - truth)
        assert "left" in card_markup(widget)
        widget.wait(10)
    finally:
        widget.close()


def test_repeat_run_polls_less_at_equal_lag(sim, client):
    steps = [("Only step", 1.5)]

    def watch_once() -> tuple[int, float]:
        eid = sim.add_run(steps=steps)
        seen = {}
        widget = WorkflowRunWidget(
            DEMO_WORKFLOW_ID, eid, client=client, poll_interval=0.1, autostart=False
        )
        widget.observe(lambda c: seen.setdefault(c["new"], datetime.now(timezone.utc)), "status")
        widget.start()
        snapshot = widget.wait(10)
        widget.close()
        lag = (seen["completed"] - snapshot.completed_at).total_seconds()
        return sim.request_count("status", execution_id=eid), lag

    first_requests, first_lag = watch_once()
    second_requests, second_lag = watch_once()
    assert second_requests < first_requests / 2
    assert second_lag <= max(first_lag, 0.1) + 0.1  # the change is seen as soon as before


# -- a step that runs past its usual time ----------------------------------------------------


def three_steps(*, second_spent: float | None = None, last_spent: float | None = None):
    """A run of "Text to Image" (usual 1 s), "Upscale" (2.5 s) and "Save" (2 s), with either
    the second step running for ``second_spent`` s or the last one for ``last_spent`` s."""
    now = T0 + timedelta(seconds=100)
    statuses = ["completed", "running", "pending"]
    if last_spent is not None:
        statuses = ["completed", "completed", "running"]
    spent = second_spent if last_spent is None else last_spent
    steps = []
    for name, status in zip(["Text to Image", "Upscale", "Save"], statuses, strict=True):
        started = now - timedelta(seconds=spent) if status == "running" else T0
        ended = T0 + timedelta(seconds=1) if status == "completed" else None
        steps.append(Step(name, status, started if status != "pending" else None, ended))
    return RunSnapshot(status="running", workflow_id="wf", steps=tuple(steps)), now


def history_of_three() -> DurationHistory:
    history = DurationHistory()
    history.record(RunSnapshot(status="completed", workflow_id="wf", steps=(
        Step("Text to Image", "completed", T0, T0 + timedelta(seconds=1)),
        Step("Upscale", "completed", T0, T0 + timedelta(seconds=2.5)),
        Step("Save", "completed", T0, T0 + timedelta(seconds=2)),
    )))
    return history


@pytest.mark.parametrize("spent", [1.0, 2.4])
def test_a_step_within_its_usual_time_is_not_overdue(spent):
    snapshot, now = three_steps(second_spent=spent)
    estimate = history_of_three().estimate(snapshot, now=now)
    assert not estimate.overdue
    assert estimate.remaining == pytest.approx(2.5 - spent + 2)


@pytest.mark.parametrize("spent", [2.6, 5.9, 12.4])
def test_a_step_past_its_usual_time_is_overdue_and_the_bar_waits(spent):
    snapshot, now = three_steps(second_spent=spent)
    estimate = history_of_three().estimate(snapshot, now=now)
    assert estimate.overdue
    assert estimate.remaining == pytest.approx(2.0)  # only the step after it: a lower bound
    # the overrunning step counts as 90 % done, never more, however long it takes
    assert estimate.fraction == pytest.approx((1 + 0.9 * 2.5) / 5.5)


def test_an_overrunning_last_step_never_fills_the_bar():
    fractions = []
    for spent in (1.0, 1.9, 2.0, 2.1, 10.0, 1000.0):
        snapshot, now = three_steps(last_spent=spent)
        estimate = history_of_three().estimate(snapshot, now=now)
        fractions.append(estimate.fraction)
        assert estimate.overdue == (spent > 2.0)
        assert estimate.remaining == pytest.approx(max(0.0, 2.0 - spent))
    assert fractions == sorted(fractions)  # never moves back
    assert max(fractions) == pytest.approx((1 + 2.5 + 0.9 * 2) / 5.5)
    assert max(fractions) < 0.99


def test_step_progress_rises_and_stops_short_of_done():
    from modelslab_widget.eta import ON_TIME_SHARE, step_progress

    values = [step_progress(spent, 2.5) for spent in (0, 0.5, 1.0, 2.0, 2.5, 5.0, 50.0)]
    assert values == sorted(values) and values[0] == 0 and max(values) == ON_TIME_SHARE < 1
    assert step_progress(1.0, 0.0) == ON_TIME_SHARE  # a step that usually takes no time


def test_an_overrunning_card_says_taking_longer_and_no_time_left(sim, client):
    """Through the card: the first run teaches 0.2 s for the step; the second takes 3 s."""
    first = WorkflowRunWidget(
        DEMO_WORKFLOW_ID, sim.add_run(steps=[("Only step", 0.2)]), client=client,
        poll_interval=0.05,
    )
    first.wait(10)
    first.close()
    widget = WorkflowRunWidget(
        DEMO_WORKFLOW_ID, sim.add_run(steps=[("Only step", 3.0)]), client=client,
        poll_interval=0.05,
    )
    try:
        wait_for(lambda: (e := widget.estimate()) is not None and e.overdue, timeout=5)
        wait_for(lambda: "taking longer than usual" in widget.header_html, timeout=3)
        assert " left" not in widget.header_html
        width = int(widget.header_html.split('style="width:')[1].split("%")[0])
        assert width <= 90  # the bar waits; it does not claim the end is near
    finally:
        widget.close()


def test_a_run_is_far_from_its_end_only_until_a_much_faster_run_could_end():
    history = DurationHistory()
    history.record(completed(5, 10))
    fresh = RunSnapshot(status="running", workflow_id="wf", started_at=T0, steps=(
        Step("Text to Image", "running", T0), Step("Image Upscaler", "pending")))
    assert history.estimate(fresh, T0).far_from_end == pytest.approx(15 / MUCH_FASTER)
    later = T0 + timedelta(seconds=2)
    assert history.estimate(fresh, later).far_from_end == pytest.approx(15 / MUCH_FASTER - 2)
    assert history.estimate(running_second_step(), T0 + timedelta(seconds=6)).far_from_end == 0


# -- a hostile server cannot grow the history ------------------------------------------------


def renamed_run(run: int, *, steps: int = 1000, name_length: int = 9000,
                workflow: str = "forged") -> RunSnapshot:
    """A completed run whose step names (and workflow ID) a server changes every run."""
    return RunSnapshot(status="completed", workflow_id=f"{workflow}-{run}", steps=tuple(
        Step(f"run {run} step {i} ".ljust(name_length, "x"), "completed", T0,
             T0 + timedelta(seconds=1)) for i in range(steps)))


def test_step_renaming_runs_keep_the_history_file_small(tmp_path):
    path = tmp_path / "durations.json"
    for run in range(3):
        history = DurationHistory(path)  # each `watch` starts from the file and rewrites it
        history.record(renamed_run(run), workflow_id="wf")
        assert not path.exists() or path.stat().st_size < 2_000_000
        assert history.expected("wf") == {}  # 9,000-character names are not learnt
        assert history.expected(f"forged-{run}") == {}  # nor filed under the server's ID
    for run in range(3):  # names short enough to learn: only the latest 50 are kept
        history = DurationHistory(path)
        history.record(renamed_run(run, name_length=200), workflow_id="wf")
        assert path.stat().st_size < 2_000_000
    learnt = DurationHistory(path).expected("wf")
    assert len(learnt) == 50 and all(name.startswith("run 2 step 9") for name in learnt)


def test_many_workflows_keep_the_history_file_small_and_the_newest(tmp_path):
    path = tmp_path / "durations.json"
    history = DurationHistory(path)
    for run in range(250):
        history.record(renamed_run(run, steps=60, name_length=200), workflow_id=f"wf{run}")
    assert path.stat().st_size < 2_000_000
    assert history.expected("wf0") == {}  # the least recently recorded are forgotten
    assert len(history.expected("wf249")) == 50
    assert len(DurationHistory(path).expected("wf249")) == 50  # the newest is in the file


def test_an_oversized_history_file_is_ignored_and_replaced(tmp_path):
    path = tmp_path / "durations.json"
    path.write_text(json.dumps({"wf": {"Text to Image": [4.0]}, "pad": {"x" * 3_000_000: []}}))
    history = DurationHistory(path)  # no error
    assert history.expected("wf") == {}
    history.record(completed(5, 10))
    assert path.stat().st_size < 1000
    assert DurationHistory(path).expected("wf") == {"Text to Image": 5.0, "Image Upscaler": 10.0}


@pytest.mark.parametrize("content", ["[" * 1_000_000, '{"wf": {"a": [1' + "0" * 400 + "]}}"])
def test_a_hostile_history_file_is_ignored(tmp_path, content):
    path = tmp_path / "durations.json"
    path.write_text(content)
    assert DurationHistory(path).expected("wf") == {}  # no RecursionError, no OverflowError


def test_a_watch_files_durations_under_the_workflow_it_asked_for(sim, client,
                                                                 fresh_duration_history):
    """The server names another workflow in every answer: the watch learns for its own."""
    eid = sim.add_run(steps=[("Text to Image", 0.2), ("Image Upscaler", 0.2)])
    forged = []
    for elapsed in (0.1, 10.0):  # one answer while running, then completed for good
        body = sim.run_state(eid, elapsed=elapsed)
        body["execution"]["workflow_id"] = body["workflow_id"] = "forged"
        forged.append(body)
    sim.status_faults(eid, [Fault("json", body=forged[0], times=1),
                            Fault("json", body=forged[1], times=None)])
    widget = WorkflowRunWidget(DEMO_WORKFLOW_ID, eid, client=client, poll_interval=0.05)
    try:
        assert widget.wait(10).workflow_id == "forged"
    finally:
        widget.close()
    assert set(fresh_duration_history.expected(DEMO_WORKFLOW_ID)) == {"Text to Image",
                                                                    "Image Upscaler"}
    assert fresh_duration_history.expected("forged") == {}


# -- the history file cannot be redirected ---------------------------------------------------


def test_a_planted_temporary_link_is_not_followed(tmp_path):
    folder = tmp_path / "cache"
    folder.mkdir(mode=0o755)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (folder / "durations.tmp").symlink_to(victim)  # where an older version wrote first
    path = folder / "durations.json"
    DurationHistory(path).record(completed(4, 10))
    assert victim.read_text() == "precious"
    assert not path.is_symlink() and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert DurationHistory(path).expected("wf") == {"Text to Image": 4.0, "Image Upscaler": 10.0}
    assert sorted(p.name for p in folder.iterdir()) == ["durations.json", "durations.tmp"]


def test_a_history_folder_we_create_is_private(tmp_path):
    folder = tmp_path / "cache" / "modelslab-widget"
    DurationHistory(folder / "durations.json").record(completed(4, 10))
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "durations.json").stat().st_mode) == 0o600
