"""Words for a run, shared by every view: icons, durations, counts, the step window, and the
explanation of why watching stopped. Making untrusted text safe to print is ``sanitize``'s.

Neutral ground: the card (``render``) and the terminal (``terminal``) both use these, and this
module imports neither of them, nor ipywidgets.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from .errors import (
    AuthenticationError,
    MissingKeyError,
    ModelsLabError,
    NetworkError,
    NotFoundError,
    QueueFullError,
    RateLimitError,
    ValidationError,
)
from .sanitize import clean, shown_url

ICONS = {
    "pending": "○",
    "running": "◌",
    "completed": "✓",
    "failed": "✕",
    "cancelled": "⊘",
    "unknown": "?",
}
MAX_ROWS = 12  # longer step lists show a window around the active step


def format_seconds(seconds: float | None) -> str:
    """``4.2 s``, ``2 min 05 s``, ``1 h 02 min``; an en dash when unknown."""
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def step_window(statuses: Sequence[str], rows: int = MAX_ROWS) -> tuple[int, int]:
    """[start, end) of the steps to show: all, or ``rows`` that hold the first unfinished
    one. Shared by the card and the terminal view.

    The window moves in jumps of half its size rather than one step at a time: each row is a
    view of its own, and a window that slid on every step would rewrite all of them. So the
    active step sits between about a third and five sixths of the way down (with 12 rows,
    rows 5 to 10), and always a few upcoming steps show below it."""
    if len(statuses) <= rows:
        return 0, len(statuses)
    active = next((i for i, s in enumerate(statuses) if s != "completed"), len(statuses) - 1)
    stride = max(1, rows // 2)
    start = max(0, active - rows // 3) // stride * stride
    start = min(start, len(statuses) - rows)
    return start, start + rows


# -- why watching stopped -----------------------------------------------------------------

@dataclass(frozen=True)
class Explanation:
    """A notice for people (why watching stopped, why a launch waits): a title, the detail,
    and what to do next."""

    title: str
    text: str
    hint: str


# What to do next, as each front end says it: the card has buttons, the terminal a command.
_HINTS = {
    "card": {
        "missing_key": "Set MODELSLAB_API_KEY (or pass api_key=...) and press Retry.",
        "auth": "Check the key: set MODELSLAB_API_KEY to a valid one (or pass api_key=...) "
                "and press Retry.",
        "not_found": "Check the workflow ID and the execution ID.",
        "timeout": "Press Resume to keep watching, or pass a larger timeout=.",
        "transient": "ModelsLab kept failing or could not be reached. Press Retry to try again.",
        "other": "Press Retry to try again.",
        "base_url": "Pass base_url=\"{fixed}\" (not {url}) and press Retry.",
    },
    "terminal": {
        "missing_key": "Set MODELSLAB_API_KEY (or pass --api-key) and run the command again.",
        "auth": "Set MODELSLAB_API_KEY (or pass --api-key) and run the command again.",
        "not_found": "Check WORKFLOW_ID and EXECUTION_ID.",
        "timeout": "Run the command again to keep watching, or pass a larger --timeout.",
        "transient": "ModelsLab kept failing or could not be reached; try again later.",
        "other": "Run the command again to try again.",
        "base_url": "Set MODELSLAB_BASE_URL (or pass --base-url) to {fixed}, not {url}.",
    },
}


# What a single request was for, as a command names it (``explain``'s ``request``); the
# default, "status", is watching: polls whose failures are retried.
_REQUEST_NOUNS = {"cancel": "cancel request", "list": "request for the workflow list",
                  "launch": "launch request"}
# Hints that do not depend on the front end (no button, no option is named).
_REQUEST_HINTS = {
    "launch_not_found": "Check WORKFLOW_ID (modelslab-widget workflows lists yours) and "
                        "that the workflow's API is enabled.",
    "list_not_found": "Check the base URL.",
    "launch_refused": "Check WORKFLOW_ID and the parameters.",
    "launch_unsure": "Nothing was re-sent; if ModelsLab received the request before it "
                     "failed, the run may have started.",
    "queue_full": "Try again when one of the account's runs has ended.",
    "later": "Try again later.",
}


def explain(error: BaseException, where: str = "card", *, request: str = "status",
            base_url: str | None = None) -> Explanation:
    """Why watching stopped (or, with ``request`` "cancel", "list" or "launch", why that one
    request failed), in words for the card (``where="card"``) or the terminal. With
    ``base_url``, a 404 from a base URL whose path does not end in ``/api/v1`` says so.

    In the terminal the title and the detail are printed on one line, so the detail is given
    without a leading phrase the title already says ("The API key was rejected (HTTP 401:
    ...)" becomes "(HTTP 401: ...)")."""
    title, hint = _title_and_hint(error, _HINTS[where], request, base_url)
    detail = str(error) or type(error).__name__
    if where == "terminal":
        if isinstance(error, ValidationError):
            detail = _field_detail(error)
        elif isinstance(error, RateLimitError) and request == "launch":
            detail = detail.split(" Retry after ", 1)[0]  # the hint says when
        detail = unechoed(title, detail)
    return Explanation(title, detail, hint)


