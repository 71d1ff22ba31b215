"""RunBoard: many workflow runs in one compact, live table.

A full ``WorkflowRunWidget`` is about fifteen child widgets (plus their Layout and Style
models) and re-renders its card every second while running; a hundred of them would be
thousands of comm models and a hundred messages a second. So a board row is three widgets
(a toggle Button, one HTML view and the HBox holding them), a view of the run's shared
``RunWatch`` (``runwatch.py``) like the card; the
row's HTML is set only when that row changed, the counts line at most four times a second,
and the thumbnails are a strip of tiny JPEGs inlined as ``data:`` URIs in the row's HTML
(one message once the run completed, no Image widgets). The full card is created only when
the user expands a row (a click handler, so on the main thread) and closed on collapse.

Threads: rows, buttons and cards are created on the main thread (in ``__init__``, ``add()``
and click handlers); poll and image callbacks, on pool threads, only set values.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import ipywidgets as widgets

from . import render
from .aio import until_done
from .checks import known_keywords, whole_number
from .client import WorkflowsClient, path_segment
from .images import encode_small
from .media import OutputKind
from .models import RunSnapshot
from .poller import PollPolicy
from .registry import watch_for
from .runstate import ENDS, RunState
from .runwatch import RunWatch
from .sanitize import clean
from .scheduler import Job, Scheduler, shared_scheduler
from .text import WATCH_ERROR, counts_text, format_seconds
from .widget import CARD_LAYOUT, WorkflowRunWidget, card_options, close_with_parts

COUNTS_INTERVAL = 0.25  # the counts line is re-rendered at most this often (seconds)


# -- words for a row -------------------------------------------------------------------
def current_step(snapshot: RunSnapshot | None) -> str:
    """The first running step's name, else the last step's, else ''."""
    if snapshot is None or not snapshot.steps:
        return ""
    running = next((step for step in snapshot.steps if step.status == "running"), None)
    return (running or snapshot.steps[-1]).name


# -- one row ------------------------------------------------------------------------------


class BoardRow:
    """One run on the board: a one-line view of the run's shared ``RunWatch`` and (when
    expanded) the full card, which is another view of the same watch: one request stream."""

    def __init__(
        self,
        board: RunBoard,
        watch: RunWatch,
        policy: PollPolicy,
        *,
        widget_kwargs: dict[str, Any],
        widget: WorkflowRunWidget | None = None,
    ) -> None:
        self.workflow_id = watch.workflow_id
        self.thumbnails: list[tuple[bytes, str]] = []  # (encoded bytes, "jpeg" | "png")
        self.strip: list[tuple[bytes, str] | str] = []  # in output order; a kind for non-images
        self.widget: WorkflowRunWidget | None = widget  # the full card, while there is one
        self._board = board
        self._watch = watch
        self._widget_kwargs = widget_kwargs
        self._own_widget = widget is None  # a card we make on expand; a given one we keep
        given = widget.label if widget is not None else widget_kwargs.get("label")
        #: what tells this run apart (its card's label)
        self.label = clean(given, 200) if isinstance(given, str) and given else ""
        self._lock = threading.RLock()
        self._closed = False
        self.expanded = False
        self.toggle = widgets.Button(
            icon="chevron-right", tooltip="Show this run's card",
            layout=widgets.Layout(width="34px", padding="0"),
        )
        self.toggle.on_click(lambda _: self.collapse() if self.expanded else self.expand())
        self.view = widgets.HTML(layout=widgets.Layout(flex="1 1 auto", min_width="0"))
        # the button stays at the top of its row when a narrow row wraps onto more lines;
        # the row's text wraps beside it, under itself (the view is the flexible item)
        self.box = widgets.HBox([self.toggle, self.view], layout=widgets.Layout(
            align_items="flex-start"))
        watch.attach(self, policy, thumbnail_size=board.thumbnail_size,
                     max_thumbnails=board.max_thumbnails)
        self._drawn: RunState | None = None  # the watch's state this row shows
        watch.want(self)
        if watch.settled:
            self._take_thumbnails()

    # -- public -----------------------------------------------------------------------

    @property
    def snapshot(self) -> RunSnapshot | None:
        return self._watch.snapshot

    @property
    def run_watch(self) -> RunWatch:
        """The run's shared model (the same one its card, if open, shows)."""
        return self._watch

    @property
    def watch_error(self) -> str:
        """Why watching ended without the run ending ("" otherwise)."""
        trouble = self._watch.state_for(self).trouble
        return "" if trouble is None else str(trouble) or type(trouble).__name__

    @property
    def status(self) -> str:
        """The run's status, or ``"error"`` once watching ended without the run ending."""
        if self.watch_error:
            return WATCH_ERROR
        snapshot = self.snapshot
        return snapshot.status if snapshot else "unknown"

    @property
    def settled(self) -> bool:
        """True once the run ended (thumbnails in) or watching ended on an error."""
        return self._watch.done_for(self)

    @property
    def paused(self) -> bool:
        """The run has not ended and nothing watches it any more (this row was stopped, and
        so was every other view of the run), with no error to show instead."""
        state = self._watch.state_for(self)
        return state.idle and state.trouble is None

    def stop(self) -> None:
        """Stop watching the run in this row (its open card, if any, is a view of its own);
        the row keeps the last status, paused, until ``start()``."""
        self._watch.pause(self)
        self._changed()

    def start(self) -> None:
        """Watch the run again after ``stop()``."""
        self._watch.want(self)
        self._changed()

    @property
    def execution_id(self) -> int | str | None:
        """The run's ID; None while the launch of a queued card has not been answered."""
        return self._watch.execution_id

    def wait(self, timeout: float | None = None) -> bool:
        """Block until settled; False if ``timeout`` passed first."""
        return self._watch.wait_done(self, timeout)

    def expand(self) -> WorkflowRunWidget:
        """Show the full card under this row (creating it: call on the main thread). The
        card is another view of this row's watch, so the run is still polled once."""
        with self._lock:
            if self.widget is None:
                kwargs = {"scheduler": self._board.scheduler, **self._widget_kwargs}
                self.widget = WorkflowRunWidget(
                    self.workflow_id, self.execution_id, client=self._watch.client, **kwargs
                )
            self.expanded = True
            self.toggle.icon = "chevron-down"
            self.toggle.tooltip = "Hide this run's card"
            card = self.widget
        self._board._layout_rows()
        return card

    def collapse(self) -> None:
        """Hide the card; a card the board made is closed (it holds images)."""
        with self._lock:
            self.expanded = False
            self.toggle.icon = "chevron-right"
            self.toggle.tooltip = "Show this run's card"
            card, owned = self.widget, self._own_widget
            if owned:
                self.widget = None
        self._board._layout_rows()
        if owned and card is not None:
            card.close()

    def __repr__(self) -> str:
        parts = [f"Run {clean(self.execution_id, 200)}", *([self.label] if self.label else []),
                 clean(self.status, 64)]
        step = current_step(self.snapshot)
        if step:
            parts.append(clean(step, 200))
        parts.append(format_seconds(self._watch.elapsed()))
        snapshot = self.snapshot
        error = self.watch_error or (snapshot.error if snapshot else None)
        if error:
            parts.append(f"error: {clean(error, 200)}")
        return " · ".join(parts)

    # -- the watch tells us (background threads) --------------------------------------

    def show(self, state: RunState) -> None:
        """Redraw the row when what it shows changed. Transient trouble keeps the last
        state; the strip of thumbnails comes once the run settled."""
        with self._lock:
            drawn = self._drawn
            if not state.newer_than(drawn):
                return
            self._drawn = state
        before = drawn or RunState()
        if state.final and not before.final:
            self._take_thumbnails()
        elif _row_look(state) == _row_look(before):
            return
        self._changed()
        if _ending(state) != _ending(before):
            self._board._status_changed()

    def _take_thumbnails(self) -> None:
        thumbs = self._watch.thumbnails_in_order()[: self._board.max_thumbnails]
        small = {t.index: encode_small(t.image, self._board.thumbnail_size)
                 for t in thumbs if t.image is not None}
        strip: list[tuple[bytes, str] | str] = []
        for info in self._watch.outputs_in_order()[: self._board.max_thumbnails]:
            if info.index in small:
                strip.append(small[info.index])
            elif info.kind is not OutputKind.IMAGE:
                strip.append(info.kind.value)
        with self._lock:
            self.thumbnails = list(small.values())
            self.strip = strip

    # -- internals ----------------------------------------------------------------------

    def _changed(self) -> None:
        self.render()
        self._board._status_changed()

    def render(self) -> None:
        with self._lock:
            if self._closed:
                return
            snapshot = self.snapshot
            error = self.watch_error or (
                snapshot.error or "" if snapshot and snapshot.status == "failed" else ""
            )
            markup = render.row_html(
                status=self.status,
                execution_id=str(self.execution_id),
                workflow_id=self.workflow_id,
                step=current_step(snapshot),
                elapsed=self._watch.elapsed(),
                error=error,
                thumbnails=self.strip,
                paused=self.paused,
                label=self.label,
                strip=(self._board.max_thumbnails, self._board.thumbnail_size),
            )
            self.view.value = markup

    def close(self) -> None:
        with self._lock:
            self._closed = True
            card, owned = self.widget, self._own_widget
        self._watch.detach(self)
        if owned and card is not None:  # a card we made; the user's widget is left open
            card.close()
        close_with_parts(self.toggle, self.view, self.box)


