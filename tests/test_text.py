"""The words every view shares: durations, counts, the step window, and why watching stopped,
for the card and for the terminal."""

from __future__ import annotations

import pytest

from modelslab_widget.errors import (
    AuthenticationError,
    MissingKeyError,
    NetworkError,
    NotFoundError,
    QueueFullError,
    RateLimitError,
    ServerError,
    ValidationError,
)
from modelslab_widget.text import (
    counts_text,
    dropped_note,
    error_line,
    explain,
    format_seconds,
    kind_counts,
    lacks_api_path,
    pace_words,
    plural,
    step_window,
    unechoed,
)


@pytest.mark.parametrize(("seconds", "words"), [
    (None, "–"), (0, "0.0 s"), (4.25, "4.2 s"), (59.9, "59.9 s"), (125, "2 min 05 s"),
    (3599, "59 min 59 s"), (3720, "1 h 02 min"),
])
def test_durations_read_as_seconds_minutes_or_hours(seconds, words):
    assert format_seconds(seconds) == words


def test_plural_adds_an_s_except_for_one():
    assert [plural(n, "step") for n in (0, 1, 2)] == ["0 steps", "1 step", "2 steps"]


def test_short_step_lists_show_whole():
    assert step_window(["completed", "running"], 12) == (0, 2)


@pytest.mark.parametrize("rows", [1, 2, 3, 12, 24])
def test_the_window_holds_the_active_step_and_moves_in_jumps(rows):
    for count in range(1, 61):
        windows = []
        for active in range(count + 1):  # active == count: every step completed
            statuses = ["completed"] * active + ["running"] + ["pending"] * (count - active - 1)
            start, end = step_window(statuses[:count], rows)
            assert end - start == min(rows, count) and start >= 0 and end <= count
            assert start <= min(active, count - 1) < end
            if windows and windows[-1] != (start, end):
                assert start > windows[-1][0], "the window only moves forward"
            windows.append((start, end))
        moves = len(set(windows)) - 1
        assert moves <= count // max(1, rows // 2) + 1, (count, rows, sorted(set(windows)))


# -- why watching stopped --------------------------------------------------------------------


@pytest.mark.parametrize(("error", "title", "card_hint", "terminal_hint"), [
    (MissingKeyError("no key"), "No API key", "press Retry", "--api-key"),
    (AuthenticationError("The API key was rejected (HTTP 401): bad"),
     "The API key was rejected", "press Retry", "--api-key"),
    (NotFoundError("Not found (HTTP 404)."), "Run not found", "execution ID", "EXECUTION_ID"),
    (TimeoutError(), "Stopped watching: time limit reached", "timeout=", "--timeout"),
    (ServerError("boom"), "Could not get the run's status", "Press Retry", "try again later"),
    (ValueError("x"), "Watching stopped", "Press Retry", "Run the command again"),
])
def test_each_front_end_says_what_to_do_its_own_way(error, title, card_hint, terminal_hint):
    card, terminal = explain(error, "card"), explain(error, "terminal")
    assert card.title == terminal.title == title
    assert card_hint in card.hint and terminal_hint in terminal.hint
    assert "--" not in card.hint and "press" not in terminal.hint.lower()


def test_a_missing_key_is_not_called_rejected():
    assert "rejected" not in explain(MissingKeyError("no key")).title


def test_the_terminal_detail_does_not_repeat_the_title():
    error = AuthenticationError("The API key was rejected (HTTP 401): bad")
    assert explain(error, "card").text == "The API key was rejected (HTTP 401): bad"
    assert explain(error, "terminal").text == "(HTTP 401): bad"


def test_a_404_from_a_base_url_without_api_v1_says_how_to_fix_it():
    words = explain(NotFoundError("Not found (HTTP 404)."), "terminal",
                    base_url="https://user:pw@gw.example/v2?key=secret")
    assert words.title == "Not found: the base URL is likely missing /api/v1"
    assert "https://gw.example/v2/api/v1" in words.hint
    assert "secret" not in words.hint and "pw" not in words.hint
    fine = explain(NotFoundError("Not found"), base_url="https://gw.example/api/v1")
    assert fine.title == "Run not found"