def _title_and_hint(error: BaseException, hints: dict[str, str], request: str,
                    base_url: str | None) -> tuple[str, str]:
    noun = _REQUEST_NOUNS.get(request)
    if isinstance(error, MissingKeyError):  # nothing was sent, so nothing was rejected
        return "No API key", hints["missing_key"]
    if isinstance(error, AuthenticationError):
        return "The API key was rejected", hints["auth"]
    if isinstance(error, NotFoundError):
        if base_url is not None and lacks_api_path(base_url):
            shown = shown_url(base_url)
            return ("Not found: the base URL is likely missing /api/v1",
                    hints["base_url"].format(url=shown, fixed=f"{shown.rstrip('/')}/api/v1"))
        if request == "launch":
            return "Workflow not found", _REQUEST_HINTS["launch_not_found"]
        if request == "list":
            return "Not found", _REQUEST_HINTS["list_not_found"]
        return "Run not found", hints["not_found"]
    if isinstance(error, TimeoutError):
        return "Stopped watching: time limit reached", hints["timeout"]
    if request == "launch":
        return _launch_words(error)
    if isinstance(error, ModelsLabError) and error.transient:
        if noun is None:
            return "Could not get the run's status", hints["transient"]
        if isinstance(error, NetworkError):
            return f"The {noun} could not reach ModelsLab", _REQUEST_HINTS["later"]
        return f"The {noun} failed", _retry_hint(error)
    if noun is not None:
        return f"The {noun} failed", hints["other"]
    return "Watching stopped", hints["other"]


def _launch_words(error: BaseException) -> tuple[str, str]:
    """A launch that failed other than by key or workflow: whether the run started."""
    if isinstance(error, QueueFullError):
        return "The run was not started: the account's queue is full", _REQUEST_HINTS[
            "queue_full"]
    if isinstance(error, RateLimitError):
        return "The run was not started: rate limited", _retry_hint(error)
    if isinstance(error, ValidationError):
        return ("The run was not started: ModelsLab refused its parameters",
                "Fix them (--param or --params-file) and run the command again.")
    if isinstance(error, NetworkError):
        return "The launch request could not reach ModelsLab", _REQUEST_HINTS["launch_unsure"]
    if isinstance(error, ModelsLabError) and error.transient:
        return "The launch request failed", _REQUEST_HINTS["launch_unsure"]
    return "The run was not started", _REQUEST_HINTS["launch_refused"]


def _retry_hint(error: BaseException) -> str:
    wait = getattr(error, "retry_after", None)
    if isinstance(wait, (int, float)):
        return f"Try again in {format_seconds(wait)}."
    return _REQUEST_HINTS["later"]


def _field_detail(error: ValidationError) -> str:
    """A 422's field messages, each once: ``(HTTP 422: prompt: The prompt field is ...)``."""
    fields = "; ".join(f"{name}: {' '.join(messages)}" for name, messages in error.errors.items())
    if not fields:  # no field list: the server's message, after the client's own words
        fields = str(error).split("(HTTP 422): ", 1)[-1]
    return f"(HTTP 422: {fields.rstrip(' .')})"


def unechoed(title: str, detail: str) -> str:
    """``detail`` without its leading phrase (two words or more) when ``title`` already says
    it, as a whole-word match in any case: "Not found (HTTP 404: x)." under "Run not found"
    is "(HTTP 404: x).". The rest is returned without the punctuation that joined them."""
    words = detail.split(" ")
    low = title.lower()
    for count in range(min(len(words), len(title.split())), 1, -1):
        phrase = " ".join(words[:count])
        core = phrase.rstrip(".:;,").lower()
        if core and re.search(rf"(?<!\w){re.escape(core)}(?!\w)", low):
            return detail[len(phrase):].lstrip(" .:;,")
    return detail


