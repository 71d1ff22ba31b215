"""RunWatch: the life of one watched run, with no GUI, shared by every view of that run.

A watch owns what every view of a run needs, so no view works it out on its own: polling (one
request stream however many cards, board rows or terminal views show the run), the run's state
(``runstate.RunState``: its phase, the latest snapshot, retry and pace information, outputs,
thumbnails, cancel), learning step durations for the estimate, ``wait()`` and cancel.

The state changes in one place, ``_transition``, along ``runstate.TRANSITIONS``, under the
watch's lock. Each new state is then handed to every view, in order, outside the lock
(``view.show(state)``, on whichever thread made the change); waiters wake once every view has
been shown a final state, so whoever ``wait()`` returns to sees every view showing the end.

Views come and go: ``attach()``, then ``want()`` polling and ``pause()`` it; the watch polls
while any attached view wants it, and the last view to ``detach()`` ends it. The registry
(``registry.py``) hands every view of the same run the same watch; the watch holds its views
weakly, views hold their watch. Nothing here imports ipywidgets.

A launch that has not been answered yet (``pending.py``) has a watch too, with no execution
ID: its views attach to it from the start, and ``bind()`` gives it the run's ID once the
server answers. Until then nothing is polled.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol

from .budget import RequestKind, WorkflowBudget, send_in_slot
from .client import WorkflowsClient
from .errors import AuthenticationError, ModelsLabError, RunAlreadyEndedError
from .eta import DurationHistory, Estimate
from .images import Thumbnail
from .loader import OutputsLoader
from .media import OutputInfo, OutputKind
from .models import RunSnapshot
from .poller import PollPolicy, WatchTimeout
from .runstate import (
    FINAL,
    WATCHING,
    IllegalTransition,
    Phase,
    Retrying,
    RunState,
    Stopped,
    with_item,
)
from .runtime import Runtime, default_runtime
from .scheduler import Job, Scheduler, weak_callback

if TYPE_CHECKING:
    from .registry import WatchRegistry

log = logging.getLogger("modelslab_widget")

CANCEL_RATE_LIMITED_TRIES = 3  # a 429 means the cancel did not run: re-send it this often
MAX_CANCEL_WAIT = 60.0  # longest wait (seconds) a 429 may impose before a re-sent cancel
#: Set (to anything but "") to raise on a phase change the table does not allow; the test
#: suite sets it. Otherwise such a change is logged and the state changes anyway.
STRICT_ENV = "MODELSLAB_WIDGET_STRICT_STATES"


class WatchView(Protocol):
    """What a view of a run implements; held weakly by its watch."""

    def show(self, state: RunState) -> None: ...


class Poller(Protocol):
    """What a watch needs of its poller (``poller.RunPoller``; a fake one in tests)."""

    policy: PollPolicy
    budget: WorkflowBudget | None

    @property
    def polls(self) -> int: ...
    @property
    def active(self) -> bool: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def poll_soon(self) -> None: ...


@dataclass
class _Attachment:
    """One view's wishes: how it wants the run polled and how many thumbnails of what size."""

    policy: PollPolicy
    thumbnail_size: int = 0
    max_thumbnails: int = 0
    active: bool = False
    interrupted: BaseException | None = None  # why this view stopped (stop(), its timeout)
    timeout_job: Job | None = field(default=None, repr=False)


