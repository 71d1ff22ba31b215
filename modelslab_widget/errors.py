"""The exception hierarchy: every error the package raises about the API is a ModelsLabError."""

from __future__ import annotations

from .sanitize import clean

MAX_MESSAGE = 5000  # characters of a message kept (server text is quoted in them)


class ModelsLabError(Exception):
    """Base class of every error about talking to the ModelsLab API."""

    #: True when trying again later may succeed (rate limits, 5xx, network, garbage bodies).
    transient: bool = False

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        # Messages carry server text; wherever they are printed (a terminal, a log, a
        # traceback) no escape sequence, C1 control or bidi override may act.
        message = clean(message, MAX_MESSAGE)
        super().__init__(message)
        self.message = message
        self.status_code = status_code


class AuthenticationError(ModelsLabError):
    """401/403: the API key is missing, wrong, or lacks access."""


class MissingKeyError(AuthenticationError):
    """No API key at all: nothing was sent. A subclass of AuthenticationError, so code that
    catches a rejected key catches this too; views word it differently (nothing was rejected)."""


class NotFoundError(ModelsLabError):
    """404: the workflow or run does not exist, or the API is not enabled for it."""


class ValidationError(ModelsLabError):
    """422: the server rejected the parameters; ``errors`` maps each field to its messages."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = 422,
        errors: dict[str, list[str]] | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code)
        self.errors: dict[str, list[str]] = errors or {}


class RateLimitError(ModelsLabError):
    """429: too many requests; ``retry_after`` is how many seconds to wait (None if not said)."""

    transient = True

    def __init__(
        self, message: str, *, status_code: int | None = 429, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status_code=status_code)
        self.retry_after = retry_after


class QueueFullError(RateLimitError):
    """429 for the account's queue: it already has as many queued runs as its plan allows
    (``limit``: 5, 10 or 15; None when the message does not say). A launch only: it clears
    when one of the account's runs ends, and it says nothing about a workflow's rate."""

    def __init__(self, message: str, *, status_code: int | None = 429,
                 retry_after: float | None = None, limit: int | None = None) -> None:
        super().__init__(message, status_code=status_code, retry_after=retry_after)
        self.limit = limit


class ServerError(ModelsLabError):
    """5xx that persisted through retries, or the server could not be reached at all."""

    transient = True


class ResponseFormatError(ModelsLabError):
    """The body is not JSON, or not the documented shape."""

    transient = True


class APIError(ModelsLabError):
    """The server answered ``{"status": "error", "message": ...}``."""

    transient = True


class NetworkError(ModelsLabError):
    """The server could not be reached, or the connection broke or timed out (after retries)."""

    transient = True


class ImageError(ModelsLabError):
    """An output image could not be fetched or is not a usable image (bad scheme, too big, ...)."""


class RunAlreadyEndedError(ModelsLabError):
    """400 from the cancel endpoint: the run has already completed, failed or been cancelled,
    so there is nothing left to cancel. Permanent: asking again gives the same answer."""

    def __init__(self, message: str, *, status_code: int | None = 400) -> None:
        super().__init__(message, status_code=status_code)


class OutputError(ImageError):
    """An output file could not be fetched, or its bytes are not what its kind says (a
    subclass of ImageError so that code catching download failures of images keeps working)."""
