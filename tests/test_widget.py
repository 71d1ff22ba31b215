"""WorkflowRunWidget against the simulator over loopback: outcomes, live steps, stop/resume,
timeouts, permanent and transient errors, images, escaping and thread lifetime."""

from __future__ import annotations

import contextlib
import gc
import threading
import time
import weakref

import pytest
from ipywidgets.widgets.widget import _instances as live_widgets

from modelslab_widget import MissingKeyError, WorkflowRunWidget, WorkflowsClient, watch
from modelslab_widget.errors import AuthenticationError, NotFoundError, ServerError
from modelslab_widget.simulator import DEMO_WORKFLOW_ID, Fault, Simulator

from .conftest import card_markup, fast_client, our_threads, wait_for
from .fake_clock import FakeScheduler, fake_runtime

FAST = [("Text to Image", 0.3), ("Image Upscaler", 0.3)]


@pytest.fixture
def make(sim, client):
    """Build widgets against the simulator with fast polling; close them all afterwards."""
    made: list[WorkflowRunWidget] = []

    def build(execution_id, workflow_id=DEMO_WORKFLOW_ID, **kwargs):
        kwargs.setdefault("client", client)
        kwargs.setdefault("poll_interval", 0.1)
        kwargs.setdefault("backoff_base", 0.05)
        widget = WorkflowRunWidget(workflow_id, execution_id, **kwargs)
        made.append(widget)
        return widget

    yield build
    for widget in made:
        widget.close()


def all_html(widget: WorkflowRunWidget) -> str:
    parts = [card_markup(widget), widget.message_html]
    parts += widget.output_slots_html
    return "\n".join(parts)


def test_completed_run_shows_steps_and_thumbnails(sim, make):
    eid = sim.add_run(steps=FAST, images=3, image_size=(640, 480))
    widget = make(eid, thumbnail_size=128)
    snapshot = widget.wait(10)
    assert snapshot.status == widget.status == "completed"
    assert [s["status"] for s in widget.steps] == ["completed", "completed"]
    assert all(s["duration"] == pytest.approx(0.3, abs=0.1) for s in widget.steps)
    assert len(widget.output_urls) == 3 and widget.error == ""
    assert [t.size for t in widget.thumbnails] == [(128, 96)] * 3
    assert widget.polls >= 3 and widget.snapshot is snapshot
    assert "Completed" in card_markup(widget) and "2/2 steps" in card_markup(widget)
    shown = widget.output_slot_images
    assert len(shown) == 3 and all(image is not None and image[1] == "jpeg"
                                   and image[0][:2] == b"\xff\xd8" for image in shown)
    assert repr(widget).startswith(f"Run {eid} · completed · 2/2 steps · ")
    assert repr(widget).endswith("3 images")


def test_failed_run_returns_normally_with_the_error(sim, make):
    eid = sim.add_run(steps=FAST, outcome="failed", error="Invalid prompt <b>bold</b>")
    widget = make(eid)
    snapshot = widget.wait(10)
    assert snapshot.status == widget.status == "failed"
    assert widget.error == "Invalid prompt <b>bold</b>"
    assert "Invalid prompt &lt;b&gt;bold&lt;/b&gt;" in widget.message_html
    assert "<b>bold</b>" not in widget.message_html
    assert widget.thumbnails == []


def test_cancelled_run(sim, make):
    eid = sim.add_run(steps=FAST, outcome="cancelled")
    widget = make(eid)
    assert widget.wait(10).status == "cancelled"
    assert widget.error == "" and "cancelled" in widget.message_html
    assert widget.steps[-1]["status"] == "cancelled"


def test_steps_appear_as_the_api_reports_them(sim, make):
    eid = sim.add_run(steps=FAST, announce="started")
    seen_counts = []
    widget = make(eid, autostart=False)
    widget.observe(lambda change: seen_counts.append(len(change["new"])), "steps")
    widget.start()
    widget.wait(10)
    assert seen_counts[0] == 1 and seen_counts[-1] == 2


def test_live_running_state_is_seen_before_completion(sim, make):
    eid = sim.add_run(steps=FAST, queue_time=0.3)
    statuses = []
    widget = make(eid, autostart=False)
    widget.observe(lambda change: statuses.append(change["new"]), "status")
    widget.start()
    widget.wait(10)
    assert statuses == ["pending", "running", "completed"]


def test_stop_means_no_further_requests_and_resume_finishes(make):
    """The simulator and the card's scheduler share a fake clock: after Stop, 10 s (a
    hundred polls' worth) pass without one request; Resume then watches to the end."""
    clock = FakeScheduler(start=time.monotonic())  # the poller times its polls by monotonic
    with Simulator(clock=clock) as fsim, fast_client(fsim) as fclient:
        eid = fsim.add_run(steps=[("Long", 1.0)])
        widget = make(eid, client=fclient, scheduler=clock)
        clock.advance_until(lambda: widget.polls >= 2)
        widget.stop()
        count = fsim.request_count("status", execution_id=eid)
        clock.advance(10)
        assert fsim.request_count("status", execution_id=eid) == count
        assert not widget.watching and "Stopped watching" in widget.message_html
        assert "Resume" in widget.buttons and "Stop" not in widget.buttons
        with pytest.raises(RuntimeError, match="stopped"):
            widget.wait(1)
        widget.buttons["Resume"].click()
        clock.advance_until(lambda: widget.run_watch.done_for(widget))
        assert fsim.request_count("status", execution_id=eid) > count
        assert widget.wait(0).status == "completed"


