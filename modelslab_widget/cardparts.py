"""The card's two lists, each made of pre-built ipywidgets (main thread) that background
threads only refill: the step rows and the output gallery. A poll or a tick sends only the
views whose text changed (traitlets notifies only on a different value).

No state of the run lives here: ``widget.py`` decides what to show and hands it over.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets
from ipywidgets.widgets.widget_string import HTMLStyle

from . import render
from .images import Thumbnail
from .media import OutputInfo, OutputKind


class Gallery:
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
            self.captions[index].value = render.message("note", f"Loading output #{index + 1}…")
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

    def place(self, info: OutputInfo, box: int) -> None:
        """Show a non-image output in its slot: a player the browser streams from the URL,
        or a tile with type, size and link (an image waits for its thumbnail)."""
        if info.index >= self.shown or info.kind is OutputKind.IMAGE:
            return
        text = self.captions[info.index]
        text.value = render.output_tile(info.index, info.url, info.kind.value, info.content_type,
                                        info.size, box=box, error=info.error)
        self.slots[info.index].children = (text,)

    def clear(self) -> None:
        self.shown = 0
        self.box.children = ()
        self.box.layout.display = "none"

    def shown_html(self) -> tuple[str, ...]:
        """Per slot on show, in output order, the HTML it shows (its caption widget's)."""
        return tuple(caption.value for caption in self.captions[: self.shown])

    def shown_images(self) -> tuple[tuple[bytes, str] | None, ...]:
        """Per slot on show, the thumbnail its Image shows, or None when it shows none."""
        return tuple((image.value, image.format) if image in slot.children else None
                     for image, slot in zip(self.images[: self.shown], self.slots, strict=False))

    def widgets(self) -> list[widgets.Widget]:
        return [*self.images, *self.captions, *self.slots, self.more, self.box]


class StepRows:
    """Pre-built step rows (a window of them for long runs), each its own view: a poll or a
    tick sends only the rows whose text changed, never the whole list."""

    def __init__(self, rows: int) -> None:
        # One Layout and one style for all rows: the rows cost one model each, not three.
        layout, style = widgets.Layout(margin="0"), HTMLStyle()
        self.before = widgets.HTML(render.WAITING_FOR_STEPS, layout=layout, style=style)
        self.rows = [widgets.HTML(layout=layout, style=style) for _ in range(rows)]
        self.after = widgets.HTML(layout=layout, style=style)
        self.box = widgets.VBox([self.before], layout=widgets.Layout(margin="2px 0"))

    def show(
        self, steps: list[dict[str, Any]], running_for: dict[int, float], waiting: bool = True
    ) -> None:
        # traitlets notifies (and ipywidgets sends) only values that differ from the current
        # one, so a row whose text is unchanged costs nothing.
        view = render.steps_view(steps, running_for, len(self.rows))
        if not steps and not waiting:
            view = render.StepsView("", [], "")
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
