"""What the card and the board row say about watching itself (issue 14, items 1 to 3):
Retry after "No API key" re-reads the environment, a card that could not watch says so and
shows nothing that looks alive, and Stop leaves a paused badge, not a spinning one."""

from __future__ import annotations

import pytest

from modelslab_widget import MissingKeyError, WorkflowRunWidget, WorkflowsClient
from modelslab_widget.board import RunBoard
from modelslab_widget.errors import AuthenticationError, NotFoundError
from modelslab_widget.simulator import DEMO_WORKFLOW_ID

from .conftest import card_markup, wait_for

FAST = [("Text to Image", 0.2), ("Image Upscaler", 0.2)]


@pytest.fixture
def cards():
    made: list[WorkflowRunWidget] = []

    def build(*args, **kwargs):
        kwargs.setdefault("poll_interval", 0.05)
        card = WorkflowRunWidget(DEMO_WORKFLOW_ID, *args, **kwargs)
        made.append(card)
        return card

    yield build
    for card in made:
        card.close()


# -- 1. the card's advice works --------------------------------------------------------------


def test_no_key_says_so_and_retry_reads_the_key_set_afterwards(sim, cards, monkeypatch):
    monkeypatch.delenv("MODELSLAB_API_KEY", raising=False)
    eid = sim.add_run(steps=FAST)
    card = cards(eid, base_url=sim.base_url)
    with pytest.raises(MissingKeyError):
        card.wait(5)
    assert "No API key" in card.message_html and "rejected" not in card.message_html
    assert "MODELSLAB_API_KEY" in card.message_html and "Retry" in card.message_html
    assert sim.request_count("status", execution_id=eid) == 0  # nothing was sent
    assert list(card.buttons) == ["Retry"]

    monkeypatch.setenv("MODELSLAB_API_KEY", sim.api_key)  # what the panel says to do
    card.buttons["Retry"].click()
    assert card.wait(10).status == "completed"
    assert card.message_html == "" and "Completed" in card.header_html
    # the watch is now filed under the new key: another card of the run shares it
    again = cards(eid, base_url=sim.base_url)
    assert again.run_watch is card.run_watch


def test_a_rejected_key_from_the_environment_is_read_again_by_start(sim, cards, monkeypatch):
    monkeypatch.setenv("MODELSLAB_API_KEY", "sk-not-the-key")
    card = cards(sim.add_run(steps=FAST), base_url=sim.base_url)
    with pytest.raises(AuthenticationError) as raised:
        card.wait(5)
    assert not isinstance(raised.value, MissingKeyError)
    assert "The API key was rejected" in card.message_html
    monkeypatch.setenv("MODELSLAB_API_KEY", sim.api_key)
    card.start()
    assert card.wait(10).status == "completed"


def test_a_key_passed_in_code_is_never_replaced_by_the_environment(sim, monkeypatch):
    monkeypatch.setenv("MODELSLAB_API_KEY", sim.api_key)
    with WorkflowsClient("sk-passed", base_url=sim.base_url) as passed:
        account = passed.account
        assert passed.reload_key_from_environment() is False and passed.account == account
    monkeypatch.delenv("MODELSLAB_API_KEY")
    with WorkflowsClient(base_url=sim.base_url) as from_env:
        assert not from_env.has_api_key
        assert from_env.reload_key_from_environment() is False  # still none
        monkeypatch.setenv("MODELSLAB_API_KEY", f"  {sim.api_key}\n")
        assert from_env.reload_key_from_environment() is True and from_env.has_api_key
        assert sim.api_key not in repr(from_env)


# -- 2. a card that could not watch does not look alive ---------------------------------------


@pytest.mark.parametrize("cause", ["no key", "unknown run"])
def test_a_card_that_could_not_watch_says_so_and_hides_the_rest(sim, cards, monkeypatch, cause):
    if cause == "no key":
        monkeypatch.delenv("MODELSLAB_API_KEY", raising=False)
        card, error = cards(sim.add_run(steps=FAST), base_url=sim.base_url), MissingKeyError
    else:
        card, error = cards(424242, api_key=sim.api_key, base_url=sim.base_url), NotFoundError
    with pytest.raises(error):
        card.wait(5)
    shown = card.header_html + card_markup(card)  # header, bar, step rows
    assert "Could not watch" in shown and card.watch_state == "not watched"
    for alive in ("Unknown", "Waiting for the first steps", "Elapsed", "–", "mlw-spin",
                  "progressbar"):
        assert alive not in shown, alive
    assert f"Run {card.execution_id}" in shown and "workflow" in shown


def test_watching_that_fails_mid_run_keeps_the_last_status_without_the_spinner(sim, cards):
    eid = sim.add_run(steps=[("Long", 30)])
    card = cards(eid, api_key=sim.api_key, base_url=sim.base_url, max_failures=1)
    wait_for(lambda: card.status == "running")
    sim.api_key = "sk-rotated"  # the key stops working mid-run
    with pytest.raises(AuthenticationError):
        card.wait(5)
    assert "Running · not watched" in card.header_html and "mlw-spin" not in card.header_html


# -- 3. Stop shows a paused card and a paused board row ----------------------------------------


def test_stop_pauses_the_badge_and_resume_spins_it_again(sim, cards, client):
    card = cards(sim.add_run(steps=[("Long", 30)]), client=client)
    wait_for(lambda: "mlw-spin" in card.header_html)
    card.stop()
    assert card.watch_state == "paused"
    assert "Running · paused" in card.header_html and "mlw-spin" not in card.header_html
    assert list(card.buttons) == ["Resume"]
    card.buttons["Resume"].click()
    assert card.watch_state == ""
    assert "mlw-spin" in card.header_html and "paused" not in card.header_html


def test_a_card_past_its_time_limit_is_paused(sim, cards, client):
    card = cards(sim.add_run(steps=[("Long", 30)]), client=client, timeout=0.5)
    with pytest.raises(TimeoutError):
        card.wait(5)
    assert "Running · paused" in card.header_html and "mlw-spin" not in card.header_html
    assert "time limit" in card.message_html


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
        wait_for(lambda: "mlw-spin" in card.header_html)
        card.stop()
        assert "Running · paused" in card.header_html
        assert not row.paused and "mlw-spin" in row.view.value  # the row still polls
    finally:
        board.close()