def test_timeout_ends_watching_with_a_clear_error(sim, make):
    eid = sim.add_run(steps=[("Long", 5.0)])
    widget = make(eid, timeout=0.4)
    with pytest.raises(TimeoutError, match=r"Stopped watching after 0\.4 s"):
        widget.wait(5)
    assert "time limit" in widget.message_html and not widget.watching
    assert "Resume" in widget.buttons


def test_wait_timeout_raises_timeout_error(sim, make):
    widget = make(sim.add_run(steps=[("Long", 5.0)]))
    with pytest.raises(TimeoutError):
        widget.wait(0.2)
    assert widget.watching


def test_bad_key_ends_watching_at_once(sim, make):
    bad = WorkflowsClient("not-the-key", base_url=sim.base_url)
    widget = make(sim.add_run(steps=FAST), client=bad)
    with pytest.raises(AuthenticationError):
        widget.wait(5)
    assert widget.polls == 1 and "API key" in widget.error and not widget.watching
    assert "Retry" in widget.buttons and "Resume" not in widget.buttons


def test_unknown_run_ends_watching_at_once(sim, make):
    widget = make(424242)
    with pytest.raises(NotFoundError):
        widget.wait(5)
    assert widget.polls == 1 and "Run not found" in widget.message_html


def test_transient_errors_that_end_leave_no_error(sim, make):
    faults = [Fault("api_error"), Fault("html"), Fault("rate_limit", retry_after=0)]
    widget = make(sim.add_run(steps=FAST, status_faults=faults))
    assert widget.wait(10).status == "completed"
    assert widget.error == "" and widget.message_html == ""


def test_transient_errors_that_persist_end_after_five_polls(sim, make):
    eid = sim.add_run(steps=FAST, status_faults=[Fault("http", status=500, times=None)])
    widget = make(eid)
    with pytest.raises(ServerError):
        widget.wait(10)
    assert widget.polls == 5 and "HTTP 500" in widget.error
    assert sim.request_count("status", execution_id=eid) == 5


def test_rate_limit_wait_is_honoured(sim, make):
    eid = sim.add_run(steps=FAST, status_faults=[Fault("rate_limit", retry_after=1)])
    widget = make(eid)
    wait_for(lambda: widget.polls >= 1)
    started = time.monotonic()
    wait_for(lambda: widget.polls >= 2, timeout=5)
    assert time.monotonic() - started >= 0.8


def test_bad_images_get_placeholders_and_the_rest_still_show(sim, make):
    faults = {0: Fault("not_image"), 2: Fault("http", status=404)}
    widget = make(sim.add_run(steps=FAST, images=3, image_faults=faults))
    widget.wait(10)
    assert len(widget.thumbnails) == 1 and len(widget.thumbnail_errors) == 2
    captions = widget.output_slots_html
    assert "unavailable" in captions[0] and "not an image" in captions[0]
    assert "unavailable" not in captions[1] and "unavailable" in captions[2]


def test_outputs_beyond_the_slots_are_listed_as_links(sim, make):
    widget = make(sim.add_run(steps=FAST, images=3), max_thumbnails=2)
    widget.wait(10)
    assert len(widget.thumbnails) == 2 and len(widget.output_slots_html) == 2
    assert "1 more" in widget.more_outputs_html


def test_step_names_are_escaped(sim, make):
    steps = [('<img src=x onerror="alert(1)">', 0.1), ("Step & 'quotes'", 0.1)]
    widget = make(sim.add_run(steps=steps))
    widget.wait(10)
    html = all_html(widget)
    assert "<img src=x" not in html and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html
    assert "Step &amp; &#x27;quotes&#x27;" in html


def test_elapsed_time_ticks_without_extra_requests(sim, make):
    eid = sim.add_run(steps=[("Long", 3.0)])
    widget = make(eid, poll_interval=10)
    wait_for(lambda: widget.status == "running")
    first = card_markup(widget)
    wait_for(lambda: card_markup(widget) != first, timeout=3)
    assert sim.request_count("status", execution_id=eid) == 1


