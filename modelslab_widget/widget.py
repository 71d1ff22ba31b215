"""WorkflowRunWidget: a live card for one ModelsLab workflow run.

The card is a thin ipywidgets view of a ``RunWatch`` (``runwatch.py``), which polls, learns
durations, loads thumbnails and settles; the card mirrors it into traits (``status``,
``steps``, ``error``, ``output_urls``, ``polls``) and draws. Several cards of one run share
one watch. Every child widget is created here, on the main thread, in ``__init__``; the
background threads only set values, layouts and children, which ipykernel forwards from any
thread. They never print or display, so output routing (ipykernel 6 and 7) is not involved.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable
from dataclasses import astuple, replace
from pathlib import Path
from typing import Any

import ipywidgets as widgets
from IPython.display import display
from ipywidgets.widgets.widget_string import HTMLStyle
from traitlets import Dict, Int, List, Unicode

from . import render, runwatch
from .client import WorkflowsClient, path_segment
from .eta import Estimate
from .media import (
    Thumbnail,
    candidates_for,
    encode_small,
    first_that_works,
    is_web_url,
    open_full_size,
    save_images,
)
from .models import RunSnapshot
from .poller import PollPolicy
from .runwatch import RunWatch, watch_for
from .scheduler import Job, Scheduler
from .text import explain, format_seconds, pace_words, plural

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
    until the run ends; ``stop()``/``start()`` pause and resume this card (other views of the
    same run keep watching); ``close()`` ends it.
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
        poll_interval: float = PollPolicy.interval,
        timeout: float | None = None,
        thumbnail_size: int = 256,
        autostart: bool = True,
        max_thumbnails: int = DEFAULT_SLOTS,
        max_failures: int = PollPolicy.max_failures,
        backoff_base: float = PollPolicy.backoff_base,
        on_complete: Callable[[WorkflowRunWidget], Any] | None = None,
        scheduler: Scheduler | None = None,
        **kwargs: Any,
    ) -> None:
        path_segment(workflow_id, "workflow_id")  # refuse bad IDs before any widget exists
        path_segment(execution_id, "execution_id")
        policy = PollPolicy(poll_interval, timeout, max_failures, backoff_base)  # validates
        self.workflow_id = str(workflow_id)
        self.execution_id = execution_id
        self.thumbnail_size = thumbnail_size
        self.on_complete = on_complete
        self.snapshot: RunSnapshot | None = None
        self.thumbnails: list[Any] = []  # PIL images, in output order
        self.thumbnail_errors: dict[str, str] = {}  # url -> why it could not be shown
        self._lock = threading.RLock()
        self._tick_job: Job | None = None
        self._completed_for_user = False  # on_complete called for this settling
        self._full_images: list[Any] | None = None
        self._watch: RunWatch = watch_for(
            client or WorkflowsClient(api_key, base_url=base_url), workflow_id, execution_id,
            scheduler=scheduler, owns_client=client is None,
        )
        self._build_views(max_thumbnails)
        kwargs.setdefault("layout", widgets.Layout(**CARD_LAYOUT))
        super().__init__(children=self._children(), **kwargs)
        self._watch.attach(self, policy, thumbnail_size=thumbnail_size,
                           max_thumbnails=max_thumbnails)
        self.observe(self._on_status_change, "status")
        self._sync()
        if autostart:
            self.start()

    # -- public API ---------------------------------------------------------------------

    def start(self) -> None:
        """Start (or resume) watching; once the run has ended, show its final state."""
        with self._lock:
            if self._watch.wants_polling(self) and (self._watch.polling or self._watch.ended):
                return  # already watching, or already showing the end
            self._completed_for_user = False
            self._watch.want(self)
            self._sync()
            if self._watch.polling:
                self._schedule_tick()

    def stop(self) -> None:
        """Stop watching in this card. No status request is started for it after this
        returns (other views of the same run, if any, keep theirs)."""
        with self._lock:
            was_watching = self.watching
            self._watch.pause(self)
            self._cancel_tick()
            if was_watching and not self._watch.ended:
                self._show_message("note", "Stopped watching.", "", "Press Resume to continue.")
            self._update_controls()

    def close(self) -> None:
        """Stop watching and fetching, and close this widget's views."""
        if getattr(self, "_watch", None) is None:  # __init__ failed before watching existed
            return
        self._cancel_tick()
        self._watch.detach(self)
        close_with_parts(*self._owned_widgets())
        _close_parts(self)
        super().close()

    def wait(self, timeout: float | None = None) -> RunSnapshot:
        """Block until the run has ended and its thumbnails are ready, and return the last
        snapshot. A failed or cancelled run returns normally. Raises ``TimeoutError`` when
        ``timeout`` passes first, or the error that ended watching (``AuthenticationError``,
        ``NotFoundError``, ``ServerError``, ...)."""
        if not self._watch.done_for(self) and not self.watching:
            self.start()  # autostart=False: wait() starts watching (not after stop())
        return self._watch.wait(self, timeout)

    def save_images(self, directory: str | os.PathLike[str]) -> list[Path]:
        """Download the run's full-size outputs into ``directory`` (file names from the URLs,
        never overwriting an existing file) and return the paths."""
        outputs = self._finished_outputs()
        return save_images(self.client, [urls[0] for urls in outputs], directory,
                           fallbacks=[urls[-1] for urls in outputs])

    def images(self) -> list[Any]:
        """The full-size outputs as PIL images, downloaded on the first call and cached (an
        output that fails falls back to its proxy link, as thumbnails and saving do)."""
        outputs = self._finished_outputs()
        if self._full_images is None or len(self._full_images) != len(outputs):

            def full_size(url: str) -> Any:
                return open_full_size(self.client.fetch_image(url))

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
        return self._watch.client

    @property
    def run_watch(self) -> RunWatch:
        """The shared, GUI-free model of this run (one per run, whatever views show it)."""
        return self._watch

    @property
    def settled(self) -> bool:
        """True once ``wait()`` would return or raise at once: the run ended and its
        thumbnails are in, or watching stopped."""
        return self._watch.done_for(self)

    @property
    def watching(self) -> bool:
        """This card wants the run watched and the watch is polling."""
        return self._watch.polling and self._watch.wants_polling(self)

    def estimate(self) -> Estimate | None:
        """Time left and progress by expected time, once this workflow has completed before
        in this kernel; None otherwise."""
        return self._watch.estimate()

    def __repr__(self) -> str:
        steps = self.steps
        done = sum(1 for step in steps if step.get("status") == "completed")
        parts = [f"Run {self.execution_id}", self.status, f"{done}/{len(steps)} steps"]
        elapsed = self._watch.elapsed()
        if elapsed is not None:
            parts.append(format_seconds(elapsed))
        if self.output_urls:
            parts.append(plural(len(self.output_urls), "image"))
        if self.error:
            parts.append(f"error: {self.error[:200]}")
        return " · ".join(parts)

    # -- the watch tells us (background threads) ----------------------------------------

    def watch_changed(self, watch: RunWatch, change: str, detail: Any) -> None:
        with self._lock:
            if change == runwatch.PAUSED:  # this card's own timeout
                self._show_end()
                return
            if watch.interrupted(self) is not None:
                return  # a stopped card stays as it was; start() catches up
            if change == runwatch.SNAPSHOT:
                self._take_snapshot(changed=detail)
            elif change == runwatch.RETRYING:
                self.polls = watch.polls
                self._show_retrying(detail)
            elif change == runwatch.ENDED:
                self._show_end()
            elif change == runwatch.THUMBNAIL:
                self._gallery.fill(self._sized(detail))
            elif change == runwatch.RATE_LIMITED and watch.polling:
                self.polls = watch.polls
                self._message.value = self._pace_note()
        if change == runwatch.SETTLED:
            self._settled()

    def _take_snapshot(self, changed: bool) -> None:
        self.polls = self._watch.polls
        self.snapshot = self._watch.snapshot
        self._message.value = self._pace_note()  # a good answer clears any "retrying"
        if changed and self._apply_snapshot():
            self._render()  # once per answer that changed something; timers are ticks

    def _show_retrying(self, retrying: runwatch.Retrying) -> None:
        self._show_message(
            "note",
            f"Could not get the run's status (attempt {retrying.failures} of "
            f"{retrying.max_failures}); retrying in {retrying.retry_in:.0f} s.",
            str(retrying.error),
        )

    def _show_end(self) -> None:
        """How watching ended: the run's outcome, or why we stopped (lock held)."""
        self._cancel_tick()
        self.polls = self._watch.polls
        error = self._watch.error or self._watch.interrupted(self)
        if error is not None and not isinstance(error, runwatch.Stopped):
            self.error = str(error)
            self._show_message("error", *astuple(explain(error)))
        elif self.snapshot is not None:
            self._show_outcome(self.snapshot)
        self._update_controls()

    def _show_outcome(self, snapshot: RunSnapshot) -> None:
        if snapshot.status == "completed" and snapshot.outputs:
            urls = list(snapshot.outputs)
            shown = min(len(urls), len(self._gallery.slots))
            self._gallery.show(shown, urls[shown:])
            for thumb in self._watch.thumbnails_in_order():
                self._gallery.fill(self._sized(thumb))
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
            self.polls = self._watch.polls
            self.snapshot = self._watch.snapshot
            self.error = ""
            self._message.value = ""
            self._apply_snapshot()
            self._render()
            self._message.value = self._pace_note()
            if self._watch.retrying is not None and self._watch.polling:
                self._show_retrying(self._watch.retrying)
            if self._watch.ended or (self._watch.error is not None and not self._watch.polling):
                self._show_end()
            self._update_controls()
        if self._watch.settled and self._watch.interrupted(self) is None:
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

    def _render(self) -> None:
        with self._lock:
            estimate = self._watch.estimate()
            markup = render.summary(
                status=self.status,
                workflow_id=self.workflow_id,
                execution_id=str(self.execution_id),
                elapsed=self._watch.elapsed(),
                finished=self._watch.ended,
                steps=self.steps,
                remaining=estimate.remaining if estimate else None,
                fraction=estimate.fraction if estimate else None,
            )
            self._status_view.value = markup
            self._steps_view.show(self.steps, self._step_timers())

    def _step_timers(self) -> dict[int, float]:
        """Live timers of the running steps, by index."""
        snapshot = self.snapshot
        steps = snapshot.steps if snapshot else ()
        timers = {i: step.seconds() for i, step in enumerate(steps) if step.status == "running"}
        return {i: seconds for i, seconds in timers.items() if seconds is not None}

    def _schedule_tick(self) -> None:
        """Re-render once a second while watching, so timers move without extra requests."""
        self._cancel_tick()
        self._tick_job = self._watch.scheduler.call_later(1.0, _weak(self._tick), in_pool=False)

    def _tick(self) -> None:
        with self._lock:
            if not self.watching:
                return
            self._render()
            self._schedule_tick()

    def _cancel_tick(self) -> None:
        if self._tick_job is not None:
            self._tick_job.cancel()
            self._tick_job = None

    def _show_message(self, kind: str, title: str, text: str = "", hint: str = "") -> None:
        self._message.value = render.message(kind, title, text, hint)

    def _update_controls(self) -> None:
        watching = self.watching
        ended = self._watch.ended
        self._stop_button.layout.display = "" if watching else "none"
        self._resume_button.layout.display = "" if not watching and not ended else "none"
        error = self._watch.error
        retry = error is not None and not isinstance(error, TimeoutError)
        self._resume_button.description = "Retry" if retry else "Resume"

    @property
    def message(self) -> str:
        """The message area's HTML (a notice or an error panel); "" when it shows nothing."""
        return str(self._message.value)

    def _pace_note(self) -> str:
        """A calm notice while the workflow's rate limit sets how often this run is checked
        ("" otherwise): not an error, nothing for the user to do."""
        seconds = self._watch.paced
        if seconds is None:
            return ""
        return render.message("note", pace_words(seconds), "",
                              "Every view and launch of this workflow shares its rate limit.")


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


def watch(workflow_id: str, execution_id: int | str, **kwargs: Any) -> WorkflowRunWidget:
    """Display a live widget for a run and return it (see ``WorkflowRunWidget``)."""
    widget = WorkflowRunWidget(workflow_id, execution_id, **kwargs)
    display(widget)
    return widget
