"""RunBoard: many workflow runs in one compact, live table.

A full ``WorkflowRunWidget`` is about fifteen child widgets (plus their Layout and Style
models) and re-renders its card every second while running; a hundred of them would be
thousands of comm models and a hundred messages a second. So a board row is three widgets
(a toggle Button, one HTML view and the HBox holding them) fed by a bare ``RunPoller``; the
row's HTML is set only when that row changed, the counts line at most four times a second,
and the thumbnails are a strip of tiny JPEGs inlined as ``data:`` URIs in the row's HTML
(one message once the run completed, no Image widgets). The full card is created only when
the user expands a row (a click handler, so on the main thread) and closed on collapse.

Threads: rows, buttons and cards are created on the main thread (in ``__init__``, ``add()``
and click handlers); poll and image callbacks, on pool threads, only set values.
"""

from __future__ import annotations

import base64
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from html import escape
from typing import Any

import ipywidgets as widgets

from . import render
from .client import WorkflowsClient, path_segment
from .errors import ModelsLabError
from .media import Thumbnail, encode_small, load_thumbnails
from .models import RunSnapshot
from .poller import PollPolicy, RunPoller
from .scheduler import Job, Scheduler, shared_scheduler
from .widget import CARD_LAYOUT, WorkflowRunWidget, close_with_parts

WATCH_ERROR = "error"  # a row whose watching ended on an error (not a run status)
COUNT_ORDER = ("pending", "running", "completed", "failed", "cancelled", "unknown", WATCH_ERROR)
COUNTS_INTERVAL = 0.25  # the counts line is re-rendered at most this often (seconds)
STRIP_SIZE = 48  # pixels: board thumbnails are a few kB each
STRIP_COUNT = 4
ERROR_PREVIEW = 80

BOARD_STYLE = """<style>
.mlw-counts{font-weight:600;margin:2px 0 6px}
.mlw-row{display:grid;grid-template-columns:8em 7em minmax(0,1fr) 5.5em auto;gap:0 10px;
 align-items:center;min-height:28px}
.mlw-row>span{min-width:0;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.mlw-strip{display:flex;gap:3px;align-items:center}
.mlw-strip img{max-width:48px;max-height:48px;border-radius:2px;display:block}
.mlw-row .mlw-err{color:var(--jp-error-color1,#d32f2f)}
</style>"""


# -- helpers shared with the launcher ---------------------------------------------------
FOLLOWED_TRAITS = ["status", "steps", "error", "polls"]  # what a row mirrors of a card


def current_step(snapshot: RunSnapshot | None) -> str:
    """The first running step's name, else the last step's, else ''."""
    if snapshot is None or not snapshot.steps:
        return ""
    running = next((step for step in snapshot.steps if step.status == "running"), None)
    return (running or snapshot.steps[-1]).name


def elapsed_seconds(snapshot: RunSnapshot | None, seen_running_at: datetime | None) -> float | None:
    """The run's elapsed time (see ``RunSnapshot.elapsed``)."""
    return snapshot.elapsed(first_seen=seen_running_at) if snapshot is not None else None


def strip_html(thumbnails: Iterable[tuple[bytes, str]]) -> str:
    images = [
        f'<img alt="output {i + 1}" src="data:image/{fmt};base64,'
        f'{base64.b64encode(data).decode("ascii")}">'
        for i, (data, fmt) in enumerate(thumbnails)
    ]
    return f'<span class="mlw-strip">{"".join(images)}</span>'


def row_html(
    *,
    status: str,
    execution_id: str,
    workflow_id: str,
    step: str,
    elapsed: float | None,
    error: str = "",
    thumbnails: Iterable[tuple[bytes, str]] = (),
) -> str:
    """One board row: status, run id, current step (or the error), elapsed, thumbnails."""
    if status == WATCH_ERROR:
        badge = render.status_label("failed", "Not watched")
    else:
        badge = render.status_label(status)
    detail = escape(step) or '<span class="mlw-sub">–</span>'
    if error:
        short = render.shorten(error, ERROR_PREVIEW)
        detail = f'<span class="mlw-err" title="{escape(error)}">{escape(short)}</span>'
    return (
        f'<div class="mlw-card mlw-row">{badge}'
        f'<span title="workflow {escape(workflow_id)}">Run {escape(execution_id)}</span>'
        f"<span>{detail}</span>"
        f'<span class="mlw-dur">{render.format_seconds(elapsed)}</span>'
        f"{strip_html(thumbnails)}</div>"
    )