def test_an_answer_that_changes_nothing_sends_nothing(make):
    """Timers move with the once-a-second tick; a poll answer equal to the last one must not
    rewrite any view (re-rendering would send the header again on each such poll)."""
    from datetime import datetime, timedelta, timezone

    from modelslab_widget import RunSnapshot

    started = (datetime.now(timezone.utc) - timedelta(seconds=5)).isoformat()
    body = {"status": "success", "execution": {"id": 1, "status": "running",
                                               "started_at": started},
            "steps": [{"name": "Text to Image", "status": "running", "started_at": started},
                      {"name": "Image Upscaler", "status": "pending"}]}
    runtime, pollers = fake_runtime()  # the tick comes when the test moves the fake clock
    widget = make(1, runtime=runtime)
    [poller] = pollers
    running = RunSnapshot.from_api(body).steps[0]
    shown = running.seconds()
    poller.answer(RunSnapshot.from_api(body))
    views = [widget.header_view, widget.message_view, *widget.step_views]
    changed: list[str] = []
    for view in views:
        view.observe(lambda change: changed.append(change["new"]), "value")
    # until the elapsed figures (0.1 s resolution) have moved: a re-render would show it
    wait_for(lambda: running.seconds() - shown >= 0.15, step=0.01)
    poller.answer(RunSnapshot.from_api(body))
    assert changed == []
    runtime.scheduler.advance(1.0)  # the tick: the header and the running row, nothing else
    touched = {id(view) for view in views if view.value in changed}
    assert touched == {id(widget.header_view), id(widget.step_views[1])}


def test_a_step_row_is_only_touched_when_its_step_changed(sim, make):
    """Each row is its own view: a poll or a tick rewrites a row only when that step's state
    changed or its live timer moved; the other rows send nothing."""
    eid = sim.add_run(steps=[("First", 0.4), ("Slow middle", 2.2), ("Last", 0.3)])
    widget = make(eid, autostart=False)
    touched: list[tuple[int, str]] = []
    last_seen: dict[int, str] = {}
    wrong: list[str] = []

    def watch_row(index: int):
        def changed(change):
            step = widget.steps[index] if index < len(widget.steps) else None
            state = repr(step)
            running = step is not None and step["status"] == "running"
            if last_seen.get(index) == state and not running:
                wrong.append(f"row {index} rewritten while its step stayed {state}")
            last_seen[index] = state
            touched.append((index, change["new"]))
        return changed

    for index, row in enumerate(widget.step_views[1:4]):  # the first three rows
        row.observe(watch_row(index), "value")
    widget.start()
    widget.wait(15)
    assert not wrong, wrong
    middle_ticks = [markup for index, markup in touched if index == 1 and "running" in markup]
    assert len(middle_ticks) >= 2, "the running row's timer should have moved"
    first_row = [markup for index, markup in touched if index == 0]
    assert len(first_row) <= 6, "the first row went on changing while the middle step ran"


def test_on_complete_callback_runs_once_after_thumbnails(sim, make):
    calls = []
    widget = make(sim.add_run(steps=FAST), on_complete=lambda w: calls.append(len(w.thumbnails)))
    widget.wait(10)
    wait_for(lambda: calls)
    assert calls == [1]


def test_bad_ids_and_interval_are_refused(client):
    with pytest.raises(ValueError):
        WorkflowRunWidget("..", 1, client=client)
    with pytest.raises(ValueError):
        WorkflowRunWidget(DEMO_WORKFLOW_ID, 1, client=client, poll_interval=0)


def test_watch_displays_and_returns_the_widget(sim, client, capsys):
    eid = sim.add_run(steps=FAST)
    widget = watch(DEMO_WORKFLOW_ID, eid, client=client, poll_interval=0.1)
    try:
        # Outside a kernel IPython's display() prints the text form: it was displayed.
        assert capsys.readouterr().out.startswith(f"Run {eid} · ")
        assert isinstance(widget, WorkflowRunWidget) and widget.wait(10).status == "completed"
    finally:
        widget.close()


def test_threads_and_widgets_back_to_baseline_after_close(no_leftover_threads, sim, client):
    widgets_before = len(live_widgets)
    runs = [sim.add_run(steps=FAST) for _ in range(5)]
    watched = [
        WorkflowRunWidget(DEMO_WORKFLOW_ID, eid, client=client, poll_interval=0.1) for eid in runs
    ]
    assert len([t for t in our_threads() if t.startswith("modelslab-widget")]) <= 9
    watched[0].wait(10)
    for widget in watched:
        widget.close()
    assert len(live_widgets) == widgets_before
    wait_for(lambda: not [t for t in our_threads() if t.startswith("modelslab-widget")])


def test_close_while_running_ends_the_threads(no_leftover_threads, sim, client):
    widget = WorkflowRunWidget(DEMO_WORKFLOW_ID, sim.add_run(steps=[("Long", 5)]), client=client)
    wait_for(lambda: widget.polls >= 1)
    widget.close()
    assert not widget.watching
    requests = sim.request_count("status")
    wait_for(lambda: not [t for t in our_threads() if t.startswith("modelslab-widget")])
    assert sim.request_count("status") == requests  # nothing was polled after close()


