"""Expected step durations from runs that completed earlier in this kernel.

Once a workflow has completed, a later run of it can show time remaining and a progress bar
by expected time, and the poller can wait longer while a step is far from its expected end.
The history lives in memory; ``DurationHistory(path)`` also keeps it in a small JSON file
(``default_history_path()`` is under the user's cache folder). Imports only ``models``.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .models import RunSnapshot

MAX_SAMPLES = 50  # per step: enough for a stable median, small enough to keep in a file
# Step names and workflow IDs come from the server (and the file from the disk): without
# bounds a server that renames its steps every run grows the history, in memory and on disk,
# by whatever it sends. These bounds hold far more than a real account needs.
MAX_WORKFLOWS = 200  # the least recently recorded are forgotten first
MAX_STEPS = 50  # step names per workflow; the least recently recorded are forgotten first
MAX_NAME_LENGTH = 200  # a longer step name (or workflow ID) is not learnt
MAX_FILE_BYTES = 2_000_000  # a larger history file is ignored on read and never written


def default_history_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "modelslab-widget" / "durations.json"


@dataclass(frozen=True)
class Estimate:
    """What to expect of a running run."""

    remaining: float  # seconds until the run should complete (when overdue: at least)
    fraction: float  # 0..1 of the expected total time already done; below 1 while running
    next_change: float  # seconds until the current step should end (0 if overdue)
    #: A running step has taken longer than it usually does: ``remaining`` only counts the
    #: steps after it, and views say "taking longer than usual" rather than a time left.
    overdue: bool = False
    #: Seconds before which the run cannot end even if it goes ``MUCH_FASTER`` times faster
    #: than its quickest runs so far (0 once it could): only this far is it known to be far
    #: from its end, so only this long may polling be quieter than the interval.
    far_from_end: float = 0.0


class DurationHistory:
    """Per workflow, per step name: durations of completed steps (thread-safe)."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        # The file is written outside _lock (a slow disk must not hold up every widget's
        # estimate on the timer thread); _write_lock and the version keep writes in order.
        self._write_lock = threading.Lock()
        self._version = self._written = 0
        self._samples: dict[str, dict[str, list[float]]] = {}
        if self.path is not None:
            self._samples = _read(self.path)

    def record(self, snapshot: RunSnapshot, workflow_id: str | None = None) -> None:
        """Learn from a completed run; anything else is ignored.

        ``workflow_id`` is the workflow the caller asked about: prefer it to the one in the
        server's answer, so a server cannot file its runs under other or ever-new workflows.
        """
        key = workflow_id or snapshot.workflow_id
        if snapshot.status != "completed" or key is None or not _learnable(key):
            return
        durations = {s.name: s.duration for s in snapshot.steps
                     if s.duration is not None and _learnable(s.name)}
        if not durations:
            return
        with self._lock:
            _remember(self._samples, key, durations)
            if self.path is None:
                return
            self._version += 1
            version, text = self._version, _serialise(self._samples)
        with self._write_lock:
            if version > self._written:  # a newer state may already be on disk
                _write(self.path, text)
                self._written = version

    def expected(self, workflow_id: str) -> dict[str, float]:
        """Median duration of each step seen in completed runs of the workflow."""
        return self._statistics(workflow_id)[0]

    def earliest(self, workflow_id: str) -> dict[str, float]:
        """Shortest duration seen for each step (how soon a step could end)."""
        return self._statistics(workflow_id)[1]

    def _statistics(self, workflow_id: str) -> tuple[dict[str, float], dict[str, float]]:
        """(median, shortest) duration per step, read under one lock."""
        with self._lock:
            steps = {name: values for name, values in self._samples.get(workflow_id, {}).items()
                     if values}
            return ({name: statistics.median(values) for name, values in steps.items()},
                    {name: min(values) for name, values in steps.items()})

    def estimate(self, snapshot: RunSnapshot, now: datetime | None = None, *,
                 workflow_id: str | None = None) -> Estimate | None:
        """Time left for a running run, or None without history for every one of its steps.

        ``workflow_id``, the workflow asked about, is preferred as in ``record``."""
        key = workflow_id or snapshot.workflow_id
        if snapshot.is_terminal or not key or not snapshot.steps:
            return None
        expected, earliest = self._statistics(key)
        if any(step.name not in expected for step in snapshot.steps):
            return None
        return _estimate(snapshot, expected, earliest, now or datetime.now(timezone.utc))


# A running step counts as done in proportion to its usual time, up to this share: an
# overrunning step stops there (the bar waits for it) instead of filling up.
ON_TIME_SHARE = 0.9
MUCH_FASTER = 5.0  # a run may go this many times faster than its quickest so far
MAX_FRACTION = 0.99  # a run still running is never shown as done


def step_progress(spent: float, planned: float) -> float:
    """How much of a running step to count as done (0..ON_TIME_SHARE): ``spent / planned``,
    held at ON_TIME_SHARE once near or past its usual time, so it never shows as finished."""
    if planned <= 0:
        return ON_TIME_SHARE
    return min(ON_TIME_SHARE, spent / planned)


