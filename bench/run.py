"""Benchmark of modelslab-widget against a hand-written baseline, over the local simulator.

Run with ``make bench`` (or ``.venv/bin/python bench/run.py``). It prints figures and never
asserts on time. Each line: the project's value, the naive baseline's (or a reference's),
project/naive, the target and PASS/MISS. The baseline (``bench/naive.py``) is what a user
writes by hand: a fixed-interval loop of plain ``requests.get`` (no Session) and
``time.sleep``, then a sequential download, ``Image.open`` and ``.thumbnail`` of each output.

1. Detection lag: wall time from a scripted server-side state change (a step starting or
   ending) to the ``steps`` trait change, p50 and p95 over 40 changes of 10 runs (random
   step durations) at poll_interval 0.5 s; the naive loop watches the same runs. A poller at
   a fixed interval sees a change ~U(0, interval) late, so the limit 0.55 x interval + 50 ms
   applies to p50; p95 is held to interval + 50 ms. Widgets learn step durations from
   completed runs of a workflow and then poll less while no step should end, so the runs
   above each use a new workflow, and a second pair of lines repeats 5 of those workflows
   with each step within ±15% of its earlier duration.
2. Status requests per run against the ideal ceil(duration / interval) + 1 (a new workflow,
   then a repeat run of it), and the TCP connections opened per run for status polling
   (target: one keep-alive connection).
3. Completion -> all thumbnails ready, for 4 outputs of 1024x1024 PNG each served 0.4 s
   late: from the ``status`` trait turning "completed" to ``on_complete``. Compared with the
   naive sequential download, and with the limit: the slowest single image's fetch + decode
   + thumbnail done alone. The simulator renders each image before the run completes (a
   real server stores them), so its drawing time is in none of the three figures.
4. Thumbnail time for a 4096x4096 JPEG and PNG (gradients + noise): ``make_thumbnail(data,
   256)`` (includes encoding the thumbnail for the browser) against a full decode +
   ``convert("RGB").resize((256, 256))``; median of 3.
5. Bytes to the front end, counted by a recording comm (``bench/recorder.py``), for a run of
   4 outputs of 512x512 PNG: the total until ``wait()`` returns (widget creation included),
   the bytes sent for each poll answer that changed a step (and, at most, for one that
   changed nothing), and the elapsed-time tick's messages per second while running (naive:
   its rewrites on polls that changed no step).
   The naive card is an HTML widget rewritten on every poll (status, steps, elapsed time)
   and one ``widgets.Image`` per output holding the downloaded file.
6. Extra threads and RSS (peak while watching, above a baseline taken after imports) with 1,
   10 and 100 runs of ~5 s watched at once at poll_interval 1 s, each count in a fresh child
   process (``bench/footprint.py``); naive: one thread per run running the loop. Also the
   extra threads left once the widgets are closed.
7. Import time: ``python -X importtime -c "import modelslab_widget"``, all modules it loads
   (beyond a bare interpreter's), against ``import ipywidgets``, median of 5 fresh processes;
   the same for the README's ``from modelslab_widget import watch``, which also loads the
   widget and ipywidgets; and whether either loads Pillow (it should be lazy).
"""

from __future__ import annotations

import io
import itertools
import json
import math
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import naive
import recorder
import requests

from modelslab_widget import WorkflowRunWidget, WorkflowsClient
from modelslab_widget.images import make_thumbnail
from modelslab_widget.scheduler import THREAD_PREFIX, TIMER_THREAD_NAME
from modelslab_widget.simulator import Fault, Simulator

HERE = Path(__file__).resolve().parent
INTERVAL = 0.5  # poll interval of figures 1-3 and 5


# ---------------------------------------------------------------- the table

@dataclass(frozen=True)
class Row:
    name: str
    project: float | str
    naive: float | str | None
    unit: str
    target: str
    ok: bool | None  # None: reported only

    @property
    def ratio(self) -> str:
        if isinstance(self.project, float) and isinstance(self.naive, float) and self.naive:
            return f"{self.project / self.naive:.2f}"
        return "—"

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "MISS", None: "—"}[self.ok]

    def cells(self) -> list[str]:
        return [self.name, fmt(self.project, self.unit), fmt(self.naive, self.unit),
                self.ratio, self.target, self.verdict]