def test_save_images_writes_the_served_bytes_without_overwriting(sim, make, client, tmp_path):
    widget = make(sim.add_run(steps=FAST, images=2))
    with pytest.raises(RuntimeError, match="not completed"):
        widget.save_images(tmp_path)
    snapshot = widget.wait(10)
    first = widget.save_images(tmp_path / "out")
    second = widget.save_images(tmp_path / "out")
    assert [p.name for p in first] == ["0.png", "1.png"]
    assert [p.name for p in second] == ["0-1.png", "1-1.png"]
    for path, url in zip(first, snapshot.outputs, strict=True):
        assert path.read_bytes() == client.fetch_image(url)


def test_each_output_falls_back_to_its_own_proxy_link(sim, make, client, tmp_path):
    """A non-web output must not shift the pairing of outputs and proxy links."""
    import dataclasses

    widget = make(sim.add_run(steps=FAST, images=2))
    snapshot = widget.wait(10)
    proxies = list(snapshot.proxy_links)
    widget.snapshot = dataclasses.replace(
        snapshot, outputs=("javascript:alert(1)", f"{sim.origin}/no-such-image.png"))
    paths = widget.save_images(tmp_path)
    assert [path.read_bytes() for path in paths] == [client.fetch_image(url) for url in proxies]
    assert len(widget.images()) == 2


def test_images_are_full_size_and_fetched_once(sim, make):
    eid = sim.add_run(steps=FAST, images=2, image_size=(640, 480))
    widget = make(eid)
    widget.wait(10)
    images = widget.images()
    fetched = sim.request_count("image")
    assert [im.size for im in images] == [(640, 480)] * 2
    assert widget.images()[0] is images[0] and sim.request_count("image") == fetched


def test_on_complete_runs_outside_the_widget_lock(sim, client):
    seen = []

    def other_thread_can_lock(lock) -> bool:
        got = lock.acquire(timeout=1)
        if got:
            lock.release()
        return got

    def callback(w):
        probe = threading.Thread(target=lambda: seen.append(other_thread_can_lock(w._lock)))
        probe.start()
        probe.join()

    widget = WorkflowRunWidget(DEMO_WORKFLOW_ID, sim.add_run(steps=FAST), client=client,
                               poll_interval=0.05, on_complete=callback)
    widget.wait(10)
    wait_for(lambda: seen)
    assert seen == [True]
    widget.close()


def test_a_forgotten_closed_widget_is_collected(sim, client):
    widget = WorkflowRunWidget(DEMO_WORKFLOW_ID, sim.add_run(steps=[("Long", 5)]),
                               client=client, poll_interval=0.05)
    ref = weakref.ref(widget)
    wait_for(lambda: ref().polls >= 2)
    widget.close()
    del widget
    gc.collect()
    assert ref() is None, "the scheduler or the poller still holds the widget"


def test_malformed_output_url_gets_a_placeholder_and_wait_returns(sim, client):
    body = {"status": "success", "steps": [],
            "execution": {"id": 1, "status": "completed"},
            "output": {"output": ["http://[::1/x.png"]}}
    eid = sim.add_run(steps=FAST, status_faults=[Fault("json", body=body)])
    widget = WorkflowRunWidget(DEMO_WORKFLOW_ID, eid, client=client, poll_interval=0.05)
    assert widget.wait(5).status == "completed"
    assert widget.thumbnails == [] and len(widget.thumbnail_errors) == 1
    widget.close()


# -- outputs of every kind, and cancelling ---------------------------------------------------

MIXED = ("png", "mp4", "wav", "glb")
LONG = [("Text to Video", 60.0)]


def test_mixed_outputs_show_by_kind_in_output_order(sim, make):
    eid = sim.add_run(steps=FAST, outputs=MIXED)
    widget = make(eid, thumbnail_size=128)
    snapshot = widget.wait(10)
    urls = list(snapshot.outputs)
    assert len(urls) == 4 and len(widget.thumbnails) == 1 and widget.thumbnail_errors == {}
    image, *others = widget.output_slot_images
    assert image is not None and image[0][:2] == b"\xff\xd8"  # the PNG's JPEG thumbnail
    assert others == [None, None, None]  # video, audio and 3D: no Image in their slots
    video, audio, model = widget.output_slots_html[1:]
    assert f'<video controls preload="metadata" playsinline src="{urls[1]}"' in video
    assert "width:128px" in video and f'href="{urls[1]}"' in video and "MP4" in video
    assert f'<audio controls preload="metadata" src="{urls[2]}"' in audio
    assert "<video" not in audio and "<audio" not in video
    assert "3D model" in model and "GLB" in model and f'href="{urls[3]}"' in model
    assert "<video" not in model and "<audio" not in model
    assert "unavailable" not in all_html(widget) + video + audio + model
    assert repr(widget).endswith(" · 1 image, 1 video, 1 audio, 1 file")
    # the kernel fetched the image only: video, audio and the 3D file are the browser's
    assert sim.request_count("image", eid) == 1 and sim.request_count("head", eid) == 0


