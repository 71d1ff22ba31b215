"""The card's step rows and output gallery: what each shows, and that a refill touches only
the views whose text changed (each is a widget the front end redraws on its own)."""

from __future__ import annotations

from PIL import Image

from modelslab_widget import render
from modelslab_widget.cardparts import Gallery, StepRows
from modelslab_widget.images import Thumbnail
from modelslab_widget.media import OutputInfo, OutputKind


def steps(*statuses: str) -> list[dict]:
    return [{"name": f"Step {i}", "status": status, "started_at": None, "completed_at": None,
             "duration": 1.5 if status == "completed" else None}
            for i, status in enumerate(statuses)]


def test_step_rows_wait_then_show_one_row_a_step():
    rows = StepRows(rows=4)
    assert rows.box.children == (rows.before,)
    assert rows.before.value == render.WAITING_FOR_STEPS
    rows.show(steps("completed", "running"), {1: 2.0})
    assert rows.box.children == tuple(rows.rows[:2])
    assert "Step 0" in rows.rows[0].value and "Step 1" in rows.rows[1].value
    rows.show([], {}, waiting=False)  # nobody waits for steps any more: nothing is said
    assert rows.box.children == () and rows.before.value == ""


def test_a_long_run_shows_a_window_with_the_steps_around_it_counted():
    rows = StepRows(rows=3)
    rows.show(steps(*["completed"] * 5, "running", *["pending"] * 4), {5: 1.0})
    shown = rows.box.children
    assert len(shown) == 5 and shown[0] is rows.before and shown[-1] is rows.after
    assert "earlier" in rows.before.value and "Step 5" in "".join(r.value for r in rows.rows)


def test_only_the_rows_whose_text_changed_are_sent():
    rows = StepRows(rows=4)
    rows.show(steps("completed", "running"), {1: 2.0})
    changed: list[int] = []
    for index, row in enumerate(rows.rows):
        row.observe(lambda _, index=index: changed.append(index), "value")
    rows.show(steps("completed", "running"), {1: 3.0})  # a tick: the running timer moved
    assert changed == [1]


def thumbnail(index: int) -> Thumbnail:
    return Thumbnail(index, f"https://cdn.example/{index}.png", Image.new("RGB", (4, 4)),
                     b"\xff\xd8jpeg", "jpeg", (512, 512))


def test_the_gallery_reserves_slots_then_fills_them_in_any_order():
    gallery = Gallery(slots=2)
    assert gallery.box.layout.display == "none"
    gallery.show(3, ["https://cdn.example/2.png"])
    assert gallery.box.layout.display == "flex" and gallery.shown == 2
    assert all("Loading output" in text for text in gallery.shown_html())
    assert "1 more" in gallery.more.value
    gallery.fill(thumbnail(1))
    assert gallery.shown_images() == (None, (b"\xff\xd8jpeg", "jpeg"))
    assert "1.png" in gallery.shown_html()[1] and "512×512" in gallery.shown_html()[1]
    gallery.fill(thumbnail(5))  # beyond the slots: listed as a link, never drawn
    assert gallery.shown == 2


def test_a_broken_image_and_a_video_take_their_slot_as_text():
    gallery = Gallery(slots=2)
    gallery.show(2, [])
    gallery.fill(Thumbnail(0, "https://cdn.example/0.png", error="not an image"))
    gallery.place(OutputInfo(1, "https://cdn.example/1.mp4", OutputKind.VIDEO, "video/mp4"),
                  box=256)
    html = gallery.shown_html()
    assert "not an image" in html[0] and "<video" in html[1]
    assert gallery.shown_images() == (None, None)
    gallery.place(OutputInfo(0, "https://cdn.example/0.png", OutputKind.IMAGE), box=256)
    assert "not an image" in gallery.shown_html()[0]  # an image waits for its thumbnail
    gallery.clear()
    assert gallery.shown == 0 and gallery.box.children == ()
