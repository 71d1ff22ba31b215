"""RunWatch: the life of one watched run, with no GUI, shared by every view of that run.

A watch owns what every view of a run needs, so no view computes it on its own: the poller (one
request stream however many cards, board rows or terminal views show the run), the latest
snapshot, when the run was first seen running, learning step durations and the estimate of
the next change, loading the outputs' thumbnails, settling, ``wait()`` and the words for why
watching stopped. Views only draw: a watch calls ``view.watch_changed(watch, change, detail)``
(on a background thread, outside its lock) and the view reads what it needs.

One watch per run per process: ``watch_for()`` hands every view of the same run (same API
base URL, same key, same workflow and execution ID, same scheduler) the same watch. The
registry and the watch hold views weakly; views hold their watch. A view ``want()``s polling
and ``pause()``s it; the watch polls while any attached view wants it, and the last view to
``detach()`` stops it. Nothing here imports ipywidgets.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Protocol

from .account import account_queue
from .budget import FIRST, budget_for
from .client import WorkflowsClient
from .errors import AuthenticationError, ModelsLabError, RateLimitError, RunAlreadyEndedError
from .eta import DurationHistory, Estimate, shared_history
from .media import (
    OutputInfo,
    OutputKind,
    Thumbnail,
    candidates_for,
    describe_output,
    kind_from_url,
    load_thumbnail,
)
from .models import RunSnapshot
from .poller import PollPolicy, RunPoller, WatchTimeout
from .scheduler import Job, Scheduler, shared_scheduler, weak_callback
from .urls import is_web_url, url_host

log = logging.getLogger("modelslab_widget")

# What a watch tells its views (the ``change`` argument of ``watch_changed``).
SNAPSHOT = "snapshot"  # a new answer (detail: True when it changed what a view shows)
RETRYING = "retrying"  # a transient error; detail: Retrying
ENDED = "ended"  # polling ended: the run is terminal, or detail is the error that ended it
THUMBNAIL = "thumbnail"  # detail: a Thumbnail, as soon as it is made
SETTLED = "settled"  # the run ended and its thumbnails are in (or watching ended)
PAUSED = "paused"  # this view was paused (detail: None for stop(), or a WatchTimeout)
RATE_LIMITED = "rate_limited"  # detail: seconds between checks the limit allows, or None
OUTPUT = "output"  # an output's kind is known; detail: its OutputInfo (before any thumbnail)
CANCEL = "cancel"  # a cancel request was sent or answered; detail: None, or the refusal
CANCEL_RATE_LIMITED_TRIES = 3  # a 429 means the cancel did not run: re-send it this often
MAX_CANCEL_WAIT = 60.0  # longest wait (seconds) a 429 may impose before a re-sent cancel


class WatchView(Protocol):
    """What a view of a run implements; held weakly by its watch."""

    def watch_changed(self, watch: RunWatch, change: str, detail: Any) -> None: ...


@dataclass(frozen=True)
class Retrying:
    """A transient failure: attempt ``failures`` of ``max_failures``, next try in ``retry_in``."""

    error: ModelsLabError
    failures: int
    max_failures: int
    retry_in: float


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
        execution_id: int | str,
        *,
        scheduler: Scheduler | None = None,
        history: DurationHistory | None = None,
        owns_client: bool = False,
    ) -> None:
        self.client = client
        self.workflow_id = str(workflow_id)
        self.execution_id = execution_id
        self.scheduler = scheduler or shared_scheduler()
        self.snapshot: RunSnapshot | None = None
        self.first_seen: datetime | None = None  # when we first saw it running
        self._seen_unfinished = False  # some answer had it queued or running
        self.error: BaseException | None = None  # what ended watching before the run ended
        self.retrying: Retrying | None = None  # the current transient trouble, if any
        #: seconds between checks while the workflow's rate limit sets the pace, else None
        self.paced: float | None = None
        self.thumbnails: dict[int, Thumbnail] = {}  # by output index, as they arrive
        self.outputs: dict[int, OutputInfo] = {}  # each output's kind, by index, once known
        self.cancelling = False  # a cancel was asked for and the run has not ended yet
        self.cancel_error: ModelsLabError | None = None  # why the last cancel was refused
        self._history = history
        self._owns_client = owns_client
        self.registry_key: tuple[Any, ...] = ()  # set by watch_for()
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)  # wait() sleeps on it
        self._views: weakref.WeakKeyDictionary[Any, _Attachment] = weakref.WeakKeyDictionary()
        self._settled = False
        self._settling = False  # views are being told; waiters wake right after
        self._waiters: list[tuple[weakref.ref[Any], Callable[[], None]]] = []
        self._generation = 0  # of thumbnail loads: a reload at a larger size drops older ones
        # True from start() until the poller's end has been heard and settled. The poller goes
        # inactive a moment before it reports, and the views are told before the watch
        # settles: a wait() or start() in either gap must not begin a second session (it
        # would wipe the error that ended this one).
        self._session_open = False
        self._loaded = (0, 0)  # (size, count) of the thumbnails loaded or loading
        self._loading = 0
        self._media_cancel = threading.Event()
        self._poller = RunPoller(
            client, self.workflow_id, execution_id, listener=self,
            policy=PollPolicy(), scheduler=self.scheduler,
            next_change=weak_callback(self._next_change),
            budget=budget_for(client.account, self.workflow_id),
        )

    # -- what views read ----------------------------------------------------------------

    @property
    def polls(self) -> int:
        return self._poller.polls

    @property
    def polling(self) -> bool:
        return self._poller.active

    @property
    def ended(self) -> bool:
        """The run reached a terminal status."""
        return self.snapshot is not None and self.snapshot.is_terminal

    @property
    def settled(self) -> bool:
        """The run ended and its thumbnails are in, or watching ended on an error."""
        return self._settled

    @property
    def max_failures(self) -> int:
        return self._poller.policy.max_failures

    @property
    def history(self) -> DurationHistory:
        return self._history or shared_history()

    def elapsed(self, now: datetime | None = None) -> float | None:
        snapshot = self.snapshot
        return snapshot.elapsed(now, self.first_seen) if snapshot is not None else None

    def estimate(self) -> Estimate | None:
        """Time left and progress by expected time, once this workflow completed before."""
        snapshot = self.snapshot
        if snapshot is None:
            return None
        return self.history.estimate(snapshot, workflow_id=self.workflow_id)

    def thumbnails_in_order(self) -> list[Thumbnail]:
        with self._lock:
            return [thumb for _, thumb in sorted(self.thumbnails.items())]

    def views(self) -> list[Any]:
        with self._lock:
            return list(self._views.keys())

    # -- views come and go ----------------------------------------------------------------

    def attach(self, view: WatchView, policy: PollPolicy, *, thumbnail_size: int = 0,
               max_thumbnails: int = 0) -> None:
        """Register a view (not yet wanting polling): its policy and thumbnail needs."""
        with self._lock:
            self._views[view] = _Attachment(policy, thumbnail_size, max_thumbnails)

    def want(self, view: WatchView) -> None:
        """The view wants the run watched: poll (unless the run ended, or a session is still
        open), load the thumbnails it needs. Also how Retry restarts after an error."""
        with self._lock:
            attachment = self._views.get(view)
            if attachment is None:
                return
            if not attachment.active:
                attachment.active, attachment.interrupted = True, None
                self._start_view_timeout(view, attachment)
            if self.ended:
                self._load_more_thumbnails()
            elif not self._session_open:
                self._start_session()
            else:
                self._poller.policy = self._combined_policy()

    def pause(self, view: WatchView, reason: BaseException | None = None) -> None:
        """The view no longer wants polling; polling stops once no view wants it."""
        with self._lock:
            attachment = self._views.get(view)
            if attachment is None or not attachment.active:
                return
            attachment.active = False
            attachment.interrupted = reason or Stopped()
            if attachment.timeout_job is not None:
                attachment.timeout_job.cancel()
                attachment.timeout_job = None
            self._stop_if_unwanted()
            self._changed.notify_all()
            callbacks = self._take_waiters(view)
        for callback in callbacks:
            _call_safely(callback)

    def detach(self, view: WatchView) -> None:
        """The view is gone (closed); the last view to go ends the watch."""
        with self._lock:
            self.pause(view)
            self._views.pop(view, None)
            last = not self._views
        if last:
            self._end()

    def wants_polling(self, view: WatchView) -> bool:
        with self._lock:
            attachment = self._views.get(view)
            return attachment is not None and attachment.active

    def interrupted(self, view: WatchView) -> BaseException | None:
        """Why this view stopped watching (its ``stop()`` or its timeout), else None."""
        with self._lock:
            attachment = self._views.get(view)
            return attachment.interrupted if attachment is not None else None

    # -- waiting ------------------------------------------------------------------------

    def wait(self, view: WatchView, timeout: float | None = None) -> RunSnapshot:
        """Block until settled (or this view stopped); see ``WorkflowRunWidget.wait``."""
        if not self.wait_done(view, timeout):
            raise TimeoutError(f"the run did not finish within {timeout:g} s")
        return self.outcome(view)

    def never_started(self, view: WatchView) -> bool:
        """The view was made with ``autostart=False`` and has not started: waiting starts it.
        (Not a view that stopped, nor one whose watching just ended: its session may still be
        settling, and starting it again would send a second request.)"""
        with self._lock:
            return not self._settled and not self.wants_polling(view) \
                and not self.interrupted(view)

    def wait_done(self, view: WatchView, timeout: float | None = None) -> bool:
        """Block until ``done_for(view)``; False if ``timeout`` passed first. Starts watching
        for a view that never started (``autostart=False``), not for one that was stopped."""
        with self._lock:
            if self.never_started(view):
                self.want(view)
            return self._changed.wait_for(lambda: self._done_for(view), timeout)

    def when_done(self, view: WatchView, callback: Callable[[], None]) -> None:
        """Call ``callback`` once ``wait(view)`` would return or raise at once (settled, or the
        view stopped): now, or later on a background thread. The hook ``wait_async`` uses."""
        with self._lock:
            if not self._done_for(view):
                self._waiters.append((weakref.ref(view), callback))
                return
        callback()

    def _take_waiters(self, view: WatchView | None) -> list[Callable[[], None]]:
        """Remove and return the callbacks for ``view`` (None: all of them); lock held."""
        taken = [cb for ref, cb in self._waiters if view is None or ref() is view]
        self._waiters = [(r, cb) for r, cb in self._waiters if view is not None and r() is not view]
        return taken

    def outcome(self, view: WatchView) -> RunSnapshot:
        """What ``wait()`` returns or raises now that it is done waiting."""
        with self._lock:
            return self._outcome(view)

    def done_for(self, view: WatchView) -> bool:
        with self._lock:
            return self._done_for(view)

    def _done_for(self, view: WatchView) -> bool:
        attachment = self._views.get(view)  # None: the view was closed
        return self._settled or attachment is None or attachment.interrupted is not None

    def _outcome(self, view: WatchView) -> RunSnapshot:
        if self._settled and self.error is not None:
            raise self.error
        if self._settled and self.snapshot is not None:
            return self.snapshot
        if view not in self._views:
            raise RuntimeError("the view was closed before the run settled")
        interrupted = self.interrupted(view)
        if isinstance(interrupted, WatchTimeout):
            raise interrupted
        raise RuntimeError("watching was stopped before the run ended; call start()")

    # -- the poller's listener (background threads) ---------------------------------------

    def on_snapshot(self, snapshot: RunSnapshot, polls: int) -> None:
        with self._lock:
            previous = self.snapshot
            self.snapshot = snapshot
            if snapshot.status == "running" and self.first_seen is None:
                self.first_seen = datetime.now(timezone.utc)
            if snapshot.is_terminal:
                self.cancelling = False
            had_notice, self.retrying = self.retrying is not None, None
            changed = had_notice or previous is None or _shown(previous) != _shown(snapshot)
            self._seen_unfinished = self._seen_unfinished or not snapshot.is_terminal
        self._tell_account(snapshot)
        self._notify(SNAPSHOT, changed)

    def on_poll_error(self, error: ModelsLabError, failures: int, retry_in: float) -> None:
        with self._lock:
            self.retrying = Retrying(error, failures, self.max_failures, retry_in)
        self._notify(RETRYING, self.retrying)

    def on_paced(self, seconds: float | None) -> None:
        """The workflow's rate limit lets this run be checked every ``seconds`` (None: at the
        interval again). Not an error: views say it calmly."""
        with self._lock:
            self.paced = seconds
        self._notify(RATE_LIMITED, seconds)

    def on_finished(self, snapshot: RunSnapshot | None, error: BaseException | None) -> None:
        with self._lock:
            if self._poller.active:
                return  # a late word from a session that a new one has already replaced
            self.retrying = None
            self.paced = None
            if error is not None:
                self.error = error
            elif snapshot is not None and self._seen_unfinished:
                # Learns from completed runs only, and only from a run seen running: one
                # found already finished was learnt from when it ran (or is not news).
                # Filed under the workflow asked for, not the one the server names.
                self.history.record(snapshot, workflow_id=self.workflow_id)
        self._notify(ENDED, error)
        with self._lock:
            loading = error is None and self._load_more_thumbnails()
        if not loading:
            self._settle()

    # -- internals ----------------------------------------------------------------------

    def _start_session(self) -> None:
        if isinstance(self.error, AuthenticationError) or not self.client.has_api_key:
            self._reload_key()
        self._session_open = True
        self.error = None
        self.retrying = None
        self._settled = False
        self._poller.policy = self._combined_policy()
        self._poller.start()

    def _reload_key(self) -> None:
        """Retry after "No API key" or a rejected key does what the card advises: read
        MODELSLAB_API_KEY again (when the key came from it). A new key is a new account, so
        the registry finds this watch under it from now on."""
        if self.client.reload_key_from_environment():
            _rekey(self, (self.client.account, *self.registry_key[1:]))

    def _combined_policy(self) -> PollPolicy:
        """The most eager interval of the views that want polling; timeouts are per view."""
        wanting = [a.policy for a in self._views.values() if a.active] or [PollPolicy()]
        first = wanting[0]
        return replace(first, interval=min(p.interval for p in wanting), timeout=None)

    def _stop_if_unwanted(self) -> None:
        if any(a.active for a in self._views.values()):
            self._poller.policy = self._combined_policy()
            return
        self._poller.stop()
        self._session_open = False

    def _start_view_timeout(self, view: WatchView, attachment: _Attachment) -> None:
        seconds = attachment.policy.timeout
        if seconds is None or self.ended:
            return
        view_ref, watch_ref = weakref.ref(view), weakref.ref(self)

        def time_out() -> None:
            target, watch = view_ref(), watch_ref()
            if target is not None and watch is not None:
                watch._time_out(target, seconds)

        attachment.timeout_job = self.scheduler.call_later(seconds, time_out, in_pool=False)

    def _time_out(self, view: WatchView, seconds: float) -> None:
        error = WatchTimeout(
            f"Stopped watching after {seconds:g} s: the run had not finished."
        )
        with self._lock:
            attachment = self._views.get(view)
            if attachment is None or not attachment.active or self.ended:
                return
            attachment.timeout_job = None
            self.pause(view, error)
        _tell(view, self, PAUSED, error)

    def _load_more_thumbnails(self) -> bool:
        """Start loading thumbnails that the views need and that are not loaded yet (lock
        held); True while some are loading."""
        snapshot = self.snapshot
        if snapshot is None or snapshot.status != "completed" or not snapshot.outputs:
            return self._loading > 0
        size = max((a.thumbnail_size for a in self._views.values() if a.active), default=0)
        count = max((a.max_thumbnails for a in self._views.values() if a.active), default=0)
        count = min(count, len(snapshot.outputs))
        loaded_size, loaded_count = self._loaded
        if size <= 0 or count <= 0 or (size <= loaded_size and count <= loaded_count):
            return self._loading > 0
        if size > loaded_size:  # a bigger view came: load them all again, at its size
            self.thumbnails, start = {}, 0
            self._generation += 1
        else:  # same size: only the outputs not loaded yet
            size, start = loaded_size, loaded_count
        self._loaded = (size, count)
        outputs = candidates_for(snapshot.outputs, snapshot.proxy_links)[start:count]
        self._loading += len(outputs)
        self._settled = False
        for index, candidates in enumerate(outputs, start):
            # The download lane of the output's host: never the workers that poll, and only
            # a few at a time per host, so a slow image host cannot stall any watch.
            self.scheduler.submit_download(url_host(candidates[0]), self._load_output, index,
                                           candidates, size, self._generation)
        return True

    def _load_output(self, index: int, candidates: list[str], size: int,
                     generation: int) -> None:
        """One output, on a pool thread: learn its kind (its URL's extension, else a probe
        of a few KB), then, for an image only, make its thumbnail. Video and audio are never
        downloaded here: the browser streams them from their URL."""
        thumb: Thumbnail | None = None
        try:
            if self._media_cancel.is_set():
                return
            info = self._described(index, candidates)
            if info.kind is OutputKind.IMAGE:
                thumb = load_thumbnail(self.client, index, candidates, size,
                                       cancel=self._media_cancel)
        except Exception as exc:  # whatever went wrong, the views must hear of this output
            log.exception("loading output %d of run %s failed", index, self.execution_id)
            thumb = Thumbnail(index, candidates[0], error=f"could not load ({exc})")
        if not self._media_cancel.is_set():
            self._on_output_loaded(index, thumb, generation)

    def _described(self, index: int, candidates: list[str]) -> OutputInfo:
        """The output's kind, learnt once per watch (a reload at a bigger size reuses it)."""
        with self._lock:
            known = self.outputs.get(index)
        if known is not None:
            return known
        info = _describe(self.client, index, candidates, self._media_cancel)
        with self._lock:
            info = self.outputs.setdefault(index, info)
        self._notify(OUTPUT, info)
        return info

    def output_kinds(self) -> list[OutputKind]:
        """Each output's kind, in order: as described, else as its URL's extension says
        (no request), else FILE."""
        snapshot = self.snapshot
        urls = snapshot.outputs if snapshot is not None else ()
        with self._lock:
            described = dict(self.outputs)
        return [
            described[i].kind if i in described else kind_from_url(url) or OutputKind.FILE
            for i, url in enumerate(urls)
        ]

    def outputs_in_order(self) -> list[OutputInfo]:
        with self._lock:
            return [info for _, info in sorted(self.outputs.items())]

    # -- cancelling ---------------------------------------------------------------------

    def cancel(self) -> str:
        """Ask the API to cancel the run and return its message once the request was
        accepted; every view follows the run to its final status (the server decides: a run
        that completed first stays completed). A POST, so it is re-sent only after a 429 (the
        request did not run then). Raises the client's error when refused:
        RunAlreadyEndedError, NotFoundError, AuthenticationError, ..."""
        with self._lock:
            self.cancelling, self.cancel_error = True, None
        self._notify(CANCEL, None)
        try:
            message = self._send_cancel()
        except ModelsLabError as error:
            with self._lock:
                self.cancelling, self.cancel_error = False, error
            self._notify(CANCEL, error)
            if isinstance(error, RunAlreadyEndedError):
                self.poll_soon()  # learn how it ended
            raise
        with self._lock:
            self.cancelling = not self.ended
        self.poll_soon()
        return message

    def poll_soon(self) -> None:
        """Ask for the run's status now rather than at the next scheduled poll (while
        polling; a poll in flight is followed at once by another, never by two streams)."""
        self._poller.poll_soon()

    def _send_cancel(self) -> str:
        """POST the cancel in a slot of the workflow's budget (cancels go before every poll,
        and past a 429's ``retry_after``); a 429 cancelled nothing, so it is sent again."""
        budget = self._poller.budget
        for attempt in range(1, CANCEL_RATE_LIMITED_TRIES + 1):
            spending = contextlib.nullcontext() if budget is None else budget.spending(
                budget.acquire(FIRST, timeout=MAX_CANCEL_WAIT, cancel=self._media_cancel))
            try:
                with spending:
                    return self.client.cancel_run(self.workflow_id, self.execution_id)
            except RateLimitError as error:
                if attempt == CANCEL_RATE_LIMITED_TRIES or self._media_cancel.is_set():
                    raise
                if budget is None:  # no budget to wait in: wait as the server asks
                    seconds = 1.0 if error.retry_after is None else error.retry_after
                    if self._media_cancel.wait(min(max(0.0, seconds), MAX_CANCEL_WAIT)):
                        raise
        raise AssertionError("unreachable")

    def _on_output_loaded(self, index: int, thumb: Thumbnail | None, generation: int) -> None:
        with self._lock:
            self._loading -= 1
            current = thumb is not None and generation == self._generation
            if thumb is not None and current:
                self.thumbnails[index] = thumb
            done = self._loading == 0
        if current:
            self._notify(THUMBNAIL, thumb)
        if done:
            self._settle()

    def _settle(self) -> None:
        """Tell the views first, then wake the waiters: whoever ``wait()`` returns to sees
        every view already showing the end."""
        with self._lock:
            if self._settled or self._settling or self._poller.active or self._loading:
                return
            self._settling = True
        try:
            self._notify(SETTLED, None)
        finally:
            with self._lock:
                self._settling = False
                self._settled = True
                self._session_open = False  # only now may a start() (Retry) begin anew
                callbacks = self._take_waiters(None)
                self._changed.notify_all()
        for callback in callbacks:
            _call_safely(callback)

    def _tell_account(self, snapshot: RunSnapshot) -> None:
        """The account's launch queue (``account.py``) hears which of its runs are queued or
        running and when one ends: that end lets a held launch go."""
        queue = account_queue(self.client.account)
        key = (self.workflow_id, str(self.execution_id))
        if snapshot.is_terminal:
            queue.run_ended(key)
        else:
            queue.run_active(key)

    def _end(self) -> None:
        """No view is left: stop everything this watch started."""
        self._poller.stop()
        last = self.snapshot
        if last is not None and not last.is_terminal:
            account_queue(self.client.account).run_forgotten(
                (self.workflow_id, str(self.execution_id)))
        self._media_cancel.set()
        with self._lock:
            self._session_open = False
            if not self._settled:  # e.g. thumbnails were loading: wake any waiter
                self._settled = True
                self.error = RuntimeError("the view was closed before the run settled")
            self._changed.notify_all()
            callbacks = self._take_waiters(None)
        for callback in callbacks:
            _call_safely(callback)
        _forget(self)
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

    def _notify(self, change: str, detail: Any) -> None:
        for view in self.views():
            _tell(view, self, change, detail)