# -- the board ----------------------------------------------------------------------------


class RunBoard(widgets.VBox):
    """Many runs in one compact live table: a row per run with its status, current step,
    elapsed time and tiny thumbnails, counts by status on top; a row's toggle shows the full
    ``WorkflowRunWidget``. ``add()`` runs, ``wait()`` for them all, ``close()`` ends it all.

    ``api_key``/``base_url``/``client`` give the client every row shares (one is made when
    none is given); other keyword arguments are defaults for each ``add()``: polling
    (``poll_interval``, ``timeout``, ``max_failures``, ``backoff_base``) and, for the
    expanded card, any ``WorkflowRunWidget`` argument.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        client: WorkflowsClient | None = None,
        thumbnail_size: int = render.STRIP_SIZE,
        max_thumbnails: int = render.STRIP_COUNT,
        scheduler: Scheduler | None = None,
        **widget_kwargs: Any,
    ) -> None:
        self.thumbnail_size = whole_number(thumbnail_size, "thumbnail_size", 1)
        self.max_thumbnails = whole_number(max_thumbnails, "max_thumbnails", 0)
        known_keywords(widget_kwargs, card_options(), "RunBoard")
        PollPolicy.from_options(dict(widget_kwargs))  # a bad poll_interval, timeout, ... fails here
        self.scheduler = scheduler or shared_scheduler()
        self._defaults = widget_kwargs
        self._owns_client = client is None
        self._client = client or WorkflowsClient(api_key, base_url=base_url)
        self._rows: list[BoardRow] = []
        self._lock = threading.RLock()
        self._counts_job: Job | None = None
        self._closed = False
        self._style = widgets.HTML(
            render.STYLE + render.MEDIA_STYLE + render.BOARD_STYLE,
            layout=widgets.Layout(display="none"),
        )
        self._counts = widgets.HTML(render.counts_html({}))
        self._table = widgets.VBox()
        super().__init__(
            children=[self._style, self._counts, self._table],
            layout=widgets.Layout(**CARD_LAYOUT),
        )

    # -- public API ---------------------------------------------------------------------

    def add(
        self,
        run: str | WorkflowRunWidget,
        execution_id: int | str | None = None,
        **widget_kwargs: Any,
    ) -> BoardRow:
        """Add a run: ``add(workflow_id, execution_id, **widget_kwargs)`` (``label=`` names it
        in its row and card), or ``add(widget)`` for an existing ``WorkflowRunWidget``
        (followed, never closed, by the board).
        Call on the main thread: it creates the row's widgets."""
        if self._closed:
            raise RuntimeError("this board is closed")
        known_keywords(widget_kwargs, card_options(), "RunBoard.add")
        if isinstance(run, WorkflowRunWidget):
            row = self._row_for_widget(run)
        else:
            if execution_id is None:
                raise TypeError("add(workflow_id, execution_id) needs an execution_id")
            row = self._row_for_ids(run, execution_id, {**self._defaults, **widget_kwargs})
        with self._lock:
            self._rows.append(row)
        row.render()
        self._layout_rows()
        self._render_counts()
        return row

    @property
    def runs(self) -> list[BoardRow]:
        with self._lock:
            return list(self._rows)

    @property
    def counts_html(self) -> str:
        """The counts line on top of the table as shown ("3 running · 5 completed")."""
        return self._counts.value

    @property
    def counts_view(self) -> widgets.HTML:
        """The counts line's view, redrawn at most every ``COUNTS_INTERVAL`` seconds however
        many rows change: observe its ``value`` to see each redraw."""
        return self._counts

    @property
    def table_widgets(self) -> tuple[widgets.Widget, ...]:
        """The table as shown, top to bottom: each run's row (its ``BoardRow.box``),
        followed by the run's full card while the row is expanded."""
        with self._lock:
            return tuple(self._table.children)

    def counts(self) -> dict[str, int]:
        """Rows by status, e.g. ``{"running": 3, "completed": 5, "failed": 1}``; a row whose
        watching ended on an error (bad key, unknown run, ...) counts as ``"error"``."""
        return dict(Counter(row.status for row in self.runs))

    def wait(self, timeout: float | None = None) -> dict[str, int]:
        """Block until every run added so far has ended (and its thumbnails are in) or its
        watching ended on an error; returns ``counts()``. Raises ``TimeoutError``, and
        RuntimeError when ``close()`` (from another thread) ended the wait."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for row in self.runs:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not row.wait(left):
                pending = sum(1 for r in self.runs if not r.settled)
                raise TimeoutError(f"{pending} run(s) still going after {timeout:g} s")
        if self._closed:  # close() ends every row's wait: say so rather than return nothing
            raise RuntimeError("the board was closed before every run ended")
        return self.counts()

    def close(self) -> None:
        """Detach every row from its run's ``RunWatch`` (a run no other view watches is then
        no longer polled, nor its images fetched), and close every widget the board made
        (widgets passed to ``add()`` are unhooked and left open)."""
        if getattr(self, "_rows", None) is None:  # __init__ refused an argument: nothing made
            return
        with self._lock:
            if self._closed:
                return
            self._closed = True
            rows, self._rows = self._rows, []
            job, self._counts_job = self._counts_job, None
        if job is not None:
            job.cancel()
        for row in rows:
            row.close()
        close_with_parts(self._style, self._counts, self._table)
        close_with_parts(self.layout)
        super().close()
        if self._owns_client:
            self._client.close()

    def __repr__(self) -> str:
        rows = self.runs
        summary = counts_text(self.counts()) if rows else "empty"
        return f"RunBoard · {len(rows)} run{'s' if len(rows) != 1 else ''}: {summary}"

    # -- internals ----------------------------------------------------------------------

    def _row_for_ids(
        self, workflow_id: str, execution_id: int | str, kwargs: dict[str, Any]
    ) -> BoardRow:
        path_segment(workflow_id, "workflow_id")
        path_segment(execution_id, "execution_id")
        policy = PollPolicy.from_options(kwargs)
        client: WorkflowsClient | None = kwargs.pop("client", None)
        api_key, base_url = kwargs.pop("api_key", None), kwargs.pop("base_url", None)
        owns = client is None and (api_key is not None or base_url is not None)
        if owns:
            client = WorkflowsClient(api_key, base_url=base_url)
        watch = watch_for(client or self._client, workflow_id, execution_id,
                          scheduler=self.scheduler, owns_client=owns)
        return BoardRow(self, watch, policy, widget_kwargs=kwargs)

    def _row_for_widget(self, widget: WorkflowRunWidget) -> BoardRow:
        return BoardRow(self, widget.run_watch, PollPolicy.from_options(self._defaults),
                        widget_kwargs={}, widget=widget)

    def _layout_rows(self) -> None:
        """The table's children: each row, followed by its card while expanded."""
        with self._lock:
            if self._closed:
                return
            children: list[widgets.Widget] = []
            for row in self._rows:
                children.append(row.box)
                if row.expanded and row.widget is not None:
                    children.append(row.widget)
            self._table.children = tuple(children)

    def _status_changed(self) -> None:
        """Throttle the counts line: one render per COUNTS_INTERVAL, on the timer thread."""
        with self._lock:
            if self._closed or self._counts_job is not None:
                return
            self._counts_job = self.scheduler.call_later(
                COUNTS_INTERVAL, self._render_counts_job, in_pool=False
            )

    def _render_counts_job(self) -> None:
        with self._lock:
            self._counts_job = None
        self._render_counts()

    def _render_counts(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._counts.value = render.counts_html(self.counts())


    async def wait_async(self, timeout: float | None = None) -> dict[str, int]:
        """``await`` every run added so far: returns ``counts()`` and raises ``TimeoutError``
        like ``wait()``, while the event loop (other coroutines in the kernel) keeps running."""
        import asyncio  # lazily: only an await needs it

        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        for row in self.runs:
            left = None if deadline is None else max(0.0, deadline - loop.time())
            try:
                await until_done(row.run_watch, row, left)
            except TimeoutError:
                pending = sum(1 for r in self.runs if not r.settled)
                raise TimeoutError(f"{pending} run(s) still going after {timeout:g} s") from None
        return self.counts()

def _row_look(state: RunState) -> tuple[Any, ...]:
    """What a row draws of a state: not the retries (a row keeps its last state through
    transient trouble) nor thumbnails (the strip comes once the run settled)."""
    return (state.phase, state.revision, state.paced, state.outputs, state.cancelling,
            state.cancel_error, state.error, state.wanted, state.interrupted)


def _ending(state: RunState) -> tuple[bool, ...]:
    """What the board's header counts of a row: over, ended or given up, timed out."""
    return (state.final, state.phase in ENDS,
            state.timed_out)
