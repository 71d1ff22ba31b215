"""The card's HTML: windows over long step lists, formats, links."""

from __future__ import annotations

import re

from modelslab_widget import render
from modelslab_widget.text import step_window


def steps(statuses):
    return [{"name": f"step {i}", "status": s, "duration": None} for i, s in enumerate(statuses)]


def test_a_thousand_steps_show_a_window_around_the_active_one():
    many = steps(["completed"] * 600 + ["running"] + ["pending"] * 399)
    view = render.steps_view(many, {600: 3.0})
    assert len(view.rows) == render.MAX_ROWS
    html = "".join(view.rows)
    assert "step 600" in html and "3.0 s" in html
    earlier, _ = step_window(["completed"] * 600 + ["running"] + ["pending"] * 399)
    assert 600 - render.MAX_ROWS // 2 - render.MAX_ROWS // 3 < earlier <= 600 - render.MAX_ROWS // 3
    assert f"… {earlier} earlier steps" in view.before
    assert f"… {1000 - earlier - render.MAX_ROWS} more steps" in view.after
    assert len(html) < 6_000


def test_short_lists_show_every_row_and_no_hidden_lines():
    view = render.steps_view(steps(["completed", "running"]), {})
    assert len(view.rows) == 2 and view.before == view.after == ""
    assert all(row.count('class="mlw-name"') == 1 for row in view.rows)


def test_no_steps_yet_says_so():
    view = render.steps_view([], {})
    assert "Waiting for the first steps" in view.before and view.rows == []


def test_progress_counts_completed_steps():
    html = render.progress_bar("running", steps(["completed", "running", "pending", "pending"]))
    assert 'style="width:25%"' in html and 'aria-valuemax="4"' in html
    assert 'style="width:100%"' in render.progress_bar("completed", [])


def test_links_only_for_http():
    assert render.safe_link("javascript:alert(1)", "x") == "x"
    assert 'href="https://a/b?c=1&amp;d=2"' in render.safe_link("https://a/b?c=1&d=2", "x")
    assert 'rel="noopener noreferrer"' in render.safe_link("https://a/b", "x")


def test_unknown_status_gets_a_neutral_badge_with_its_word():
    html = render.badge("upscaling_v2")
    assert "mlw-s-unknown" in html and "Upscaling v2" in html


# -- launcher --


def test_field_labels_are_words_with_the_key_small_beside_them():
    assert render.field_words("negative_prompt") == "Negative prompt"
    assert render.field_words("cfg-scale") == "Cfg scale" and render.field_words("_") == "_"
    assert render.field_label("width", True) == 'Width *<span class="mlw-key">width</span>'
    assert "<i>" not in render.field_label("<i>x</i>", False)


def test_field_errors_are_escaped_and_in_the_error_colour():
    html = render.field_error(["<b>too</b> long", "second"])
    assert "&lt;b&gt;too&lt;/b&gt; long<br>second" in html and "<b>" not in html
    assert 'class="mlw-card mlw-field-error"' in html and render.field_error([]) == ""
    # two classes, so a run card's later `.mlw-card{color:…}` cannot override the colour
    assert ".mlw-card.mlw-field-error{color:var(--jp-error-color1,#d32f2f)" in (
        render.LAUNCHER_STYLE)
    assert ".mlw-invalid input,.mlw-invalid textarea{border-color:var(--jp-error-color1" in (
        render.LAUNCHER_STYLE)


def test_launcher_header_and_history_row_escape_api_text():
    header = render.launcher_header("<b>W</b>", "a & b", True, 0)
    assert "&lt;b&gt;W&lt;/b&gt;" in header and "a &amp; b" in header
    assert "* required" in header and "No parameters." in header
    row = render.history_row(2, "failed", "<7>", "x" * 80, '"boom"', 60)
    assert "#2" in row and "Run &lt;7&gt;" in row and 'title="&quot;boom&quot;"' in row
    assert "x" * 59 + "…" in row and "✕ Failed" in row


# -- what the header says about watching (issue 14, items 2 to 4) ------------------------------


def header(**kwargs):
    values = dict(status="running", workflow_id="wf", execution_id="7", elapsed=5.9,
                  finished=False, steps=steps(["completed", "running"]))
    return render.summary(**{**values, **kwargs})


def test_a_watched_running_run_spins_and_shows_the_time_left():
    html = header(remaining=2.0, fraction=0.5)
    assert 'class="mlw-spin"' in html and "~2.0 s left" in html and "Running" in html


def test_an_overdue_step_says_so_instead_of_a_time_left():
    html = header(remaining=2.0, fraction=0.5, overdue=True)
    assert "taking longer than usual" in html and "left" not in html


def test_a_paused_card_keeps_the_status_without_the_spinner_or_an_estimate():
    html = header(remaining=2.0, state=render.PAUSED)
    assert "Running · paused" in html and "mlw-spin" not in html and "left" not in html
    assert "Elapsed 5.9 s" in html and "role=\"progressbar\"" in html


def test_nothing_known_and_not_watched_says_so_and_shows_no_dashes():
    html = header(status="unknown", elapsed=None, steps=[], state=render.UNWATCHED)
    assert "Could not watch" in html and "Unknown" not in html
    assert "Elapsed" not in html and "–" not in html and "progressbar" not in html


def test_a_run_seen_before_watching_failed_keeps_its_last_status():
    html = header(state=render.UNWATCHED)
    assert "Running · not watched" in html and "mlw-spin" not in html


def test_status_label_for_rows_stops_spinning_when_paused():
    assert "mlw-spin" in render.status_label("running")
    label = render.status_label("running", state=render.PAUSED)
    assert "mlw-spin" not in label and "Running · paused" in label


def test_the_header_shortens_the_workflow_id_but_keeps_it_whole_and_no_piece_starts_with_a_dot():
    workflow = "5f3c2a1e-8d4b-4e8b-9c1d-0a7b6e5f4d3c"
    html = header(workflow_id=workflow, remaining=2.0, fraction=0.5)
    # the whole ID is the element's text (a selection copies it) and its title (hover);
    # CSS shows its first 8 characters and "…"
    assert f'<span class="{render.ID_CLASS}" title="{workflow}">{workflow}</span>' in html
    assert f".{render.ID_CLASS}{{" in render.STYLE and "text-overflow:ellipsis" in render.STYLE
    time_line = re.search(r'<span class="mlw-time">(.*?)</span></div>', html).group(1)
    pieces = re.findall(r"<span>(.*?)</span>", time_line)
    assert pieces == ["1/2 steps ·", "Elapsed 5.9 s ·", "~2.0 s left"], pieces
    assert not [piece for piece in pieces if piece.startswith("·")]


def test_a_launch_with_no_run_yet_looks_like_the_run_status_nearest_it():
    looks = {"queued_here": "pending", "not_started": "failed", "removed": "cancelled"}
    for status, run_status in looks.items():
        label = render.status_label(status)
        assert f"mlw-s-{run_status}" in label and render.ICONS[run_status] in label
    assert "Queued here" in render.status_label("queued_here")
    assert render.status_class("something new") == "unknown"