def lacks_api_path(base_url: str) -> bool:
    """True when the base URL's path does not end in ``/api/v1`` (where every call lives)."""
    try:
        path = urlsplit(base_url).path
    except ValueError:
        return False
    return not path.rstrip("/").endswith("/api/v1")


def error_line(words: Explanation) -> str:
    """One line for the terminal: the title lower-cased at its start, the detail (joined by
    a colon, or a space before a parenthesis), the hint."""
    title = words.title[:1].lower() + words.title[1:]
    detail = clean(words.text)
    if not detail:
        head = f"{title}."
    elif detail.startswith("("):
        head = f"{title} {detail}"
    else:
        head = f"{title}: {detail}"
    if not head.endswith((".", "!", "?")):
        head += "."
    return f"{head} {words.hint}".strip()


# What the text forms call each output kind (a 3D model is a "file": it has no preview).
KIND_WORDS = {"image": "image", "video": "video", "audio": "audio", "model3d": "file",
              "file": "file"}


def kind_counts(kinds: Sequence[str]) -> str:
    """``1 image, 1 video, 1 audio, 1 file`` for a run's outputs (OutputKind values)."""
    counts: dict[str, int] = {}
    for kind in kinds:
        word = KIND_WORDS.get(str(getattr(kind, "value", kind)), "file")
        counts[word] = counts.get(word, 0) + 1
    order = ("image", "video", "audio", "file")
    return ", ".join(
        f"{counts[word]} audio" if word == "audio" else plural(counts[word], word)
        for word in order if counts.get(word)
    )


def dropped_note(steps: int, outputs: int) -> str:
    """Words for what an oversized answer listed beyond the caps ("" when nothing was cut)."""
    parts = [f"{count:,} more {word}{'' if count == 1 else 's'}"
             for count, word in ((steps, "step"), (outputs, "output")) if count > 0]
    if not parts:
        return ""
    return (f"The answer listed {' and '.join(parts)} than shown: only the first ones are "
            "kept, so an answer this big cannot slow down or fill up the kernel.")


def pace_words(seconds: float) -> str:
    """What a card says while a workflow's rate limit sets the pace of its checks:
    "Rate limited: checking every 18 s"."""
    if seconds < 10:
        every = f"{seconds:.1f} s"
    elif seconds < 60:
        every = f"{round(seconds)} s"
    else:
        every = format_seconds(seconds)
    return f"Rate limited: checking every {every}"


# -- the board's counts line ------------------------------------------------------------------

WATCH_ERROR = "error"  # a board row whose watching ended on an error (not a run status)
COUNT_ORDER = ("pending", "running", "completed", "failed", "cancelled", "unknown", WATCH_ERROR)


def counts_text(counts: dict[str, int]) -> str:
    """``3 running · 5 completed · 1 failed`` in a stable order, unknown statuses last."""
    order = [s for s in COUNT_ORDER if counts.get(s)]
    order += sorted(s for s in counts if s not in COUNT_ORDER and counts[s])
    return " · ".join(f"{counts[s]} {'not watched' if s == WATCH_ERROR else s}" for s in order)


def starts_words(seconds: float | None) -> str:
    """When a launch waiting its turn is sent: "starts in 4 s"."""
    if seconds is None:
        return "starts when one of the account's runs ends"
    return f"starts in {math.ceil(seconds)} s"


def queued_words(seconds: float | None, held_by_account: bool,
                 account_limit: int | None) -> Explanation:
    """The notice of a launch waiting its turn: for the account's queue (``held_by_account``)
    or for the workflow's rate limit."""
    title = f"Queued here: {starts_words(seconds)}"
    if held_by_account:
        size = f"{account_limit} queued runs" if account_limit else "its queued runs"
        why = (f"The account's queue is full (ModelsLab allows {size} at a time); the run is "
               "sent when one of them ends.")
    else:
        why = "The workflow's rate limit is reached; the run is sent as soon as it allows."
    return Explanation(title, why, "Remove it to not start it.")
