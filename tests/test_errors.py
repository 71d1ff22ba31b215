"""The exception hierarchy: what each error is a kind of, what it carries, and that its
message is safe to print."""

from __future__ import annotations

import pytest

from modelslab_widget.errors import (
    MAX_MESSAGE,
    APIError,
    AuthenticationError,
    ImageError,
    MissingKeyError,
    ModelsLabError,
    NetworkError,
    NotFoundError,
    OutputError,
    QueueFullError,
    RateLimitError,
    ResponseFormatError,
    RunAlreadyEndedError,
    ServerError,
    ValidationError,
)

TRANSIENT = (RateLimitError, QueueFullError, ServerError, ResponseFormatError, APIError,
             NetworkError)
PERMANENT = (AuthenticationError, MissingKeyError, NotFoundError, ValidationError, ImageError,
             OutputError, RunAlreadyEndedError)


@pytest.mark.parametrize("kind", TRANSIENT + PERMANENT)
def test_every_error_is_a_modelslab_error(kind):
    assert issubclass(kind, ModelsLabError)


@pytest.mark.parametrize("kind", TRANSIENT)
def test_errors_that_may_clear_are_transient(kind):
    assert kind("x").transient is True


@pytest.mark.parametrize("kind", PERMANENT)
def test_errors_that_will_not_clear_are_not(kind):
    assert kind("x").transient is False


def test_narrower_errors_are_caught_by_the_wider_ones():
    assert issubclass(MissingKeyError, AuthenticationError)
    assert issubclass(QueueFullError, RateLimitError)
    assert issubclass(OutputError, ImageError)


@pytest.mark.parametrize(("error", "status"), [
    (ModelsLabError("x"), None), (ModelsLabError("x", status_code=503), 503),
    (ValidationError("x"), 422), (RateLimitError("x"), 429), (QueueFullError("x"), 429),
    (RunAlreadyEndedError("x"), 400),
])
def test_status_codes_default_to_the_http_answer_each_error_stands_for(error, status):
    assert error.status_code == status


def test_rate_limits_carry_when_to_try_again():
    assert RateLimitError("x", retry_after=2.5).retry_after == 2.5
    assert RateLimitError("x").retry_after is None
    full = QueueFullError("Maximum 5 queued requests allowed.", retry_after=30, limit=5)
    assert (full.retry_after, full.limit) == (30, 5)


def test_a_validation_error_maps_fields_to_messages():
    error = ValidationError("x", errors={"prompt": ["required"]})
    assert error.errors == {"prompt": ["required"]}
    assert ValidationError("x").errors == {}


def test_messages_carry_no_escape_sequence_and_are_capped():
    error = ServerError("bad \x1b[2J\u202e" + "x" * (2 * MAX_MESSAGE))
    assert "\x1b" not in str(error) and "\u202e" not in str(error)
    assert len(str(error)) == MAX_MESSAGE and str(error).endswith("…")
    assert error.message == str(error)