class RunWatch:
    """The shared, GUI-free state of one watched run (see the module docstring)."""

    def __init__(
        self,
        client: WorkflowsClient,
        workflow_id: str,
        execution_id: int | str | None,
        *,
        runtime: Runtime | None = None,
        scheduler: Scheduler | None = None,
        history: DurationHistory | None = None,
        owns_client: bool = False,
        registry: WatchRegistry | None = None,
    ) -> None:
        """``execution_id`` None: the watch of a launch not answered yet (see ``bind``)."""
        self.runtime = (runtime or default_runtime()).with_parts(scheduler=scheduler,
                                                                 history=history)
        self.client = client
        self.workflow_id = str(workflow_id)
        self.execution_id = execution_id
        self.scheduler = self.runtime.scheduler
        self.registry_key: tuple[Any, ...] = ()  # set by the registry
        self._registry = registry
        self._owns_client = owns_client
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)  # wait() sleeps on it
        self._state = RunState()
        self._told = self._state  # the latest state every view has been shown
        self._outbox: deque[RunState] = deque()  # states not yet shown to the views
        self._delivering = False
        self._seen_unfinished = False  # some answer had it queued or running
        self._over = False  # the last view left: the watch ends, it is never filed again
        self._views: weakref.WeakKeyDictionary[Any, _Attachment] = weakref.WeakKeyDictionary()
        self._waiters: list[tuple[weakref.ref[Any], Callable[[], None]]] = []
        self._account = self.runtime.accounts.for_account(client.account)
        self._loader = OutputsLoader(
            client, self.scheduler, on_output=weak_callback(self._on_output),
            on_thumbnail=weak_callback(self._on_thumbnail), on_idle=weak_callback(self._on_idle),
            run_name=str(execution_id),
        )
        self._budget = self.runtime.budgets.for_workflow(client.account, self.workflow_id)
        self._poller: Poller = _NoRunYet(self._budget) if execution_id is None \
            else self._make_poller(execution_id)

    def _make_poller(self, execution_id: int | str) -> Poller:
        return self.runtime.poller(
            self.client, self.workflow_id, execution_id, listener=self,
            policy=PollPolicy(), scheduler=self.scheduler,
            next_change=weak_callback(self._next_change), budget=self._budget,
        )

    def bind(self, execution_id: int | str) -> bool:
        """The launch this watch was made for was answered with ``execution_id``: file the
        watch under its run, and poll it if a view already wants that. False when every view
        went before the answer: this watch is over, and the run needs a new one."""
        with self._changing():
            if self.execution_id is not None:
                raise RuntimeError(f"this watch already watches run {self.execution_id}")
            if self._over:
                return False  # never filed: a later view of the run must get a live watch
            self.execution_id = execution_id
            self._poller = self._make_poller(execution_id)
            self._loader.run_name = str(execution_id)
            if self._registry is not None:
                self._registry.adopt(self)
            if self._state.phase is Phase.NOT_STARTED and any(
                    a.active for a in self._views.values()):
                self._start_session()
        return True

    def launch_failed(self, error: BaseException) -> None:
        """The launch this watch was made for started no run (refused, lost or removed):
        watching is over before it began, with ``error`` as the reason, for every view."""
        with self._changing():
            if not self.launched and self._state.phase is Phase.NOT_STARTED:
                self._transition(Phase.GAVE_UP, error=error)

    # -- what views read ----------------------------------------------------------------

    @property
    def state(self) -> RunState:
        """The run's state as the watch knows it now (without any view's own part)."""
        return self._state

    def state_for(self, view: WatchView) -> RunState:
        """The state with ``view``'s own part: whether it wants polling, why it stopped."""
        with self._lock:
            return self._view_part(self._state, view)

    @property
    def snapshot(self) -> RunSnapshot | None:
        return self._state.snapshot

    @property
    def first_seen(self) -> datetime | None:
        return self._state.first_seen

    @property
    def error(self) -> BaseException | None:
        """What ended watching before the run ended, else None."""
        return self._state.error

    @property
    def retrying(self) -> Retrying | None:
        return self._state.retrying

    @property
    def paced(self) -> float | None:
        """Seconds between checks while the workflow's rate limit sets the pace, else None."""
        return self._state.paced

    @property
    def cancelling(self) -> bool:
        return self._state.cancelling

    @property
    def cancel_error(self) -> ModelsLabError | None:
        return self._state.cancel_error

    @property
    def over(self) -> bool:
        """Every view left (or is leaving): this watch will never poll again."""
        return self._over

    @property
    def launched(self) -> bool:
        """The run exists: the watch knows its execution ID."""
        return self.execution_id is not None

    @property
    def polls(self) -> int:
        return self._poller.polls

    @property
    def polling(self) -> bool:
        return self._poller.active

    @property
    def ended(self) -> bool:
        """The run reached a terminal status."""
        return self._state.ended

    @property
    def settled(self) -> bool:
        """The run ended and its thumbnails are in, or watching ended on an error."""
        return self._state.final

    @property
    def max_failures(self) -> int:
        return self._poller.policy.max_failures

    @property
    def history(self) -> DurationHistory:
        return self.runtime.history

    def elapsed(self, now: datetime | None = None) -> float | None:
        state = self._state
        return state.snapshot.elapsed(now, state.first_seen) if state.snapshot else None

    def estimate(self) -> Estimate | None:
        """Time left and progress by expected time, once this workflow completed before."""
        snapshot = self._state.snapshot
        if snapshot is None:
            return None
        return self.history.estimate(snapshot, workflow_id=self.workflow_id)

    def thumbnails_in_order(self) -> list[Thumbnail]:
        return list(self._state.thumbnails)

    def outputs_in_order(self) -> list[OutputInfo]:
        return list(self._state.outputs)

    def output_kinds(self) -> list[OutputKind]:
        """Each output's kind, in order: as described, else as its URL's extension says
        (no request), else FILE."""
        snapshot = self._state.snapshot
        return self._loader.kinds(snapshot.outputs if snapshot is not None else ())

    # -- views come and go ----------------------------------------------------------------

    def attach(self, view: WatchView, policy: PollPolicy, *, thumbnail_size: int = 0,
               max_thumbnails: int = 0) -> None:
        """Register a view (not yet wanting polling): its policy and thumbnail needs."""
        with self._lock:
            self._views[view] = _Attachment(policy, thumbnail_size, max_thumbnails)

    def want(self, view: WatchView) -> None:
        """The view wants the run watched: poll (unless the run ended or is being polled),
        load the thumbnails it needs. Also how Retry starts again after an error."""
        with self._changing():
            attachment = self._views.get(view)
            if attachment is None or self._state.phase is Phase.UNWATCHED:
                return
            newly = not attachment.active
            if newly:
                attachment.active, attachment.interrupted = True, None
                self._start_view_timeout(view, attachment)
            if self._state.ended:
                self._load_more_thumbnails()
            elif not self.launched:
                pass  # bind() starts polling once the run exists
            elif self._state.phase in (Phase.NOT_STARTED, Phase.STOPPED) or (
                    self._state.phase is Phase.GAVE_UP and self._told is self._state):
                # (Retry after an error only once every view was shown it: a want() from
                # a view still being shown the end must not wipe the error it shows.)
                self._start_session()
            else:
                self._poller.policy = self._combined_policy()
            if newly:
                self._transition()  # the view's own part changed

    def pause(self, view: WatchView, reason: BaseException | None = None) -> None:
        """The view no longer wants polling; polling stops once no view wants it."""
        with self._changing():
            self._pause(view, reason)

    def detach(self, view: WatchView) -> None:
        """The view is gone (closed); the last view to go ends the watch."""
        with self._changing():
            self._pause(view, None)
            self._views.pop(view, None)
            last = not self._views
            self._over = self._over or last
        if last:
            self._end()

    # -- waiting ------------------------------------------------------------------------

    def wait(self, view: WatchView, timeout: float | None = None) -> RunSnapshot:
        """Block until settled (or this view stopped); see ``WorkflowRunWidget.wait``."""
        if not self.wait_done(view, timeout):
            raise TimeoutError(f"the run did not finish within {timeout:g} s")
        return self.outcome(view)

    def never_started(self, view: WatchView) -> bool:
        """The view was made with ``autostart=False`` and has not started: waiting starts it.
        (Not a view that stopped, nor one of a run whose watching is over.)"""
        with self._lock:
            attachment = self._views.get(view)
            return attachment is not None and not attachment.active \
                and attachment.interrupted is None and not self._state.final

    def wait_done(self, view: WatchView, timeout: float | None = None) -> bool:
        """Block until ``done_for(view)``; False if ``timeout`` passed first. Starts watching
        for a view that never started (``autostart=False``), not for one that was stopped."""
        if self.never_started(view):
            self.want(view)
        with self._lock:
            return self._changed.wait_for(lambda: self._done_for(view), timeout)

    def when_done(self, view: WatchView, callback: Callable[[], None]) -> None:
        """Call ``callback`` once ``wait(view)`` would return or raise at once (settled, or the
        view stopped): now, or later on a background thread. The hook ``wait_async`` uses."""
        with self._lock:
            if not self._done_for(view):
                self._waiters.append((weakref.ref(view), callback))
                return
        callback()

    def done_for(self, view: WatchView) -> bool:
        with self._lock:
            return self._done_for(view)

    def outcome(self, view: WatchView) -> RunSnapshot:
        """What ``wait()`` returns or raises now that it is done waiting."""
        with self._lock:
            state, attachment = self._state, self._views.get(view)
        if state.final and state.error is not None:
            raise state.error
        if state.final and state.snapshot is not None:
            return state.snapshot
        if attachment is None:
            raise RuntimeError("the view was closed before the run settled")
        if isinstance(attachment.interrupted, WatchTimeout):
            raise attachment.interrupted
        raise RuntimeError("watching was stopped before the run ended; call start()")

    # -- the poller's listener (background threads) ---------------------------------------

    def on_snapshot(self, snapshot: RunSnapshot, polls: int) -> None:
        with self._changing():
            state = self._state
            if state.phase is Phase.UNWATCHED:
                return
            first_seen = state.first_seen
            if first_seen is None and snapshot.status == "running":
                first_seen = datetime.now(timezone.utc)
            changed = state.retrying is not None or state.snapshot is None \
                or _shown(state.snapshot) != _shown(snapshot)
            self._seen_unfinished = self._seen_unfinished or not snapshot.is_terminal
            recovered = Phase.PACED if state.paced else Phase.POLLING
            self._transition(
                recovered if state.phase is Phase.RETRYING else None,
                snapshot=snapshot, first_seen=first_seen, retrying=None,
                revision=state.revision + changed,
                cancelling=state.cancelling and not snapshot.is_terminal,
            )
        self._tell_account(snapshot)

    def on_poll_error(self, error: ModelsLabError, failures: int, retry_in: float) -> None:
        with self._changing():
            watching = self._state.phase in WATCHING
            self._transition(Phase.RETRYING if watching else None,
                             retrying=Retrying(error, failures, self.max_failures, retry_in))

    def on_paced(self, seconds: float | None) -> None:
        """The workflow's rate limit lets this run be checked every ``seconds`` (None: at the
        interval again). Not an error: views say it calmly."""
        with self._changing():
            phase = self._state.phase
            if phase in (Phase.POLLING, Phase.PACED):
                self._transition(Phase.PACED if seconds else Phase.POLLING, paced=seconds)
            else:
                self._transition(paced=seconds)

    def on_finished(self, snapshot: RunSnapshot | None, error: BaseException | None) -> None:
        with self._changing():
            if self._poller.active or self._state.phase is Phase.UNWATCHED:
                return  # a late word from a session that a new one has already replaced
            if error is not None:
                self._transition(Phase.GAVE_UP, error=error, retrying=None, paced=None)
                return
            if snapshot is not None and self._seen_unfinished:
                # Learns from completed runs only, and only from a run seen running: one
                # found already finished was learnt from when it ran (or is not news).
                # Filed under the workflow asked for, not the one the server names.
                self.history.record(snapshot, workflow_id=self.workflow_id)
            loading = self._load_more_thumbnails()
            self._transition(Phase.ENDED if loading else Phase.SETTLED, retrying=None,
                             paced=None)

    # -- cancelling ---------------------------------------------------------------------

    def cancel(self) -> str:
        """Ask the API to cancel the run and return its message once the request was
        accepted; every view follows the run to its final status (the server decides: a run
        that completed first stays completed). A POST, so it is re-sent only after a 429 (the
        request did not run then). Raises the client's error when refused:
        RunAlreadyEndedError, NotFoundError, AuthenticationError, ...; RuntimeError for the
        watch of a launch not answered yet (there is no run to cancel)."""
        if not self.launched:
            raise RuntimeError("the run has not been launched yet: there is nothing to cancel")
        with self._changing():
            self._transition(cancelling=True, cancel_error=None)
        try:
            message = self._send_cancel()
        except ModelsLabError as error:
            with self._changing():
                self._transition(cancelling=False, cancel_error=error)
            if isinstance(error, RunAlreadyEndedError):
                self.poll_soon()  # learn how it ended
            raise
        with self._changing():
            self._transition(cancelling=not self._state.ended)
        self.poll_soon()
        return message

    def poll_soon(self) -> None:
        """Ask for the run's status now rather than at the next scheduled poll (while
        polling; a poll in flight is followed at once by another, never by two streams)."""
        self._poller.poll_soon()

    def _send_cancel(self) -> str:
        """POST the cancel in a slot of the workflow's budget (cancels go before every poll,
        and past a 429's ``retry_after``); a 429 cancelled nothing, so it is sent again."""
        execution_id = self.execution_id
        assert execution_id is not None  # cancel() refuses a run not launched
        return send_in_slot(
            self._poller.budget, RequestKind.CANCEL,
            lambda: self.client.cancel_run(self.workflow_id, execution_id),
            cancel=self._loader_cancelled, timeout=MAX_CANCEL_WAIT,
            tries=CANCEL_RATE_LIMITED_TRIES)

    # -- the one place the state changes ----------------------------------------------------

    def _transition(self, phase: Phase | None = None, **changes: Any) -> None:
        """Replace the state (lock held): ``phase`` (None: the same) along the table, and
        ``changes`` to its fields; the new state is queued for the views."""
        state = self._state
        target = state.phase if phase is None else phase
        if not state.moved_to(target):
            message = f"run {self.execution_id}: {state.phase.name} -> {target.name}"
            if os.environ.get(STRICT_ENV):
                raise IllegalTransition(message)
            log.error("illegal phase change, %s", message)
        self._state = replace(state, phase=target, serial=state.serial + 1,
                              polls=self._poller.polls, **changes)
        self._outbox.append(self._state)

    @contextlib.contextmanager
    def _changing(self) -> Iterator[None]:
        """Hold the lock while changing the state; then show the views what changed."""
        with self._lock:
            yield
        self._show_views()

    def _show_views(self) -> None:
        """Hand each queued state to every view, in order, outside the lock. One thread at a
        time delivers (another's states are delivered by it), so views see states in order."""
        while True:
            with self._lock:
                if self._delivering or not self._outbox:
                    return
                self._delivering = True
                state = self._outbox.popleft()
                shown = [(view, self._view_part(state, view)) for view in list(self._views)]
            try:
                for view, view_state in shown:
                    _show(view, view_state, self.execution_id)
            finally:
                with self._lock:
                    self._delivering = False
                    self._told = state
                    self._changed.notify_all()
                    callbacks = self._take_done_waiters()
                for callback in callbacks:
                    _call_safely(callback)

    def _view_part(self, state: RunState, view: WatchView) -> RunState:
        attachment = self._views.get(view)
        if attachment is None:
            return state
        return replace(state, wanted=attachment.active, interrupted=attachment.interrupted)

    # -- internals (lock held unless said) --------------------------------------------------

    def _done_for(self, view: WatchView) -> bool:
        attachment = self._views.get(view)  # None: the view was closed
        if attachment is None or attachment.interrupted is not None:
            return True
        return self._state.final and self._told is self._state

    def _take_done_waiters(self) -> list[Callable[[], None]]:
        done: list[tuple[weakref.ref[Any], Callable[[], None]]] = []
        waiting: list[tuple[weakref.ref[Any], Callable[[], None]]] = []
        for ref, callback in self._waiters:
            view = ref()
            (done if view is None or self._done_for(view) else waiting).append((ref, callback))
        self._waiters = waiting
        return [callback for _, callback in done]

    def _pause(self, view: WatchView, reason: BaseException | None) -> None:
        attachment = self._views.get(view)
        if attachment is None or not attachment.active:
            return
        attachment.active = False
        attachment.interrupted = reason or Stopped()
        if attachment.timeout_job is not None:
            attachment.timeout_job.cancel()
            attachment.timeout_job = None
        if any(a.active for a in self._views.values()):
            self._poller.policy = self._combined_policy()
            self._transition()
        else:
            self._poller.stop()
            self._transition(Phase.STOPPED if self._state.phase in WATCHING else None)

    def _start_session(self) -> None:
        if isinstance(self._state.error, AuthenticationError) or not self.client.has_api_key:
            self._reload_key()
        self._poller.policy = self._combined_policy()
        self._poller.start()
        self._transition(Phase.POLLING, error=None, retrying=None)

    def _reload_key(self) -> None:
        """Retry after "No API key" or a rejected key does what the card advises: read
        MODELSLAB_API_KEY again (when the key came from it). A new key is a new account, so
        the registry finds this watch under it from now on."""
        if self.client.reload_key_from_environment() and self._registry is not None:
            self._registry.rekey(self, (self.client.account, *self.registry_key[1:]))

    def _combined_policy(self) -> PollPolicy:
        """The most eager interval of the views that want polling; timeouts are per view."""
        wanting = [a.policy for a in self._views.values() if a.active] or [PollPolicy()]
        first = wanting[0]
        return replace(first, interval=min(p.interval for p in wanting), timeout=None)

    def _start_view_timeout(self, view: WatchView, attachment: _Attachment) -> None:
        seconds = attachment.policy.timeout
        if seconds is None or self._state.ended:
            return
        view_ref, watch_ref = weakref.ref(view), weakref.ref(self)

        def time_out() -> None:
            target, watch = view_ref(), watch_ref()
            if target is not None and watch is not None:
                watch._time_out(target, seconds)

        attachment.timeout_job = self.scheduler.call_later(seconds, time_out, in_pool=False)

    def _time_out(self, view: WatchView, seconds: float) -> None:
        error = WatchTimeout(f"Stopped watching after {seconds:g} s: the run had not finished.")
        with self._changing():
            attachment = self._views.get(view)
            if attachment is None or not attachment.active or self._state.ended:
                return
            attachment.timeout_job = None
            self._pause(view, error)

    def _load_more_thumbnails(self) -> bool:
        """Start loading the thumbnails the views want that are not loaded yet; True while
        some are loading."""
        active = [a for a in self._views.values() if a.active]
        plan = self._loader.need(
            self._state.snapshot,
            max((a.thumbnail_size for a in active), default=0),
            max((a.max_thumbnails for a in active), default=0),
        )
        if plan.restart:
            self._transition(thumbnails=())
        if plan.busy and self._state.phase is Phase.SETTLED:
            self._transition(Phase.ENDED)
        return plan.busy

    def _on_output(self, info: OutputInfo) -> None:
        with self._changing():
            if self._state.phase is not Phase.UNWATCHED:
                self._transition(outputs=with_item(self._state.outputs, info))

    def _on_thumbnail(self, thumb: Thumbnail) -> None:
        with self._changing():
            if self._state.phase is not Phase.UNWATCHED:
                self._transition(thumbnails=with_item(self._state.thumbnails, thumb))

    def _on_idle(self) -> None:
        with self._changing():
            if self._state.phase is Phase.ENDED and not self._loader.busy:
                self._transition(Phase.SETTLED)

    @property
    def _loader_cancelled(self) -> threading.Event:
        return self._loader._cancel

    def _tell_account(self, snapshot: RunSnapshot) -> None:
        """The account's launch queue (``account.py``) hears which of its runs are queued or
        running and when one ends: that end lets a held launch go."""
        key = (self.workflow_id, str(self.execution_id))
        if snapshot.is_terminal:
            self._account.run_ended(key)
        else:
            self._account.run_active(key)

    def _end(self) -> None:
        """No view is left: stop everything this watch started."""
        self._poller.stop()
        self._loader.close()
        with self._changing():
            self._over = True
            state = self._state
            last = state.snapshot
            if last is not None and not last.is_terminal:
                self._account.run_forgotten((self.workflow_id, str(self.execution_id)))
            error = state.error
            if state.phase not in FINAL:
                error = RuntimeError("the view was closed before the run settled")
            self._transition(Phase.UNWATCHED, error=error)
        if self._registry is not None:
            self._registry.forget(self)
        if self._owns_client:
            self.client.close()

    def discard(self) -> None:
        """Drop a watch that was never used (lost a race to register)."""
        self._end()

    def _next_change(self, snapshot: RunSnapshot) -> tuple[float, float] | None:
        """For the poller: seconds to the next expected change, and how long the run is
        sure not to end yet (``Estimate.far_from_end``)."""
        estimate = self.history.estimate(snapshot, workflow_id=self.workflow_id)
        return None if estimate is None else (estimate.next_change, estimate.far_from_end)


class _NoRunYet:
    """The poller of a watch whose launch has not been answered: there is nothing to poll."""

    polls = 0
    active = False

    def __init__(self, budget: WorkflowBudget | None) -> None:
        self.policy = PollPolicy()
        self.budget = budget

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def poll_soon(self) -> None:
        pass


def _shown(snapshot: RunSnapshot) -> tuple[Any, ...]:
    """What a view shows of an answer (moving timers are a view's own tick)."""
    return (snapshot.status, snapshot.steps, snapshot.outputs, snapshot.error)


def _show(view: WatchView, state: RunState, run_name: Any) -> None:
    try:
        view.show(state)
    except IllegalTransition:
        raise
    except Exception:  # one broken view must not stop the others (or the poller)
        log.exception("a view of run %s failed to update", run_name)


def _call_safely(callback: Callable[[], None]) -> None:
    try:
        callback()
    except Exception:
        log.exception("a settle callback failed")
