"""The terminal view of a run: the widget's step list as plain text.

On a TTY the list is redrawn in place (cursor up, clear line) on every change and once a
second for the live timers; anywhere else each change becomes one time-stamped line, which
reads well in a log. Snapshots become lines through pure functions (``frame_lines``,
``transition_lines``) so the rendering is tested without a terminal; ``TerminalWatcher``
is a view of the run's ``RunWatch`` (``runwatch.py``), drawing from the main thread. Every
string from the API is stripped of control characters before it reaches the terminal, so a
step name cannot move the cursor or retitle the window. Nothing here imports ipywidgets.
"""

from __future__ import annotations

import contextlib
import os
import queue
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import IO, Any

from .client import WorkflowsClient
from .models import RunSnapshot, Step, format_timestamp
from .poller import PollPolicy
from .registry import watch_for
from .runstate import ENDS, Retrying, RunState
from .runwatch import RunWatch
from .sanitize import clean
from .text import ICONS, dropped_note, format_seconds, plural, step_window

CURSOR_UP = "\x1b[{}A"
CLEAR_LINE = "\x1b[2K"
CLEAR_BELOW = "\x1b[J"
HIDE_CURSOR, SHOW_CURSOR = "\x1b[?25l", "\x1b[?25h"
MAX_NAME_WIDTH = 40
WAKE_INTERVAL = 0.5  # seconds the main thread may sleep in one wait (see TerminalWatcher.run)
MAX_STEP_ROWS = 24  # longer step lists show a window around the active step, as the card does


# ---------------------------------------------------------------- pure text helpers

def _char_width(char: str) -> int:
    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def fit(line: str, width: int) -> str:
    """``line`` cut to ``width`` terminal columns (with an ellipsis), so it never wraps:
    a wrapped line would throw off the cursor-up count of the next redraw."""
    if width <= 0 or sum(map(_char_width, line)) <= width:
        return line
    used, kept = 0, []
    for char in line:
        used += _char_width(char)
        if used > width - 1:
            break
        kept.append(char)
    return "".join(kept) + "…"


def header_line(
    snapshot: RunSnapshot | None,
    execution_id: object,
    now: datetime,
    first_seen: datetime | None = None,
    remaining: float | None = None,
    overdue: bool = False,
) -> str:
    """``Run 12345 · running · 1/2 steps · 3.2 s`` (plus the outputs once completed)."""
    run = f"Run {clean(execution_id, 200)}"
    if snapshot is None:
        return f"{run} · waiting for the first answer…"
    parts = [run, clean(snapshot.status, 64), f"{snapshot.steps_done}/{len(snapshot.steps)} steps"]
    elapsed = snapshot.elapsed(now, first_seen)
    if elapsed is not None:
        parts.append(format_seconds(elapsed))
    if overdue and not snapshot.is_terminal:  # never claim the end is near when it is late
        parts.append("taking longer than usual")
    elif remaining is not None and not snapshot.is_terminal:
        parts.append(f"~{format_seconds(remaining)} left")
    if snapshot.status == "completed":
        parts.append(plural(len(snapshot.outputs), "output"))
    return " · ".join(parts)


def step_line(step: Step, now: datetime, name_width: int) -> str:
    """``  ✓ Text to Image   completed  2.5 s``: icon, name, status word, duration or timer."""
    symbol = ICONS.get(step.status, ICONS["unknown"])
    name = clean(step.name, MAX_NAME_WIDTH)
    seconds = step.seconds(now)
    timing = format_seconds(seconds) if seconds is not None else ""
    status = clean(step.status, 64).ljust(9)
    return f"  {symbol} {name.ljust(name_width)}  {status}  {timing}".rstrip()


def frame_lines(
    snapshot: RunSnapshot | None,
    execution_id: object,
    *,
    now: datetime,
    first_seen: datetime | None = None,
    note: str = "",
    max_steps: int = MAX_STEP_ROWS,
    remaining: float | None = None,
    overdue: bool = False,
) -> list[str]:
    """The live view: the header, one line per step (a window of them for long runs), and a
    notice (such as a retry) when there is one."""
    lines = [header_line(snapshot, execution_id, now, first_seen, remaining, overdue)]
    steps = snapshot.steps if snapshot is not None else ()
    if snapshot is not None and not steps and not snapshot.is_terminal:
        lines.append("  waiting for the first steps…")
    start, end = step_window([step.status for step in steps], max(1, max_steps))
    width = max((len(clean(s.name, MAX_NAME_WIDTH)) for s in steps[start:end]), default=0)
    if start:
        lines.append(f"  … {plural(start, 'earlier step')}")
    lines += [step_line(step, now, width) for step in steps[start:end]]
    if end < len(steps):
        lines.append(f"  … {plural(len(steps) - end, 'more step')}")
    if note:
        lines.append(f"  ! {clean(note)}")
    return lines


