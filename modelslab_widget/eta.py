"""Expected step durations from runs that completed earlier in this kernel.

Once a workflow has completed, a later run of it can show time remaining and a progress bar
by expected time, and the poller can wait longer while a step is far from its expected end.
The history lives in memory; ``DurationHistory(path)`` also keeps it in a small JSON file
(``default_history_path()`` is under the user's cache folder). Imports only ``models``.
"""

from __future__ import annotations

import json
import os
import statistics
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .models import RunSnapshot

MAX_SAMPLES = 50  # per step: enough for a stable median, small enough to keep in a file


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

    def record(self, snapshot: RunSnapshot) -> None:
        """Learn from a completed run; anything else is ignored."""
        if snapshot.status != "completed" or not snapshot.workflow_id:
            return
        durations = {s.name: s.duration for s in snapshot.steps if s.duration is not None}
        if not durations:
            return
        with self._lock:
            steps = self._samples.setdefault(snapshot.workflow_id, {})
            for name, seconds in durations.items():
                steps[name] = [*steps.get(name, []), seconds][-MAX_SAMPLES:]
            if self.path is None:
                return
            self._version += 1
            version, text = self._version, json.dumps(self._samples)
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

    def estimate(self, snapshot: RunSnapshot, now: datetime | None = None) -> Estimate | None:
        """Time left for a running run, or None without history for every one of its steps."""
        if snapshot.is_terminal or not snapshot.workflow_id or not snapshot.steps:
            return None
        expected, earliest = self._statistics(snapshot.workflow_id)
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


def _read(path: Path) -> dict[str, dict[str, list[float]]]:
    """The saved history, or nothing when the file is missing or not what we wrote."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    clean: dict[str, dict[str, list[float]]] = {}
    for workflow, steps in data.items():
        if isinstance(steps, dict):
            clean[str(workflow)] = {
                str(name): [float(v) for v in values if isinstance(v, (int, float))][-MAX_SAMPLES:]
                for name, values in steps.items()
                if isinstance(values, list)
            }
    return clean


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(path)  # atomic: a crash never leaves half a file
    except OSError:
        pass  # the history is a convenience; never fail a run over it


_shared = DurationHistory()


def shared_history() -> DurationHistory:
    """The kernel-wide history every widget learns from (in memory unless replaced)."""
    return _shared


def use_history_file(path: Path | str | None = None) -> DurationHistory:
    """Keep the kernel-wide history in a JSON file (default under the user's cache folder)."""
    global _shared
    _shared = DurationHistory(path if path is not None else default_history_path())
    return _shared
