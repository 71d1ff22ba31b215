"""RunBoard against the simulator over loopback: many runs to their final states, counts,
expanding a row, following an existing widget, errors, and a clean close."""

from __future__ import annotations

import random
import time

import pytest
from ipywidgets.widgets.widget import _instances as live_widgets

from modelslab_widget import WorkflowRunWidget
from modelslab_widget.board import RunBoard, current_step
from modelslab_widget.errors import NotFoundError
from modelslab_widget.models import RunSnapshot, Step
from modelslab_widget.render import row_html
from modelslab_widget.simulator import DEMO_WORKFLOW_ID
from modelslab_widget.text import counts_text

from .conftest import wait_for

FAST = [("Text to Image", 0.2), ("Image Upscaler", 0.2)]


@pytest.fixture
def board(client):
    made = RunBoard(client=client, poll_interval=0.1, backoff_base=0.05)
    yield made
    made.close()


def test_fifty_runs_reach_their_final_states_with_correct_counts(sim, board):
    rng = random.Random(7)
    outcomes = ["completed"] * 25 + ["failed"] * 15 + ["cancelled"] * 10
    rng.shuffle(outcomes)
    updates: list[str] = []
    board.counts_view.observe(lambda change: updates.append(change["new"]), "value")
    started = time.monotonic()
    for outcome in outcomes:
        steps = [("Text to Image", rng.uniform(0.1, 0.3)), ("Upscale", rng.uniform(0.1, 0.3))]
        board.add(DEMO_WORKFLOW_ID, sim.add_run(steps=steps, outcome=outcome))
    assert board.wait(30) == {"completed": 25, "failed": 15, "cancelled": 10}
    took = time.monotonic() - started
    wait_for(lambda: "25 completed · 15 failed · 10 cancelled" in board.counts_html, 2)
    # The counts line is throttled: a few renders a second, not one per change.
    assert len(updates) <= 50 + took / 0.25 + 3
    for row, outcome in zip(board.runs, outcomes, strict=True):
        html = row.view.value
        assert f"Run {row.execution_id}" in html and row.status == outcome
        assert html.count("<img ") == (1 if outcome == "completed" else 0)
        if outcome == "failed":
            assert "Image generation failed" in html
    assert repr(board) == "RunBoard · 50 runs: 25 completed · 15 failed · 10 cancelled"


def test_row_shows_the_running_step_escaped_and_elapsed(sim, board):
    eid = sim.add_run(steps=[("<b>Gen</b>", 0.3), ("Upscale", 2.0)], images=2)
    row = board.add(DEMO_WORKFLOW_ID, eid)
    wait_for(lambda: current_step(row.snapshot) == "Upscale", timeout=5)
    html = row.view.value
    assert "◌" in html and "Running" in html and "Upscale" in html and " s</span>" in html
    assert board.counts() == {"running": 1}
    snapshot_html = row_html(status="running", execution_id="1", workflow_id="<w>",
                             step="<b>Gen</b>", elapsed=1.0)
    assert "&lt;b&gt;Gen&lt;/b&gt;" in snapshot_html and "<b>" not in snapshot_html
    assert 'title="workflow &lt;w&gt;"' in snapshot_html


def test_completed_row_gets_a_strip_of_tiny_thumbnails(sim, board):
    row = board.add(DEMO_WORKFLOW_ID, sim.add_run(steps=FAST, images=6))
    board.wait(10)
    html = row.view.value
    assert html.count('src="data:image/jpeg;base64,') == 4  # max_thumbnails
    assert len(row.thumbnails) == 4 and all(len(data) < 5000 for data, _ in row.thumbnails)
    assert len(html) < 25_000