def counts_html(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    if not total:
        return '<div class="mlw-card mlw-counts mlw-sub">No runs yet: add some with add().</div>'
    return f'<div class="mlw-card mlw-counts">{escape(counts_text(counts))}</div>'


def counts_text(counts: dict[str, int]) -> str:
    """``3 running · 5 completed · 1 failed`` in a stable order, unknown statuses last."""
    order = [s for s in COUNT_ORDER if counts.get(s)]
    order += sorted(s for s in counts if s not in COUNT_ORDER and counts[s])
    return " · ".join(f"{counts[s]} {'not watched' if s == WATCH_ERROR else s}" for s in order)


# -- one row ------------------------------------------------------------------------------


class BoardRow:
    """One run on the board: its latest snapshot, a one-line view, and (when expanded) the
    full card. Fed either by its own ``RunPoller`` or by an existing widget's traits."""

    def __init__(
        self,
        board: RunBoard,
        workflow_id: str,
        execution_id: int | str,
        *,
        client: WorkflowsClient,
        owns_client: bool,
        widget_kwargs: dict[str, Any],
        widget: WorkflowRunWidget | None = None,
    ) -> None:
        self.workflow_id = str(workflow_id)
        self.execution_id = execution_id
        self.snapshot: RunSnapshot | None = None
        self.watch_error = ""  # why watching ended without the run ending
        self.thumbnails: list[tuple[bytes, str]] = []  # (encoded bytes, "jpeg" | "png")
        self.widget: WorkflowRunWidget | None = widget  # the full card, while there is one
        self._board = board
        self._client = client
        self._owns_client = owns_client
        self._widget_kwargs = widget_kwargs
        self._own_widget = widget is None  # a card we make on expand; a given one we keep
        self._lock = threading.RLock()
        self._settled = threading.Event()
        self._media_cancel = threading.Event()
        self._seen_running_at: datetime | None = None
        self._closed = False
        self.expanded = False
        self.toggle = widgets.Button(
            icon="chevron-right", tooltip="Show this run's card",
            layout=widgets.Layout(width="34px", padding="0"),
        )
        self.toggle.on_click(lambda _: self.collapse() if self.expanded else self.expand())
        self.view = widgets.HTML(layout=widgets.Layout(flex="1 1 auto", min_width="0"))
        self.box = widgets.HBox([self.toggle, self.view], layout=widgets.Layout(
            align_items="center"))
        self._poller: RunPoller | None = None
        self._previous_on_complete: Callable[[WorkflowRunWidget], Any] | None = None

    # -- public -----------------------------------------------------------------------

    @property
    def status(self) -> str:
        """The run's status, or ``"error"`` once watching ended without the run ending."""
        if self.watch_error and not (self.snapshot and self.snapshot.is_terminal):
            return WATCH_ERROR
        return self.snapshot.status if self.snapshot else "unknown"

    @property
    def settled(self) -> bool:
        """True once the run ended (thumbnails in) or watching ended on an error."""
        return self._settled.is_set()

    def expand(self) -> WorkflowRunWidget:
        """Show the full card under this row (creating it: call on the main thread). While a
        card the board made is open and the run goes on, the card polls and feeds the row,
        so the run is polled once, not twice."""
        with self._lock:
            if self.widget is None:
                kwargs = {"scheduler": self._board.scheduler, **self._widget_kwargs}
                self.widget = WorkflowRunWidget(
                    self.workflow_id, self.execution_id, client=self._client, **kwargs
                )
                if self._own_widget and not self.settled and self._poller is not None:
                    self._poller.stop()
                    self._hook(self.widget)
            self.expanded = True
            self.toggle.icon = "chevron-down"
            self.toggle.tooltip = "Hide this run's card"
            card = self.widget
        self._board._layout_rows()
        return card

    def collapse(self) -> None:
        """Hide the card; a card the board made is closed (it polls and holds images), and
        the row polls again if the run is still going."""
        with self._lock:
            self.expanded = False
            self.toggle.icon = "chevron-right"
            self.toggle.tooltip = "Show this run's card"
            card, owned = self.widget, self._own_widget
            if owned:
                self.widget = None
        self._board._layout_rows()
        if owned and card is not None:
            self._unhook(card)
            card.close()
            if not self.settled and not self._closed and self._poller is not None:
                self._poller.start()

    def _hook(self, card: WorkflowRunWidget) -> None:
        self._previous_on_complete = card.on_complete
        card.on_complete = self._widget_completed
        card.observe(self._widget_changed, FOLLOWED_TRAITS)

    def _unhook(self, card: WorkflowRunWidget) -> None:
        card.unobserve(self._widget_changed, FOLLOWED_TRAITS)
        if card.on_complete == self._widget_completed:  # unless someone replaced it since
            card.on_complete = self._previous_on_complete
        self._previous_on_complete = None

    def __repr__(self) -> str:
        parts = [f"Run {self.execution_id}", self.status]
        step = current_step(self.snapshot)
        if step:
            parts.append(step)
        parts.append(render.format_seconds(elapsed_seconds(self.snapshot, self._seen_running_at)))
        error = self.watch_error or (self.snapshot.error if self.snapshot else None)
        if error:
            parts.append(f"error: {error[:200]}")
        return " · ".join(parts)

    # -- feeding: our own poller ------------------------------------------------------

    def watch(self, policy: PollPolicy, scheduler: Scheduler) -> None:
        self._poller = RunPoller(
            self._client, self.workflow_id, self.execution_id, listener=self,
            policy=policy, scheduler=scheduler,
        )
        self._poller.start()

    def on_snapshot(self, snapshot: RunSnapshot, polls: int) -> None:
        self._take_snapshot(snapshot)

    def on_poll_error(self, error: ModelsLabError, failures: int, retry_in: float) -> None:
        """Transient trouble: the row keeps its last state; the poller retries."""

    def on_finished(self, snapshot: RunSnapshot | None, error: BaseException | None) -> None:
        if error is not None:
            with self._lock:
                self.watch_error = str(error) or type(error).__name__
            self._changed()
            self._settle()
        elif snapshot is not None and snapshot.status == "completed" and snapshot.outputs:
            self._load_thumbnails(snapshot)
        else:
            self._settle()

    def _load_thumbnails(self, snapshot: RunSnapshot) -> None:
        urls = list(snapshot.outputs[: self._board.max_thumbnails])
        if not urls:  # max_thumbnails=0: nothing to wait for
            self._changed()
            self._settle()
            return
        ready: dict[int, Thumbnail] = {}

        def on_ready(thumb: Thumbnail) -> None:
            with self._lock:
                ready[thumb.index] = thumb
                if len(ready) < len(urls):
                    return
                self.thumbnails = [
                    (t.data, t.format) for _, t in sorted(ready.items()) if t.ok
                ]
            self._changed()
            self._settle()

        load_thumbnails(
            self._client, urls, list(snapshot.proxy_links), self._board.thumbnail_size,
            submit=self._board.scheduler.submit, on_ready=on_ready, cancel=self._media_cancel,
        )

    # -- feeding: an existing widget's traits -----------------------------------------

    def follow(self, widget: WorkflowRunWidget) -> None:
        """Mirror a widget the user made: its traits for state, its on_complete for images."""
        self._hook(widget)
        snapshot = widget.snapshot
        if snapshot is not None:
            self._take_snapshot(snapshot)
        ended = snapshot is not None and snapshot.is_terminal
        if widget.error and not widget.watching and not ended:  # watching already failed
            with self._lock:
                self.watch_error = widget.error
            self._changed()
            self._settle()
            return
        if ended and widget.settled:  # settled before we hooked in: on_complete came already
            self._widget_completed(widget, chain=False)

    def _widget_changed(self, change: dict[str, Any]) -> None:
        widget = change["owner"]
        if widget.snapshot is not None:
            self._take_snapshot(widget.snapshot)
        if change["name"] == "error" and not change["new"] and self.watch_error:
            with self._lock:  # the user pressed Retry: watching again
                self.watch_error = ""
                self._settled.clear()
            self._changed()
        ended = change["name"] == "error" and change["new"] and not widget.watching
        if ended and not (widget.snapshot and widget.snapshot.is_terminal):
            with self._lock:
                self.watch_error = change["new"]
            self._changed()
            self._settle()

    def _widget_completed(self, widget: WorkflowRunWidget, chain: bool = True) -> None:
        images = list(widget.thumbnails[: self._board.max_thumbnails])
        small = [encode_small(image, self._board.thumbnail_size) for image in images]
        with self._lock:
            self.thumbnails = small
        self._changed()
        self._settle()
        previous = self._previous_on_complete
        if chain and previous is not None:
            previous(widget)

    # -- internals ----------------------------------------------------------------------

    def _take_snapshot(self, snapshot: RunSnapshot) -> None:
        with self._lock:
            self.snapshot = snapshot
            if snapshot.status == "running" and self._seen_running_at is None:
                self._seen_running_at = datetime.now(timezone.utc)
        self._changed()

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
            markup = row_html(
                status=self.status,
                execution_id=str(self.execution_id),
                workflow_id=self.workflow_id,
                step=current_step(snapshot),
                elapsed=elapsed_seconds(snapshot, self._seen_running_at),
                error=error,
                thumbnails=self.thumbnails,
            )
            self.view.value = markup

    def _settle(self) -> None:
        self._settled.set()
        self._board._status_changed()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            card, owned = self.widget, self._own_widget
        if self._poller is not None:
            self._poller.stop()
        self._media_cancel.set()
        if not owned and card is not None:  # the user's widget: unhook, never close
            self._unhook(card)
        elif card is not None:
            card.close()
        close_with_parts(self.toggle, self.view, self.box)
        if self._owns_client:
            self._client.close()


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
        thumbnail_size: int = STRIP_SIZE,
        max_thumbnails: int = STRIP_COUNT,
        scheduler: Scheduler | None = None,
        **widget_kwargs: Any,
    ) -> None:
        self.thumbnail_size = thumbnail_size
        self.max_thumbnails = max_thumbnails
        self.scheduler = scheduler or shared_scheduler()
        self._defaults = widget_kwargs
        self._owns_client = client is None
        self._client = client or WorkflowsClient(api_key, base_url=base_url)
        self._rows: list[BoardRow] = []
        self._lock = threading.RLock()
        self._counts_job: Job | None = None
        self._closed = False
        self._style = widgets.HTML(
            render.STYLE + BOARD_STYLE, layout=widgets.Layout(display="none")
        )
        self._counts = widgets.HTML(counts_html({}))
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
        """Add a run: ``add(workflow_id, execution_id, **widget_kwargs)``, or ``add(widget)``
        for an existing ``WorkflowRunWidget`` (followed, never closed, by the board).
        Call on the main thread: it creates the row's widgets."""
        if self._closed:
            raise RuntimeError("this board is closed")
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

    def counts(self) -> dict[str, int]:
        """Rows by status, e.g. ``{"running": 3, "completed": 5, "failed": 1}``; a row whose
        watching ended on an error (bad key, unknown run, ...) counts as ``"error"``."""
        return dict(Counter(row.status for row in self.runs))

    def wait(self, timeout: float | None = None) -> dict[str, int]:
        """Block until every run added so far has ended (and its thumbnails are in) or its
        watching ended on an error; returns ``counts()``. Raises ``TimeoutError``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for row in self.runs:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not row._settled.wait(left):
                pending = sum(1 for r in self.runs if not r.settled)
                raise TimeoutError(f"{pending} run(s) still going after {timeout:g} s")
        return self.counts()

    def close(self) -> None:
        """Stop every poller and image download, and close every widget the board made
        (widgets passed to ``add()`` are unhooked and left open)."""
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
        policy = PollPolicy(
            kwargs.get("poll_interval", 2.0), kwargs.get("timeout"),
            kwargs.get("max_failures", 5), kwargs.get("backoff_base", 1.0),
        )
        if policy.interval <= 0:
            raise ValueError("poll_interval must be positive")
        client: WorkflowsClient | None = kwargs.pop("client", None)
        api_key, base_url = kwargs.pop("api_key", None), kwargs.pop("base_url", None)
        owns = client is None and (api_key is not None or base_url is not None)
        if owns:
            client = WorkflowsClient(api_key, base_url=base_url)
        row = BoardRow(
            self, workflow_id, execution_id, client=client or self._client, owns_client=owns,
            widget_kwargs=kwargs,
        )
        row.watch(policy, self.scheduler)
        return row

    def _row_for_widget(self, widget: WorkflowRunWidget) -> BoardRow:
        row = BoardRow(
            self, widget.workflow_id, widget.execution_id, client=widget.client,
            owns_client=False, widget_kwargs={}, widget=widget,
        )
        row.follow(widget)
        return row

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
            self._counts.value = counts_html(self.counts())
