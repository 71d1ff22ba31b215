"""QueuedRunWidget: the card of a launch that waits for its workflow's rate limit, or for
room in the account's queue.

When the workflow's request budget (``budget.py``) has no room, or the account's queue is
full (``account.py``: its launches wait in line until one of its runs ends),
``WorkflowLauncher.launch()`` does not fail: it returns this card at once. The launch itself
is a ``PendingRun`` (``pending.py``: the slot, the POST sent again only after a 429, never
after any other failure); the card shows it. It says "Queued here: starts in N s" (no
execution ID yet) while the launch waits, why the run was not started when the server
refused it, and once the server answers with an execution ID it takes the run's watch and
watches the run like any other card.

Threads: the card and every widget in it are made on the main thread, in ``__init__``; the
pending run tells the card of each change from a pool thread, which then only switches the
card to the run's shared watch and sets values. Until then the card holds a placeholder
watch that never polls.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from . import render
from .client import WorkflowsClient
from .errors import NetworkError
from .pending import LaunchPhase, PendingRun
from .poller import PollPolicy
from .runwatch import RunWatch
from .scheduler import Job, Scheduler
from .widget import DEFAULT_SLOTS, WorkflowRunWidget, close_with_parts

QUEUED = "queued"  # waiting in the account's line or for a slot of the workflow's budget
SENDING = "sending"  # the POST is on its way
STARTED = "started"  # the server started the run: the card watches it
FAILED = "failed"  # the server refused (not a 429), or its answer was lost: not sent again
REMOVED = "removed"  # the user removed the queued launch: nothing was sent

#: the card's ``launch_state`` for each phase of its pending run
LAUNCH_STATES = {
    LaunchPhase.NEW: QUEUED, LaunchPhase.HELD: QUEUED, LaunchPhase.WAITING: QUEUED,
    LaunchPhase.SENDING: SENDING, LaunchPhase.LAUNCHED: STARTED,
    LaunchPhase.REFUSED: FAILED, LaunchPhase.LOST: FAILED, LaunchPhase.CANCELLED: REMOVED,
}

REFRESH = 1.0  # seconds between updates of "starts in N s"


class QueuedRunWidget(WorkflowRunWidget):
    """A run's card made before its launch was sent (see the module docstring).

    ``launch_state`` is one of "queued", "sending", "started", "failed", "removed";
    ``execution_id`` is None until "started"; ``pending`` is the launch. ``wait()`` waits for
    the launch, then for the run; it raises the launch's error when the server refused it.
    ``remove()`` drops a launch that is still queued. Given ``pending`` (a launch already
    started, e.g. by the launcher) the card shows it; else it makes and starts its own.
    """

    def __init__(
        self,
        workflow_id: str,
        params: dict[str, Any],
        *,
        client: WorkflowsClient,
        scheduler: Scheduler | None = None,
        on_state: Callable[[QueuedRunWidget], Any] | None = None,
        autostart: bool = True,
        pending: PendingRun | None = None,
        **kwargs: Any,
    ) -> None:
        self.launch_state = QUEUED
        self.launch_error: Exception | None = None
        self._on_state = on_state
        self._autostart = autostart
        self._policy = PollPolicy.from_options(kwargs)
        self._max_thumbnails = kwargs.get("max_thumbnails", DEFAULT_SLOTS)
        self._decided = threading.Event()  # set when the launch started, failed or was removed
        self._refresh_job: Job | None = None
        self._closing = False
        # A placeholder watch of its own (unique ID, never polled) until the run exists.
        super().__init__(workflow_id, f"queued-{secrets.token_hex(8)}", client=client,
                         scheduler=scheduler, autostart=False, **kwargs)
        self.execution_id = None  # type: ignore[assignment]
        self.remove_button = widgets.Button(
            description="Remove", icon="trash", tooltip="Do not start this run",
            layout=widgets.Layout(width="auto"),
        )
        self.remove_button.on_click(lambda _: self.remove())
        self._controls.children = (self.remove_button,)
        self.pending = pending or PendingRun(client, self.workflow_id, params,
                                             runtime=kwargs.get("runtime"), scheduler=scheduler)
        self._stop_listening = self.pending.listen(self._on_pending)
        if pending is None:
            self.pending.start()
        self._on_pending(self.pending)  # what it did before the card listened

    # -- public API ---------------------------------------------------------------------

    @property
    def queued(self) -> bool:
        """The launch has not been sent yet (or is on its way)."""
        return self.launch_state in (QUEUED, SENDING)

    def starts_in(self) -> float | None:
        """Estimated seconds until the launch is sent (0 once it is; None while it waits for
        one of the account's runs to end)."""
        return self.pending.starts_in() if self.launch_state == QUEUED else 0.0

    def remove(self) -> bool:
        """Drop the launch if it is still queued; False when it was already sent."""
        # The pending run tells the card (``_on_pending``) before cancel() returns.
        return self.launch_state == QUEUED and self.pending.cancel()

    def start(self) -> None:
        if self.launch_state == STARTED:
            super().start()

    def stop(self) -> None:
        if self.launch_state == STARTED:
            super().stop()

    def wait(self, timeout: float | None = None) -> Any:
        """Wait for the launch to be sent and then for the run (see ``WorkflowRunWidget``);
        raises the error that kept the run from starting, or RuntimeError if it was removed."""
        began = time.monotonic()
        if not self._decided.wait(timeout):
            raise TimeoutError(f"the queued run did not start within {timeout:g} s")
        if self.launch_error is not None:
            raise self.launch_error
        if self.launch_state != STARTED:
            raise RuntimeError("the queued run was removed before it started")
        left = None if timeout is None else max(0.0, timeout - (time.monotonic() - began))
        return super().wait(left)

    def close(self) -> None:
        with self._lock:
            self._closing = True
        self.remove()
        self._stop_listening()
        self._cancel_refresh()
        close_with_parts(self.remove_button)
        super().close()
        self._decided.set()

    def __repr__(self) -> str:
        if self.launch_state == STARTED:
            return super().__repr__()
        if self.launch_state == QUEUED:
            return f"Run queued here · {_starts_text(self.starts_in())}"
        if self.launch_state == SENDING:
            return "Run queued here · starting"
        if self.launch_error is not None:
            return f"Run not started · error: {str(self.launch_error)[:200]}"
        return "Run removed before it started"

    # -- what the pending run tells (any thread) ------------------------------------------

    def _on_pending(self, pending: PendingRun) -> None:
        """Show the launch's phase; once it ended (started, refused, lost, removed), for good."""
        phase = pending.phase
        state = LAUNCH_STATES[phase]
        with self._lock:
            if self.launch_state not in (QUEUED, SENDING) or (
                    state == self.launch_state == SENDING):
                return  # decided already (a late or repeated word)
            self.launch_state = state
            if state == QUEUED:
                self._show_queued()
            elif state == SENDING:
                self._show_message("note", "Starting the run…")
        if state == QUEUED:
            self._schedule_refresh()
        elif state == STARTED:
            assert pending.watch is not None and pending.execution_id is not None
            self._bind(pending.watch, pending.execution_id)
            return
        elif state == FAILED:
            self._fail(pending.error or RuntimeError("the run was not started"))
            return
        elif state == REMOVED:
            self._removed()
            return
        self._state_changed()

    def _bind(self, watch: RunWatch, execution_id: int | str) -> None:
        """The run exists: leave the placeholder for the run's shared watch, and watch."""
        with self._lock:
            placeholder = self._watch
            self._cancel_refresh()
            self.execution_id = execution_id
            if not self._closing:
                self._watch = watch
                watch.attach(self, self._policy, thumbnail_size=self.thumbnail_size,
                             max_thumbnails=self._max_thumbnails)
                self._controls.children = (self._stop_button, self._resume_button)
                self._message.value = ""
        if not self._closing:
            placeholder.detach(self)
        self._decide()
        if self._closing:
            return
        if self._autostart:
            self.start()
        else:
            self._sync()

    def _fail(self, error: Exception) -> None:
        with self._lock:
            self.launch_error = error
            self._cancel_refresh()
            if isinstance(error, NetworkError):
                self._show_message("error", "No answer from ModelsLab", str(error),
                                   "The run may have started anyway: check before launching "
                                   "again.")
            else:
                self._show_message("error", "The run was not started", str(error))
            self._controls.children = ()
            self.error = str(error)
        self._decide()

    def _removed(self) -> None:
        with self._lock:
            self._cancel_refresh()
            if not self._closing:
                self._show_message("note", "Removed: this run was not started.")
                self._controls.children = ()
        self._decide()

    def _decide(self) -> None:
        self._decided.set()
        self._state_changed()

    def _state_changed(self) -> None:
        if self._on_state is not None:
            self._on_state(self)

    # -- "starts in N s" ------------------------------------------------------------------

    def _show_queued(self) -> None:
        """Header and message of a launch waiting its turn (lock held)."""
        self._status_view.value = render.summary(
            status="queued_here", workflow_id=self.workflow_id, execution_id="not started yet",
            elapsed=None, finished=False, steps=[],
        )
        starts = _starts_text(self.starts_in())
        if self.pending.phase is LaunchPhase.HELD:
            limit = self.pending.account_limit
            size = f"{limit} queued runs" if limit else "its queued runs"
            self._show_message(
                "note", f"Queued here: {starts}",
                f"The account's queue is full (ModelsLab allows {size} at a time); the run "
                "is sent when one of them ends.", "Remove it to not start it.")
            return
        self._show_message(
            "note", f"Queued here: {starts}",
            "The workflow's rate limit is reached; the run is sent as soon as it allows.",
            "Remove it to not start it.",
        )

    def _schedule_refresh(self) -> None:
        with self._lock:
            self._cancel_refresh()
            if self.launch_state == QUEUED and not self._closing:
                self._refresh_job = self._watch.scheduler.call_later(
                    REFRESH, self._refresh, in_pool=False)

    def _refresh(self) -> None:
        with self._lock:
            self._refresh_job = None
            if self.launch_state != QUEUED or self._closing:
                return
            self._show_queued()
        self._schedule_refresh()

    def _cancel_refresh(self) -> None:
        job, self._refresh_job = self._refresh_job, None
        if job is not None:
            job.cancel()


def _starts_text(seconds: float | None) -> str:
    if seconds is None:
        return "starts when one of the account's runs ends"
    return f"starts in {math.ceil(seconds)} s"
