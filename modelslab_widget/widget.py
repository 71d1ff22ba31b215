"""WorkflowRunWidget: a live card for one ModelsLab workflow run.

The widget is a thin view over its traits (``status``, ``steps``, ``error``, ``output_urls``,
``polls``). A ``RunPoller`` on the shared scheduler feeds it snapshots; ``media`` makes the
thumbnails. Every child widget is created here, on the main thread, in ``__init__``; the
background threads only set values, layouts and children, which ipykernel forwards from any
thread. They never print or display, so output routing (ipykernel 6 and 7) is not involved.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import ipywidgets as widgets
from IPython.display import display
from ipywidgets.widgets.widget_string import HTMLStyle
from traitlets import Dict, Int, List, Unicode

from . import render
from .client import WorkflowsClient, path_segment
from .errors import AuthenticationError, ModelsLabError, NotFoundError
from .eta import Estimate, shared_history
from .media import (
    Thumbnail,
    candidates_for,
    first_that_works,
    is_web_url,
    load_thumbnails,
    open_full_size,
    save_images,
)
from .models import RunSnapshot
from .poller import PollPolicy, RunPoller, WatchTimeout
from .scheduler import Scheduler, shared_scheduler

log = logging.getLogger("modelslab_widget")

DEFAULT_SLOTS = 4  # thumbnails shown as images; further outputs are listed as links
CARD_LAYOUT = {
    "border": "1px solid var(--jp-border-color2, #e0e0e0)",
    "padding": "6px 10px",
    "max_width": "960px",
}


class _Gallery:
    """Pre-built thumbnail slots (an Image and a caption each) inside one wrapping box."""

    def __init__(self, slots: int) -> None:
        image_layout = widgets.Layout(object_fit="contain")
        slot_layout = widgets.Layout(margin="4px 8px 4px 0", align_items="flex-start")
        self.images = [widgets.Image(format="jpeg", layout=image_layout) for _ in range(slots)]
        self.captions = [widgets.HTML() for _ in range(slots)]
        self.slots = [
            widgets.VBox([image, text], layout=slot_layout)
            for image, text in zip(self.images, self.captions, strict=True)
        ]
        self.more = widgets.HTML()
        self.box = widgets.Box(layout=widgets.Layout(flex_flow="row wrap", display="none"))
        self.shown = 0

    def show(self, count: int, overflow: list[str]) -> None:
        """Reserve ``count`` slots (their captions say loading) and list the overflow as links."""
        self.shown = min(count, len(self.slots))
        for index in range(self.shown):
            self.slots[index].children = (self.captions[index],)
            self.captions[index].value = render.message("note", f"Loading image #{index + 1}…")
        self.more.value = render.more_outputs(overflow, self.shown)
        self.box.children = (*self.slots[: self.shown], self.more)
        self.box.layout.display = "flex" if count else "none"

    def fill(self, thumb: Thumbnail) -> None:
        if thumb.index >= self.shown:
            return
        image, text = self.images[thumb.index], self.captions[thumb.index]
        if thumb.ok:
            image.format = thumb.format
            image.value = thumb.data
            text.value = render.caption(thumb.index, thumb.url, thumb.original_size)
            self.slots[thumb.index].children = (image, text)
        else:
            text.value = render.placeholder(thumb.index, thumb.url, thumb.error or "unknown")

    def clear(self) -> None:
        self.shown = 0
        self.box.children = ()
        self.box.layout.display = "none"

    def widgets(self) -> list[widgets.Widget]:
        return [*self.images, *self.captions, *self.slots, self.more, self.box]


class _StepRows:
    """Pre-built step rows (a window of them for long runs), each its own view: a poll or a
    tick sends only the rows whose text changed, never the whole list."""

    def __init__(self, rows: int) -> None:
        # One Layout and one style for all rows: the rows cost one model each, not three.
        layout, style = widgets.Layout(margin="0"), HTMLStyle()
        self.before = widgets.HTML(render.WAITING_FOR_STEPS, layout=layout, style=style)
        self.rows = [widgets.HTML(layout=layout, style=style) for _ in range(rows)]
        self.after = widgets.HTML(layout=layout, style=style)
        self.box = widgets.VBox([self.before], layout=widgets.Layout(margin="2px 0"))

    def show(self, steps: list[dict[str, Any]], running_for: dict[int, float]) -> None:
        # traitlets notifies (and ipywidgets sends) only values that differ from the current
        # one, so a row whose text is unchanged costs nothing.
        view = render.steps_view(steps, running_for, len(self.rows))
        self.before.value = view.before
        self.after.value = view.after
        for row, markup in zip(self.rows, view.rows, strict=False):  # spare rows stay hidden
            row.value = markup
        shown = (
            *([self.before] if view.before else []),
            *self.rows[: len(view.rows)],
            *([self.after] if view.after else []),
        )
        self.box.children = shown

    def widgets(self) -> list[widgets.Widget]:
        return [self.before, *self.rows, self.after, self.box]


class WorkflowRunWidget(widgets.VBox):
    """Watch a ModelsLab workflow run: status, steps with timings, and output thumbnails.

    Polling runs on a shared background thread, so the kernel stays free. ``wait()`` blocks
    until the run ends; ``stop()``/``start()`` pause and resume; ``close()`` ends everything.
    """

    status = Unicode("unknown", help="The run's status; 'unknown' before the first answer.")
    steps = List(Dict(), help="Per step: name, status, started_at, completed_at, duration.")
    error = Unicode("", help="The failed run's error, or why watching stopped.")
    output_urls = List(Unicode(), help="URLs of the run's output images.")
    polls = Int(0, help="Status requests made so far.")

    def __init__(
        self,
        workflow_id: str,
        execution_id: int | str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        client: WorkflowsClient | None = None,
        poll_interval: float = 2.0,
        timeout: float | None = None,
        thumbnail_size: int = 256,
        autostart: bool = True,
        max_thumbnails: int = DEFAULT_SLOTS,
        max_failures: int = 5,
        backoff_base: float = 1.0,
        on_complete: Callable[[WorkflowRunWidget], Any] | None = None,
        scheduler: Scheduler | None = None,
        **kwargs: Any,
    ) -> None:
        path_segment(workflow_id, "workflow_id")  # refuse bad IDs before any widget exists
        path_segment(execution_id, "execution_id")
        if poll_interval <= 0:
            raise ValueError("poll_interval must be positive")
        self.workflow_id = str(workflow_id)
        self.execution_id = execution_id
        self.thumbnail_size = thumbnail_size
        self.on_complete = on_complete
        self.snapshot: RunSnapshot | None = None
        self.thumbnails: list[Any] = []  # PIL images, in output order
        self.thumbnail_errors: dict[str, str] = {}  # url -> why it could not be shown
        self._owns_client = client is None
        self._client = client or WorkflowsClient(api_key, base_url=base_url)
        self._scheduler = scheduler or shared_scheduler()
        self._lock = threading.RLock()
        self._settled = threading.Event()
        self._end_error: BaseException | None = None
        self._user_stopped = False
        # True from start() until this widget has heard how watching ended. The poller goes
        # inactive a moment before it tells us, and nothing may restart it in that gap.
        self._session_open = False
        self._media_cancel = threading.Event()
        self._pending_thumbs = 0
        self._tick_job: Any = None
        self._thumbs_by_index: dict[int, Thumbnail] = {}
        self._full_images: list[Any] | None = None
        self._seen_running_at: datetime | None = None
        self._build_views(max_thumbnails)
        kwargs.setdefault("layout", widgets.Layout(**CARD_LAYOUT))
        super().__init__(children=self._children(), **kwargs)
        self._poller = RunPoller(
            self._client,
            self.workflow_id,
            execution_id,
            listener=self,
            policy=PollPolicy(poll_interval, timeout, max_failures, backoff_base),
            scheduler=self._scheduler,
            next_change=_weak(self._expected_change),
        )
        self.observe(self._on_status_change, "status")
        self._render()
        if autostart:
            self.start()

    # -- public API ---------------------------------------------------------------------

    def start(self) -> None:
        """Start (or resume) watching; a no-op once the run has ended or while watching."""
        with self._lock:
            if self._is_finished() or self._session_open:
                return
            self._session_open = True
            self._user_stopped = False
            self._end_error = None
            self._settled.clear()
            self.error = ""
            self._message.value = ""
            self._poller.start()
            self._update_controls()
            self._schedule_tick()

    def stop(self) -> None:
        """Stop watching. No status request is started after this returns."""
        with self._lock:
            was_active = self._poller.active
            self._poller.stop()
            self._session_open = False
            self._cancel_tick()
            if was_active and not self._is_finished():
                self._user_stopped = True
                self._show_message("note", "Stopped watching.", "", "Press Resume to continue.")
                self._settled.set()  # wake wait(): it raises, as nothing more will come
            self._update_controls()

    def close(self) -> None:
        """Stop watching and fetching, and close this widget's views."""
        if getattr(self, "_poller", None) is None:  # __init__ failed before polling existed
            return
        self.stop()
        self._media_cancel.set()
        with self._lock:
            if not self._settled.is_set():  # e.g. thumbnails still loading: wake wait()
                self._end_error = RuntimeError("the widget was closed before the run settled")
                self._settled.set()
        close_with_parts(*self._owned_widgets())
        _close_parts(self)
        super().close()
        if self._owns_client:
            self._client.close()

    def wait(self, timeout: float | None = None) -> RunSnapshot:
        """Block until the run has ended and its thumbnails are ready, and return the last
        snapshot. A failed or cancelled run returns normally. Raises ``TimeoutError`` when
        ``timeout`` passes first, or the error that ended watching (``AuthenticationError``,
        ``NotFoundError``, ``ServerError``, ...)."""
        with self._lock:
            if not self._session_open and not self._settled.is_set():
                self.start()  # a no-op once the run has ended
        if not self._settled.wait(timeout):
            raise TimeoutError(f"the run did not finish within {timeout:g} s")
        with self._lock:
            if self._end_error is not None:
                raise self._end_error
            if self._user_stopped or self.snapshot is None:
                raise RuntimeError("watching was stopped before the run ended; call start()")
            return self.snapshot

    def save_images(self, directory: str | os.PathLike[str]) -> list[Path]:
        """Download the run's full-size outputs into ``directory`` (file names from the URLs,
        never overwriting an existing file) and return the paths."""
        outputs = self._finished_outputs()
        return save_images(self._client, [urls[0] for urls in outputs], directory,
                           fallbacks=[urls[-1] for urls in outputs])

    def images(self) -> list[Any]:
        """The full-size outputs as PIL images, downloaded on the first call and cached (an
        output that fails falls back to its proxy link, as thumbnails and saving do)."""
        outputs = self._finished_outputs()
        if self._full_images is None or len(self._full_images) != len(outputs):

            def full_size(url: str) -> Any:
                return open_full_size(self._client.fetch_image(url))

            self._full_images = [first_that_works(urls, full_size)[1] for urls in outputs]
        return list(self._full_images)

    def _finished_outputs(self) -> list[list[str]]:
        """Per output that has an http(s) URL to try: the output, then its proxy link."""
        snapshot = self.snapshot
        if snapshot is None or snapshot.status != "completed":
            raise RuntimeError("the run has not completed yet: call wait() first")
        outputs = candidates_for(snapshot.outputs, snapshot.proxy_links)
        return [urls for urls in outputs if any(is_web_url(url) for url in urls)]

    @property
    def client(self) -> WorkflowsClient:
        return self._client

    @property
    def settled(self) -> bool:
        """True once ``wait()`` would return or raise at once: the run ended and its
        thumbnails are in, or watching stopped."""
        return self._settled.is_set()

    @property
    def watching(self) -> bool:
        return self._poller.active

    def __repr__(self) -> str:
        steps = self.steps
        done = sum(1 for step in steps if step.get("status") == "completed")
        parts = [f"Run {self.execution_id}", self.status, f"{done}/{len(steps)} steps"]
        elapsed = self._elapsed()
        if elapsed is not None:
            parts.append(render.format_seconds(elapsed))
        if self.output_urls:
            count = len(self.output_urls)
            parts.append(f"{count} image{'s' if count != 1 else ''}")
        if self.error:
            parts.append(f"error: {self.error[:200]}")
        return " · ".join(parts)

    # -- poll listener (called on background threads) -----------------------------------

    def on_snapshot(self, snapshot: RunSnapshot, polls: int) -> None:
        with self._lock:
            self.snapshot = snapshot
            self.polls = polls
            if snapshot.status == "running" and self._seen_running_at is None:
                self._seen_running_at = datetime.now(timezone.utc)
            self._message.value = ""  # a good answer clears any "retrying" notice
            if self._apply_snapshot(snapshot):
                self._render()  # once per answer that changed something; timers are ticks

    def on_poll_error(self, error: ModelsLabError, failures: int, retry_in: float) -> None:
        with self._lock:
            self.polls = self._poller.polls
            self._show_message(
                "note",
                f"Could not get the run's status (attempt {failures} of "
                f"{self._poller.policy.max_failures}); retrying in {retry_in:.0f} s.",
                str(error),
            )

    def on_finished(self, snapshot: RunSnapshot | None, error: BaseException | None) -> None:
        with self._lock:
            settled = self._end_watching(snapshot, error)
        if settled:
            self._call_on_complete()

    def _end_watching(self, snapshot: RunSnapshot | None, error: BaseException | None) -> bool:
        """Show how watching ended; True once settled (False while thumbnails load)."""
        if self._poller.active:
            return False  # a late word from a session that stop() + start() already replaced
        self._session_open = False
        self.polls = self._poller.polls
        self._cancel_tick()
        if error is not None:
            self._end_error = error
            self.error = str(error)
            self._show_message("error", *_explain(error))
        elif snapshot is not None:
            shared_history().record(snapshot)  # learns from completed runs only
            if snapshot.status == "completed" and snapshot.outputs:
                return self._start_thumbnails(snapshot)
            self._show_outcome(snapshot)
        self._update_controls()
        self._settled.set()
        return True

    def _show_outcome(self, snapshot: RunSnapshot) -> None:
        if snapshot.status == "failed":
            self._show_message(
                "error", "The run failed", snapshot.error or "The API gave no reason.",
                "Check the workflow's inputs, then launch a new run.",
            )
        elif snapshot.status == "cancelled":
            self._show_message("note", "The run was cancelled.")

    # -- internals ----------------------------------------------------------------------

    def _apply_snapshot(self, snapshot: RunSnapshot) -> bool:
        """Copy a snapshot into the traits (only changed values notify); True if any changed."""
        steps = [step.to_dict() for step in snapshot.steps]
        before = (self.status, self.steps, self.output_urls, self.error)
        with self.hold_trait_notifications():
            self.steps = steps
            self.output_urls = list(snapshot.outputs)
            self.error = (snapshot.error or "") if snapshot.status == "failed" else ""
            self.status = snapshot.status
        return before != (self.status, self.steps, self.output_urls, self.error)

    def _build_views(self, slots: int) -> None:
        self._style = widgets.HTML(render.STYLE, layout=widgets.Layout(display="none"))
        # The header and progress bar are one view; each step row is another (see _StepRows).
        self._status_view = widgets.HTML(layout=widgets.Layout(flex="1 1 auto", min_width="0"))
        self._stop_button = widgets.Button(
            description="Stop", icon="stop", tooltip="Stop watching this run",
            layout=widgets.Layout(width="auto"),
        )
        self._resume_button = widgets.Button(
            description="Resume", icon="play", tooltip="Watch this run again",
            layout=widgets.Layout(width="auto", display="none"),
        )
        self._stop_button.on_click(lambda _: self.stop())
        self._resume_button.on_click(lambda _: self.start())
        self._controls = widgets.HBox([self._stop_button, self._resume_button])
        self._top = widgets.HBox(
            [self._status_view, self._controls], layout=widgets.Layout(align_items="flex-start")
        )
        self._steps_view = _StepRows(render.MAX_ROWS)
        self._message = widgets.HTML()
        self._gallery = _Gallery(slots)

    def _children(self) -> list[widgets.Widget]:
        return [self._style, self._top, self._steps_view.box, self._message, self._gallery.box]

    def _owned_widgets(self) -> list[widgets.Widget]:
        return [
            self._style, self._status_view, self._stop_button, self._resume_button,
            self._controls, self._top, *self._steps_view.widgets(), self._message,
            *self._gallery.widgets(),
        ]

    def _on_status_change(self, change: dict[str, Any]) -> None:
        if render.status_class(change["new"]) != "running":
            self._update_controls()

    def estimate(self) -> Estimate | None:
        """Time left and progress by expected time, once this workflow has completed before
        in this kernel; None otherwise."""
        snapshot = self.snapshot
        return shared_history().estimate(snapshot) if snapshot is not None else None

    def _expected_change(self, snapshot: RunSnapshot) -> float | None:
        estimate = shared_history().estimate(snapshot)
        return estimate.next_change if estimate is not None else None

    def _render(self) -> None:
        with self._lock:
            estimate = self.estimate()
            markup = render.summary(
                status=self.status,
                workflow_id=self.workflow_id,
                execution_id=str(self.execution_id),
                elapsed=self._elapsed(),
                finished=self._is_finished(),
                steps=self.steps,
                remaining=estimate.remaining if estimate else None,
                fraction=estimate.fraction if estimate else None,
            )
            self._status_view.value = markup
            self._steps_view.show(self.steps, self._step_timers())

    def _elapsed(self) -> float | None:
        snapshot = self.snapshot
        return snapshot.elapsed(first_seen=self._seen_running_at) if snapshot else None

    def _step_timers(self) -> dict[int, float]:
        """Live timers of the running steps, by index."""
        snapshot = self.snapshot
        steps = snapshot.steps if snapshot else ()
        timers = {i: step.seconds() for i, step in enumerate(steps) if step.status == "running"}
        return {i: seconds for i, seconds in timers.items() if seconds is not None}

    def _schedule_tick(self) -> None:
        """Re-render once a second while watching, so timers move without extra requests."""
        self._tick_job = self._scheduler.call_later(1.0, _weak(self._tick), in_pool=False)

    def _tick(self) -> None:
        with self._lock:
            if not self._poller.active:
                return
            self._render()
            self._schedule_tick()

    def _cancel_tick(self) -> None:
        if self._tick_job is not None:
            self._tick_job.cancel()
            self._tick_job = None

    def _start_thumbnails(self, snapshot: RunSnapshot) -> bool:
        """Start loading the gallery; True if there is nothing to load (settled at once)."""
        urls = list(snapshot.outputs)
        shown = urls[: len(self._gallery.slots)]
        self._gallery.show(len(shown), urls[len(shown):])
        self._pending_thumbs = len(shown)
        self._update_controls()
        if not shown:
            self._settled.set()
            return True
        self._thumbs_by_index = {}
        load_thumbnails(
            self._client,
            shown,
            list(snapshot.proxy_links),
            self.thumbnail_size,
            submit=self._scheduler.submit,
            on_ready=self._on_thumbnail,
            cancel=self._media_cancel,
        )
        return False

    def _on_thumbnail(self, thumb: Thumbnail) -> None:
        with self._lock:
            self._gallery.fill(thumb)
            self._thumbs_by_index[thumb.index] = thumb
            if not thumb.ok:
                self.thumbnail_errors[thumb.url] = thumb.error or "unknown"
            self._pending_thumbs -= 1
            if self._pending_thumbs > 0:
                return
            ordered = sorted(self._thumbs_by_index.items())
            self.thumbnails = [t.image for _, t in ordered if t.image is not None]
            self._settled.set()
        self._call_on_complete()

    def _call_on_complete(self) -> None:
        """The user's callback, on this background thread but outside our lock: a slow or
        re-entrant callback must not hold up this widget (or, via the lock, the timer)."""
        snapshot = self.snapshot
        if self.on_complete is None or snapshot is None or not snapshot.is_terminal:
            return
        try:
            self.on_complete(self)
        except Exception:
            log.exception("on_complete callback failed")

    def _is_finished(self) -> bool:
        return self.snapshot is not None and self.snapshot.is_terminal

    def _show_message(self, kind: str, title: str, text: str = "", hint: str = "") -> None:
        self._message.value = render.message(kind, title, text, hint)

    def _update_controls(self) -> None:
        active = self._poller.active if hasattr(self, "_poller") else False
        ended = self._is_finished()
        self._stop_button.layout.display = "" if active else "none"
        show_resume = not active and not ended
        self._resume_button.layout.display = "" if show_resume else "none"
        retry = self._end_error is not None and not isinstance(self._end_error, WatchTimeout)
        self._resume_button.description = "Retry" if retry else "Resume"