class Stopped(Exception):
    """The view's own stop(): not an error, only why that view is no longer watching."""


def _describe(client: WorkflowsClient, index: int, candidates: list[str],
              cancel: threading.Event) -> OutputInfo:
    """The first telling description among an output's URLs (the output, then its proxy
    link). A URL that is not http(s) is never fetched: unless its extension names another
    kind it goes the image way, whose placeholder says why there is no picture."""
    web = [url for url in candidates if is_web_url(url)]
    if not web:
        url = candidates[0] if candidates else ""
        return OutputInfo(index, url, kind_from_url(url) or OutputKind.IMAGE,
                          error="not an http(s) URL")
    info = describe_output(client, web[0], index, cancel=cancel)
    for url in web[1:]:
        if info.error is None:
            break
        info = describe_output(client, url, index, cancel=cancel)
    return info


def _shown(snapshot: RunSnapshot) -> tuple[Any, ...]:
    """What a view shows of an answer (moving timers are a view's own tick)."""
    return (snapshot.status, snapshot.steps, snapshot.outputs, snapshot.error)


def _tell(view: WatchView, watch: RunWatch, change: str, detail: Any) -> None:
    try:
        view.watch_changed(watch, change, detail)
    except Exception:  # one broken view must not stop the others (or the poller)
        log.exception("a view of run %s failed to update", watch.execution_id)