HEADER = ["figure", "project", "naive / ref", "ratio", "target", "result"]


def fmt(value: float | str | None, unit: str) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if unit in ("", "B") and float(value).is_integer():  # counts
        return f"{value:.0f} {unit}".strip()
    digits = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2
    return f"{value:.{digits}f} {unit}".strip()


def print_table(rows: Sequence[Row]) -> None:
    table = [HEADER, *(row.cells() for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADER))]
    for index, line in enumerate(table):
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))
        if index == 0:
            print("  ".join("-" * width for width in widths))


def print_markdown(rows: Sequence[Row]) -> None:
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "---|" * len(HEADER))
    for row in rows:
        print("| " + " | ".join(cell.replace("|", "\\|") for cell in row.cells()) + " |")


# ---------------------------------------------------------------- helpers

def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def fresh_workflow() -> str:
    """A workflow id no widget has seen: no step history, so polling is at the plain interval
    (widgets learn expected step durations from completed runs of the same workflow)."""
    return str(uuid.uuid4())


def widget(sim: Simulator, workflow: str, eid: int, **kwargs: Any) -> WorkflowRunWidget:
    """A widget on the simulator that has not started polling yet."""
    kwargs.setdefault("poll_interval", INTERVAL)
    return WorkflowRunWidget(workflow, eid, api_key=sim.api_key, base_url=sim.base_url,
                             autostart=False, **kwargs)


