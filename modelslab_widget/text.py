"""Words for a run, shared by every view: icons, durations, counts, the step window, text
made safe to print, and the explanation of why watching stopped.

Neutral ground: the card (``render``) and the terminal (``terminal``) both use these, and this
module imports neither of them, nor ipywidgets.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import AuthenticationError, MissingKeyError, ModelsLabError, NotFoundError

ICONS = {
    "pending": "○",
    "running": "◌",
    "completed": "✓",
    "failed": "✕",
    "cancelled": "⊘",
    "unknown": "?",
}
MAX_ROWS = 12  # longer step lists show a window around the active step
# Control, format, private-use, unassigned and line/paragraph separator characters.
_UNPRINTABLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


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


def shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def clean(text: object, limit: int = 500) -> str:
    """Server text made safe to print: no escape sequences or other control characters,
    whitespace runs as single spaces, at most ``limit`` characters."""
    chars = []
    for char in str(text)[: limit + 1]:
        if char in "\t\n\r\v\f":
            chars.append(" ")
        elif unicodedata.category(char) in _UNPRINTABLE:
            chars.append("?")
        else:
            chars.append(char)
    result = re.sub(r" {2,}", " ", "".join(chars)).strip()
    return result if len(result) <= limit else result[: limit - 1] + "…"


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
    """Why watching stopped, for people: a title, the detail, and what to do next."""

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
    },
    "terminal": {
        "missing_key": "Set MODELSLAB_API_KEY (or pass --api-key) and run the command again.",
        "auth": "Set MODELSLAB_API_KEY (or pass --api-key) and run the command again.",
        "not_found": "Check WORKFLOW_ID and EXECUTION_ID.",
        "timeout": "Run the command again to keep watching, or pass a larger --timeout.",
        "transient": "ModelsLab kept failing or could not be reached; try again later.",
        "other": "Run the command again to try again.",
    },
}


def explain(error: BaseException, where: str = "card") -> Explanation:
    """Why watching stopped, in words for the card (``where="card"``) or the terminal."""
    hints = _HINTS[where]
    detail = str(error) or type(error).__name__
    if isinstance(error, MissingKeyError):  # nothing was sent, so nothing was rejected
        return Explanation("No API key", detail, hints["missing_key"])
    if isinstance(error, AuthenticationError):
        return Explanation("The API key was rejected", detail, hints["auth"])
    if isinstance(error, NotFoundError):
        return Explanation("Run not found", detail, hints["not_found"])
    if isinstance(error, TimeoutError):
        return Explanation("Stopped watching: time limit reached", detail, hints["timeout"])
    if isinstance(error, ModelsLabError) and error.transient:
        return Explanation("Could not get the run's status", detail, hints["transient"])
    return Explanation("Watching stopped", detail, hints["other"])


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