def _estimate(
    snapshot: RunSnapshot,
    expected: Mapping[str, float],
    earliest: Mapping[str, float],
    now: datetime,
) -> Estimate:
    total = sum(expected[step.name] for step in snapshot.steps)
    done = remaining = 0.0
    overdue = False
    next_change: float | None = None
    for step in snapshot.steps:
        planned = expected[step.name]
        if step.status == "completed":
            done += planned
        elif step.status == "running" and step.started_at is not None:
            spent = max(0.0, (now - step.started_at).total_seconds())
            overdue = overdue or spent > planned
            remaining += max(0.0, planned - spent)
            done += planned * step_progress(spent, planned)
            soonest = max(0.0, earliest[step.name] - spent)
            next_change = soonest if next_change is None else min(next_change, soonest)
        else:
            remaining += planned
    fraction = min(MAX_FRACTION, done / total) if total > 0 else 0.0
    return Estimate(
        remaining, fraction, next_change if next_change is not None else 0.0, overdue,
        _far_from_end(snapshot, earliest, now),
    )


def _far_from_end(snapshot: RunSnapshot, earliest: Mapping[str, float],
                  now: datetime) -> float:
    """Seconds until the run could end, were it ``MUCH_FASTER`` times quicker than ever."""
    begun = [step.started_at for step in snapshot.steps if step.started_at is not None]
    start = snapshot.started_at or (min(begun) if begun else None)
    spent = max(0.0, (now - start).total_seconds()) if start is not None else 0.0
    quickest = sum(earliest[step.name] for step in snapshot.steps)
    return max(0.0, quickest / MUCH_FASTER - spent)


def _learnable(name: str) -> bool:
    """A step name or workflow ID short enough to keep (longer ones are not learnt)."""
    return 0 < len(name) <= MAX_NAME_LENGTH


def _remember(samples: dict[str, dict[str, list[float]]], workflow_id: str,
              durations: Mapping[str, float]) -> None:
    """Add a run's durations, then forget the least recently recorded steps and workflows
    beyond the bounds. Dicts keep insertion order: re-inserting marks as most recent."""
    steps = samples.pop(workflow_id, {})
    for name, seconds in durations.items():
        steps[name] = [*steps.pop(name, []), seconds][-MAX_SAMPLES:]
    _keep_newest(steps, MAX_STEPS)
    samples[workflow_id] = steps
    _keep_newest(samples, MAX_WORKFLOWS)


def _keep_newest(items: dict[str, Any], limit: int) -> None:
    """Drop the oldest (first inserted) entries beyond ``limit``."""
    for old in list(items)[:max(0, len(items) - limit)]:
        del items[old]


def _serialise(samples: Mapping[str, Mapping[str, list[float]]]) -> str:
    """The history as JSON of at most MAX_FILE_BYTES (bytes, as the text is ASCII: json
    escapes the rest), leaving out the least recently recorded workflows that do not fit,
    so the file is never too big to be read back."""
    parts = [f"{json.dumps(workflow)}: {json.dumps(steps)}" for workflow, steps in samples.items()]
    size = 2 + sum(len(part) + 2 for part in parts)  # braces, and ", " between parts
    while parts and size > MAX_FILE_BYTES:
        size -= len(parts.pop(0)) + 2
    return "{" + ", ".join(parts) + "}"


def _read(path: Path) -> dict[str, dict[str, list[float]]]:
    """The saved history, or nothing when the file is missing, too big or not what we wrote."""
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_FILE_BYTES + 1)  # no more: the file may be anything
        if len(raw) > MAX_FILE_BYTES:
            return {}
        data = json.loads(raw.decode("utf-8"))
    except (OSError, ValueError, RecursionError):  # deeply nested JSON raises RecursionError
        return {}
    if not isinstance(data, dict):
        return {}
    clean: dict[str, dict[str, list[float]]] = {}
    for workflow, steps in data.items():
        if isinstance(steps, dict) and _learnable(str(workflow)):
            clean[str(workflow)] = _clean_steps(steps)
    _keep_newest(clean, MAX_WORKFLOWS)  # once: per workflow it would be quadratic
    return clean


def _clean_steps(steps: Mapping[Any, Any]) -> dict[str, list[float]]:
    """One workflow's steps as read from the file, within the bounds ``record`` keeps."""
    clean = {
        str(name): [float(v) for v in values if _is_seconds(v)][-MAX_SAMPLES:]
        for name, values in steps.items()
        if isinstance(values, list) and _learnable(str(name))
    }
    _keep_newest(clean, MAX_STEPS)
    return clean


def _is_seconds(value: Any) -> bool:
    """A number from the file that float() takes (a 400-digit integer would overflow)."""
    return (isinstance(value, float)
            or (isinstance(value, int) and not isinstance(value, bool) and abs(value) < 1e15))


def _write(path: Path, text: str) -> None:
    try:
        _private_folder(path.parent)
        # A fresh, exclusively created temporary file (mode 0600): a fixed name such as
        # durations.tmp could be planted as a link, and writing through it would overwrite
        # whatever it points to. os.replace renames over the file itself, never a link's
        # target, and is atomic: a crash never leaves half a file.
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".durations-",
                                             suffix=".tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                file.write(text)
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
    except OSError:
        pass  # the history is a convenience; never fail a run over it


def _private_folder(folder: Path) -> None:
    """Create the folder for the owner only (0700); one that exists is left as it is."""
    if folder.is_dir():
        return
    os.makedirs(folder, mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)  # whatever the umask: the history says which workflows ran


_shared = DurationHistory()


def shared_history() -> DurationHistory:
    """The kernel-wide history every widget learns from (in memory unless replaced)."""
    return _shared


def use_history_file(path: Path | str | None = None) -> DurationHistory:
    """Keep the kernel-wide history in a JSON file (default under the user's cache folder)."""
    global _shared
    _shared = DurationHistory(path if path is not None else default_history_path())
    return _shared
