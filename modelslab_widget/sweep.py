"""Sweep: many runs of one workflow, launched under the account's queue limit, watched as one.

A sweep is a list of parameter sets (``Sweep.grid`` makes the product of some axes). It
launches them in order, at most ``max_queued`` of its runs queued or running at once (the
account's queue limit when known, else 5, the smallest plan's, tried one launch beyond until
a queue-full 429 names the limit: 5, 10 or 15 by plan), each launch in the workflow's
request budget (``budget.py``) and in the account's launch line (``account.py``), each a
``PendingRun`` (``pending.py``): a queue-full 429 lowers ``max_queued`` to the limit it names
and the launch waits for one of the account's runs to end. A launch is sent once, and again
only after a 429 (nothing was started then). A refusal (a 422 and its field messages) is kept
as that run's result and the others go on; a launch whose answer was lost may have started a
run, so it is shown as lost and never re-sent by itself.

Every launch is written to the manifest (``manifest.py``) before it is sent and after its
answer, so ``Sweep.resume(manifest)`` in a new kernel watches the runs already launched and
launches only those never sent. Each launched run is watched by its ``RunWatch``
(``runwatch.py``), shared with any card of it. This module has no GUI: in a notebook the sweep
displays as its grid (``sweepgrid.py``), made on first display on the main thread; the
command line draws it as text.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .account import account_queue
from .client import WorkflowsClient, json_params
from .errors import ModelsLabError, QueueFullError
from .listeners import Listeners
from .manifest import Manifest, RunRecord
from .pending import LaunchPhase, PendingRun
from .poller import PollPolicy
from .registry import watch_for
from .runstate import RunState
from .runtime import default_runtime
from .runwatch import RunWatch
from .scheduler import Scheduler, shared_scheduler
from .text import WATCH_ERROR

DEFAULT_MAX_QUEUED = 5  # the smallest plan's queue limit (rate-limits.mdx)
PLANS = (5, 10, 15)  # the plans' queue limits: what an unknown account is tried for
THUMBNAIL_SIZE = 160  # px: a grid cell's picture
CANCEL_WAIT = 30.0  # seconds cancel() waits for a launch already on its way

# A run's state in the sweep (``SweepRun.state``); a launched run's status is its watch's.
WAITING = "waiting"  # not sent yet
SENDING = "sending"  # in the account's line, waiting for a slot, or on its way
LAUNCHED = "launched"  # the server started it: watched
REFUSED = "refused"  # the server refused it (not a 429): kept as its result
LOST = "lost"  # sent, no answer: it may have started; never re-sent by itself
SKIPPED = "skipped"  # cancelled before it was sent
NOT_SENT = frozenset({WAITING, SENDING})


class SweepRun:
    """One run of a sweep: its parameters and where it is. A view of its run's ``RunWatch``
    once launched (held by the sweep; the watch holds it weakly)."""

    def __init__(self, sweep: Sweep, index: int, params: dict[str, Any]) -> None:
        self.index = index
        self.params = params
        self.state = WAITING
        self.execution_id: int | str | None = None
        self.error = ""
        self.watch: RunWatch | None = None
        self._sweep = sweep
        self._recorded_end = False
        self.cancel_sent = False
        self._drawn: RunState | None = None  # the last state of its watch the sweep heard

    @property
    def label(self) -> str:
        """The parameters that tell this run from the sweep's others (``prompt=a cat``)."""
        return self._sweep.label_of(self)

    @property
    def status(self) -> str:
        """``waiting``, ``sending``, ``refused``, ``lost`` or ``skipped`` before a run exists;
        then the run's status (``pending`` ... ``completed``), or ``error`` when watching it
        ended without it ending."""
        if self.state != LAUNCHED or self.watch is None:
            return self.state
        state = self.watch.state_for(self)
        if state.trouble is not None:
            return WATCH_ERROR
        return state.snapshot.status if state.snapshot is not None else "pending"

    @property
    def active(self) -> bool:
        """Counts toward ``max_queued``: on its way, or launched and not yet seen ended."""
        if self.state == SENDING:
            return True
        if self.state != LAUNCHED:
            return False
        if self.watch is None:
            return True
        state = self.watch.state
        return not state.ended and not state.gave_up

    @property
    def done(self) -> bool:
        """Nothing more will happen: ended and settled (thumbnails in), or never launched."""
        if self.state in (REFUSED, LOST, SKIPPED):
            return True
        return self.state == LAUNCHED and self.watch is not None and self.watch.done_for(self)

    @property
    def duration(self) -> float | None:
        snapshot = self.watch.snapshot if self.watch is not None else None
        if snapshot is None or not snapshot.is_terminal:
            return None
        return snapshot.execution_time if snapshot.execution_time is not None \
            else self.watch.elapsed() if self.watch is not None else None

    @property
    def outputs(self) -> list[str]:
        snapshot = self.watch.snapshot if self.watch is not None else None
        return list(snapshot.outputs) if snapshot is not None else []

    def result(self) -> dict[str, Any]:
        snapshot = self.watch.snapshot if self.watch is not None else None
        error = self.error or (snapshot.error or "" if snapshot is not None else "")
        if not error and self.watch is not None and self.watch.error is not None:
            error = str(self.watch.error)
        return {"index": self.index, "params": dict(self.params),
                "execution_id": self.execution_id, "status": self.status,
                "duration": self.duration, "outputs": self.outputs, "error": error}

    # -- the watch's view -----------------------------------------------------------------

    def show(self, state: RunState) -> None:
        if state.newer_than(self._drawn) and not state.looks_like(self._drawn):
            self._drawn = state
            self._sweep._run_changed(self)

    def __repr__(self) -> str:
        return f"SweepRun({self.index}, {self.label or self.params!r}, {self.status})"