def _step_change(step: Step) -> str:
    name, status = clean(step.name, MAX_NAME_WIDTH), clean(step.status, 64)
    if step.duration is not None and step.status == "completed":
        return f"{name}: completed in {format_seconds(step.duration)}"
    if step.duration is not None and step.is_terminal:
        return f"{name}: {status} after {format_seconds(step.duration)}"
    return f"{name}: {status}"


def _run_end(snapshot: RunSnapshot) -> str:
    elapsed = snapshot.elapsed()
    if snapshot.status == "completed":
        took = f" in {format_seconds(elapsed)}" if elapsed is not None else ""
        return f"run completed{took}, {plural(len(snapshot.outputs), 'output')}"
    took = f" after {format_seconds(elapsed)}" if elapsed is not None else ""
    return f"run {snapshot.status}{took}"


def transition_lines(previous: RunSnapshot | None, current: RunSnapshot) -> list[str]:
    """What changed from ``previous`` to ``current``, one line per change: the run's status,
    each step whose status changed (steps matched by position), and the run's end last."""
    lines = []
    run_changed = previous is None or previous.status != current.status
    if run_changed and not current.is_terminal:
        now = "" if previous is None else "now "
        lines.append(f"run is {now}{clean(current.status, 64)}")
    before = previous.steps if previous is not None else ()
    for index, step in enumerate(current.steps):
        if index >= len(before) or before[index].status != step.status:
            lines.append(_step_change(step))
    if run_changed and current.is_terminal:
        lines.append(_run_end(current))
    return lines


def snapshot_dict(snapshot: RunSnapshot) -> dict[str, Any]:
    """The JSON form of a snapshot (``--json``)."""
    return {
        "status": snapshot.status,
        "execution_id": snapshot.execution_id,
        "workflow_id": snapshot.workflow_id,
        "started_at": format_timestamp(snapshot.started_at),
        "completed_at": format_timestamp(snapshot.completed_at),
        "execution_time": snapshot.execution_time,
        "steps": [step.to_dict() for step in snapshot.steps],
        "outputs": list(snapshot.outputs),
        "error": snapshot.error,
    }


# ---------------------------------------------------------------- views

def terminal_size(stream: IO[str]) -> tuple[int, int]:
    """(columns, lines) of the terminal behind ``stream``; 80x24 when it cannot say."""
    try:
        size = os.get_terminal_size(stream.fileno())
        columns, lines = size.columns, size.lines
    except (AttributeError, OSError, ValueError):
        columns, lines = 0, 0
    return columns if columns > 0 else 80, lines if lines > 0 else 24


def is_live_terminal(stream: IO[str]) -> bool:
    """Redraw in place only on a real terminal that understands cursor movement."""
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        return False
    return tty and os.environ.get("TERM", "") != "dumb"


