"""WorkflowRunWidget: a live card for one ModelsLab workflow run.

The card is a thin ipywidgets view of a ``RunWatch`` (``runwatch.py``), which polls, learns
durations, loads thumbnails and settles; the card mirrors it into traits (``status``,
``steps``, ``error``, ``output_urls``, ``polls``) and draws. Several cards of one run share
one watch. Given a ``PendingRun`` (``pending.py``: a launch waiting its turn) instead of an
execution ID, the card shows the launch ("Queued here: starts in 4 s", with Remove) on the
pending run's watch, and the run on that same watch once the server started it.

Every child widget is created here, on the main thread, in ``__init__``; the background
threads only set values, layouts and children, which ipykernel forwards from any thread.
They never print or display, so output routing (ipykernel 6 and 7) is not involved.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import astuple, replace
from pathlib import Path
from typing import Any

import ipywidgets as widgets
from IPython.display import display, update_display
from traitlets import Dict, Int, List, Unicode

from . import render
from .aio import DeferredUpdates, in_colab, until_done
from .cardparts import Gallery, StepRows
from .checks import known_keywords, whole_number
from .client import WorkflowsClient, path_segment
from .errors import ModelsLabError, NetworkError, RunAlreadyEndedError
from .eta import Estimate
from .images import Thumbnail, encode_small, open_full_size
from .media import candidates_for, first_that_works
from .models import RunSnapshot
from .pending import LAUNCH_STATES, QUEUED, SENDING, STARTED, LaunchPhase, PendingRun
from .poller import PollPolicy
from .registry import watch_for
from .runstate import ENDS, WATCHING, Phase, Retrying, RunState
from .runtime import Runtime
from .runwatch import RunWatch
from .sanitize import clean
from .saving import save_images, save_outputs
from .scheduler import Job, Scheduler, weak_callback
from .text import (
    dropped_note,
    explain,
    format_seconds,
    kind_counts,
    pace_words,
    queued_words,
    starts_words,
)
from .urls import is_web_url

log = logging.getLogger("modelslab_widget")

DEFAULT_SLOTS = 4  # thumbnails shown as images; further outputs are listed as links
WIDGET_VIEW_MIMETYPE = "application/vnd.jupyter.widget-view+json"
# The keywords a card passes on to its VBox (public traits: layout, tooltip, ...).
_BOX_TRAITS = frozenset(name for name in widgets.VBox.class_trait_names()
                        if not name.startswith("_"))
COLAB_HINT = (
    "In Colab this card updates only while a cell waits for it: "
    "call run.wait() (or await run.wait_async())."
)
CONFIRM_SECONDS = 4.0  # how long "Confirm cancel" waits for the second click
LAUNCH_REFRESH = 1.0  # seconds between updates of a queued launch's "starts in N s"
MAX_FULL_IMAGES = 8  # full-size images images() holds by default (each may be 100s of MB)
CARD_LAYOUT = {
    "border": "1px solid var(--jp-border-color2, #e0e0e0)",
    "padding": "6px 10px",
    # As wide as the output area up to 960 px whatever it shows: a card whose width followed
    # its content would jump when the Stop button or a long step name comes and goes.
    "width": "100%",
    "max_width": "960px",
}


class WorkflowRunWidget(widgets.VBox):
    """Watch a ModelsLab workflow run: status, steps with timings, and output thumbnails.

    Polling runs on a shared background thread, so the kernel stays free. ``wait()`` blocks
    until the run ends; ``stop()``/``start()`` pause and resume this card (other views of the
    same run keep watching); ``close()`` ends it.

    ``pending`` instead of ``execution_id``: the card of a launch not answered yet (see the
    module docstring), on the pending run's client and runtime (``client``, ``api_key``,
    ``base_url``, ``runtime`` and ``scheduler`` are then not used). ``launch_state`` is then
    "queued", "sending", "started", "failed" or "removed" ("started" for a card made with an
    execution ID); ``execution_id`` is None until "started"; ``remove()`` drops a launch still
    queued, and so does closing the card; ``on_launch(card)`` is called on each change of
    ``launch_state``.
    """

    status = Unicode("unknown", help="The run's status; 'unknown' before the first answer.")
    steps = List(Dict(), help="Per step: name, status, started_at, completed_at, duration.")
    error = Unicode("", help="The failed run's error, or why watching stopped.")
    output_urls = List(Unicode(), help="URLs of the run's output images.")
    polls = Int(0, help="Status requests made so far.")

    def __init__(
        self,
        workflow_id: str,
        execution_id: int | str | None = None,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        client: WorkflowsClient | None = None,
        poll_interval: float = PollPolicy.interval,
        timeout: float | None = None,
        thumbnail_size: int = 256,
        autostart: bool = True,
        max_thumbnails: int = DEFAULT_SLOTS,
        max_failures: int = PollPolicy.max_failures,
        backoff_base: float = PollPolicy.backoff_base,
        on_complete: Callable[[WorkflowRunWidget], Any] | None = None,
        scheduler: Scheduler | None = None,
        label: str | None = None,
        runtime: Runtime | None = None,
        pending: PendingRun | None = None,
        on_launch: Callable[[WorkflowRunWidget], Any] | None = None,
        **kwargs: Any,
    ) -> None:
        path_segment(workflow_id, "workflow_id")  # refuse bad IDs before any widget exists
        if (execution_id is None) == (pending is None):
            raise ValueError("give the run's execution_id, or pending= (a launch not sent yet)")
        if pending is None:
            path_segment(execution_id, "execution_id")
        elif str(workflow_id) != pending.workflow_id:
            raise ValueError(f"pending= launches workflow {pending.workflow_id!r}, "
                             f"not {str(workflow_id)!r}")
        elif pending.watch.over and not pending.phase.ended:
            raise ValueError("this launch's card was closed while it was on its way: once it "
                             "started, watch its run by its execution ID")
        policy = PollPolicy(poll_interval, timeout, max_failures, backoff_base)  # validates
        whole_number(thumbnail_size, "thumbnail_size", 1)
        whole_number(max_thumbnails, "max_thumbnails", 0)
        if label is not None and not isinstance(label, str):
            raise ValueError(f"label must be a string (got {type(label).__name__})")
        # Only the box's own traits (layout, ...) go to ipywidgets, which would take any
        # keyword without a word: a misspelt option must not be silently ignored.
        known_keywords(kwargs, _BOX_TRAITS, type(self).__name__, card_options())
        #: what tells this run apart (e.g. its prompt): in the header, the text form, a board
        self.label = clean(label, 200) if label else ""
        self.workflow_id = str(workflow_id)
        self.execution_id = execution_id if pending is None else pending.execution_id
        self.pending = pending
        self.launch_state = STARTED if pending is None else QUEUED
        self.launch_error: Exception | None = None  # why the pending run was not started
        self.on_launch = on_launch
        self._autostart = autostart
        self._launch_decided = threading.Event()  # started, failed or removed
        self._decided_waiters: list[Callable[[], None]] = []  # wait_async()s to wake
        self._refresh_job: Job | None = None  # the next "starts in N s"
        self._closing = False
        self.thumbnail_size = thumbnail_size
        self.on_complete = on_complete
        self.snapshot: RunSnapshot | None = None
        self.thumbnails: list[Any] = []  # PIL images, in output order
        self.thumbnail_errors: dict[str, str] = {}  # url -> why it could not be shown
        self._lock = threading.RLock()
        self._completed_for_user = False  # on_complete called for this settling
        self._drawn: RunState | None = None  # the watch's state this card shows
        self._full_images: list[Any] | None = None
        if pending is not None:
            self._watch: RunWatch = pending.watch
        else:
            assert execution_id is not None  # one of the two, checked above
            self._watch = watch_for(
                client or WorkflowsClient(api_key, base_url=base_url), workflow_id,
                execution_id, runtime=runtime, scheduler=scheduler,
                owns_client=client is None,
            )
        self._build_views(max_thumbnails)
        kwargs.setdefault("layout", widgets.Layout(**CARD_LAYOUT))
        super().__init__(children=self._children(), **kwargs)
        self._setup_travel()
        self._watch.attach(self, policy, thumbnail_size=thumbnail_size,
                           max_thumbnails=max_thumbnails)
        self.observe(self._on_status_change, "status")
        self.observe(lambda _: self._update_cancel_button(), "status")
        self._sync()
        if pending is None:
            self._launch_decided.set()
            if autostart:
                self.start()
            return
        self._stop_listening = pending.listen(self._on_pending)
        if pending.phase is LaunchPhase.NEW:
            pending.start()
        self._on_pending(pending)  # what it did before the card listened

    # -- public API ---------------------------------------------------------------------

    def start(self) -> None:
        """Start (or resume) watching; once the run has ended, show its final state. A launch
        not answered yet is watched once its run started."""
        with self._lock:
            if self.launch_state != STARTED:
                self._autostart = True
                return
            state = self._watch.state_for(self)
            if state.wanted and (state.phase in WATCHING or state.ended):
                return  # already watching, or already showing the end
            self._completed_for_user = False
            self._watch.want(self)
            self._sync()
            if self.watching:
                self._schedule_tick()

    def stop(self) -> None:
        """Stop watching in this card. No status request is started for it after this
        returns (other views of the same run, if any, keep theirs)."""
        with self._lock:
            if self.launch_state != STARTED:
                self._autostart = False  # a launch still queued is not watched once it starts
            was_watching = self.watching
            self._watch.pause(self)
            self._cancel_tick()
            if was_watching and not self._watch.ended:
                self._show_message("note", "Stopped watching.", "", "Press Resume to continue.")
            self._render()  # the badge stops spinning: "Running · paused"
            self._update_controls()

    def close(self) -> None:
        """Stop watching and fetching, and close this widget's views."""
        if getattr(self, "_watch", None) is None:  # __init__ failed before watching existed
            return
        if self.pending is not None:
            with self._lock:
                self._closing = True
            self.remove()
            if hasattr(self, "_stop_listening"):
                self._stop_listening()
            self._cancel_refresh()
            self._decide_launch()
        self._cancel_tick()
        self._watch.detach(self)
        close_with_parts(*self._owned_widgets())
        _close_parts(self)
        super().close()

    def wait(self, timeout: float | None = None) -> RunSnapshot:
        """Block until the run has ended and its thumbnails are ready, and return the last
        snapshot. A failed or cancelled run returns normally. Raises ``TimeoutError`` when
        ``timeout`` passes first, or the error that ended watching (``AuthenticationError``,
        ``NotFoundError``, ``ServerError``, ...). A launch not answered yet is waited for
        first: its refusal is raised, RuntimeError if it was removed."""
        began = time.monotonic()
        if not self._launch_decided.wait(timeout):
            raise TimeoutError(f"the queued run did not start within {timeout:g} s")
        self._check_launched()
        if self._watch.never_started(self):
            self.start()  # autostart=False: wait() starts watching (not after stop())
        left = _time_left(timeout, began)
        if self._updates is not None:
            return self._wait_applying(left, timeout)
        if not self._watch.wait_done(self, left):
            raise TimeoutError(f"the run did not finish within {timeout:g} s")
        return self._watch.outcome(self)

    def save_images(self, directory: str | os.PathLike[str]) -> list[Path]:
        """Download the run's full-size outputs into ``directory`` (file names from the URLs,
        never overwriting an existing file) and return the paths."""
        outputs = self._finished_outputs()
        return save_images(self.client, [urls[0] for urls in outputs], directory,
                           fallbacks=[urls[-1] for urls in outputs])

    def images(self, max_images: int = MAX_FULL_IMAGES) -> list[Any]:
        """The first ``max_images`` full-size outputs as PIL images, downloaded on the first
        call and cached (an output that fails falls back to its proxy link, as thumbnails and
        saving do). Full-size images are big, so only that many are held; ``save_outputs``
        writes them all to disk instead."""
        everything = self._finished_outputs()
        outputs = everything[:max(0, max_images)]
        if len(everything) > len(outputs):
            warnings.warn(
                f"images() holds the first {len(outputs)} of {len(everything)} outputs; pass "
                "max_images= for more, or use save_outputs(directory) to keep them all",
                stacklevel=2,
            )
        if self._full_images is None or len(self._full_images) != len(outputs):

            def full_size(url: str) -> Any:
                return open_full_size(self.client.fetch_image(url))

            self._full_images = [first_that_works(urls, full_size)[1] for urls in outputs]
        return list(self._full_images)

    def save_outputs(
        self, directory: str | os.PathLike[str], *, allow_unknown: bool = False
    ) -> list[Path]:
        """Download every output, any kind (images, video, audio, 3D), into ``directory``,
        streamed to disk in chunks: names from the URLs with the extension of the type the bytes
        are, never overwriting a file; ``allow_unknown`` also keeps other files, as ``.bin``.
        ``save_images`` saves the images only."""
        outputs = self._finished_outputs()
        return save_outputs(self.client, [urls[0] for urls in outputs], directory,
                            fallbacks=[urls[-1] for urls in outputs], allow_unknown=allow_unknown)

    def cancel(self) -> str:
        """Ask the API to cancel this run (no confirmation) and return once it accepted the
        request; the card, and every other view of the run, then follows the run to its final
        status, which the server decides (a run that completed first shows completed). Raises
        the client's error when refused: ``RunAlreadyEndedError`` (the run had already ended),
        ``NotFoundError``, ``AuthenticationError``, ... A stopped card cancels too, and then
        watches again to show how the run ended."""
        if self.launch_state != STARTED:
            if self.remove():
                return "Removed before it was sent: no run was started."
            if not self.queued:
                raise RuntimeError(f"no run to cancel: the launch was {self.launch_state}")
        message = self._watch.cancel()
        self._follow_after_cancel()
        return message

    def _follow_after_cancel(self) -> None:
        if not self.watching and not self._watch.ended:
            self.start()

    @property
    def cancel_button(self) -> widgets.Button:
        """The card's **Cancel run** button (one click asks to confirm, the second cancels)."""
        return self._cancel_button

    def _finished_outputs(self) -> list[list[str]]:
        """Per output that has an http(s) URL to try: the output, then its proxy link."""
        snapshot = self.snapshot
        if snapshot is None or snapshot.status != "completed":
            raise RuntimeError("the run has not completed yet: call wait() first")
        outputs = candidates_for(snapshot.outputs, snapshot.proxy_links)
        return [urls for urls in outputs if any(is_web_url(url) for url in urls)]

    @property
    def client(self) -> WorkflowsClient:
        return self._watch.client

    @property
    def run_watch(self) -> RunWatch:
        """The shared, GUI-free model of this run (one per run, whatever views show it)."""
        return self._watch

    @property
    def settled(self) -> bool:
        """True once ``wait()`` would return or raise at once: the run ended and its
        thumbnails are in, or watching stopped, or the launch was refused or removed."""
        launched = self.launch_state == STARTED
        return (not launched and self._launch_decided.is_set()) or (
            launched and self._watch.done_for(self))

    @property
    def queued(self) -> bool:
        """A launch not sent yet, or on its way (no execution ID yet)."""
        return self.launch_state in (QUEUED, SENDING)

    @property
    def remove_button(self) -> widgets.Button:
        """The **Remove** button of a queued launch (hidden otherwise)."""
        return self._remove_button

    def starts_in(self) -> float | None:
        """Estimated seconds until a queued launch is sent (0 once it is; None while it waits
        for one of the account's runs to end)."""
        if self.pending is None or self.launch_state != QUEUED:
            return 0.0
        return self.pending.starts_in()

    def remove(self) -> bool:
        """Drop the launch if it is still queued; False when it was already sent."""
        # The pending run tells the card (``_on_pending``) before cancel() returns.
        return self.pending is not None and self.launch_state == QUEUED \
            and self.pending.cancel()

    @property
    def watching(self) -> bool:
        """This card wants the run watched and the watch is polling."""
        return self._watch.state_for(self).watching

    @property
    def watch_state(self) -> str:
        """What the header says about watching, besides the run's status: ``""`` while
        watched (or once the run ended), ``"paused"`` after ``stop()`` or this card's time
        limit, ``"not watched"`` once watching ended on an error (see ``render``)."""
        return render.watch_word(self._watch.state_for(self))

    @property
    def header_html(self) -> str:
        """The card's header and progress bar as shown (for tests and other front ends)."""
        return self._status_view.value + self._bar_view.value

    @property
    def header_view(self) -> widgets.HTML:
        """The header's own view (status, run, elapsed time, steps done; ``header_html`` adds
        the bar): observe its ``value`` to see each redraw, which is one message to the
        browser."""
        return self._status_view

    @property
    def step_rows_html(self) -> tuple[str, ...]:
        """The step list as shown, a line each: "Waiting for the first steps…" or how many
        earlier steps are hidden, then a row per step in view, then how many later steps are
        hidden (a long run shows a window of its steps, not all of them)."""
        with self._lock:
            return tuple(line.value for line in self._steps_view.box.children)

    @property
    def step_views(self) -> tuple[widgets.HTML, ...]:
        """Every view of the step list, on show or spare, in order: the line above the rows,
        each row, the line below. Each is its own widget, so a step that changed sends
        only its row: observe a view's ``value`` to see it redrawn."""
        rows = self._steps_view
        return (rows.before, *rows.rows, rows.after)

    @property
    def message_html(self) -> str:
        """The notice or error panel under the steps as shown ("" when there is none)."""
        return self._message.value

    @property
    def message_view(self) -> widgets.HTML:
        """The view of the notice or error panel (``message_html`` is its text): observe its
        ``value`` to see each redraw."""
        return self._message

    @property
    def output_slots_html(self) -> tuple[str, ...]:
        """Per output with a slot in the gallery (the first ``max_thumbnails``, once the run
        completed), in output order, the HTML the slot shows: "Loading…", an image's
        caption, why the image could not be shown, a player (video, audio) or a tile with
        the output's type, size and link. Empty before the run completed."""
        with self._lock:
            return self._gallery.shown_html()

    @property
    def output_slot_images(self) -> tuple[tuple[bytes, str] | None, ...]:
        """Per output with a slot in the gallery, as ``output_slots_html``: the thumbnail
        the slot shows as ``(encoded bytes, "jpeg" | "png")``, or None when it shows no
        image (another kind of output, a thumbnail still loading or unavailable)."""
        with self._lock:
            return self._gallery.shown_images()

    @property
    def more_outputs_html(self) -> str:
        """The line after the gallery's slots that links the outputs beyond them ("3 more:
        #5, #6, #7"); "" when every output has a slot."""
        with self._lock:
            return self._gallery.more.value

    @property
    def buttons(self) -> dict[str, widgets.Button]:
        """The buttons on show, by label (``"Stop"``, ``"Resume"``, ``"Retry"``, ...)."""
        return {b.description: b for b in self._controls.children
                if isinstance(b, widgets.Button) and b.layout.display != "none"}

    def estimate(self) -> Estimate | None:
        """Time left and progress by expected time, once this workflow has completed before
        in this kernel; None otherwise."""
        return self._watch.estimate()

    def __repr__(self) -> str:
        if self.launch_state != STARTED:
            return self._launch_repr()
        steps = self.steps
        done = sum(1 for step in steps if step.get("status") == "completed")
        parts = [f"Run {clean(self.execution_id, 200)}", *([self.label] if self.label else []),
                 clean(self.status, 64), f"{done}/{len(steps)} steps"]
        elapsed = self._watch.elapsed()
        if elapsed is not None:
            parts.append(format_seconds(elapsed))
        if self.output_urls:
            parts.append(kind_counts(self._watch.output_kinds()))
        if self.error:
            parts.append(f"error: {clean(self.error, 200)}")
        return " · ".join(parts)

    # -- a launch not answered yet (``pending``) -----------------------------------------

    def _on_pending(self, pending: PendingRun) -> None:
        """Show the launch's phase (any thread); once it ended (started, refused, lost,
        removed), for good. The phase is read under the card's lock, so whichever word is
        drawn last draws the newest phase (a word may come late, from another thread)."""
        with self._lock:
            phase = pending.phase
            state, before = LAUNCH_STATES[phase], self.launch_state
            if not self.queued or state == before == SENDING:
                return  # decided already (a late or repeated word)
            self.launch_state = state
            if state == STARTED:
                self.execution_id = pending.execution_id
            elif phase.ended:
                self.launch_error = pending.error
                self.error = str(pending.error or "")
            if not self._closing:
                self._draw_launch()
        try:
            self._follow_launch(state)
        finally:
            if phase.ended:
                self._decide_launch()  # even if drawing failed: waiting must not hang
        if state != before and self.on_launch is not None:
            self.on_launch(self)

    def _follow_launch(self, state: str) -> None:
        """The countdown while queued; the run itself once started (outside the lock)."""
        if state == QUEUED:
            self._schedule_refresh()
            return
        self._cancel_refresh()
        if state == STARTED and not self._closing:
            if self._autostart:
                self.start()
            else:
                self._sync()

    def _draw_launch(self) -> None:
        """Header, notice and buttons for the launch's state (lock held)."""
        self._render()
        self._update_controls()
        pending = self.pending
        if self.launch_state == QUEUED and pending is not None:
            held = pending.phase is LaunchPhase.HELD
            self._show_message("note", *astuple(
                queued_words(self.starts_in(), held, pending.account_limit)))
        elif self.launch_state == SENDING:
            self._show_message("note", "Starting the run…")
        elif self.launch_state == STARTED:
            self._message.value = ""
        elif isinstance(self.launch_error, NetworkError):
            self._show_message("error", "No answer from ModelsLab", str(self.launch_error),
                               "The run may have started anyway: check before launching again.")
        elif self.launch_error is not None:
            self._show_message("error", "The run was not started", str(self.launch_error))
        elif self.launch_state != STARTED:
            self._show_message("note", "Removed: this run was not started.")

    def _schedule_refresh(self) -> None:
        with self._lock:
            self._cancel_refresh()
            if self.launch_state == QUEUED and not self._closing:
                self._refresh_job = self._watch.scheduler.call_later(
                    LAUNCH_REFRESH, weak_callback(self._refresh), in_pool=False)

    def _refresh(self) -> None:
        with self._lock:
            self._refresh_job = None
            if self.launch_state != QUEUED or self._closing:
                return
            self._draw_launch()
        self._schedule_refresh()

    def _cancel_refresh(self) -> None:
        job, self._refresh_job = self._refresh_job, None
        if job is not None:
            job.cancel()

    def _check_launched(self) -> None:
        """After the launch was decided: raise why it did not start a run."""
        if self.launch_error is not None:
            raise self.launch_error
        if self.launch_state != STARTED:
            raise RuntimeError("the queued run was removed before it started")

    def _decide_launch(self) -> None:
        """The launch ended (or the card closed): wake ``wait()`` and every ``wait_async()``."""
        with self._lock:
            self._launch_decided.set()
            waiters, self._decided_waiters = self._decided_waiters, []
        for wake in waiters:
            wake()

    async def _launch_decided_async(self, timeout: float | None) -> None:
        """``await`` the launch's decision without blocking the event loop."""
        loop = asyncio.get_running_loop()
        decided = loop.create_future()

        def settle() -> None:
            if not decided.done():
                decided.set_result(None)

        def wake() -> None:  # on the thread that decided
            loop.call_soon_threadsafe(settle)

        with self._lock:
            if self._launch_decided.is_set():
                return
            self._decided_waiters.append(wake)
        try:
            await asyncio.wait_for(decided, timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"the queued run did not start within {timeout:g} s") from None
        finally:
            with self._lock:
                if wake in self._decided_waiters:
                    self._decided_waiters.remove(wake)

    def _launch_repr(self) -> str:
        if self.launch_state == QUEUED:
            return f"Run queued here · {starts_words(self.starts_in())}"
        if self.launch_state == SENDING:
            return "Run queued here · starting"
        if self.launch_error is not None:
            return f"Run not started · error: {clean(str(self.launch_error), 200)}"
        return "Run removed before it started"

    # -- the watch shows us its state (background threads) ------------------------------

    def show(self, state: RunState) -> None:
        """Draw what changed between the state this card shows and ``state``."""
        if self._deferred(self.show, state):
            return
        with self._lock:
            if self.launch_state != STARTED:
                return  # no run yet: the card draws its launch (``_on_pending``)
            drawn = self._drawn
            if not state.newer_than(drawn):
                return  # a state older than the one _sync() drew
            self._drawn = state
            if state.interrupted is not None:  # a stopped card stays as it was...
                if state.timed_out and not (drawn is not None and drawn.timed_out):
                    self._show_end(state)  # ...but says that its time limit was reached
                return
            settled = self._draw_changes(drawn or RunState(), state)
        if settled:
            self._settled()

    def _draw_changes(self, drawn: RunState, state: RunState) -> bool:
        """Draw each part of ``state`` that differs from ``drawn`` (lock held); True when the
        watch has just become final (the card keeps its thumbnails and tells on_complete)."""
        if state.snapshot is not drawn.snapshot:
            self._take_snapshot(changed=state.revision != drawn.revision)
        if state.retrying is not None and state.retrying is not drawn.retrying:
            self.polls = state.polls
            self._show_retrying(state.retrying)
        if state.paced != drawn.paced and state.phase in WATCHING:
            self.polls = state.polls
            self._message.value = self._pace_note()
        if state.phase in ENDS and drawn.phase not in ENDS:
            self._show_end(state)
        self._draw_outputs(drawn, state)
        if (state.cancelling, state.cancel_error) != (drawn.cancelling, drawn.cancel_error):
            self._show_cancel_answer(state.cancel_error if state.cancel_error
                                     is not drawn.cancel_error else None)
        return state.final and not drawn.final

    def _draw_outputs(self, drawn: RunState, state: RunState) -> None:
        """Each output whose kind or thumbnail arrived since ``drawn`` (lock held)."""
        if state.outputs is not drawn.outputs:
            before = {info.index: info for info in drawn.outputs}
            for info in state.outputs:
                if before.get(info.index) is not info:
                    self._gallery.place(info, self.thumbnail_size)
        if state.thumbnails is not drawn.thumbnails:
            before_thumbs = {thumb.index: thumb for thumb in drawn.thumbnails}
            for thumb in state.thumbnails:
                if before_thumbs.get(thumb.index) is not thumb:
                    self._gallery.fill(self._sized(thumb))

    def _take_snapshot(self, changed: bool) -> None:
        self.polls = self._watch.polls
        self.snapshot = self._watch.snapshot
        self._message.value = self._pace_note()  # a good answer clears any "retrying"
        if changed and self._apply_snapshot():
            self._render()  # once per answer that changed something; timers are ticks

    def _show_retrying(self, retrying: Retrying) -> None:
        self._show_message(
            "note",
            f"Could not get the run's status (attempt {retrying.failures} of "
            f"{retrying.max_failures}); retrying in {retrying.retry_in:.0f} s.",
            str(retrying.error),
        )

    def _show_end(self, state: RunState) -> None:
        """How watching ended: the run's outcome, or why we stopped (lock held)."""
        self._cancel_tick()
        self.polls = self._watch.polls
        trouble = state.trouble
        if trouble is not None:
            self.error = str(trouble)
            self._show_message("error", *astuple(explain(trouble)))
        elif self.snapshot is not None:
            self._show_outcome(self.snapshot)
        self._render()  # the header says whether the run is still watched
        self._update_controls()

    def _show_outcome(self, snapshot: RunSnapshot) -> None:
        if snapshot.status == "completed" and snapshot.outputs:
            urls = list(snapshot.outputs)
            shown = min(len(urls), len(self._gallery.slots))
            self._gallery.show(shown, urls[shown:])
            for info in self._watch.outputs_in_order():
                self._gallery.place(info, self.thumbnail_size)
            for thumb in self._watch.thumbnails_in_order():
                self._gallery.fill(self._sized(thumb))
            self._show_cancel_note(snapshot)
        elif snapshot.status == "failed":
            self._show_message(
                "error", "The run failed", snapshot.error or "The API gave no reason.",
                "Check the workflow's inputs, then launch a new run.",
            )
        elif snapshot.status == "cancelled":
            self._show_message("note", "The run was cancelled.")

    def _settled(self) -> None:
        """The run ended and the thumbnails are in: keep them, and tell the user's callback
        (on this background thread, outside our lock: a slow or re-entrant callback must
        not hold up this widget or, through the lock, the timer)."""
        with self._lock:
            thumbs = [self._sized(t) for t in self._watch.thumbnails_in_order()]
            self.thumbnails = [t.image for t in thumbs if t.image is not None]
            self.thumbnail_errors = {t.url: t.error or "unknown" for t in thumbs if not t.ok}
            snapshot = self.snapshot
            call = (self.on_complete is not None and not self._completed_for_user
                    and snapshot is not None and snapshot.is_terminal)
            self._completed_for_user = self._completed_for_user or call
            self._update_controls()
        self._publish_final()
        if call and self.on_complete is not None:
            try:
                self.on_complete(self)
            except Exception:
                log.exception("on_complete callback failed")

    # -- internals ----------------------------------------------------------------------

    def _sync(self) -> None:
        """Show everything the watch knows (a new card of a run already watched, or after
        start()): traits, header, steps, the message panel and the gallery."""
        with self._lock:
            state = self._drawn = self._watch.state_for(self)
            self.polls = state.polls
            self.snapshot = state.snapshot
            self.error = ""
            self._message.value = ""
            self._apply_snapshot()
            self._render()
            self._message.value = self._pace_note()
            if state.retrying is not None and state.phase is Phase.RETRYING:
                self._show_retrying(state.retrying)
            if state.phase in ENDS:
                self._show_end(state)
            self._update_controls()
        if state.final and state.interrupted is None:
            self._settled()

    def _sized(self, thumb: Thumbnail) -> Thumbnail:
        """The watch's thumbnail, made smaller when another view asked for bigger ones."""
        image = thumb.image
        if image is None or max(image.size) <= self.thumbnail_size:
            return thumb
        small = image.copy()
        small.thumbnail((self.thumbnail_size, self.thumbnail_size))
        data, fmt = encode_small(small, self.thumbnail_size)
        return replace(thumb, image=small, data=data, format=fmt)

    def _apply_snapshot(self) -> bool:
        """Copy the snapshot into the traits (only changed values notify); True if any did."""
        snapshot = self.snapshot
        if snapshot is None:
            return False
        steps = [step.to_dict() for step in snapshot.steps]
        before = (self.status, self.steps, self.output_urls, self.error)
        with self.hold_trait_notifications():
            self.steps = steps
            self.output_urls = list(snapshot.outputs)
            self.error = (snapshot.error or "") if snapshot.status == "failed" else ""
            self.status = snapshot.status
        return before != (self.status, self.steps, self.output_urls, self.error)

    def _build_views(self, slots: int) -> None:
        self._style = widgets.HTML(render.STYLE + render.MEDIA_STYLE,
                                   layout=widgets.Layout(display="none"))
        # The header and progress bar are one view; each step row is another (cardparts).
        self._status_view = widgets.HTML(layout=widgets.Layout(flex="1 1 auto", min_width="0"))
        self._stop_button = widgets.Button(
            description="Stop", icon="stop", tooltip="Stop watching this run",
            layout=widgets.Layout(width="auto"),
        )
        self._resume_button = widgets.Button(
            description="Resume", icon="play", tooltip="Watch this run again",
            layout=widgets.Layout(width="auto", display="none"),
        )
        self._cancel_button = widgets.Button(
            description="Cancel run", icon="ban", tooltip="Ask ModelsLab to cancel this run",
            layout=widgets.Layout(width="auto", display="none"),
        )
        self._confirm_job: Job | None = None
        self._stop_button.on_click(lambda _: self.stop())
        self._resume_button.on_click(lambda _: self.start())
        self._remove_button = widgets.Button(
            description="Remove", icon="trash", tooltip="Do not start this run",
            layout=widgets.Layout(width="auto", display="none"),
        )
        self._cancel_button.on_click(lambda _: self._cancel_clicked())
        self._remove_button.on_click(lambda _: self.remove())
        buttons = (self._stop_button, self._cancel_button, self._resume_button,
                   self._remove_button)
        # Buttons keep their labels: they never shrink, the header beside them wraps instead.
        for button in buttons:
            button.layout.flex = "0 0 auto"
        self._controls = widgets.HBox(  # never squeezed: "Confirm cancel" stays readable
            list(buttons),
            layout=widgets.Layout(flex="0 0 auto"),
        )
        self._bar_view = widgets.HTML(layout=widgets.Layout(margin="0"))
        self._top = widgets.HBox(
            [self._status_view, self._controls], layout=widgets.Layout(align_items="flex-start")
        )
        self._steps_view = StepRows(render.MAX_ROWS)
        self._message = widgets.HTML()
        self._gallery = Gallery(slots)

    def _children(self) -> list[widgets.Widget]:
        return [self._style, self._top, self._bar_view, self._steps_view.box, self._message,
                self._gallery.box]

    def _owned_widgets(self) -> list[widgets.Widget]:
        return [
            self._style, self._status_view, self._stop_button, self._resume_button,
            self._cancel_button, self._remove_button,
            self._controls, self._top, self._bar_view, *self._steps_view.widgets(), self._message,
            *self._gallery.widgets(), *self._travel_widgets(),
        ]

    def _on_status_change(self, change: dict[str, Any]) -> None:
        if render.status_class(change["new"]) != "running":
            self._update_controls()

    def _render(self) -> None:
        with self._lock:
            launched = self.launch_state == STARTED
            launch_ended = self.launch_state not in (QUEUED, SENDING, STARTED)  # no run came
            # Watching is the run's: a launch with no run has nothing to be watched or not.
            state = self.watch_state if launched else render.LIVE
            estimate = self._watch.estimate()
            run_name = ("not started" if launch_ended else "not started yet") if not launched \
                else str(self.execution_id)
            markup = render.summary(
                status=self.status if launched else render.LAUNCH_STATUS[self.launch_state],
                workflow_id=self.workflow_id,
                execution_id=run_name,
                label=self.label,
                elapsed=self._watch.elapsed(),
                finished=self._watch.ended,
                steps=self.steps,
                remaining=estimate.remaining if estimate else None,
                fraction=estimate.fraction if estimate else None,
                state=state,
                overdue=estimate.overdue if estimate else False,
                with_bar=False,
            )
            snapshot = self.snapshot
            if snapshot is not None and (snapshot.dropped_steps or snapshot.dropped_outputs):
                markup += render.note_line(
                    dropped_note(snapshot.dropped_steps, snapshot.dropped_outputs))
            self._status_view.value = markup
            self._bar_view.value = render.card_bar(
                self.status, self.steps, estimate.fraction if estimate else None, state
            )
            # "Waiting for the first steps…" only while someone is waiting for them, and
            # never under a launch that started no run
            self._steps_view.show(self.steps, self._step_timers(),
                                  waiting=state != render.UNWATCHED and not launch_ended)

    def _step_timers(self) -> dict[int, float]:
        """Live timers of the running steps, by index."""
        snapshot = self.snapshot
        steps = snapshot.steps if snapshot else ()
        timers = {i: step.seconds() for i, step in enumerate(steps) if step.status == "running"}
        return {i: seconds for i, seconds in timers.items() if seconds is not None}

    def _schedule_tick(self) -> None:
        """Re-render once a second while watching, so timers move without extra requests
        (one shared ticker for every card: a hundred cards cost one wake a second)."""
        self._watch.scheduler.ticker.add(self._tick)

    def _tick(self) -> None:
        if self._deferred(self._tick_now):
            self._cancel_tick()  # in Colab: ticking resumes once a waiting thread applies it
            return
        self._tick_now()

    def _tick_now(self) -> None:
        with self._lock:
            if not self.watching:
                self._cancel_tick()
                return
            self._render()
            self._schedule_tick()

    def _cancel_tick(self) -> None:
        self._watch.scheduler.ticker.discard(self)

    def _show_message(self, kind: str, title: str, text: str = "", hint: str = "") -> None:
        self._message.value = render.message(kind, title, text, hint)

    def _update_controls(self) -> None:
        state = self._watch.state_for(self)
        launched = self.launch_state == STARTED
        self._remove_button.layout.display = "" if self.launch_state == QUEUED else "none"
        self._stop_button.layout.display = "" if launched and state.watching else "none"
        self._resume_button.layout.display = "" if launched and not state.watching \
            and not state.ended else "none"
        retry = state.gave_up and not isinstance(state.error, TimeoutError)
        self._resume_button.description = "Retry" if retry else "Resume"
        self._update_cancel_button()

    # -- cancelling ---------------------------------------------------------------------

    def _cancel_clicked(self) -> None:
        """First click: ask to confirm for a few seconds. Second: cancel, on a pool thread (a
        click handler runs on the kernel's main thread, which must not wait for the network)."""
        with self._lock:
            button = self._cancel_button
            if button.disabled or self._watch.cancelling:
                return
            if self._confirm_job is None:
                button.description, button.button_style = "Confirm cancel", "danger"
                button.tooltip = "Click again to cancel the run: it cannot be undone"
                self._confirm_job = self._watch.scheduler.call_later(
                    CONFIRM_SECONDS, weak_callback(self._confirm_expired), in_pool=False
                )
                return
            self._confirm_job.cancel()
            self._confirm_job = None
            button.description, button.disabled = "Cancelling…", True
        self._watch.scheduler.submit(weak_callback(self._cancel_quietly))

    def _confirm_expired(self) -> None:
        with self._lock:
            self._confirm_job = None
            self._update_cancel_button()

    def _cancel_quietly(self) -> None:
        """The button's cancel: a refusal is shown on the card (CANCEL), not raised."""
        with contextlib.suppress(ModelsLabError):
            self.cancel()

    def _update_cancel_button(self) -> None:
        """Shown while the run is pending or running, watched or stopped; "Cancelling…"
        (disabled) from an accepted click until the API reports the run's final status."""
        with self._lock:
            button = self._cancel_button
            live = not self._watch.ended and self.status in ("pending", "running")
            button.layout.display = "" if live else "none"
            if self._watch.cancelling:
                button.description, button.disabled, button.button_style = "Cancelling…", True, ""
            elif self._confirm_job is None:
                button.description, button.disabled, button.button_style = "Cancel run", False, ""
                button.tooltip = "Ask ModelsLab to cancel this run"

    def _show_cancel_answer(self, refusal: ModelsLabError | None) -> None:
        """A cancel was sent (None) or refused: the button follows; a run that had already
        ended gets a calm note, any other refusal an error panel (lock held)."""
        self._update_cancel_button()
        if refusal is None:
            return
        if isinstance(refusal, RunAlreadyEndedError):
            self._show_message("note", "The run had already ended",
                               "It finished before the cancel request reached the server.")
        else:
            self._show_message("error", "Could not cancel the run", str(refusal),
                               "The run may still be going: try again.")

    def _show_cancel_note(self, snapshot: RunSnapshot) -> None:
        """Keep the note when a cancel came too late for a run that completed."""
        if isinstance(self._watch.cancel_error, RunAlreadyEndedError) and \
                snapshot.status == "completed":
            self._show_message("note", "The run had already ended",
                               "It completed before the cancel request reached the server.")


    # -- notebooks that travel: the saved card, await, Colab ----------------------------

    def _setup_travel(self) -> None:
        self._display_ids: list[str] = []  # the outputs this card was displayed in
        self._has_final = False  # settled once: the final state can be shown as HTML
        # In Colab, background threads queue the card's updates and a waiting thread applies
        # them (see aio.DeferredUpdates); elsewhere they are applied at once.
        self._updates: DeferredUpdates | None = DeferredUpdates() if in_colab() else None
        self._hint: widgets.HTML | None = None
        if self._updates is not None:
            self._hint = widgets.HTML(render.hint_line(COLAB_HINT))
            children: list[widgets.Widget] = list(self.children)  # type: ignore[has-type]
            children.insert(children.index(self._top) + 1, self._hint)
            self.children = tuple(children)

    def _travel_widgets(self) -> list[widgets.Widget]:
        return [self._hint] if self._hint is not None else []

    @property
    def updates_wait_for_waiter(self) -> bool:
        """True when the card's changes are drawn only while ``wait()``/``wait_async()``
        runs (Colab, which ignores widget changes made on background threads)."""
        return self._updates is not None

    @property
    def display_ids(self) -> list[str]:
        """The display IDs of the notebook outputs showing this card (``display(card)`` and
        a cell's last expression each make one); they get the final state once settled."""
        with self._lock:
            return list(self._display_ids)

    async def wait_async(self, timeout: float | None = None) -> RunSnapshot:
        """``await`` the run: returns the final snapshot like ``wait()`` and raises what it
        raises, while the event loop (other coroutines in the kernel) keeps running."""
        began = time.monotonic()
        await self._launch_decided_async(timeout)
        self._check_launched()
        if self._watch.never_started(self):
            self.start()  # autostart=False, as wait()
        try:
            await until_done(self._watch, self, _time_left(timeout, began), self._updates)
        except TimeoutError:
            raise TimeoutError(f"the run did not finish within {timeout:g} s") from None
        return self._watch.outcome(self)

    def _ipython_display_(self) -> None:
        """Show the card under a display ID, so that the output can be updated with the
        final state once the run settles (see ``_publish_final``)."""
        if self.comm is None:  # closed: only the words are left
            display({"text/plain": repr(self)}, raw=True)
            return
        handle = display(self.mimebundle(), raw=True, display_id=True)
        if handle is not None:  # None outside IPython
            with self._lock:
                self._display_ids.append(handle.display_id)

    def mimebundle(self) -> dict[str, Any]:
        """What a notebook output of this card holds: the live widget view and its text
        form, and once settled a self-contained HTML card (the final state, for viewers
        that do not run widgets). Never the API key."""
        data: dict[str, Any] = {
            WIDGET_VIEW_MIMETYPE: {"version_major": 2, "version_minor": 0,
                                   "model_id": self.model_id},
            "text/plain": repr(self),
        }
        if self._has_final and not self.watching:
            data["text/html"] = self.static_html()
        return data

    def static_html(self) -> str:
        """The card as it looks now, as HTML with no script: header, steps, message, the
        thumbnails inline (data URIs) with links to the full-size outputs."""
        with self._lock:
            rows = [row.value for row in self._steps_view.box.children]
            fragments = [self._status_view.value, self._bar_view.value, *rows, self._message.value]
            thumbs = {t.index: t for t in self._watch.thumbnails_in_order()}
            items: list[render.StaticImage | str] = []
            for index in range(self._gallery.shown):  # output order, as the live gallery
                thumb = thumbs.get(index)
                small = self._sized(thumb) if thumb is not None else None
                if small is not None and small.ok:
                    caption = render.caption(small.index, small.url, small.original_size)
                    items.append(render.StaticImage(small.data, small.format, caption))
                else:  # a player, a tile, or why the image could not be shown
                    items.append(self._gallery.captions[index].value)
            more = self._gallery.more.value
        return render.static_card(fragments, items, more)

    def _publish_final(self) -> None:
        """Settled: every output that shows this card gets the final state beside the live
        view (an ``update_display``; ipykernel sends it from any thread)."""
        if self.comm is None:
            return
        self._has_final = True  # (the watch counts as settled once its views were told)
        if self._hint is not None:
            self._hint.layout.display = "none"  # nothing more to wait for
        ids = self.display_ids
        if ids:
            bundle = self.mimebundle()
            for display_id in ids:
                update_display(bundle, display_id=display_id, raw=True)

    def _deferred(self, method: Callable[..., Any], *args: Any) -> bool:
        """In Colab, queue a background thread's update for the waiting thread (True)."""
        updates = getattr(self, "_updates", None)  # None until __init__ set it up
        return updates is not None and updates.defer(lambda: method(*args))

    def _wait_applying(self, timeout: float | None, asked: float | None) -> RunSnapshot:
        """``wait()`` in Colab: apply the card's queued updates on this thread until done."""
        updates = self._updates
        assert updates is not None
        deadline = None if timeout is None else time.monotonic() + timeout
        self._watch.when_done(self, updates.wake)
        while True:
            updates.apply()
            if self._watch.done_for(self):
                updates.apply()  # what the views were told while settling
                return self._watch.outcome(self)
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"the run did not finish within {asked:g} s")
            updates.wait(left)

    def _pace_note(self) -> str:
        """A calm notice while the workflow's rate limit sets how often this run is checked
        ("" otherwise): not an error, nothing for the user to do."""
        seconds = self._watch.paced
        if seconds is None:
            return ""
        return render.message("note", pace_words(seconds), "",
                              "Every view and launch of this workflow shares its rate limit.")