def test_expanding_a_row_shows_the_full_widget_and_collapsing_closes_it(sim, board):
    before = len(live_widgets)
    row = board.add(DEMO_WORKFLOW_ID, sim.add_run(steps=FAST))
    other = board.add(DEMO_WORKFLOW_ID, sim.add_run(steps=FAST))
    after_rows = len(live_widgets)
    row.toggle.click()
    card = row.widget
    assert isinstance(card, WorkflowRunWidget) and row.expanded
    assert board.table_widgets == (row.box, card, other.box)
    assert row.toggle.icon == "chevron-down"
    assert card.wait(10).status == "completed" and card.thumbnails
    row.toggle.click()
    assert board.table_widgets == (row.box, other.box) and row.widget is None
    assert card.comm is None and len(live_widgets) == after_rows > before


def test_an_existing_widget_is_followed_and_left_open(sim, board, client):
    called = []
    widget = WorkflowRunWidget(DEMO_WORKFLOW_ID, sim.add_run(steps=FAST), client=client,
                               poll_interval=0.1, on_complete=called.append)
    try:
        row = board.add(widget)
        assert board.wait(10) == {"completed": 1}
        assert called == [widget] and row.view.value.count("<img ") == 1
        row.toggle.click()
        assert board.table_widgets == (row.box, widget)
        board.close()
        assert widget.comm is not None and widget.on_complete == called.append
        # A widget added after it finished shows its thumbnails at once.
        late = RunBoard(client=client)
        try:
            late_row = late.add(widget)
            assert late_row.settled and late_row.view.value.count("<img ") == 1
        finally:
            late.close()
    finally:
        widget.close()


def test_unknown_run_ends_its_watch_and_counts_as_error(sim, board):
    row = board.add(DEMO_WORKFLOW_ID, 999_999)
    assert board.wait(5) == {"error": 1}
    assert "Not watched" in row.view.value and "Not found" in row.view.value
    assert counts_text(board.counts()) == "1 not watched"


def test_wait_times_out_while_runs_go_on(sim, board):
    board.add(DEMO_WORKFLOW_ID, sim.add_run(steps=[("Long", 5.0)]))
    with pytest.raises(TimeoutError, match="1 run"):
        board.wait(0.3)


def test_bad_arguments_are_refused(board):
    with pytest.raises(ValueError):
        board.add("..", 1)
    with pytest.raises(TypeError):
        board.add(DEMO_WORKFLOW_ID)
    with pytest.raises(ValueError):
        board.add(DEMO_WORKFLOW_ID, 1, poll_interval=0)
    assert board.runs == [] and repr(board) == "RunBoard · 0 runs: empty"


def test_pure_helpers():
    steps = (Step("a", "completed"), Step("b", "running"), Step("c", "running"))
    assert current_step(RunSnapshot("running", steps=steps)) == "b"
    assert current_step(RunSnapshot("failed", steps=steps[:1])) == "a"
    assert current_step(RunSnapshot("pending")) == "" and current_step(None) == ""
    assert counts_text({"weird": 1, "failed": 2, "running": 3}) == "3 running · 2 failed · 1 weird"


def test_close_leaves_no_threads_and_no_widgets(no_leftover_threads, sim, client):
    before = len(live_widgets)
    board = RunBoard(client=client, poll_interval=0.1)
    rows = [board.add(DEMO_WORKFLOW_ID, sim.add_run(steps=[("Long", 5.0)])) for _ in range(10)]
    done = board.add(DEMO_WORKFLOW_ID, sim.add_run(steps=[("Quick", 0.1)]))
    rows[0].toggle.click()
    rows[3].expand()
    wait_for(lambda: done.settled and rows[0].widget.polls >= 1, timeout=5)
    board.close()
    assert len(live_widgets) == before
    assert rows[0].widget.comm is None


def test_an_open_card_shares_its_rows_watch_and_the_row_goes_on_after(sim, board):
    eid = sim.add_run(steps=[("Long", 1.0)], images=1)
    row = board.add(DEMO_WORKFLOW_ID, eid)
    row.expand()
    assert row.widget.run_watch is row.run_watch and row.widget.watching  # one request stream
    wait_for(lambda: row.status == "running")
    row.collapse()
    assert row.run_watch.polling  # the run goes on: the row's watch still polls
    assert board.wait(10) == {"completed": 1}
    assert row.view.value.count("<img ") == 1


