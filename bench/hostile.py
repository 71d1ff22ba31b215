"""Figures for a hostile or slow server (issue 13), next to the naive way.

1. A 9 MB status answer listing 3 million steps: peak memory and CPU of one poll
   (``client.get_run``), against ``json.loads`` and parsing every step.
2. 500,000 output URLs (as many as fit in 10 MB): what goes to the browser (the card's HTML
   and its ``output_urls`` state), against sending them all.
3. A healthy card next to a completed run whose outputs sit on two hosts that drip their
   headers: the healthy card's polls and time to complete, with downloads in their own lane
   and with downloads in the poll workers (as before).

Run: PYTHONPATH=. python bench/hostile.py
"""

from __future__ import annotations

import contextlib
import http.server
import json
import socket
import threading
import time
import tracemalloc
from collections.abc import Iterator

from modelslab_widget import WorkflowRunWidget, WorkflowsClient
from modelslab_widget.models import RunSnapshot, Step
from modelslab_widget.scheduler import shared_scheduler
from modelslab_widget.simulator import DEMO_WORKFLOW_ID, Fault, Simulator


@contextlib.contextmanager
def serve(body: bytes) -> Iterator[str]:
    """Serve ``body`` as JSON at every path; yields the base URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="simulator-bench")
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/api/v1"
    finally:
        server.shutdown()
        server.server_close()


def answer(steps: str, outputs: str, status: str = "running") -> bytes:
    head = '{"status":"success","execution":{"id":1,"workflow_id":"wf","status":"' + status
    return (head + '"},"steps":[' + steps + '],"output":{"output":[' + outputs + "]}}").encode()


def measure(call):  # -> (result, peak MB, CPU s); CPU timed without tracemalloc's overhead
    started = time.process_time()
    call()
    cpu = time.process_time() - started
    tracemalloc.start()
    result = call()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return result, peak / 1e6, cpu


def naive_parse(raw: bytes) -> int:
    body = json.loads(raw)
    return len([Step.from_api(item, i) for i, item in enumerate(body["steps"])])


def figure_steps() -> None:
    raw = answer(",".join(["{}"] * 3_000_000), "")
    with serve(raw) as base, WorkflowsClient("k" * 12, base_url=base) as client:
        client.get_run("wf", 1)  # warm the connection
        snap, peak, cpu = measure(lambda: client.get_run("wf", 1))
    _, naive_peak, naive_cpu = measure(lambda: naive_parse(raw))
    print(f"3,000,000 steps in {len(raw) / 1e6:.1f} MB: one poll peaks at {peak:.0f} MB, "
          f"{cpu:.2f} s CPU, keeps {len(snap.steps)} steps and notes {snap.dropped_steps:,} "
          f"more (naive json.loads + every step: {naive_peak:.0f} MB, {naive_cpu:.2f} s)")


def figure_outputs() -> None:
    urls = [f'"http://x.io/{n}"' for n in range(500_000)]
    raw = answer('{"name":"a","status":"completed"}', ",".join(urls), "completed")
    with serve(raw) as base, WorkflowsClient("k" * 12, base_url=base) as client:
        snap, peak, cpu = measure(lambda: client.get_run("wf", 1))
        card = WorkflowRunWidget("wf", 1, client=client, thumbnail_size=32, max_thumbnails=0)
        card.wait(30)
        html = sum(len(w.value) for w in _html_widgets(card))
        state = len(json.dumps(card.output_urls))
        card.close()
    naive_state = len(json.dumps([u.strip('"') for u in urls]))
    print(f"500,000 output URLs ({len(raw) / 1e6:.1f} MB): one poll peaks at {peak:.0f} MB, "
          f"{cpu:.2f} s CPU; the card holds {len(snap.outputs)} and notes "
          f"{snap.dropped_outputs:,} more; to the browser: {html / 1e3:.0f} kB of HTML and "
          f"{state / 1e3:.0f} kB of output_urls (naive: {naive_state / 1e6:.1f} MB of "
          "output_urls alone)")


def _html_widgets(card: WorkflowRunWidget) -> list:
    import ipywidgets

    seen, stack = [], [card]
    while stack:
        widget = stack.pop()
        if isinstance(widget, ipywidgets.HTML):
            seen.append(widget)
        stack.extend(getattr(widget, "children", ()))
    return seen


class DripHost:
    """Answers every request with headers dripped one byte every 0.2 s."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.stopping = threading.Event()
        threading.Thread(target=self._serve, name="simulator-drip").start()

    def url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}/{index}.png"

    def _serve(self) -> None:
        while not self.stopping.is_set():
            with contextlib.suppress(OSError):  # TimeoutError, or closed under accept()
                conn, _ = self.listener.accept()
                threading.Thread(target=self._drip, args=(conn,), name="simulator-drip").start()

    def _drip(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nX: " + b"a" * 10_000:
                if self.stopping.wait(0.2):
                    return
                conn.sendall(bytes([byte]))

    def close(self) -> None:
        self.stopping.set()
        self.listener.close()


def healthy_next_to_drip() -> tuple[float, int]:
    hosts = [DripHost(), DripHost()]
    with Simulator() as sim, WorkflowsClient(sim.api_key, base_url=sim.base_url,
                                             timeout=(2.0, 5.0)) as client:
        urls = [host.url(i) for i in range(4) for host in hosts]
        stuck = sim.add_run(steps=[("a", 0.0)])
        body = json.loads(answer("", ",".join(f'"{u}"' for u in urls), "completed"))
        body["execution"]["id"] = stuck
        sim.status_faults(stuck, [Fault("json", body=body, times=None)])
        slow = WorkflowRunWidget(DEMO_WORKFLOW_ID, stuck, client=client, poll_interval=0.1,
                                 max_thumbnails=8)
        time.sleep(0.5)  # let the downloads start (a benchmark, not a test)
        healthy = sim.add_run(steps=[("Text to Image", 1.0), ("Image Upscaler", 1.0)])
        card = WorkflowRunWidget(DEMO_WORKFLOW_ID, healthy, client=client, poll_interval=0.25)
        started = time.monotonic()
        while card.status != "completed" and time.monotonic() - started < 15:
            time.sleep(0.01)
        took = time.monotonic() - started if card.status == "completed" else float("inf")
        with contextlib.suppress(TimeoutError):
            card.wait(15)  # and its thumbnail (from the simulator, a healthy host)
        settled = time.monotonic() - started
        polls = card.polls
        card.close()
        slow.close()
    for host in hosts:
        host.close()
    return took, settled, polls


def figure_lanes() -> None:
    took, settled, polls = healthy_next_to_drip()
    scheduler = shared_scheduler()
    # the naive way: downloads in the workers that poll, not in per-host download lanes
    scheduler.submit_download = (  # type: ignore[method-assign]
        lambda host, fn, *args: scheduler.submit(fn, *args)
    )
    try:
        naive_took, _, naive_polls = healthy_next_to_drip()
    finally:
        del scheduler.submit_download  # the class's own again
    print(f"healthy 2 s run next to 8 dripping image URLs: seen completed after {took:.1f} s "
          f"and {polls} polls, its thumbnail in at {settled:.1f} s (downloads in the poll workers: "
          f"{'never, within 15 s' if naive_took == float('inf') else f'{naive_took:.1f} s'}, "
          f"{naive_polls} polls)")


if __name__ == "__main__":
    assert RunSnapshot  # the figures below parse through it
    figure_steps()
    figure_outputs()
    figure_lanes()