def test_a_six_megabyte_video_is_never_downloaded_into_the_kernel(sim, make):
    eid = sim.add_run(steps=FAST, outputs=("mp4", "mp4?noext"), video_bytes=6_000_000)
    widget = make(eid)
    snapshot = widget.wait(10)
    assert sim.bytes_served(eid) <= 8 * 1024  # at most a probe's few KB
    _, bare = snapshot.outputs
    assert "." not in bare.rsplit("/", 1)[-1]
    assert [info.kind.value for info in widget.run_watch.outputs_in_order()] == ["video"] * 2
    video = widget.output_slots_html[1]
    assert f'src="{bare}"' in video and "<video" in video
    assert "6.0 MB" in video  # the probe learnt the size
    assert sim.request_count("head", eid) == 1  # only the extension-less one was probed
    assert repr(widget).endswith("2 videos") and widget.thumbnails == []


def test_extension_less_outputs_are_probed_for_their_kind(sim, make):
    eid = sim.add_run(steps=FAST, outputs=("png?noext", "wav?noext", "glb?noext"))
    widget = make(eid)
    widget.wait(10)
    kinds = [info.kind.value for info in widget.run_watch.outputs_in_order()]
    assert kinds == ["image", "audio", "model3d"]
    assert len(widget.thumbnails) == 1 and "<audio" in widget.output_slots_html[1]
    assert "3D model" in widget.output_slots_html[2]
    assert repr(widget).endswith("1 image, 1 audio, 1 file")


def test_output_markup_is_escaped_and_only_web_urls_play(sim, client, make):
    hostile = f'{sim.origin}/x.mp4?"><script>alert(1)</script>'
    body = {"status": "success", "steps": [], "execution": {"id": 1, "status": "completed"},
            "output": {"output": [hostile, "javascript:alert(1)//x.mp4", "file:///etc/x.wav"]}}
    eid = sim.add_run(steps=FAST, status_faults=[Fault("json", body=body)])
    widget = make(eid)
    widget.wait(10)
    assert len(widget.output_slots_html) == 3
    markup = "".join(widget.output_slots_html)
    assert "<script>" not in markup and "&lt;script&gt;" in markup
    assert markup.count("<video") == 1 and "<audio" not in markup  # the http one only
    assert "javascript:" not in markup.replace("javascript:alert(1)//x.mp4", "")
    assert 'href="javascript' not in markup and 'src="file' not in markup


def test_save_outputs_saves_every_kind_streamed(sim, make, tmp_path):
    eid = sim.add_run(steps=FAST, outputs=MIXED, video_bytes=3_000_000)
    widget = make(eid)
    widget.wait(10)
    paths = widget.save_outputs(tmp_path / "all")
    assert [path.suffix for path in paths] == [".png", ".mp4", ".wav", ".glb"]
    assert paths[1].stat().st_size == 3_000_000
    assert paths[2].read_bytes()[:4] == b"RIFF" and paths[3].read_bytes()[:4] == b"glTF"
    again = widget.save_outputs(tmp_path / "all")
    assert len({p.name for p in paths} | {p.name for p in again}) == 8  # nothing overwritten


def test_save_images_stays_images_only(sim, make, tmp_path):
    from modelslab_widget.errors import OutputError

    widget = make(sim.add_run(steps=FAST, outputs=("png", "mp4")))
    widget.wait(10)
    with pytest.raises(OutputError, match="not image"):
        widget.save_images(tmp_path)


def running(widget: WorkflowRunWidget) -> bool:
    return widget.status == "running"


def test_cancel_while_running_every_view_follows(sim, client, make):
    from modelslab_widget import RunBoard

    eid = sim.add_run(steps=LONG)
    card = make(eid, poll_interval=30.0)  # slow: only the poll right after the cancel helps
    other = make(eid, poll_interval=30.0)
    board = RunBoard(client=client, poll_interval=30.0)
    row = board.add(DEMO_WORKFLOW_ID, eid)
    wait_for(lambda: running(card))
    assert card.cancel_button.layout.display == ""
    assert other.cancel_button.description == "Cancel run"
    assert card.cancel() == "Execution cancelled."
    assert card.wait(10).status == "cancelled"  # within 10 s although polls are 30 s apart
    assert other.wait(5).status == "cancelled" and board.wait(5) == {"cancelled": 1}
    assert row.status == "cancelled" and "Cancelled" in row.view.value
    assert "The run was cancelled." in card.message_html
    assert card.cancel_button.layout.display == "none"
    assert sim.request_count("cancel", eid) == 1
    board.close()


def test_cancel_of_an_ended_run_raises_and_the_card_shows_a_note(sim, make):
    from modelslab_widget.errors import RunAlreadyEndedError

    eid = sim.add_run(steps=FAST, images=1)
    widget = make(eid)
    widget.wait(10)
    with pytest.raises(RunAlreadyEndedError, match="already ended"):
        widget.cancel()
    assert widget.status == "completed" and widget.error == ""
    assert "mlw-note" in widget.message_html and "already ended" in widget.message_html
    assert "mlw-error" not in widget.message_html
    assert len(widget.thumbnails) == 1