def _weak(method: Callable[..., Any]) -> Callable[..., Any]:
    """A bound method that does not keep its object alive (for the scheduler and poller,
    which must not stop a forgotten widget from being collected); None once it is gone."""
    ref = weakref.WeakMethod(method)

    def call(*args: Any) -> Any:
        target = ref()
        return target(*args) if target is not None else None

    return call


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


def _explain(error: BaseException) -> tuple[str, str, str]:
    """(title, detail, what to do next) for the error panel."""
    if isinstance(error, AuthenticationError):
        return ("The API key was rejected", str(error),
                "Set MODELSLAB_API_KEY (or pass api_key=...) and press Retry.")
    if isinstance(error, NotFoundError):
        return ("Run not found", str(error), "Check the workflow ID and the execution ID.")
    if isinstance(error, WatchTimeout):
        return ("Stopped watching: time limit reached", str(error),
                "Press Resume to keep watching, or pass a larger timeout=.")
    if isinstance(error, ModelsLabError) and error.transient:
        return ("Could not get the run's status", str(error),
                "ModelsLab kept failing or could not be reached. Press Retry to try again.")
    return ("Watching stopped", str(error), "Press Retry to try again.")


def watch(workflow_id: str, execution_id: int | str, **kwargs: Any) -> WorkflowRunWidget:
    """Display a live widget for a run and return it (see ``WorkflowRunWidget``)."""
    widget = WorkflowRunWidget(workflow_id, execution_id, **kwargs)
    display(widget)
    return widget