class Sweep:
    """Many runs of one workflow, launched under the account's queue limit (see the module
    docstring). In a notebook it displays as a grid; ``wait()`` blocks until every run is
    done and returns the counts by status."""

    def __init__(
        self,
        workflow_id: str,
        runs: Iterable[Mapping[str, Any]],
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        client: WorkflowsClient | None = None,
        poll_interval: float = PollPolicy.interval,
        max_queued: int | None = None,
        manifest: str | Path | None = None,
        autostart: bool = True,
        thumbnail_size: int = THUMBNAIL_SIZE,
        thumbnails: bool = True,
        scheduler: Scheduler | None = None,
        axes: Mapping[str, Sequence[Any]] | None = None,
        _resumed: Sequence[RunRecord] | None = None,
        _manifest: Manifest | None = None,
    ) -> None:
        if not isinstance(workflow_id, str) or not workflow_id.strip():
            raise ValueError("workflow_id must be a non-empty string")
        params = _checked_runs(runs)
        if max_queued is not None and (isinstance(max_queued, bool)
                                       or not isinstance(max_queued, int) or max_queued < 1):
            raise ValueError(f"max_queued must be a whole number >= 1 (got {max_queued!r})")
        if isinstance(thumbnail_size, bool) or not isinstance(thumbnail_size, int) \
                or thumbnail_size < 1:
            raise ValueError(f"thumbnail_size must be a whole number >= 1 "
                             f"(got {thumbnail_size!r})")
        self.workflow_id = workflow_id
        self.policy = PollPolicy(poll_interval)
        self.thumbnail_size = thumbnail_size
        self._thumbnails = 1 if thumbnails else 0  # a cell shows the first output's
        self.axes = {key: list(values) for key, values in axes.items()} if axes else None
        self._owns_client = client is None
        self.client = client or WorkflowsClient(api_key, base_url=base_url)
        self._scheduler = scheduler or shared_scheduler()
        self._account = account_queue(self.client.account)
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self.runs = [SweepRun(self, index, p) for index, p in enumerate(params)]
        self._varying = _varying_keys(params)
        self.max_queued = max_queued or self._account.limit or DEFAULT_MAX_QUEUED
        # Not told and not yet learnt from a queue-full 429: the sweep tries one launch
        # beyond max_queued; accepted, the account is on a larger plan (``PLANS``).
        self._limit_known = max_queued is not None or self._account.limit is not None
        self._sending: SweepRun | None = None  # the run whose launch is pending
        self._pending: PendingRun | None = None  # its launch
        self._refusals_heard = 0  # of the pending launch's 429s
        self._post_done = threading.Event()  # no launch pending (its outcome handled)
        self._post_done.set()
        self._started = self._cancelled = self._closed = False
        self._listeners: Listeners[SweepRun | None] = Listeners("a sweep view")
        self._waiters: list[Callable[[], None]] = []
        self._grid: Any = None
        self.queue_full_answers = 0  # queue-full 429s this sweep's launches met
        self._manifest = _manifest or Manifest.create(
            manifest, workflow_id, self.client.base_url, params, self.axes)
        if _resumed is not None:
            self._restore(_resumed)
        if autostart:
            self.start()

    # -- making one -------------------------------------------------------------------------

    @classmethod
    def grid(cls, workflow_id: str, axes: Mapping[str, Sequence[Any]],
             base: Mapping[str, Any] | None = None, **kwargs: Any) -> Sweep:
        """The product of ``axes`` (each a parameter and its values), each on top of
        ``base``: ``Sweep.grid(wf, {"prompt": ["a cat", "a fox"], "seed": [1, 2, 3]})`` is six
        runs; with two axes the grid's rows are the first, its columns the second."""
        if not isinstance(axes, Mapping) or not axes:
            raise ValueError("axes must map at least one parameter to its values")
        for key, values in axes.items():
            if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) \
                    or not values:
                raise ValueError(f"axis {key!r} must be a non-empty list of values")
        keys = list(axes)
        runs = [{**(base or {}), **dict(zip(keys, combo, strict=True))}
                for combo in itertools.product(*(axes[key] for key in keys))]
        return cls(workflow_id, runs, axes=axes, **kwargs)

    @classmethod
    def resume(cls, manifest: str | Path, **kwargs: Any) -> Sweep:
        """The sweep of ``manifest`` in a new kernel: runs already launched are watched,
        runs never sent are launched, a launch whose answer was lost is shown as lost and
        not re-sent. ``api_key``/``base_url``/``client`` as for a new sweep (the base URL
        defaults to the manifest's)."""
        opened, data = Manifest.reopen(manifest)
        if kwargs.get("client") is None and kwargs.get("base_url") is None and data.base_url:
            kwargs["base_url"] = data.base_url
        return cls(data.workflow_id, [record.params for record in data.runs],
                   axes=data.axes, _resumed=data.runs, _manifest=opened, **kwargs)

    # -- public ---------------------------------------------------------------------------

    @property
    def manifest(self) -> Path:
        """The manifest's path (give it to ``Sweep.resume`` after a kernel restart)."""
        return self._manifest.path

    def start(self) -> None:
        """Start launching (``autostart=False`` waits for this)."""
        with self._lock:
            if self._started or self._closed:
                return
            self._started = True
        for run in self.runs:
            if run.state == LAUNCHED and run.watch is None:
                self._watch_run(run)
        self._pump()

    def counts(self) -> dict[str, int]:
        """How many runs are in each status (``results()``' "status")."""
        with self._lock:
            return dict(Counter(run.status for run in self.runs))

    @property
    def done(self) -> bool:
        with self._lock:
            return all(run.done for run in self.runs)

    def results(self) -> list[dict[str, Any]]:
        """One dict per run, in order: "index", "params", "execution_id" (None until
        launched), "status", "duration" (seconds, once ended), "outputs" (URLs), "error"."""
        with self._lock:
            return [run.result() for run in self.runs]

    def to_dataframe(self) -> Any:
        """``results()`` as a pandas DataFrame, one column per parameter (pandas needed)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("to_dataframe() needs pandas: pip install pandas") from None
        rows = []
        for result in self.results():
            params = result.pop("params")
            rows.append({**{_column(key, result): value for key, value in params.items()},
                         **result})
        return pd.DataFrame(rows)

    def wait(self, timeout: float | None = None) -> dict[str, int]:
        """Block until every run is done (ended and its thumbnail in, or never launched);
        returns ``counts()``. Raises TimeoutError when ``timeout`` passes first. A sweep made
        with ``autostart=False`` starts."""
        self.start()
        with self._changed:
            if not self._changed.wait_for(lambda: self._all_done(), timeout):
                raise self._timed_out(timeout)
        return self.counts()

    async def wait_async(self, timeout: float | None = None) -> dict[str, int]:
        """Like ``wait()``, without blocking the event loop."""
        from .aio import until_done

        self.start()
        try:
            await until_done(self, self, timeout)  # type: ignore[arg-type]
        except TimeoutError:
            raise self._timed_out(timeout) from None
        return self.counts()

    def _timed_out(self, timeout: float | None) -> TimeoutError:
        left = [run for run in self.runs if not run.done]
        statuses = ", ".join(f"{n} {status}" for status, n in
                             sorted(Counter(run.status for run in left).items()))
        return TimeoutError(f"{len(left)} of the sweep's {len(self.runs)} runs did not finish "
                            f"within {timeout:g} s ({statuses})")

    def cancel(self) -> int:
        """Launch nothing more (once this returns, no launch of the sweep is sent) and ask
        the API to cancel every launched run still queued or running; returns how many
        cancels were accepted."""
        with self._lock:
            self._cancelled = True
            pending = self._pending
            for run in self.runs:
                if run.state == WAITING:
                    self._skip(run)
        if pending is not None:
            pending.cancel()  # unsent (in the account's line or the budget's): its run skipped
        self._post_done.wait(CANCEL_WAIT)  # a launch on its way: its answer tells if it ran
        with self._lock:
            running = [run for run in self.runs if run.active and run.watch is not None]
        futures = [future for run in running if (future := self._cancel_run(run)) is not None]
        accepted = sum(1 for future in futures if future.result())
        self._notify(None)
        return accepted

    def save_outputs(self, directory: str | Path) -> list[Path]:
        """Save every completed run's outputs into ``directory`` (created if missing); each
        file's name starts with the run's number and the parameters that tell it apart
        (``003-prompt=a_fox,seed=2-0.png``). Returns the paths; never overwrites a file."""
        from .media import candidates_for
        from .saving import save_outputs as save

        folder = Path(directory)
        saved: list[Path] = []
        for run in self.runs:
            snapshot = run.watch.snapshot if run.watch is not None else None
            if snapshot is None or snapshot.status != "completed":
                continue
            outputs = candidates_for(snapshot.outputs, snapshot.proxy_links)
            paths = save(self.client, [urls[0] for urls in outputs], folder,
                         fallbacks=[urls[-1] for urls in outputs])
            prefix = _file_safe(f"{run.index + 1:03d}-{run.label or 'run'}")
            saved += [_renamed(path, f"{prefix}-{path.name}") for path in paths]
        return saved

    def label_of(self, run: SweepRun) -> str:
        """``key=value`` of the parameters that differ between the sweep's runs."""
        return ", ".join(f"{key}={_short(run.params.get(key))}" for key in self._varying
                         if key in run.params)

    def listen(self, callback: Callable[[SweepRun | None], None]) -> Callable[[], None]:
        """Call ``callback(run)`` (None: the whole sweep) on every change, on a background
        thread; returns how to stop. What views use."""
        return self._listeners.add(callback)

    def close(self) -> None:
        """Stop watching (launched runs go on at ModelsLab), close the grid and the manifest;
        launches not sent yet are not sent."""
        with self._lock:
            if self._closed:
                return
            self._closed = self._cancelled = True
            pending = self._pending
        if pending is not None:
            pending.cancel()  # not sent; the manifest keeps it unsent, for a resume
        for run in self.runs:
            if run.watch is not None:
                run.watch.detach(run)
        if self._grid is not None:
            self._grid.close()
        self._manifest.close()
        if self._owns_client:
            self.client.close()
        with self._changed:
            self._changed.notify_all()
            waiters, self._waiters = self._waiters, []
        for callback in waiters:
            callback()

    # -- display ----------------------------------------------------------------------------

    def _ipython_display_(self) -> None:
        """Show the grid under a display ID: once every run is done the output also gets
        the final grid as static HTML, which a saved notebook keeps."""
        self.grid_view()._ipython_display_()

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        return self.grid_view().mimebundle()

    def grid_view(self) -> Any:
        """The sweep's grid widget, made on first use (call on the main thread)."""
        if self._grid is None:
            from .sweepgrid import SweepGrid

            self._grid = SweepGrid(self)
        return self._grid

    def __repr__(self) -> str:
        counts = ", ".join(f"{n} {status}" for status, n in sorted(self.counts().items()))
        return (f"Sweep of {len(self.runs)} runs of workflow {self.workflow_id} "
                f"({counts}) · manifest {self.manifest}")

    # -- aio's hooks (the sweep is its own "watch" for until_done) ----------------------------

    def when_done(self, view: Any, callback: Callable[[], None]) -> None:
        with self._lock:
            if not self._all_done():
                self._waiters.append(callback)
                return
        callback()

    def done_for(self, view: Any) -> bool:
        with self._lock:
            return self._all_done()

    # -- launching (pool and timer threads) --------------------------------------------------

    def _pump(self) -> None:
        """Send the next waiting run, if the sweep has room under ``max_queued``."""
        with self._lock:
            if not self._started or self._cancelled or self._sending is not None:
                return
            active = sum(1 for run in self.runs if run.active)
            probing = not self._limit_known and self.max_queued < PLANS[-1]
            if active >= self.max_queued + (1 if probing else 0):
                return
            run = next((r for r in self.runs if r.state == WAITING), None)
            if run is None:
                return
            pending = PendingRun(self.client, self.workflow_id, run.params,
                                 runtime=default_runtime().with_parts(scheduler=self._scheduler))
            run.state, self._sending, self._pending = SENDING, run, pending
            self._refusals_heard = 0
            self._post_done.clear()
        pending.listen(lambda changed: self._launch_changed(run, changed))
        self._notify(run)
        pending.start()

    def _launch_changed(self, run: SweepRun, pending: PendingRun) -> None:
        """What the run's pending launch did (on the thread that did it)."""
        phase = pending.phase
        if phase is LaunchPhase.SENDING:
            self._manifest.event(run.index, "sending")  # synced before the POST goes
        elif phase in (LaunchPhase.WAITING, LaunchPhase.HELD) \
                and pending.refusals > self._refusals_heard:
            self._refusals_heard = pending.refusals
            self._not_started(run, pending)
        elif phase is LaunchPhase.LAUNCHED:
            self._launched(run, pending)
            self._pump()
        elif phase is LaunchPhase.LOST:
            self._settle_unlaunched(run, LOST, f"no answer to the launch: {pending.error}")
            self._pump()
        elif phase is LaunchPhase.REFUSED:
            self._settle_unlaunched(run, REFUSED, str(pending.error))
            self._pump()
        elif phase is LaunchPhase.CANCELLED:
            self._unsent(run)

    def _not_started(self, run: SweepRun, pending: PendingRun) -> None:
        """A 429: nothing was started. It is sent again when allowed (a full queue: first in
        the account's line, once one of its runs ends); not at all once the sweep is
        cancelled."""
        error = pending.last_refusal
        with self._lock:
            cancelled = self._cancelled
            if not cancelled and isinstance(error, QueueFullError):
                self.queue_full_answers += 1
                others = sum(1 for r in self.runs if r.active and r is not run)
                if error.limit or not self._limit_known:
                    self.max_queued = max(1, error.limit or min(self.max_queued, others or 1))
                    self._limit_known = True
        if cancelled:
            pending.cancel()  # cancel() came while it was on its way: it is not sent again
            return
        self._manifest.event(run.index, "requeued")

    def _unsent(self, run: SweepRun) -> None:
        """The launch was cancelled before it was sent: skipped (closed: left unsent in the
        manifest, so a resume launches it)."""
        with self._lock:
            if self._sending is run:
                self._sending = self._pending = None
            if run.state == SENDING:
                if self._closed:
                    run.state = WAITING
                else:
                    self._skip(run)
        self._post_done.set()
        self._notify(run)

    def _launched(self, run: SweepRun, pending: PendingRun) -> None:
        with self._lock:
            run.state, run.execution_id = LAUNCHED, pending.execution_id
            self._sending = self._pending = None
            active = sum(1 for r in self.runs if r.active)
            if not self._limit_known and active > self.max_queued:  # a larger plan
                self.max_queued = next((plan for plan in PLANS if plan >= active), active)
            cancelled = self._cancelled
        self._manifest.event(run.index, "launched", execution_id=pending.execution_id)
        self._watch_run(run, pending.watch)
        self._post_done.set()
        if cancelled:  # cancel() came while this launch was on its way
            self._cancel_run(run)

    def _cancel_run(self, run: SweepRun) -> Any:
        """Ask to cancel a launched run, once (a Future of whether it was accepted)."""
        with self._lock:
            if run.cancel_sent or run.watch is None:
                return None
            run.cancel_sent = True
        return self._scheduler.submit(_cancel_quietly, run.watch)

    def _settle_unlaunched(self, run: SweepRun, state: str, error: str) -> None:
        with self._lock:
            run.state, run.error = state, error
            self._sending = self._pending = None
        self._manifest.event(run.index, state, error=error)
        self._post_done.set()
        self._run_changed(run)

    def _skip(self, run: SweepRun) -> None:
        """Lock held: a run cancelled before it was sent."""
        run.state = SKIPPED
        self._manifest.event(run.index, SKIPPED)

    def _watch_run(self, run: SweepRun, watch: RunWatch | None = None) -> None:
        """Watch a launched run (``watch``: its launch's, else the registry's)."""
        assert run.execution_id is not None
        watch = watch or watch_for(self.client, self.workflow_id, run.execution_id,
                                   scheduler=self._scheduler)
        with self._lock:
            run.watch = watch
        watch.attach(run, self.policy, thumbnail_size=self.thumbnail_size,
                     max_thumbnails=self._thumbnails)
        watch.want(run)
        # Views hear "settled" before the watch counts as settled; its waiters after.
        watch.when_done(run, lambda: self._run_changed(run))
        self._run_changed(run)

    def _restore(self, records: Sequence[RunRecord]) -> None:
        """A resumed sweep: each run as its manifest left it."""
        for run, record in zip(self.runs, records, strict=False):
            if record.state in ("launched", "ended") and record.execution_id is not None:
                run.state, run.execution_id = LAUNCHED, record.execution_id
            elif record.state == "sending":  # sent, no answer recorded: it may have started
                run.state = LOST
                run.error = ("the launch was sent but its answer was lost (the kernel "
                             "stopped): check the workflow's runs before launching it again")
            elif record.state in (REFUSED, LOST, SKIPPED):
                run.state, run.error = record.state, record.error or ""

    # -- news ---------------------------------------------------------------------------------

    def _run_changed(self, run: SweepRun) -> None:
        record_end = False
        with self._lock:
            if run.done and run.state == LAUNCHED and not run._recorded_end:
                run._recorded_end = record_end = True
        if record_end:
            self._manifest.event(run.index, "ended", status=run.status,
                                 duration=run.duration)
        self._notify(run)
        self._pump()

    def _notify(self, run: SweepRun | None) -> None:
        with self._changed:
            self._changed.notify_all()
            waiters = []
            if self._all_done():
                waiters, self._waiters = self._waiters, []
        self._listeners.tell(run)
        for callback in waiters:
            callback()

    def _all_done(self) -> bool:
        return self._closed or all(run.done for run in self.runs)