def test_cancel_of_an_unknown_run_raises_not_found(sim, client, make):
    from modelslab_widget.runwatch import RunWatch

    watch = RunWatch(client, DEMO_WORKFLOW_ID, 999_999)
    with pytest.raises(NotFoundError):
        watch.cancel()
    assert not watch.cancelling and isinstance(watch.cancel_error, NotFoundError)
    watch.discard()


def test_a_rate_limited_cancel_is_sent_again_other_failures_never(sim, make):
    eid = sim.add_run(steps=LONG)
    widget = make(eid)
    wait_for(lambda: running(widget))
    sim.cancel_faults(DEMO_WORKFLOW_ID, [Fault("rate_limit", retry_after=0)])
    assert widget.cancel() == "Execution cancelled."
    assert sim.request_count("cancel", eid) == 2  # the 429 did not run; the second did
    assert widget.wait(10).status == "cancelled"

    second = sim.add_run(steps=LONG)
    card = make(second)
    wait_for(lambda: running(card))
    sim.cancel_faults(DEMO_WORKFLOW_ID, [Fault("http", status=500)])
    with pytest.raises(ServerError):
        card.cancel()
    assert sim.request_count("cancel", second) == 1  # a POST that may have run: never again
    assert "Could not cancel the run" in card.message_html and card.status == "running"
    assert card.cancel_button.description == "Cancel run" and not card.cancel_button.disabled


def test_cancel_button_asks_to_confirm_then_cancels(sim, make):
    eid = sim.add_run(steps=LONG)
    widget = make(eid)
    wait_for(lambda: running(widget))
    button = widget.cancel_button
    assert button.description == "Cancel run" and button.layout.display == ""
    button.click()
    assert button.description == "Confirm cancel" and button.button_style == "danger"
    assert sim.request_count("cancel", eid) == 0  # one click only asks
    button.click()
    assert button.description == "Cancelling…" and button.disabled
    assert widget.wait(10).status == "cancelled"
    assert sim.request_count("cancel", eid) == 1
    assert button.layout.display == "none"


def test_an_unconfirmed_cancel_click_expires(sim, make, monkeypatch):
    from modelslab_widget import widget as widget_module

    monkeypatch.setattr(widget_module, "CONFIRM_SECONDS", 0.05)
    eid = sim.add_run(steps=LONG)
    widget = make(eid)
    wait_for(lambda: running(widget))
    widget.cancel_button.click()
    assert widget.cancel_button.description == "Confirm cancel"
    wait_for(lambda: widget.cancel_button.description == "Cancel run")
    assert widget.cancel_button.button_style == "" and widget.status == "running"
    assert sim.request_count("cancel", eid) == 0


def test_cancel_racing_completion_the_server_decides(client):
    """With the simulator's clock held still, a cancel sent a moment before the run's end is
    accepted (cancelled), one sent at the end is refused (completed, with a note)."""
    from modelslab_widget.errors import RunAlreadyEndedError
    from modelslab_widget.simulator import Simulator

    now = [0.0]
    with Simulator(clock=lambda: now[0]) as sim, WorkflowsClient(
        sim.api_key, base_url=sim.base_url, timeout=(2.0, 2.0), backoff_factor=0.01
    ) as local:
        early, late = (sim.add_run(steps=[("Render", 1.0)]) for _ in range(2))
        cards = [WorkflowRunWidget(DEMO_WORKFLOW_ID, eid, client=local, poll_interval=0.05)
                 for eid in (early, late)]
        wait_for(lambda: all(running(card) for card in cards))
        now[0] = 0.999
        assert cards[0].cancel() == "Execution cancelled."
        now[0] = 1.0
        with pytest.raises(RunAlreadyEndedError):
            cards[1].cancel()
        assert [card.wait(10).status for card in cards] == ["cancelled", "completed"]
        assert [sim.run_state(eid)["execution"]["status"] for eid in (early, late)] == [
            "cancelled", "completed"]
        assert "already ended" in cards[1].message_html and len(cards[1].thumbnails) == 1
        for card in cards:
            card.close()


def test_cancel_as_the_run_completes_shows_the_servers_final_status(sim, make):
    """Real time: cancels sent around a short run's end; whatever happened first on the
    server, every card ends showing the server's status, consistent with cancel()."""
    from modelslab_widget.errors import RunAlreadyEndedError

    for _ in range(4):
        eid = sim.add_run(steps=[("Render", 0.15)])
        widget = make(eid, poll_interval=0.02)
        wait_for(lambda w=widget: w.status in ("running", "completed"))
        try:
            widget.cancel()
            accepted = True
        except RunAlreadyEndedError:
            accepted = False
        final = widget.wait(10).status
        server = sim.run_state(eid)["execution"]["status"]
        assert final == server == ("cancelled" if accepted else "completed")


