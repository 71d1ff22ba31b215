"""SweepGrid: a sweep's runs side by side, the thin ipywidgets view of a ``Sweep``.

For ``Sweep.grid`` with two axes the rows are the first axis and the columns the second,
labelled with their values; any other sweep is a compact grid in order that wraps in a narrow
output area. Each cell shows its run's label, status and duration, then its first output's
thumbnail (or the output's kind); its button opens the run's card below the grid (another
view of the same watch: no second request stream). On top: the counts by status, a bar of
the runs done, and **Cancel all** (a second click confirms).

Every widget is made on the main thread, in ``__init__``; the sweep's background threads
only set values. Once every run is done, each output showing the grid also gets a
self-contained HTML grid (thumbnails inline), which a saved notebook keeps.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets
from IPython.display import display, update_display

from . import render
from .media import OutputKind
from .widget import WIDGET_VIEW_MIMETYPE, WorkflowRunWidget, close_with_parts

if TYPE_CHECKING:
    from .sweep import Sweep, SweepRun

CELL_WIDTH = 150  # px: a cell's smallest width
CONFIRM = "Click again to cancel every run"


def _tracks(children: list[widgets.Widget]) -> widgets.GridBox:
    """As many ``CELL_WIDTH`` columns as fit, the same for every row: wraps, never cuts."""
    return widgets.GridBox(children, layout=widgets.Layout(
        grid_template_columns=f"repeat(auto-fill, minmax({CELL_WIDTH}px, 1fr))",
        grid_gap="6px", width="100%"))


class _Cell:
    """One run's cell: its words, its picture, and the button that opens its card."""

    def __init__(self, run: SweepRun, open_card: Any) -> None:
        self.run = run
        self.text = widgets.HTML(layout=widgets.Layout(min_width="0"))
        self.image = widgets.Image(format="jpeg", layout=widgets.Layout(
            display="none", width="100%", max_width=f"{CELL_WIDTH}px", height="auto"))
        self.kind = widgets.HTML(layout=widgets.Layout(display="none"))
        self.button = widgets.Button(description="Open", icon="chevron-down",
                                     tooltip="Show this run's card", disabled=True,
                                     layout=widgets.Layout(width="auto"))
        self.button.on_click(lambda _: open_card(run))
        self.box = widgets.VBox([self.text, self.image, self.kind, self.button],
                                layout=widgets.Layout(
                                    min_width="0", padding="4px",
                                    border="1px solid var(--jp-border-color2, #e0e0e0)"))

    def draw(self) -> None:
        run = self.run
        result = run.result()
        self.text.value = render.sweep_cell(
            number=run.index + 1, label=run.label, status=result["status"],
            duration=result["duration"], error=result["error"],
            execution_id=str(run.execution_id or ""))
        self.button.disabled = run.execution_id is None
        watch = run.watch
        if watch is None or not watch.settled:
            return
        thumbs = [t for t in watch.thumbnails_in_order() if t.ok]
        if thumbs:
            self.image.format = thumbs[0].format
            self.image.value = thumbs[0].data
            self.image.layout.display = ""
            return
        kinds = [info.kind for info in watch.outputs_in_order()]
        if kinds and kinds[0] is not OutputKind.IMAGE:
            self.kind.value = render.kind_badge(kinds[0].value, 0)
            self.kind.layout.display = ""

    def static(self) -> tuple[str, render.StaticImage | None]:
        watch = self.run.watch
        thumbs = [t for t in watch.thumbnails_in_order() if t.ok] if watch is not None else []
        image = (render.StaticImage(thumbs[0].data, thumbs[0].format, "") if thumbs else None)
        return self.text.value, image

    def close(self) -> None:
        close_with_parts(self.text, self.image, self.kind, self.button, self.box)


