"""PendingRun: one launch of a workflow, from waiting its turn to the run's watch. No GUI.

A launch waits in the account's line while the account's queue is full (``account.py``),
then for its slot of the workflow's request budget (``budget.py``), then sends
``POST .../run`` once. It is sent again only after a 429 (nothing was started then): a 429
about the workflow's rate waits for the budget's next slot, a queue-full 429 goes back to the
front of the account's line. Any other failure is final, because a second POST could start a
second run: the server refused it (``REFUSED``: a 422 and its field messages, a 404, ...), or
its answer never came and the run may have started anyway (``LOST``). Its run's watch
(``watch``) exists from the start, so a card can attach to it before the run does; once the
server answers with an execution ID the watch is bound to that run (``RunWatch.bind``) and
filed where every other view of the run finds it (``registry``).

Its phases (``LaunchPhase``)::

    HELD ──► WAITING ──► SENDING ──► LAUNCHED | REFUSED | LOST
      ▲         ▲           │
      │         └── 429 ────┤        (the workflow's rate: its next slot)
      └──── queue-full 429 ─┘        (the front of the account's line)
    HELD | WAITING ──► CANCELLED     (cancel() before the POST went)

Views call ``listen(callback)``: ``callback(pending)`` runs on each change, outside the lock,
on the thread that made it (``SENDING`` is told before the POST goes, so a manifest can record
it first). The card, the launcher, the sweep and the command line all launch through it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from enum import Enum
from typing import Any

from .budget import RequestKind, SendInSlot
from .client import WorkflowsClient
from .errors import ModelsLabError, NetworkError, QueueFullError, RateLimitError
from .listeners import Listeners
from .registry import unlaunched_watch, watch_for
from .runtime import Runtime, default_runtime
from .runwatch import RunWatch
from .scheduler import Scheduler

log = logging.getLogger("modelslab_widget")


class LaunchPhase(Enum):
    """Where a launch is (see the module docstring)."""

    NEW = "new"  # made, not started
    HELD = "held"  # in the account's line: its queue is full
    WAITING = "waiting"  # for its slot of the workflow's budget
    SENDING = "sending"  # the POST is on its way
    LAUNCHED = "launched"  # the server started the run: ``execution_id`` is set, ``watch`` bound
    REFUSED = "refused"  # the server refused it (not sent again): ``error`` says why
    LOST = "lost"  # no answer came: it may have started a run; never sent again
    CANCELLED = "cancelled"  # cancelled before it was sent: nothing was sent

    @property
    def ended(self) -> bool:
        return self in _ENDED


_ENDED = frozenset({LaunchPhase.LAUNCHED, LaunchPhase.REFUSED, LaunchPhase.LOST,
                    LaunchPhase.CANCELLED})

# What a view calls a launch's phase (a card's ``launch_state``, the launcher's history).
QUEUED = "queued"  # waiting in the account's line or for a slot of the workflow's budget
SENDING = "sending"  # the POST is on its way
STARTED = "started"  # the server started the run
FAILED = "failed"  # the server refused (not a 429), or its answer was lost: not sent again
REMOVED = "removed"  # removed before it was sent: nothing was sent

LAUNCH_STATES = {
    LaunchPhase.NEW: QUEUED, LaunchPhase.HELD: QUEUED, LaunchPhase.WAITING: QUEUED,
    LaunchPhase.SENDING: SENDING, LaunchPhase.LAUNCHED: STARTED,
    LaunchPhase.REFUSED: FAILED, LaunchPhase.LOST: FAILED, LaunchPhase.CANCELLED: REMOVED,
}

class PendingRun:
    """One launch of ``workflow_id`` with ``params`` (see the module docstring).

    ``wait_for_room=False``: sent now or not at all (the command line): no place in the
    account's line, and any 429 ends it ``REFUSED``. Thread-safe.
    """

    def __init__(self, client: WorkflowsClient, workflow_id: str, params: dict[str, Any], *,
                 runtime: Runtime | None = None, scheduler: Scheduler | None = None,
                 wait_for_room: bool = True) -> None:
        self.client = client
        self.workflow_id = str(workflow_id)
        self.params = dict(params)
        self.runtime = (runtime or default_runtime()).with_parts(scheduler=scheduler)
        self.wait_for_room = wait_for_room
        self.execution_id: int | str | None = None
        #: the run's watch: no execution ID until the launch is answered (``watch.launched``)
        self.watch: RunWatch = unlaunched_watch(client, self.workflow_id, runtime=self.runtime)
        self.error: Exception | None = None  # why it was refused or lost
        self.last_refusal: RateLimitError | None = None  # the latest 429 it waited after
        self.refusals = 0  # 429s that answered it (each started nothing)
        self._phase = LaunchPhase.NEW
        self._budget = self.runtime.budgets.for_workflow(client.account, self.workflow_id)
        self._account = self.runtime.accounts.for_account(client.account)
        self._lock = threading.RLock()
        self._ended = threading.Event()
        self._sending: SendInSlot[int | str] | None = None
        self._in_line = False  # the account's line let it go: its turn passes if it fails
        self._listeners: Listeners[PendingRun] = Listeners("a view of a pending run")

    # -- what views read --------------------------------------------------------------------

    @property
    def phase(self) -> LaunchPhase:
        return self._phase

    @property
    def account_limit(self) -> int | None:
        """The account's queue limit, once a queue-full 429 named it."""
        return self._account.limit

    def starts_in(self) -> float | None:
        """Estimated seconds until the POST goes (0 once it went; None while it waits for one
        of the account's runs to end)."""
        with self._lock:
            phase, sending = self._phase, self._sending
        if phase is LaunchPhase.HELD:
            return self._account.opens_in()
        if phase is LaunchPhase.WAITING and sending is not None:
            return sending.starts_in()
        return 0.0

    def listen(self, callback: Callable[[PendingRun], object]) -> Callable[[], None]:
        """Call ``callback(self)`` on every change (see the module docstring); returns how
        to stop."""
        return self._listeners.add(callback)

    def wait(self, timeout: float | None = None) -> LaunchPhase:
        """Block until the launch ended (launched, refused, lost or cancelled); its phase.
        Raises TimeoutError when ``timeout`` passes first."""
        if not self._ended.wait(timeout):
            raise TimeoutError(f"the launch was not answered within {timeout:g} s")
        return self._phase

    def __repr__(self) -> str:
        detail = f" {self.execution_id}" if self.execution_id is not None else ""
        return f"PendingRun({self.workflow_id}, {self._phase.value}{detail})"

    # -- what callers do --------------------------------------------------------------------

    def start(self, *, inline: bool = False) -> None:
        """Take its place in line. ``inline``: when the account and the budget have room
        now, the POST is sent on this thread before ``start`` returns (the main thread of a
        launcher's Run button, the command line); else it goes from the scheduler's pool."""
        with self._lock:
            if self._phase is not LaunchPhase.NEW:
                return
            go = not self.wait_for_room or self._account.enter(self._released)
            self._in_line = self.wait_for_room and go
            if not go:
                self._phase = LaunchPhase.HELD
        if go:
            self._ask_slot(inline=inline)
        else:
            self._tell()

    def cancel(self) -> bool:
        """Drop the launch if nothing is on its way yet: True when nothing will be sent.
        False once the POST went (its answer decides) or the launch ended."""
        with self._lock:
            phase = self._phase
            if phase is LaunchPhase.WAITING:
                if self._sending is not None and not self._sending.withdraw():
                    return False  # on its way
            elif phase is LaunchPhase.HELD:
                self._account.remove(self._released)  # if its turn just came, it passes it
            elif phase is not LaunchPhase.NEW:
                return False
            self._phase = LaunchPhase.CANCELLED
            passes_turn, self._in_line = self._in_line and phase is LaunchPhase.WAITING, False
        if passes_turn:
            self._account.pass_turn()  # it was let go: the next in line goes instead
        self._end()
        return True

    # -- the launch (pool and timer threads) ------------------------------------------------

    def _released(self) -> None:
        """The account's line let it go (one of its runs ended, or its wait passed)."""
        with self._lock:
            held = self._phase is LaunchPhase.HELD
            self._in_line = held
        if held:
            self._ask_slot()
        else:  # cancelled meanwhile
            self._account.pass_turn()

    def _ask_slot(self, *, inline: bool = False) -> None:
        sending = SendInSlot(self._budget, RequestKind.LAUNCH, self._post,
                             submit=self.runtime.scheduler.submit,
                             tries=None if self.wait_for_room else 1,
                             on_done=self._answered, on_refused=self._rate_limited)
        with self._lock:
            self._phase, self._sending = LaunchPhase.WAITING, sending
        self._tell()
        sending.start(inline=inline)

    def _post(self) -> int | str:
        """In the slot: say so (views hear it before the POST goes), then send it."""
        with self._lock:
            self._phase = LaunchPhase.SENDING
        self._tell()
        return self.client.run_workflow(self.workflow_id, self.params)

    def _rate_limited(self, sending: SendInSlot[int | str], error: RateLimitError) -> None:
        """A 429 about the workflow's rate: nothing started; it waits for its next slot."""
        with self._lock:
            self._phase, self.last_refusal = LaunchPhase.WAITING, error
            self.refusals += 1
        self._tell()

    def _answered(self, sending: SendInSlot[int | str]) -> None:
        error = sending.error
        if error is None:
            self._launched(sending.result())
        elif isinstance(error, QueueFullError) and self.wait_for_room:
            self._queue_full(error)
        elif isinstance(error, Exception):
            self._not_launched(error)

    def _launched(self, execution_id: int | str) -> None:
        if self.wait_for_room:
            self._account.sent()
        if not self.watch.bind(execution_id):  # its views all went before the answer
            self.watch = watch_for(self.client, self.workflow_id, execution_id,
                                   runtime=self.runtime)
        with self._lock:
            self.execution_id = execution_id
            self._phase = LaunchPhase.LAUNCHED
        self._end()

    def _queue_full(self, error: QueueFullError) -> None:
        """Nothing started: back to the front of the account's line, until one of its runs
        ends (or the 429's wait passed)."""
        with self._lock:
            self._phase, self.last_refusal, self._in_line = LaunchPhase.HELD, error, False
            self.refusals += 1
            self._account.refused(self._released, error)
        self._tell()

    def _not_launched(self, error: Exception) -> None:
        """Refused (not a 429, or a 429 it may not wait after), or lost: never sent again."""
        lost = isinstance(error, NetworkError) or not isinstance(
            error, (ModelsLabError, ValueError, TypeError))  # ValueError: refused before sending
        if lost and not isinstance(error, NetworkError):
            log.error("a launch of %s failed unexpectedly", self.workflow_id, exc_info=error)
        with self._lock:
            self.error = error
            self._phase = LaunchPhase.LOST if lost else LaunchPhase.REFUSED
            passes_turn, self._in_line = self._in_line, False
        if passes_turn:
            self._account.pass_turn()
        self._end()

    # -- news -------------------------------------------------------------------------------

    def _end(self) -> None:
        if self._phase is not LaunchPhase.LAUNCHED:  # no run: every view of it hears why
            self.watch.launch_failed(self.error or RuntimeError(
                "the launch was removed before it was sent: no run was started"))
        self._ended.set()
        self._tell()

    def _tell(self) -> None:
        self._listeners.tell(self)
