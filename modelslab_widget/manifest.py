"""A sweep's manifest: an append-only JSON-lines file, so a killed kernel loses nothing.

The first line names the sweep (workflow, base URL, every run's parameters, the grid's axes);
each later line is one event of one run, written *before* a launch is sent and again after its
answer. Reading folds the events into each run's last known state:

- ``sending`` with no answer after it: the launch may have started a run (ModelsLab has no
  idempotency key), so a resumed sweep shows it as *lost* and never re-sends it by itself;
- ``requeued``: a 429 answered it, nothing started, it may be sent again;
- ``launched`` (with the execution ID), ``refused`` (with the reason), ``lost``, ``ended``
  (with the status and duration), ``skipped`` (cancelled before it was sent).

No API key is ever written (only parameters and IDs). Each event is flushed and synced
before the request it announces goes out. Imports nothing of the package.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

VERSION = 1
MAX_LINE = 1_000_000  # characters: a longer line is not ours


@dataclass
class RunRecord:
    """What the manifest knows of one run."""

    params: dict[str, Any]
    state: str = "waiting"  # waiting, sending, requeued, launched, refused, lost, ended, skipped
    execution_id: int | str | None = None
    status: str | None = None  # the run's last status, once ended
    duration: float | None = None
    error: str | None = None


@dataclass
class ManifestData:
    workflow_id: str
    base_url: str | None
    runs: list[RunRecord]
    axes: dict[str, list[Any]] | None = None
    created: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def default_folder() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "modelslab-widget" / "sweeps"


def new_path() -> Path:
    """A fresh manifest path in the user's cache folder (its name sorts by time)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return default_folder() / f"sweep-{stamp}-{secrets.token_hex(3)}.jsonl"


class Manifest:
    """An open manifest, appended to by one sweep (thread-safe)."""

    def __init__(self, path: Path, file: TextIO) -> None:
        self.path = path
        self._file = file
        self._lock = threading.Lock()

    @classmethod
    def create(cls, path: Path | str | None, workflow_id: str, base_url: str,
               runs: Sequence[Mapping[str, Any]],
               axes: Mapping[str, Sequence[Any]] | None = None) -> Manifest:
        """Start a new manifest (refusing to overwrite one: it may be another sweep's)."""
        target = Path(path) if path is not None else new_path()
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        handle = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        manifest = cls(target, os.fdopen(handle, "w", encoding="utf-8"))
        manifest._write({
            "manifest": VERSION, "workflow_id": workflow_id, "base_url": base_url,
            "runs": [dict(params) for params in runs],
            "axes": {key: list(values) for key, values in axes.items()} if axes else None,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        })
        return manifest

    @classmethod
    def reopen(cls, path: Path | str) -> tuple[Manifest, ManifestData]:
        """Read a manifest and keep appending to it (a resumed sweep)."""
        target = Path(path)
        data = read(target)
        return cls(target, open(target, "a", encoding="utf-8")), data

    def event(self, run: int, state: str, **details: Any) -> None:
        """Record that run ``run`` is now in ``state`` (flushed and synced at once)."""
        self._write({"run": run, "state": state, **details})

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.close()

    def _write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":"), default=str)
        with self._lock:
            if self._file.closed:
                return
            self._file.write(line + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())


def read(path: Path | str) -> ManifestData:
    """The sweep a manifest describes, each run in its last recorded state. Raises
    ValueError for a file that is not a manifest; a torn last line (a kill mid-write) is
    skipped."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    if not lines:
        raise ValueError(f"{path} is empty: not a sweep manifest")
    head = _parse(lines[0])
    if not isinstance(head, dict) or head.get("manifest") != VERSION:
        raise ValueError(f"{path} is not a sweep manifest (version {VERSION})")
    runs = [RunRecord(dict(params)) for params in head.get("runs") or []
            if isinstance(params, dict)]
    for line in lines[1:]:
        event = _parse(line)
        if isinstance(event, dict):
            _apply(runs, event)
    return ManifestData(str(head.get("workflow_id", "")), head.get("base_url"), runs,
                        head.get("axes"), str(head.get("created", "")))


def _parse(line: str) -> Any:
    if len(line) > MAX_LINE:
        return None
    try:
        return json.loads(line)
    except ValueError:
        return None


def _apply(runs: list[RunRecord], event: dict[str, Any]) -> None:
    index, state = event.get("run"), event.get("state")
    if not isinstance(index, int) or not 0 <= index < len(runs) or not isinstance(state, str):
        return
    record = runs[index]
    record.state = state
    if "execution_id" in event:
        record.execution_id = event["execution_id"]
    for name in ("status", "duration", "error"):
        if name in event:
            setattr(record, name, event[name])