def _call_safely(callback: Callable[[], None]) -> None:
    try:
        callback()
    except Exception:
        log.exception("a settle callback failed")


# -- one watch per run per process --------------------------------------------------------

_registry: weakref.WeakValueDictionary[tuple[Any, ...], RunWatch] = (
    weakref.WeakValueDictionary()
)
# Re-entrant: garbage collection can close a forgotten widget (ipywidgets' __del__ closes)
# at any allocation, also while this thread holds the lock, and closing one forgets its watch.
_registry_lock = threading.RLock()


def watch_for(
    client: WorkflowsClient,
    workflow_id: str,
    execution_id: int | str,
    *,
    scheduler: Scheduler | None = None,
    owns_client: bool = False,
) -> RunWatch:
    """The process's watch of this run, made on first use. A view that made its own client
    passes ``owns_client=True``: the watch closes it when the last view goes, and if another
    view's watch already exists, that client is closed at once (it would never be used)."""
    scheduler = scheduler or shared_scheduler()
    key = (client.account, str(workflow_id), str(execution_id), id(scheduler))
    with _registry_lock:
        existing = _registry.get(key)
    if existing is None:
        made = RunWatch(client, workflow_id, execution_id, scheduler=scheduler,
                        owns_client=owns_client)
        made.registry_key = key
        with _registry_lock:
            existing = _registry.setdefault(key, made)
        if existing is made:
            return made
        made.discard()  # another thread registered the same run a moment before us
    if owns_client and existing.client is not client:
        client.close()
    return existing


def _rekey(watch: RunWatch, key: tuple[Any, ...]) -> None:
    """File a registered watch under a new key (its client's key changed). Should another
    watch hold that key already, this one stays unregistered and ends with its last view."""
    if not watch.registry_key:
        return
    with _registry_lock:
        if _registry.get(watch.registry_key) is watch:
            del _registry[watch.registry_key]
        if _registry.setdefault(key, watch) is watch:
            watch.registry_key = key


def _forget(watch: RunWatch) -> None:
    with _registry_lock:
        if _registry.get(watch.registry_key) is watch:
            del _registry[watch.registry_key]