def naive_watch(sim: Simulator, workflow: str, eid: int, interval: float = INTERVAL,
                on_answer: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    return naive.watch(sim.status_url(workflow, eid), sim.api_key, interval, on_answer)


def in_threads(targets: Iterable[Callable[[], Any]]) -> list[threading.Thread]:
    threads = [threading.Thread(target=target, daemon=True) for target in targets]
    for thread in threads:
        thread.start()
    return threads


def join_all(threads: Iterable[threading.Thread]) -> None:
    for thread in threads:
        thread.join(60)


def output_urls(sim: Simulator, eid: int) -> list[str]:
    """The run's output URLs, read from its scripted future (no request counted)."""
    return list(sim.run_state(eid, elapsed=1e6)["output"]["output"])


def prerender(sim: Simulator, eid: int) -> None:
    """Have the simulator draw and cache a run's images now, as a real server stores them."""
    join_all(in_threads(lambda url=url: requests.get(url, timeout=30)
                        for url in output_urls(sim, eid)))


def settle_threads() -> None:
    """Let the shared scheduler's threads wind down between figures."""
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and any(
            t.name.startswith(THREAD_PREFIX) for t in threading.enumerate()):
        time.sleep(0.05)


# ---------------------------------------------------------------- 1. detection lag

@dataclass
class ScriptedRun:
    workflow: str
    eid: int
    durations: list[float]
    changes: list[float]  # wall time of each state change: first step starts, each step ends


def add_scripted_run(sim: Simulator, workflow: str, durations: list[float],
                     queue: float) -> ScriptedRun:
    steps = [(f"Step {i + 1}", d) for i, d in enumerate(durations)]
    before = time.time()
    eid = sim.add_run(workflow, steps=steps, images=0, queue_time=queue)
    t0 = (before + time.time()) / 2
    offsets = itertools.accumulate(durations, initial=queue)
    return ScriptedRun(workflow, eid, durations, [t0 + offset for offset in offsets])


class FirstSeen:
    """When each state change was first seen (by the widget or the naive loop)."""

    def __init__(self) -> None:
        self.at: dict[int, float] = {}

    def see(self, steps: list[dict[str, Any]]) -> None:
        now = time.time()
        index = naive.step_index(steps)
        if index is not None and index not in self.at:
            self.at[index] = now

    def lags(self, changes: list[float]) -> list[float]:
        return [self.at[i] - at for i, at in enumerate(changes) if i in self.at]


def watch_lags(sim: Simulator, runs: list[ScriptedRun]) -> tuple[list[float], list[float]]:
    """Lags of the widget and of the naive loop, both watching the same runs."""
    seen_project = [FirstSeen() for _ in runs]
    seen_naive = [FirstSeen() for _ in runs]
    widgets = []
    for run, seen in zip(runs, seen_project, strict=True):
        w = widget(sim, run.workflow, run.eid)
        w.observe(lambda change, seen=seen: seen.see(change["new"]), names="steps")
        w.start()
        widgets.append(w)
    threads = in_threads(
        lambda run=run, seen=seen: naive_watch(sim, run.workflow, run.eid,
                                               on_answer=lambda body: seen.see(body["steps"]))
        for run, seen in zip(runs, seen_naive, strict=True))
    for w in widgets:
        w.wait(timeout=60)
        w.close()
    join_all(threads)
    return all_lags(runs, seen_project), all_lags(runs, seen_naive)


def all_lags(runs: list[ScriptedRun], seen: list[FirstSeen]) -> list[float]:
    return [lag for run, s in zip(runs, seen, strict=True) for lag in s.lags(run.changes)]


def lag_rows(label: str, project: list[float], base: list[float]) -> list[Row]:
    limits = (("p50", 0.5, 0.55 * INTERVAL + 0.05, "0.55×interval+50ms"),
              ("p95", 0.95, INTERVAL + 0.05, "interval+50ms"))
    rows = []
    for name, q, limit, how in limits:
        value = percentile(project, q)
        rows.append(Row(f"1. detection lag {name}, {label} ({len(project)})", value * 1000,
                        percentile(base, q) * 1000, "ms", f"≤ {limit * 1000:.0f} ms ({how})",
                        value <= limit))
    return rows


def fig_detection_lag(sim: Simulator) -> list[Row]:
    import random

    rng = random.Random(20240501)
    cold: list[ScriptedRun] = []
    project: list[float] = []
    base: list[float] = []
    for _ in range(2):  # 10 runs, each of a new workflow
        runs = [add_scripted_run(sim, fresh_workflow(), [rng.uniform(0.7, 1.5) for _ in "abc"],
                                 rng.uniform(0.3, 0.8)) for _ in range(5)]
        more_project, more_base = watch_lags(sim, runs)
        project += more_project
        base += more_base
        cold += runs
    # Repeat runs: the same workflows again, steps within ±15% of last time's durations.
    again = [add_scripted_run(sim, run.workflow, [d * rng.uniform(0.85, 1.15)
                                                  for d in run.durations],
                              rng.uniform(0.3, 0.8)) for run in cold[:5]]
    warm_project, warm_base = watch_lags(sim, again)
    return [*lag_rows("new workflow", project, base),
            *lag_rows("repeat run ±15%", warm_project, warm_base)]


# ---------------------------------------------------------------- 2. requests, connections

def requests_per_run(sim_project: Simulator, sim_naive: Simulator, workflow: str,
                     steps: list[tuple[str, float]], runs: int) -> tuple[list[int], list[int]]:
    """Status requests of each of ``runs`` runs watched at once, by widgets and naive loops."""
    eids_project = [sim_project.add_run(workflow, steps=steps, images=0) for _ in range(runs)]
    eids_naive = [sim_naive.add_run(workflow, steps=steps, images=0) for _ in range(runs)]
    widgets = [widget(sim_project, workflow, eid) for eid in eids_project]
    for w in widgets:
        w.start()
    threads = in_threads(lambda eid=eid: naive_watch(sim_naive, workflow, eid)
                         for eid in eids_naive)
    for w in widgets:
        w.wait(timeout=60)
        w.close()
    join_all(threads)
    return ([sim_project.request_count("status", eid) for eid in eids_project],
            [sim_naive.request_count("status", eid) for eid in eids_naive])


def fig_requests() -> list[Row]:
    steps = [("Text to Image", 1.6), ("Image Upscaler", 1.6)]
    runs = 3
    ideal = math.ceil(sum(d for _, d in steps) / INTERVAL) + 1
    workflow = fresh_workflow()
    with Simulator() as sim_project, Simulator() as sim_naive:
        project, base = requests_per_run(sim_project, sim_naive, workflow, steps, runs)
        # The same workflow again: the widgets now know how long its steps take.
        warm_project, warm_base = requests_per_run(sim_project, sim_naive, workflow, steps, runs)
        connections_project = sim_project.connection_count / (2 * runs)
        connections_naive = sim_naive.connection_count / (2 * runs)
    return [
        Row("2. status requests / run, new workflow", statistics.mean(project),
            statistics.mean(base), "", f"≤ {ideal} (ideal)", max(project) <= ideal),
        Row("2. status requests / run, repeat run", statistics.mean(warm_project),
            statistics.mean(warm_base), "", f"≤ {ideal} (ideal)", max(warm_project) <= ideal),
        Row("2. TCP connections / run (status)", connections_project, connections_naive, "",
            "1", connections_project <= 1),
    ]


# ---------------------------------------------------------------- 3. completion -> thumbnails

SLOW_IMAGES = {i: Fault("slow", delay=0.4) for i in range(4)}


def slow_image_run(sim: Simulator, workflow: str) -> int:
    eid = sim.add_run(workflow, steps=[("Text to Image", 1.5)], images=4,
                      image_size=(1024, 1024), image_format="PNG", image_faults=SLOW_IMAGES)
    prerender(sim, eid)
    return eid


def project_thumbnails(sim: Simulator, workflow: str, eid: int) -> float:
    marks: dict[str, float] = {}

    def on_status(change: dict[str, Any]) -> None:
        if change["new"] == "completed":
            marks.setdefault("completed", time.time())

    w = widget(sim, workflow, eid, on_complete=lambda _: marks.setdefault("ready", time.time()))
    w.observe(on_status, names="status")
    w.start()
    w.wait(timeout=60)
    if len(w.thumbnails) != 4:
        print(f"   warning: {len(w.thumbnails)} thumbnails of 4: {w.thumbnail_errors}")
    w.close()
    return marks["ready"] - marks["completed"]


def naive_thumbnails(sim: Simulator, workflow: str, eid: int) -> float:
    body = naive_watch(sim, workflow, eid)
    completed = time.time()
    naive.thumbnails(body["output"]["output"])
    return time.time() - completed


def thumbnail_limit(sim: Simulator, eid: int) -> float:
    """The slowest single image's fetch + decode + thumbnail, each done alone."""
    times = []
    with WorkflowsClient(sim.api_key, base_url=sim.base_url) as client:
        for url in output_urls(sim, eid):
            start = time.perf_counter()
            make_thumbnail(client.fetch_image(url), 256)
            times.append(time.perf_counter() - start)
    return max(times)


def fig_thumbnails_ready(sim: Simulator, reps: int = 3) -> list[Row]:
    project, base, limit = [], [], []
    workflow = fresh_workflow()
    for _ in range(reps):
        eid = slow_image_run(sim, workflow)
        project.append(project_thumbnails(sim, workflow, eid))
        limit.append(thumbnail_limit(sim, eid))
        base.append(naive_thumbnails(sim, workflow, slow_image_run(sim, workflow)))
        settle_threads()
    value, naive_value, limit_value = (statistics.median(x) for x in (project, base, limit))
    return [
        Row("3. completion→thumbnails, 4×1024² PNG +0.4 s", value, naive_value, "s",
            "≥ 3× faster than naive", value * 3 <= naive_value),
        Row("3. … vs limit (slowest image alone)", value, limit_value, "s", "≤ 1.3× limit",
            value <= 1.3 * limit_value),
    ]


# ---------------------------------------------------------------- 4. big thumbnails

def big_image(fmt_name: str) -> bytes:
    from PIL import Image

    size = (4096, 4096)
    red = Image.linear_gradient("L").resize(size)
    green = red.transpose(Image.Transpose.ROTATE_90)
    blue = Image.effect_noise(size, 48)
    image = Image.merge("RGB", (red, green, blue))
    options = {"quality": 90} if fmt_name == "JPEG" else {"compress_level": 1}
    buffer = io.BytesIO()
    image.save(buffer, fmt_name, **options)
    return buffer.getvalue()


def median_seconds(fn: Callable[[], Any], reps: int = 3) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def fig_big_thumbnails() -> list[Row]:
    rows = []
    for fmt_name in ("JPEG", "PNG"):
        data = big_image(fmt_name)
        project = median_seconds(lambda data=data: make_thumbnail(data, 256)) * 1000
        base = median_seconds(lambda data=data: naive.full_decode_resize(data, 256)) * 1000
        rows.append(Row(f"4. thumbnail 4096² {fmt_name} ({len(data) / 1e6:.1f} MB)", project,
                        base, "ms", "< naive", project < base))
    return rows


# ---------------------------------------------------------------- 5. bytes to the front end

# Step changes land between the elapsed-time ticks (1, 2, 3, 4 s after start): when both fall
# together, the poll's re-render already carries the new time and the tick rightly sends nothing.
FRONTEND_STEPS = [("Text to Image", 2.3), ("Image Upscaler", 2.0)]
LONG_STEPS = [(f"Refine pass {n}", 0.7) for n in range(1, 41)]


@dataclass
class Traffic:
    total: float  # bytes until the run is done and its images shown
    per_update: list[int]  # bytes sent for each poll answer that changed a step
    per_quiet_poll: list[int]  # bytes sent for each poll answer that changed nothing
    running_rate: float  # ticks (one timer callback's messages) a second while running
    running_size: float  # mean bytes of one tick (header + the running step's row)
    detail: str


def group_ticks(messages: list[recorder.Message], gap: float = 0.2) -> list[list[recorder.Message]]:
    """Messages sent by one tick of the timer come within a few ms of each other."""
    ticks: list[list[recorder.Message]] = []
    for message in sorted(messages, key=lambda m: m.at):
        if ticks and message.at - ticks[-1][-1].at < gap:
            ticks[-1].append(message)
        else:
            ticks.append([message])
    return ticks


def project_traffic(sim: Simulator, rec: recorder.Recorder, steps: Any = FRONTEND_STEPS,
                    images: int = 4) -> Traffic:
    workflow = fresh_workflow()
    eid = sim.add_run(workflow, steps=steps, images=images)
    mark = rec.mark()
    w = widget(sim, workflow, eid)
    opened = sum(m.nbytes for m in rec.since(mark))
    changed: list[str] = []
    quiet: list[str] = []
    marks: dict[str, float] = {}
    original = w.run_watch.on_snapshot  # the poller calls its listener (the run watch)

    def on_snapshot(snapshot: Any, polls: int) -> None:
        before = w.steps
        with rec.tagged(f"poll {polls}"):
            original(snapshot, polls)
        (changed if w.steps != before else quiet).append(f"poll {polls}")
        if snapshot.is_terminal:
            marks.setdefault("completed", time.time())

    w.run_watch.on_snapshot = on_snapshot  # type: ignore[method-assign]
    marks["start"] = time.time()
    w.start()
    w.wait(timeout=60)
    messages = rec.since(mark)
    w.close()
    ticks = [m for m in messages if m.thread == TIMER_THREAD_NAME and m.at < marks["completed"]]
    grouped = group_ticks(ticks)
    polls = [m for m in messages if m.tag is not None]
    thumbs = [m for m in messages if m.tag is None and m.thread != TIMER_THREAD_NAME
              and m.at >= marks["completed"]]
    detail = (f"creation {opened / 1000:.1f} KB, poll answers {sum_kb(polls)} KB, "
              f"ticks {sum_kb(ticks)} KB ({len(grouped)} ticks, {len(ticks)} msgs), "
              f"after completion {sum_kb(thumbs)} KB ({len(thumbs)} msgs)")
    return Traffic(sum(m.nbytes for m in messages), bytes_by_tag(messages, changed),
                   bytes_by_tag(messages, quiet),
                   len(grouped) / (marks["completed"] - marks["start"]),
                   statistics.mean(sum(m.nbytes for m in tick) for tick in grouped)
                   if grouped else 0.0, detail)


def bytes_by_tag(messages: list[recorder.Message], tags: list[str]) -> list[int]:
    return [sum(m.nbytes for m in messages if m.tag == tag) for tag in tags]


def sum_kb(messages: Iterable[recorder.Message]) -> str:
    return f"{sum(m.nbytes for m in messages) / 1000:.1f}"


def naive_card(body: dict[str, Any], elapsed: float) -> str:
    rows = "".join(f"<tr><td>{s['name']}</td><td>{s['status']}</td></tr>" for s in body["steps"])
    return (f"<b>Run {body['execution']['id']}</b> {body['execution']['status']} · "
            f"{elapsed:.1f} s<table>{rows}</table>")


def naive_traffic(sim: Simulator, rec: recorder.Recorder, steps: Any = FRONTEND_STEPS,
                  images: int = 4) -> Traffic:
    import ipywidgets as widgets

    workflow = fresh_workflow()
    eid = sim.add_run(workflow, steps=steps, images=images)
    mark = rec.mark()
    card = widgets.HTML()
    started = time.time()
    last: list[Any] = [None]
    changed: list[str] = []
    quiet: list[str] = []

    def on_answer(body: dict[str, Any]) -> None:
        statuses = [s["status"] for s in body["steps"]]
        tag = f"answer {len(changed) + len(quiet)}"
        (changed if statuses != last[0] else quiet).append(tag)
        last[0] = statuses
        with rec.tagged(tag):
            card.value = naive_card(body, time.time() - started)

    body = naive_watch(sim, workflow, eid, on_answer=on_answer)
    running = time.time() - started
    images = [widgets.Image(value=requests.get(url, timeout=30).content, format="png")
              for url in body["output"]["output"]]
    box = widgets.VBox([card, *images])
    messages = rec.since(mark)
    box.close()
    for item in (card, *images):
        item.close()
    unchanged = [m for m in messages if m.tag is not None and m.tag not in changed]
    return Traffic(sum(m.nbytes for m in messages), bytes_by_tag(messages, changed),
                   bytes_by_tag(messages, quiet), len(unchanged) / running,
                   statistics.mean(m.nbytes for m in unchanged) if unchanged else 0.0, "")


def fig_frontend(sim: Simulator, rec: recorder.Recorder) -> list[Row]:
    project = project_traffic(sim, rec)
    base = naive_traffic(sim, rec)
    print(f"   project traffic: {project.detail}")
    per_update = statistics.mean(project.per_update or [0])
    # A long workflow: an update rewrites only the rows whose step changed, not the list.
    long_project = project_traffic(sim, rec, LONG_STEPS, images=0)
    long_base = naive_traffic(sim, rec, LONG_STEPS, images=0)
    long_update = statistics.mean(long_project.per_update or [0])
    return [
        Row("5. bytes to front end, 4×512² PNG run", project.total / 1000, base.total / 1000,
            "KB", "≤ 150 KB", project.total <= 150_000),
        Row(f"5. bytes / status update ({len(project.per_update)} updates)", per_update / 1000,
            statistics.mean(base.per_update or [0]) / 1000, "KB", "≤ 2 KB",
            max(project.per_update or [0]) <= 2000),
        Row(f"5. … mean in a {len(LONG_STEPS)}-step run ({len(long_project.per_update)} "
            f"updates, max {max(long_project.per_update or [0]) / 1000:.1f} KB)",
            long_update / 1000, statistics.mean(long_base.per_update or [0]) / 1000, "KB",
            "≤ 2 KB", long_update <= 2000),
        Row(f"5. bytes / poll answer changing nothing ({len(project.per_quiet_poll)})",
            float(max(project.per_quiet_poll or [0])),
            float(statistics.mean(base.per_quiet_poll or [0])), "B", "0 B",
            max(project.per_quiet_poll or [0]) == 0),
        Row("5. ticks / s while running", project.running_rate, base.running_rate, "/s",
            "≈ 1 /s", 0.6 <= project.running_rate <= 1.2),
        Row("5. bytes / tick (header + running row)", project.running_size / 1000,
            base.running_size / 1000, "KB", "small (≤ 2 KB)", project.running_size <= 2000),
    ]


# ---------------------------------------------------------------- 6. threads and memory

FOOTPRINT_STEPS = [("Text to Image", 2.5), ("Image Upscaler", 2.5)]


def start_child(sim: Simulator, mode: str, workflow: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(HERE / "footprint.py"), mode, sim.base_url, sim.api_key, workflow,
         "1.0"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def wait_ready(child: subprocess.Popen[str]) -> None:
    assert child.stdout is not None
    line = child.stdout.readline().strip()
    if line != "ready":
        raise RuntimeError(f"footprint child {child.args!r} said {line!r}")


def footprint(sim: Simulator, count: int) -> dict[str, dict[str, Any]]:
    """Project and naive children watching ``count`` runs each, side by side."""
    workflow = fresh_workflow()
    children = {mode: start_child(sim, mode, workflow) for mode in ("project", "naive")}
    for child in children.values():
        wait_ready(child)
    for child in children.values():
        eids = [sim.add_run(workflow, steps=FOOTPRINT_STEPS, images=0) for _ in range(count)]
        assert child.stdin is not None
        child.stdin.write(json.dumps(eids) + "\n")
        child.stdin.flush()
    results = {}
    for mode, child in children.items():
        out, _ = child.communicate(timeout=120)
        results[mode] = json.loads(out.strip().splitlines()[-1])
    return results


def fig_footprint(sim: Simulator) -> list[Row]:
    rows = []
    for count in (1, 10, 100):
        result = footprint(sim, count)
        project, base = result["project"], result["naive"]
        rows.append(Row(f"6. extra threads, {count} watched", float(project["threads"]),
                        float(base["threads"]), "", "≤ 5", project["threads"] <= 5))
        rows.append(Row(f"6. extra RSS, {count} watched", project["rss_mb"], base["rss_mb"],
                        "MB", "≤ 150 MB" if count == 100 else "—",
                        project["rss_mb"] <= 150 if count == 100 else None))
        if count == 100:
            rows.append(Row("6. extra threads after close (100)",
                            float(project["threads_after"]), float(base["threads_after"]), "",
                            "0", project["threads_after"] == 0))
    return rows


# ---------------------------------------------------------------- 7. import time

def imports_us(statement: str) -> int:
    """Microseconds spent importing, summed over every module ``statement`` loads."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", statement],
                            capture_output=True, text=True, check=True)
    rows = (line.split("|") for line in result.stderr.splitlines())
    return sum(int(row[0].split(":")[1]) for row in rows if len(row) == 3 and
               row[0].split(":")[1].strip().isdigit())


def import_ms(statement: str) -> float:
    """Import time of ``statement`` in a fresh interpreter, above the interpreter's own, in ms."""
    return (imports_us(statement) - imports_us("pass")) / 1000


def pillow_imported(statement: str) -> bool:
    code = f"import sys; {statement}; print('PIL' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    return result.stdout.strip() == "True"


IMPORTS = {"import modelslab_widget": "import modelslab_widget",
           "from modelslab_widget import watch": "from modelslab_widget import watch",
           "ipywidgets": "import ipywidgets"}


def fig_import_time(reps: int = 5) -> list[Row]:
    # Measure both sides from bytecode, as installed packages are (pip compiles at install);
    # an editable checkout run with PYTHONDONTWRITEBYTECODE=1 would otherwise compile every
    # module of ours from source on each import while ipywidgets loads its .pyc files.
    import compileall

    compileall.compile_dir(str(HERE.parent / "modelslab_widget"), quiet=1)
    times: dict[str, list[float]] = {name: [] for name in IMPORTS}
    for _ in range(reps):  # interleaved, so a busy moment hits all alike
        for name, statement in IMPORTS.items():
            times[name].append(import_ms(statement))
    median = {name: statistics.median(values) for name, values in times.items()}
    base = median.pop("ipywidgets")
    rows = [Row(f"7. {name} (ref: import ipywidgets)", value, base, "ms",
                "< 1.3× ipywidgets", value < 1.3 * base) for name, value in median.items()]
    for statement in list(IMPORTS.values())[:2]:
        pil = pillow_imported(statement)
        rows.append(Row(f"7. PIL loaded by {statement}", "yes" if pil else "no", None, "",
                        "no", not pil))
    return rows


# ---------------------------------------------------------------- main

def timed(label: str, fn: Callable[[], list[Row]]) -> list[Row]:
    start = time.perf_counter()
    rows = fn()
    print(f"[{label}] {time.perf_counter() - start:.1f} s", flush=True)
    return rows


def main() -> None:
    rec = recorder.install()  # before any widget exists
    start = time.perf_counter()
    rows: list[Row] = []
    with Simulator() as sim:
        rows += timed("1 detection lag", lambda: fig_detection_lag(sim))
        rows += timed("2 requests and connections", fig_requests)
        rows += timed("3 completion to thumbnails", lambda: fig_thumbnails_ready(sim))
        rows += timed("4 big thumbnails", fig_big_thumbnails)
        rows += timed("5 front-end bytes", lambda: fig_frontend(sim, rec))
        settle_threads()
        rows += timed("6 threads and RSS", lambda: fig_footprint(sim))
    rows += timed("7 import time", fig_import_time)
    print()
    print_table(rows)
    print()
    print_markdown(rows)
    misses = sum(1 for row in rows if row.ok is False)
    print(f"\n{misses} target(s) missed; benchmark took {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