def _checked_runs(runs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every run's parameters as a dict, JSON-encodable (checked before anything is sent)."""
    if isinstance(runs, (str, bytes, Mapping)):
        raise ValueError("runs must be a list of parameter dicts")
    checked = []
    for index, params in enumerate(runs):
        if not isinstance(params, Mapping):
            raise ValueError(f"run {index + 1} must be a dict of parameters, "
                             f"not {type(params).__name__}")
        try:  # the client's own check, so nothing refused at send time passes here
            checked.append(json_params(params))
        except ValueError as error:
            raise ValueError(f"run {index + 1}: {error}") from None
    if not checked:
        raise ValueError("a sweep needs at least one run")
    return checked


def _varying_keys(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """The parameters whose values differ between runs, in first-seen order."""
    keys = list(dict.fromkeys(key for params in runs for key in params))
    return [key for key in keys
            if len({json.dumps(params.get(key), sort_keys=True) for params in runs}) > 1]


def _short(value: Any, limit: int = 40) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _column(key: str, result: Mapping[str, Any]) -> str:
    return f"param:{key}" if key in result else key


def _file_safe(text: str, limit: int = 120) -> str:
    """Letters, digits and ``.,=-`` kept, anything else ``_`` (no path, no control)."""
    kept = "".join(c if c.isascii() and (c.isalnum() or c in ".,=-") else "_" for c in text)
    return kept.strip("._")[:limit] or "run"


def _renamed(path: Path, name: str) -> Path:
    target = path.with_name(name)
    if target.exists():
        return path  # never overwrite: keep the name it was saved under
    path.rename(target)
    return target


def _cancel_quietly(watch: RunWatch | None) -> bool:
    """Cancel a run; False when it had ended already or the request failed (the run's
    status then says how it ended)."""
    if watch is None:
        return False
    try:
        watch.cancel()
    except ModelsLabError:
        return False
    return True

