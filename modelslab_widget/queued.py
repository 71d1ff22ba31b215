"""QueuedRunWidget: the card of a launch that waits for its workflow's rate limit, or for
room in the account's queue.

When the workflow's request budget (``budget.py``) has no room, or the account's queue is
full (``account.py``: its launches wait in line until one of its runs ends),
``WorkflowLauncher.launch()`` does not fail: it returns this card at once. The card says
"Queued here: starts in N s" (no execution ID yet), sends ``POST .../run`` when the budget
grants the launch a slot, sends it again after a 429 (a 429 means no run was started, so
this cannot start two; a queue-full 429 puts it back at the front of the account's line)
and never after any other failure (the card then shows why the run was not started). Once
the server answers with an execution ID the card takes it and watches the run like any
other card.

Threads: the card and every widget in it are made on the main thread, in ``__init__``; the
POST runs on a pool thread, which then only switches the card to the run's shared watch and
sets values. Until then the card holds a placeholder watch that never polls.
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
from .account import account_queue
from .budget import FIRST, Slot, budget_for
from .client import WorkflowsClient
from .errors import ModelsLabError, NetworkError, QueueFullError, RateLimitError
from .poller import PollPolicy
from .registry import watch_for
from .runwatch import RunWatch
from .scheduler import Job, Scheduler
from .widget import DEFAULT_SLOTS, WorkflowRunWidget, close_with_parts

QUEUED = "queued"  # waiting for a slot of the workflow's budget
SENDING = "sending"  # the POST is on its way
STARTED = "started"  # the server started the run: the card watches it
FAILED = "failed"  # the server refused (not a 429): not sent again
REMOVED = "removed"  # the user removed the queued launch: nothing was sent

REFRESH = 1.0  # seconds between updates of "starts in N s"


class QueuedRunWidget(WorkflowRunWidget):
    """A run's card made before its launch was sent (see the module docstring).

    ``launch_state`` is one of "queued", "sending", "started", "failed", "removed";
    ``execution_id`` is None until "started". ``wait()`` waits for the launch, then for the
    run; it raises the launch's error when the server refused it. ``remove()`` drops a
    launch that is still queued.
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
        **kwargs: Any,
    ) -> None:
        self.launch_state = QUEUED
        self.launch_error: ModelsLabError | None = None
        self._params = dict(params)
        self._on_state = on_state
        self._autostart = autostart
        self._policy = PollPolicy(
            kwargs.get("poll_interval", PollPolicy.interval), kwargs.get("timeout"),
            kwargs.get("max_failures", PollPolicy.max_failures),
            kwargs.get("backoff_base", PollPolicy.backoff_base),
        )
        self._max_thumbnails = kwargs.get("max_thumbnails", DEFAULT_SLOTS)
        self._decided = threading.Event()  # set when the launch started, failed or was removed
        self._slot: Slot | None = None
        self._held = False  # waiting in the account's line (its queue is full)
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
        self._budget = budget_for(client.account, self.workflow_id)
        self._account = account_queue(client.account)
        self._queue()

    # -- public API ---------------------------------------------------------------------

    @property
    def queued(self) -> bool:
        """The launch has not been sent yet (or is on its way)."""
        return self.launch_state in (QUEUED, SENDING)

    def starts_in(self) -> float | None:
        """Estimated seconds until the launch is sent (0 once it is; None while it waits for
        one of the account's runs to end)."""
        if self._held:
            return self._account.opens_in()
        slot = self._slot
        return slot.starts_in() if slot is not None and self.launch_state == QUEUED else 0.0

    def remove(self) -> bool:
        """Drop the launch if it is still queued; False when it was already sent."""
        with self._lock:
            if self.launch_state != QUEUED:
                return False
            self.launch_state = REMOVED
            slot, self._slot = self._slot, None
            if self._held:
                self._account.remove(self._released)
            self._show_message("note", "Removed: this run was not started.")
            self._controls.children = ()
        if slot is not None:
            slot.cancel()
        self._decide()
        return True

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

    # -- the launch (pool and timer threads) --------------------------------------------

    def _queue(self, refused: QueueFullError | None = None) -> None:
        """Wait in the account's line while its queue is full (at the front when this launch
        was just refused for it), then ask the workflow's budget for a launch slot."""
        if refused is not None:
            self._account.refused(self._released, refused)
            held = True
        else:
            held = not self._account.enter(self._released)
        if not held:
            self._ask_budget()
            return
        with self._lock:
            self._held = True
            self._show_queued()
        self._schedule_refresh()

    def _released(self) -> None:
        """The account's turn came (a run of it ended, or its wait passed)."""
        with self._lock:
            self._held = False
            still_queued = self.launch_state == QUEUED and not self._closing
        if still_queued:
            self._ask_budget()
        else:
            self._account.pass_turn()

    def _ask_budget(self) -> None:
        """Ask the workflow's budget for a slot (first in line) and say so."""
        slot = self._budget.request(FIRST, on_grant=self._granted)
        with self._lock:
            self._slot = slot
            self._show_queued()
        if slot.granted:
            self._granted(slot)
        else:
            self._schedule_refresh()

    def _granted(self, slot: Slot) -> None:
        """On the budget's timer thread: hand the POST to the pool."""
        self._watch.scheduler.submit(self._send, slot)

    def _send(self, slot: Slot) -> None:
        with self._lock:
            if self.launch_state != QUEUED or self._slot is not slot:
                slot.cancel()  # removed or closed meanwhile: nothing is sent
                self._account.pass_turn()
                return
            self.launch_state = SENDING
            self._show_message("note", "Starting the run…")
        self._state_changed()
        try:
            with self._budget.spending(slot):
                execution_id = self.client.run_workflow(self.workflow_id, self._params)
        except RateLimitError as error:  # nothing started: safe to send again
            with self._lock:
                self.launch_state = QUEUED
            self._queue(error if isinstance(error, QueueFullError) else None)
            self._state_changed()
        except ModelsLabError as error:  # maybe started, maybe not: never re-sent blindly
            self._account.pass_turn()
            self._fail(error)
        else:
            self._account.sent()
            self._bind(execution_id)

    def _bind(self, execution_id: int | str) -> None:
        """The run exists: leave the placeholder for the run's shared watch, and watch."""
        with self._lock:
            placeholder = self._watch
            self._cancel_refresh()
            self.launch_state = STARTED
            self.execution_id = execution_id
            if not self._closing:
                self._watch = self._real_watch(placeholder, execution_id)
                self._controls.children = (self._stop_button, self._resume_button)
                self._message.value = ""
        placeholder.detach(self)
        self._decide()
        if self._closing:
            return
        if self._autostart:
            self.start()
        else:
            self._sync()

    def _real_watch(self, placeholder: RunWatch, execution_id: int | str) -> RunWatch:
        watch = watch_for(placeholder.client, self.workflow_id, execution_id,
                          scheduler=placeholder.scheduler)
        watch.attach(self, self._policy, thumbnail_size=self.thumbnail_size,
                     max_thumbnails=self._max_thumbnails)
        return watch

    def _fail(self, error: ModelsLabError) -> None:
        with self._lock:
            self.launch_state = FAILED
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
        if self._held:
            limit = self._account.limit
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