def test_an_answer_cut_at_the_caps_says_so_on_the_card(sim, make):
    from modelslab_widget.models import MAX_STEPS

    eid = sim.add_run(steps=FAST)
    body = {"status": "success", "steps": [{"name": "s", "status": "completed"}] * 1200,
            "execution": {"id": eid, "status": "running"}}
    sim.status_faults(eid, [Fault("json", body=body)])
    widget = make(eid)
    wait_for(lambda: "more steps" in card_markup(widget))
    assert f"{1200 - MAX_STEPS} more steps than shown" in card_markup(widget)
    assert widget.wait(10).status == "completed"
    assert "more steps" not in card_markup(widget)  # the next, whole answer clears it


def test_images_holds_at_most_max_images_full_size_images(sim, make):
    eid = sim.add_run(steps=FAST, images=3, image_size=(64, 48))
    widget = make(eid)
    widget.wait(10)
    with pytest.warns(UserWarning, match="first 2 of 3 outputs"):
        assert [image.size for image in widget.images(max_images=2)] == [(64, 48)] * 2
    assert len(widget.images(max_images=3)) == 3


# -- what the card says about watching itself: no key, could not watch, paused --------------


@pytest.fixture
def cards():
    made: list[WorkflowRunWidget] = []

    def build(*args, **kwargs):
        kwargs.setdefault("poll_interval", 0.05)
        card = WorkflowRunWidget(DEMO_WORKFLOW_ID, *args, **kwargs)
        made.append(card)
        return card

    yield build
    for card in made:
        card.close()


# -- 1. the card's advice works --------------------------------------------------------------


def test_no_key_says_so_and_retry_reads_the_key_set_afterwards(sim, cards, monkeypatch):
    monkeypatch.delenv("MODELSLAB_API_KEY", raising=False)
    eid = sim.add_run(steps=FAST)
    card = cards(eid, base_url=sim.base_url)
    with pytest.raises(MissingKeyError):
        card.wait(5)
    assert "No API key" in card.message_html and "rejected" not in card.message_html
    assert "MODELSLAB_API_KEY" in card.message_html and "Retry" in card.message_html
    assert sim.request_count("status", execution_id=eid) == 0  # nothing was sent
    assert list(card.buttons) == ["Retry"]

    monkeypatch.setenv("MODELSLAB_API_KEY", sim.api_key)  # what the panel says to do
    card.buttons["Retry"].click()
    assert card.wait(10).status == "completed"
    assert card.message_html == "" and "Completed" in card.header_html
    # the watch is now filed under the new key: another card of the run shares it
    again = cards(eid, base_url=sim.base_url)
    assert again.run_watch is card.run_watch


def test_a_rejected_key_from_the_environment_is_read_again_by_start(sim, cards, monkeypatch):
    monkeypatch.setenv("MODELSLAB_API_KEY", "sk-not-the-key")
    card = cards(sim.add_run(steps=FAST), base_url=sim.base_url)
    with pytest.raises(AuthenticationError) as raised:
        card.wait(5)
    assert not isinstance(raised.value, MissingKeyError)
    assert "The API key was rejected" in card.message_html
    monkeypatch.setenv("MODELSLAB_API_KEY", sim.api_key)
    card.start()
    assert card.wait(10).status == "completed"


def test_a_key_passed_in_code_is_never_replaced_by_the_environment(sim, monkeypatch):
    monkeypatch.setenv("MODELSLAB_API_KEY", sim.api_key)
    with WorkflowsClient("sk-passed", base_url=sim.base_url) as passed:
        account = passed.account
        assert passed.reload_key_from_environment() is False and passed.account == account
    monkeypatch.delenv("MODELSLAB_API_KEY")
    with WorkflowsClient(base_url=sim.base_url) as from_env:
        assert not from_env.has_api_key
        assert from_env.reload_key_from_environment() is False  # still none
        monkeypatch.setenv("MODELSLAB_API_KEY", f"  {sim.api_key}\n")
        assert from_env.reload_key_from_environment() is True and from_env.has_api_key
        assert sim.api_key not in repr(from_env)


# -- 2. a card that could not watch does not look alive ---------------------------------------


@pytest.mark.parametrize("cause", ["no key", "unknown run"])
def test_a_card_that_could_not_watch_says_so_and_hides_the_rest(sim, cards, monkeypatch, cause):
    if cause == "no key":
        monkeypatch.delenv("MODELSLAB_API_KEY", raising=False)
        card, error = cards(sim.add_run(steps=FAST), base_url=sim.base_url), MissingKeyError
    else:
        card, error = cards(424242, api_key=sim.api_key, base_url=sim.base_url), NotFoundError
    with pytest.raises(error):
        card.wait(5)
    shown = card.header_html + card_markup(card)  # header, bar, step rows
    assert "Could not watch" in shown and card.watch_state == "not watched"
    for alive in ("Unknown", "Waiting for the first steps", "Elapsed", "–", "mlw-spin",
                  "progressbar"):
        assert alive not in shown, alive
    assert f"Run {card.execution_id}" in shown and "workflow" in shown