class SweepGrid(widgets.VBox):
    """The grid of a ``Sweep`` (see the module docstring). Made by ``sweep.grid_view()``."""

    def __init__(self, sweep: Sweep) -> None:
        self.sweep = sweep
        self._lock = threading.RLock()
        self._display_ids: list[str] = []
        self._final_published = False
        self._header = widgets.HTML()
        self.cancel_button = widgets.Button(description="Cancel all", icon="stop",
                                            tooltip="Cancel every run of the sweep",
                                            layout=widgets.Layout(width="auto"))
        self.cancel_button.on_click(self._on_cancel)
        self.cells = [_Cell(run, self.open_run) for run in sweep.runs]
        self._labels: list[widgets.HTML] = []
        self.grid_box = self._layout()
        self._detail = widgets.VBox()
        self.card: WorkflowRunWidget | None = None
        top = widgets.HBox([self._header, self.cancel_button], layout=widgets.Layout(
            align_items="center", justify_content="space-between", flex_flow="row wrap"))
        self._top = top
        super().__init__([widgets.HTML(render.STYLE + render.SWEEP_STYLE), top, self.grid_box,
                          self._detail], layout=widgets.Layout(max_width="100%"))
        self._draw_all()
        self._stop_listening = sweep.listen(self._on_change)

    # -- public -----------------------------------------------------------------------------

    def open_run(self, run: SweepRun) -> WorkflowRunWidget | None:
        """Show ``run``'s card below the grid (main thread, like the cell's button)."""
        if run.execution_id is None:
            return None
        if self.card is not None:
            self.card.close()
        self.card = WorkflowRunWidget(self.sweep.workflow_id, run.execution_id,
                                      client=self.sweep.client, label=run.label or None,
                                      poll_interval=self.sweep.policy.interval)
        self._detail.children = (self.card,)
        return self.card

    def mimebundle(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            WIDGET_VIEW_MIMETYPE: {"version_major": 2, "version_minor": 0,
                                   "model_id": self.model_id},
            "text/plain": repr(self.sweep),
        }
        if self.sweep.done:
            data["text/html"] = self.static_html()
        return data

    def _ipython_display_(self) -> None:
        handle = display(self.mimebundle(), raw=True, display_id=True)
        if handle is not None:
            with self._lock:
                self._display_ids.append(handle.display_id)

    def static_html(self) -> str:
        """The grid as it looks now, as HTML with no script (thumbnails inline)."""
        columns, column_labels, row_labels = self._shape()
        return render.static_sweep(self._header.value, [cell.static() for cell in self.cells],
                                   columns, column_labels, row_labels)

    def close(self) -> None:
        self._stop_listening()
        if self.card is not None:
            self.card.close()
        for cell in self.cells:
            cell.close()
        close_with_parts(*self._labels, *self.grid_box.children, self._header,
                         self.cancel_button, self.grid_box, self._detail, self._top)
        super().close()

    # -- layout -------------------------------------------------------------------------------

    def _shape(self) -> tuple[int, list[str], list[str]]:
        """Columns, and the column and row headings when the sweep has two axes."""
        axes = self.sweep.axes
        if axes and len(axes) == 2:
            (row_key, rows), (column_key, columns) = axes.items()
            return (len(columns), [f"{column_key}={value}" for value in columns],
                    [f"{row_key}={value}" for value in rows])
        return 0, [], []

    def _layout(self) -> widgets.Box:
        """A grid of cells that wraps when narrow. With two axes: the columns' headings on
        top, and each row under its heading, in the same tracks (so columns line up)."""
        columns, column_labels, row_labels = self._shape()
        if not columns:
            return _tracks([cell.box for cell in self.cells])
        self._labels = [widgets.HTML(render.axis_label(text)) for text in column_labels]
        parts: list[widgets.Widget] = [_tracks(list(self._labels))]
        for number, label in enumerate(row_labels):
            heading = widgets.HTML(render.axis_label(label))
            self._labels.append(heading)
            row = self.cells[number * columns:(number + 1) * columns]
            parts += [heading, _tracks([cell.box for cell in row])]
        return widgets.VBox(parts, layout=widgets.Layout(width="100%"))

    # -- drawing (any thread) ------------------------------------------------------------------

    def _draw_all(self) -> None:
        for cell in self.cells:
            cell.draw()
        self._draw_header()

    def _draw_header(self) -> None:
        sweep = self.sweep
        done = sum(1 for run in sweep.runs if run.done)
        title = f"Sweep of {len(sweep.runs)} runs"
        self._header.value = render.sweep_header(title, sweep.counts(), len(sweep.runs), done)
        if sweep.done:
            self.cancel_button.disabled = True

    def _on_change(self, run: SweepRun | None) -> None:
        with self._lock:
            if run is None:
                self._draw_all()
            else:
                self.cells[run.index].draw()
                self._draw_header()
            publish = self.sweep.done and not self._final_published
            self._final_published = self._final_published or publish
            ids = list(self._display_ids)
        if publish and ids:
            bundle = self.mimebundle()
            for display_id in ids:
                update_display(bundle, display_id=display_id, raw=True)

    def _on_cancel(self, _: widgets.Button) -> None:
        if self.cancel_button.description != CONFIRM:
            self.cancel_button.description = CONFIRM
            self.cancel_button.button_style = "danger"
            return
        self.cancel_button.disabled = True
        self.cancel_button.description = "Cancelling…"
        self.sweep._scheduler.submit(self.sweep.cancel)