class LiveView:
    """Redraws the frame in place: cursor up over the last frame, then each line cleared and
    rewritten, then everything below cleared (in case the new frame is shorter)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self._drawn: list[str] = []
        self._cursor_hidden = False

    def draw(self, lines: list[str]) -> None:
        columns, rows = terminal_size(self.stream)
        lines = [fit(line, columns - 1) for line in lines[: max(1, rows - 1)]]
        if lines == self._drawn:
            return
        out = [] if self._cursor_hidden else [HIDE_CURSOR]
        if self._drawn:
            out.append("\r" + CURSOR_UP.format(len(self._drawn)))
        out += [f"{CLEAR_LINE}{line}\n" for line in lines]
        out.append(CLEAR_BELOW)
        self.stream.write("".join(out))
        self.stream.flush()
        self._cursor_hidden = True
        self._drawn = lines

    def close(self) -> None:
        if self._cursor_hidden:
            self.stream.write(SHOW_CURSOR)
            self.stream.flush()
            self._cursor_hidden = False


class LineView:
    """One time-stamped line per change, for logs and pipes."""

    def __init__(self, stream: IO[str], clock: Callable[[], str] | None = None) -> None:
        self.stream = stream
        self._clock = clock or (lambda: time.strftime("%H:%M:%S"))
        self._previous: RunSnapshot | None = None

    def show(self, snapshot: RunSnapshot) -> None:
        lines = transition_lines(self._previous, snapshot)
        self._previous = snapshot
        if lines:
            stamp = self._clock()
            self.stream.write("".join(f"{stamp} {line}\n" for line in lines))
            self.stream.flush()


@dataclass(frozen=True)
class WatchResult:
    """How watching ended: the last snapshot seen, and the error that stopped watching before
    the run ended (None when it ended)."""

    snapshot: RunSnapshot | None
    error: BaseException | None = None


class TerminalWatcher:
    """Shows one run on ``stream`` until it ends: a view of the run's shared ``RunWatch``.
    ``run()`` blocks the calling (main) thread, so Ctrl-C reaches it, and detaches from the
    watch however it exits.

    The watch calls ``show`` on background threads; that only enqueues, and all
    writing happens on the thread that called ``run()``.
    """

    def __init__(
        self,
        client: WorkflowsClient,
        workflow_id: str,
        execution_id: int | str,
        *,
        stream: IO[str],
        notes: IO[str] | None = None,
        policy: PollPolicy | None = None,
        live: bool | None = None,
        tick: float = 1.0,
    ) -> None:
        self.execution_id = execution_id
        self.stream = stream
        self.notes = notes or stream
        self.live = is_live_terminal(stream) if live is None else live
        self.tick = tick
        self.policy = policy or PollPolicy()
        self.snapshot: RunSnapshot | None = None
        self._watch = watch_for(client, workflow_id, execution_id)
        self._note = ""
        self._cut_noted = ""
        self._states: queue.Queue[RunState] = queue.Queue()
        self._live_view = LiveView(stream) if self.live else None
        self._line_view = None if self.live else LineView(stream)

    @property
    def run_watch(self) -> RunWatch:
        return self._watch

    # -- the watch tells us (background threads): hand everything to run()

    def show(self, state: RunState) -> None:
        self._states.put(state)

    # -- main thread

    def run(self) -> WatchResult:
        self._watch.attach(self, self.policy)
        self._watch.want(self)
        try:
            if self._watch.snapshot is not None:
                self._show(self._watch.snapshot)
            self._redraw()
            next_tick = time.monotonic() + self.tick
            drawn = self._watch.state_for(self)
            while not self._watch.done_for(self) or not self._states.empty():
                # Never block without a timeout: Ctrl-C is acted on only when this thread
                # runs Python again, and the kernel may hand the signal to a worker thread.
                wait = max(0.0, next_tick - time.monotonic()) if self.live else WAKE_INTERVAL
                try:
                    state = self._states.get(timeout=wait)
                except queue.Empty:
                    self._redraw()  # timers move once a second, without extra requests
                    next_tick = time.monotonic() + self.tick
                    continue
                if not state.newer_than(drawn):
                    continue
                if state.snapshot is not None and state.snapshot is not drawn.snapshot:
                    self._show(state.snapshot)
                if state.retrying is not None and state.retrying is not drawn.retrying:
                    self._retrying(state.retrying)
                drawn = state
                if state.phase in ENDS or state.timed_out:
                    break
            return self._result()
        finally:
            self._watch.detach(self)
            if self._live_view is not None:
                with contextlib.suppress(OSError, ValueError):
                    self._live_view.close()

    def _result(self) -> WatchResult:
        snapshot = self._watch.snapshot
        if snapshot is not None and snapshot is not self.snapshot:
            self._show(snapshot)
        return WatchResult(snapshot, self._watch.state_for(self).trouble)

    def _show(self, snapshot: RunSnapshot) -> None:
        self.snapshot = snapshot
        self._note = ""  # a good answer ends any "retrying" notice
        if self._line_view is not None:
            self._line_view.show(snapshot)
            cut = dropped_note(snapshot.dropped_steps, snapshot.dropped_outputs)
            if cut and cut != self._cut_noted:  # once, not on every poll
                self.notes.write(f"{time.strftime('%H:%M:%S')} {cut}\n")
                self.notes.flush()
                self._cut_noted = cut
        self._redraw()

    def _retrying(self, retrying: Retrying) -> None:
        self._note = (
            f"trouble reaching ModelsLab (attempt {retrying.failures} of "
            f"{retrying.max_failures}), retrying in {retrying.retry_in:.0f} s: "
            f"{clean(retrying.error, 200)}"
        )
        if self._live_view is None:
            self.notes.write(f"{time.strftime('%H:%M:%S')} {self._note}\n")
            self.notes.flush()
        self._redraw()

    def _redraw(self) -> None:
        if self._live_view is None:
            return
        _, rows = terminal_size(self.stream)
        estimate = self._watch.estimate()
        lines = frame_lines(
            self.snapshot, self.execution_id, now=datetime.now(timezone.utc),
            first_seen=self._watch.first_seen, note=self._note,
            max_steps=min(MAX_STEP_ROWS, rows - 4),
            remaining=estimate.remaining if estimate is not None else None,
            overdue=estimate is not None and estimate.overdue,
        )
        if self.snapshot is not None:
            cut = dropped_note(self.snapshot.dropped_steps, self.snapshot.dropped_outputs)
            lines += [f"  ! {cut}"] if cut else []
        self._live_view.draw(lines)