def test_watching_that_fails_mid_run_keeps_the_last_status_without_the_spinner(sim, cards):
    eid = sim.add_run(steps=[("Long", 30)])
    card = cards(eid, api_key=sim.api_key, base_url=sim.base_url, max_failures=1)
    wait_for(lambda: card.status == "running")
    sim.api_key = "sk-rotated"  # the key stops working mid-run
    with pytest.raises(AuthenticationError):
        card.wait(5)
    assert "Running · not watched" in card.header_html and "mlw-spin" not in card.header_html


# -- 3. Stop shows a paused card and a paused board row ----------------------------------------


def test_stop_pauses_the_badge_and_resume_spins_it_again(sim, cards, client):
    card = cards(sim.add_run(steps=[("Long", 30)]), client=client)
    wait_for(lambda: "mlw-spin" in card.header_html)
    card.stop()
    assert card.watch_state == "paused"
    assert "Running · paused" in card.header_html and "mlw-spin" not in card.header_html
    assert list(card.buttons) == ["Cancel run", "Resume"]  # a paused run can be cancelled
    card.buttons["Resume"].click()
    assert card.watch_state == ""
    assert "mlw-spin" in card.header_html and "paused" not in card.header_html


def test_a_card_past_its_time_limit_is_paused(sim, cards, client):
    card = cards(sim.add_run(steps=[("Long", 30)]), client=client, timeout=0.5)
    with pytest.raises(TimeoutError):
        card.wait(5)
    assert "Running · paused" in card.header_html and "mlw-spin" not in card.header_html
    assert "time limit" in card.message_html


def test_a_stopped_card_offers_cancel_and_then_follows_the_run_to_cancelled(sim, cards, client):
    eid = sim.add_run(steps=[("Long", 30)])
    card = cards(eid, client=client)
    wait_for(lambda: card.status == "running")
    card.stop()
    polls = sim.request_count("status", execution_id=eid)
    assert "Cancel run" in card.buttons
    assert "cancelled" in card.cancel().lower()
    wait_for(lambda: card.status == "cancelled", timeout=5)
    assert sim.request_count("status", execution_id=eid) > polls  # it watched again
    assert sim.request_count("cancel", execution_id=eid) == 1


@pytest.mark.parametrize(("name", "value"), [("thumbnail_size", -1), ("thumbnail_size", 0),
                                             ("thumbnail_size", "big"),
                                             ("max_thumbnails", -2), ("label", 3)])
def test_a_bad_argument_is_refused_by_name_before_any_request(sim, client, name, value):
    with pytest.raises(ValueError, match=name):
        WorkflowRunWidget(DEMO_WORKFLOW_ID, sim.add_run(steps=FAST), client=client,
                          **{name: value})
    assert sim.request_count("status") == 0


def test_a_misspelt_keyword_is_refused_with_the_name_it_meant(sim, client):
    with pytest.raises(TypeError, match=r"'poll_intervall'.*did you mean 'poll_interval'"):
        WorkflowRunWidget(DEMO_WORKFLOW_ID, sim.add_run(steps=FAST), client=client,
                          poll_intervall=0.5)
    assert sim.request_count("status") == 0


def test_a_label_names_the_run_in_the_header_the_text_form_and_the_saved_card(sim, client,
                                                                                cards):
    card = cards(sim.add_run(steps=FAST), client=client, label="a <b>cat</b>, seed=2")
    card.wait(10)
    assert "a &lt;b&gt;cat&lt;/b&gt;, seed=2" in card.header_html
    assert repr(card).startswith("Run ") and "a <b>cat</b>, seed=2" in repr(card)
    assert "a &lt;b&gt;cat&lt;/b&gt;, seed=2" in card.static_html()


def test_wait_while_a_rejected_key_is_settling_sends_no_second_request(sim, make):
    """wait() starts only a card that never started. Once watching ended (the watch still
    settling) the card is not "never started": starting it there could open a second session
    the moment settling finishes, and send a second 401 request."""
    from modelslab_widget.poller import PollPolicy
    from modelslab_widget.runstate import Phase

    bad = WorkflowsClient("not-the-key", base_url=sim.base_url)
    eid = sim.add_run(steps=FAST)
    seen: list[bool] = []

    class Onlooker:  # another view of the run, shown the end before the watch settles
        def show(self, state):
            if state.phase is Phase.GAVE_UP and not seen:
                seen.append(card.run_watch.never_started(card))
                with contextlib.suppress(Exception):
                    card.wait(0.01)

    onlooker = Onlooker()
    card = make(eid, client=bad, autostart=False)
    assert card.run_watch.never_started(card)  # autostart=False: wait() would start it
    card.run_watch.attach(onlooker, PollPolicy())
    card.start()
    with pytest.raises(AuthenticationError):
        card.wait(5)
    assert seen == [False]
    assert card.polls == 1 and sim.request_count("status", execution_id=eid) == 1
    card.run_watch.detach(onlooker)
