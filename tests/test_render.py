"""The card's HTML: windows over long step lists, formats, links."""

from __future__ import annotations

from modelslab_widget import render


def steps(statuses):
    return [{"name": f"step {i}", "status": s, "duration": None} for i, s in enumerate(statuses)]


def test_a_thousand_steps_show_a_window_around_the_active_one():
    many = steps(["completed"] * 600 + ["running"] + ["pending"] * 399)
    html = render.steps_table("running", many, {600: 3.0})
    assert html.count('class="mlw-name"') == render.MAX_ROWS
    assert "step 600" in html and "3.0 s" in html
    assert "… 592 earlier steps" in html and "… 384 more steps" in html
    assert len(html) < 12_000


def test_short_lists_show_every_row():
    html = render.steps_table("running", steps(["completed", "running"]), {})
    assert html.count('class="mlw-name"') == 2 and "earlier" not in html


def test_progress_counts_completed_steps():
    html = render.progress_bar("running", steps(["completed", "running", "pending", "pending"]))
    assert 'style="width:25%"' in html and 'aria-valuemax="4"' in html
    assert 'style="width:100%"' in render.progress_bar("completed", [])


def test_seconds_format():
    assert render.format_seconds(None) == "–"
    assert render.format_seconds(4.25) == "4.2 s"
    assert render.format_seconds(125) == "2 min 05 s"
    assert render.format_seconds(3720) == "1 h 02 min"


def test_links_only_for_http():
    assert render.safe_link("javascript:alert(1)", "x") == "x"
    assert 'href="https://a/b?c=1&amp;d=2"' in render.safe_link("https://a/b?c=1&d=2", "x")
    assert 'rel="noopener noreferrer"' in render.safe_link("https://a/b", "x")


def test_unknown_status_gets_a_neutral_badge_with_its_word():
    html = render.badge("upscaling_v2")
    assert "mlw-s-unknown" in html and "Upscaling v2" in html