def _time_left(timeout: float | None, began: float) -> float | None:
    """What is left of ``timeout`` seconds counted from ``began`` (monotonic); None: no limit."""
    return None if timeout is None else max(0.0, timeout - (time.monotonic() - began))


def close_with_parts(*items: widgets.Widget) -> None:
    """Close widgets and the Layout/Style models each made (ipywidgets leaves those open)."""
    for item in items:
        _close_parts(item)
        item.close()


def _close_parts(item: widgets.Widget) -> None:
    for part in ("layout", "style"):
        child = getattr(item, part, None)
        if isinstance(child, widgets.Widget):
            child.close()


_ONE_CARD_ONLY = frozenset({"pending", "on_launch"})  # not options a board passes to its cards


def card_options() -> list[str]:
    """The keyword options of a card (what a board or a launcher passes on to its cards)."""
    parameters = inspect.signature(WorkflowRunWidget.__init__).parameters.values()
    return [p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY
            and p.name not in _ONE_CARD_ONLY]



def watch(workflow_id: str, execution_id: int | str, **kwargs: Any) -> WorkflowRunWidget:
    """Display a live widget for a run and return it (see ``WorkflowRunWidget``)."""
    widget = WorkflowRunWidget(workflow_id, execution_id, **kwargs)
    display(widget)
    return widget