@pytest.mark.parametrize(("error", "request_", "title", "hint"), [
    (NotFoundError("Not found"), "launch", "Workflow not found", "modelslab-widget workflows"),
    (NotFoundError("Not found"), "list", "Not found", "base URL"),
    (QueueFullError("Maximum 5 queued", retry_after=30, limit=5), "launch",
     "The run was not started: the account's queue is full", "runs has ended"),
    (RateLimitError("Rate limited (HTTP 429). Retry after 30 s.", retry_after=30), "launch",
     "The run was not started: rate limited", "Try again in 30.0 s."),
    (NetworkError("down"), "launch", "The launch request could not reach ModelsLab",
     "may have started"),
    (ServerError("boom"), "launch", "The launch request failed", "Nothing was re-sent"),
    (ServerError("boom"), "cancel", "The cancel request failed", "Try again later."),
    (NetworkError("down"), "list",
     "The request for the workflow list could not reach ModelsLab", "Try again later."),
    (RateLimitError("slow down", retry_after=12), "cancel", "The cancel request failed",
     "Try again in 12.0 s."),
])
def test_a_single_request_says_what_failed_and_whether_a_run_started(error, request_, title,
                                                                     hint):
    words = explain(error, "terminal", request=request_)
    assert words.title == title and hint in words.hint


def test_a_refused_launch_lists_each_field_once_in_the_terminal():
    error = ValidationError("Validation failed (HTTP 422): The prompt field is required.",
                            errors={"prompt": ["The prompt field is required."]})
    words = explain(error, "terminal", request="launch")
    assert words.text == "(HTTP 422: prompt: The prompt field is required)"
    assert "--param" in words.hint


def test_a_rate_limited_launch_leaves_the_wait_to_the_hint():
    error = RateLimitError("Rate limited (HTTP 429). Retry after 30 s.", retry_after=30)
    assert explain(error, "terminal", request="launch").text == "(HTTP 429)."
    assert "Retry after" in explain(error, "card", request="launch").text


def test_error_line_joins_title_detail_and_hint_on_one_clean_line():
    words = explain(NotFoundError("Not found (HTTP 404): x\x1b[2J."), "terminal")
    assert error_line(words) == (
        "run not found (HTTP 404): x?[2J. Check WORKFLOW_ID and EXECUTION_ID.")
    assert error_line(explain(ServerError("boom"), "terminal")).startswith(
        "could not get the run's status: boom. ")


@pytest.mark.parametrize(("title", "detail", "left"), [
    ("Run not found", "Not found (HTTP 404: x).", "(HTTP 404: x)."),
    ("Watching stopped", "Not found", "Not found"),
    ("The API key was rejected", "The API key was rejected: bad", "bad"),
    ("Run not found", "Not foundation (x)", "Not foundation (x)"),  # whole words only
])
def test_unechoed_drops_a_leading_phrase_the_title_already_says(title, detail, left):
    assert unechoed(title, detail) == left


@pytest.mark.parametrize(("url", "lacks"), [
    ("https://modelslab.com/api/v1", False), ("https://gw.example/api/v1/", False),
    ("https://gw.example", True), ("https://gw.example/v2", True), ("http://[::1/x", False),
])
def test_lacks_api_path(url, lacks):
    assert lacks_api_path(url) is lacks


# -- counts and notes ------------------------------------------------------------------------


def test_kind_counts_name_3d_models_files_and_audio_uncounted():
    kinds = ["image", "video", "audio", "audio", "model3d", "file", "image"]
    assert kind_counts(kinds) == "2 images, 1 video, 2 audio, 2 files"
    assert kind_counts([]) == ""


def test_dropped_note_says_what_an_oversized_answer_lost():
    assert dropped_note(0, 0) == ""
    note = dropped_note(1, 2000)
    assert note.startswith("The answer listed 1 more step and 2,000 more outputs than shown")


@pytest.mark.parametrize(("seconds", "every"), [(6, "6.0 s"), (18.4, "18 s"), (125, "2 min 05 s")])
def test_pace_words_round_to_what_a_reader_needs(seconds, every):
    assert pace_words(seconds) == f"Rate limited: checking every {every}"


def test_counts_text_keeps_a_stable_order_unknown_statuses_last():
    counts = {"weird": 1, "failed": 2, "running": 3, "error": 1, "completed": 0}
    assert counts_text(counts) == "3 running · 2 failed · 1 not watched · 1 weird"
