"""The terminal view (terminal.py): the pure text functions that turn snapshots into lines,
and the in-place redraw. The command that drives it is tested in tests/test_cli.py."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone

from modelslab_widget.models import RunSnapshot, Step
from modelslab_widget.terminal import (
    SHOW_CURSOR,
    LiveView,
    clean,
    fit,
    frame_lines,
    snapshot_dict,
    transition_lines,
)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


def snap(status: str, *steps: Step, **fields) -> RunSnapshot:
    return RunSnapshot(status=status, execution_id=12345, workflow_id="wf", started_at=T0,
                       steps=steps, **fields)


# ---------------------------------------------------------------- rendering (pure)

def test_header_and_step_lines_of_a_running_run():
    run = snap(
        "running",
        Step("Text to Image", "completed", at(0), at(2.5)),
        Step("Image Upscaler", "running", at(2.5)),
    )
    lines = frame_lines(run, 12345, now=at(3.2))
    assert lines == [
        "Run 12345 · running · 1/2 steps · 3.2 s",
        "  ✓ Text to Image   completed  2.5 s",
        "  ◌ Image Upscaler  running    0.7 s",
    ]


def test_the_header_gives_the_time_left_but_never_for_an_overrunning_step():
    run = snap("running", Step("Text to Image", "running", at(0)))
    on_time = frame_lines(run, 1, now=at(1.0), remaining=2.0)[0]
    late = frame_lines(run, 1, now=at(9.0), remaining=0.0, overdue=True)[0]
    assert on_time.endswith("· ~2.0 s left")
    assert late.endswith("· taking longer than usual") and "left" not in late


def test_frame_of_a_completed_run_a_pending_step_and_no_answer_yet():
    done = snap("completed", Step("A", "completed", at(0), at(1)), Step("B", "pending"),
                execution_time=4.5, outputs=("http://x/0.png", "http://x/1.png"))
    assert frame_lines(done, 7, now=at(99)) == [
        "Run 7 · completed · 1/2 steps · 4.5 s · 2 outputs",
        "  ✓ A  completed  1.0 s",
        "  ○ B  pending",
    ]
    assert frame_lines(None, 7, now=at(0)) == ["Run 7 · waiting for the first answer…"]
    queued = RunSnapshot(status="pending", execution_id=7)
    assert frame_lines(queued, 7, now=at(0), note="retrying") == [
        "Run 7 · pending · 0/0 steps", "  waiting for the first steps…", "  ! retrying"]


def test_running_timer_falls_back_to_first_seen_when_the_server_clock_is_ahead():
    ahead = RunSnapshot(status="running", execution_id=1, started_at=at(60))
    assert frame_lines(ahead, 1, now=at(0))[0] == "Run 1 · running · 0/0 steps"
    assert frame_lines(ahead, 1, now=at(5), first_seen=at(2))[0] == (
        "Run 1 · running · 0/0 steps · 3.0 s")


def test_long_step_lists_show_a_window_around_the_active_step():
    steps = [Step(f"S{i}", "completed", at(i), at(i + 1)) for i in range(30)]
    steps[20] = Step("S20", "running", at(20))
    lines = frame_lines(snap("running", *steps), 1, now=at(21), max_steps=6)
    assert lines[1] == "  … 18 earlier steps"
    assert [line.split()[1] for line in lines[2:8]] == [f"S{i}" for i in range(18, 24)]
    assert lines[8] == "  … 6 more steps"


def test_server_text_cannot_inject_escape_sequences():
    evil = "\x1b]0;pwned\x07\x1b[2J Name\nnext\u202e"
    lines = frame_lines(snap("running\x1b[31m", Step(evil, "running", at(0))), "1\x1b[A",
                        now=at(1))
    assert not any(char in "".join(lines) for char in "\x1b\x07\n\u202e")
    assert "Name next" in lines[1]
    assert clean("x" * 50, 10) == "x" * 9 + "…"


def test_fit_counts_terminal_columns():
    assert fit("abcdef", 4) == "abc…"
    assert fit("abc", 3) == "abc"
    assert fit("画像生成", 5) == "画像…"


def test_transition_lines_name_each_change_once():
    pending = snap("pending", Step("A", "pending"), Step("B", "pending"))
    a_running = snap("running", Step("A", "running", at(0)), Step("B", "pending"))
    a_done = snap("running", Step("A", "completed", at(0), at(2.5)), Step("B", "running", at(2.5)))
    failed = snap("failed", Step("A", "completed", at(0), at(2.5)),
                  Step("B", "failed", at(2.5), at(3)), execution_time=3.0, error="boom")
    assert transition_lines(None, pending) == ["run is pending", "A: pending", "B: pending"]
    assert transition_lines(pending, a_running) == ["run is now running", "A: running"]
    assert transition_lines(a_running, a_running) == []
    assert transition_lines(a_running, a_done) == ["A: completed in 2.5 s", "B: running"]
    assert transition_lines(a_done, failed) == ["B: failed after 0.5 s", "run failed after 3.0 s"]
    done = snap("completed", Step("A", "completed", at(0), at(1)), execution_time=1.0,
                outputs=("http://x/0.png",))
    assert transition_lines(None, done) == [
        "A: completed in 1.0 s", "run completed in 1.0 s, 1 output"]


def test_snapshot_dict_is_json_ready():
    run = snap("completed", Step("A", "completed", at(0), at(1)), completed_at=at(1),
               execution_time=1.0, outputs=("http://x/0.png",))
    document = json.loads(json.dumps(snapshot_dict(run)))
    assert document == {
        "status": "completed", "execution_id": 12345, "workflow_id": "wf",
        "started_at": "2025-01-01T12:00:00Z", "completed_at": "2025-01-01T12:00:01Z",
        "execution_time": 1.0, "steps": [run.steps[0].to_dict()],
        "outputs": ["http://x/0.png"], "error": None,
    }


def test_live_view_redraws_in_place():
    stream = io.StringIO()
    view = LiveView(stream)
    view.draw(["Run 1 · running", "  ◌ A  running"])
    view.draw(["Run 1 · running", "  ◌ A  running"])  # unchanged: nothing written
    first = stream.getvalue()
    view.draw(["Run 1 · completed"])
    view.close()
    redraw = stream.getvalue()[len(first):]
    assert first.count("\x1b[2K") == 2
    assert redraw.startswith("\r\x1b[2A\x1b[2KRun 1 · completed\n\x1b[J")
    assert redraw.endswith(SHOW_CURSOR)