def test_a_run_that_ends_while_its_card_is_open_settles_its_row(sim, board):
    row = board.add(DEMO_WORKFLOW_ID, sim.add_run(steps=[("Only", 0.3)], images=2))
    row.expand()
    assert board.wait(10) == {"completed": 1}
    assert row.view.value.count("<img ") == 2 and row.widget.thumbnails
    row.collapse()
    assert not row.run_watch.polling


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


def test_close_wakes_a_thread_blocked_in_wait(sim, board):
    import threading

    for _ in range(3):
        board.add(DEMO_WORKFLOW_ID, sim.add_run(steps=[("Slow step", 60.0)]))
    outcome: list[object] = []

    def waiter() -> None:
        try:
            outcome.append(board.wait(30))
        except Exception as error:  # what wait() raised, for the assert below
            outcome.append(error)

    thread = threading.Thread(target=waiter, name="test-board-waiter")
    thread.start()
    wait_for(lambda: all(row.snapshot is not None for row in board.runs))
    assert thread.is_alive()  # really blocked: the runs take a minute
    board.close()
    thread.join(5)
    assert not thread.is_alive(), "close() did not wake wait()"
    assert isinstance(outcome[0], RuntimeError) and "closed" in str(outcome[0])


def test_a_stopped_board_row_is_paused_and_resumes(sim, client):
    board = RunBoard(client=client, poll_interval=0.05)
    try:
        row = board.add(DEMO_WORKFLOW_ID, sim.add_run(steps=[("Long", 30)]))
        wait_for(lambda: "mlw-spin" in row.view.value)
        row.stop()
        assert row.paused and not row.run_watch.polling
        assert "Running · paused" in row.view.value and "mlw-spin" not in row.view.value
        row.start()
        assert not row.paused and "mlw-spin" in row.view.value
    finally:
        board.close()


def test_a_row_whose_card_is_stopped_still_watches_and_says_so(sim, client):
    board = RunBoard(client=client, poll_interval=0.05)
    try:
        row = board.add(DEMO_WORKFLOW_ID, sim.add_run(steps=[("Long", 30)]))
        card = row.expand()
        # both views are told of each answer, one after the other: wait until both show it
        wait_for(lambda: "mlw-spin" in card.header_html and "mlw-spin" in row.view.value)
        card.stop()
        assert "Running · paused" in card.header_html
        assert not row.paused and "mlw-spin" in row.view.value  # the row still polls
    finally:
        board.close()


def test_a_label_names_the_row_and_its_card(sim, board):
    row = board.add(DEMO_WORKFLOW_ID, sim.add_run(steps=FAST), label="prompt=<i>a fox</i>")
    board.wait(10)
    assert "prompt=&lt;i&gt;a fox&lt;/i&gt;" in row.view.value
    assert "prompt=<i>a fox</i>" in repr(row)
    card = row.expand()
    assert card.label == "prompt=<i>a fox</i>" and "a fox" in card.header_html


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"thumbnail_size": 0}, ValueError, "thumbnail_size"),
    ({"max_thumbnails": "two"}, ValueError, "max_thumbnails"),
    ({"poll_interval": -1}, ValueError, "poll_interval"),
    ({"poll_intervall": 1}, TypeError, "did you mean 'poll_interval'"),
])
def test_a_bad_argument_is_refused_by_name(client, kwargs, error, match):
    with pytest.raises(error, match=match):
        RunBoard(client=client, **kwargs)


def test_add_refuses_a_keyword_a_card_does_not_take(sim, board):
    with pytest.raises(TypeError, match=r"'lable'.*'label'"):
        board.add(DEMO_WORKFLOW_ID, sim.add_run(steps=FAST), lable="x")
    assert board.runs == []
