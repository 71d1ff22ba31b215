"""Child process of figure 6: threads and RSS while watching N runs at once.

Run in a fresh interpreter so the simulator (which stays in the parent) and earlier figures
do not pollute the counts. Protocol: argv = mode (project|naive), base_url, api_key,
workflow_id, poll_interval; the child prints "ready" once imported, reads one JSON line with
the execution ids, watches them all, and prints one JSON line of results.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import naive  # bench/ is on sys.path: this file runs as a script


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Peak:
    """Peak thread count and RSS above a baseline taken at creation."""

    def __init__(self) -> None:
        self.base_threads = threading.active_count()
        self.base_rss = rss_mb()
        self.threads = 0
        self.rss = 0.0

    def sample(self) -> None:
        self.threads = max(self.threads, threading.active_count() - self.base_threads)
        self.rss = max(self.rss, rss_mb() - self.base_rss)

    def until(self, done: threading.Event) -> None:
        while not done.wait(0.05):
            self.sample()
        self.sample()


def threads_left(base: int, settle: float = 3.0) -> int:
    """Extra threads still alive once things had ``settle`` seconds to wind down."""
    deadline = time.monotonic() + settle
    while threading.active_count() > base and time.monotonic() < deadline:
        time.sleep(0.05)
    return threading.active_count() - base


def counter(total: int) -> tuple[threading.Event, Callable[..., None]]:
    done, lock, count = threading.Event(), threading.Lock(), [0]

    def one_more(*_: Any) -> None:
        with lock:
            count[0] += 1
            if count[0] >= total:
                done.set()

    return done, one_more


def watch_project(eids: list[int], base_url: str, key: str, workflow: str,
                  interval: float) -> dict[str, Any]:
    from modelslab_widget import WorkflowRunWidget

    peak = Peak()
    done, finished = counter(len(eids))
    runs = [WorkflowRunWidget(workflow, eid, api_key=key, base_url=base_url,
                              poll_interval=interval, on_complete=finished) for eid in eids]
    peak.until(done)
    for run in runs:
        run.close()
    return {"threads": peak.threads, "rss_mb": peak.rss,
            "threads_after": threads_left(peak.base_threads)}


def watch_naive(eids: list[int], base_url: str, key: str, workflow: str,
                interval: float) -> dict[str, Any]:
    peak = Peak()
    done, finished = counter(len(eids))

    def loop(eid: int) -> None:
        naive.watch(f"{base_url}/workflows/{workflow}/runs/{eid}", key, interval)
        finished()

    threads = [threading.Thread(target=loop, args=(eid,), daemon=True) for eid in eids]
    for thread in threads:
        thread.start()
    peak.until(done)
    for thread in threads:
        thread.join()
    return {"threads": peak.threads, "rss_mb": peak.rss,
            "threads_after": threads_left(peak.base_threads)}


def main() -> None:
    mode, base_url, key, workflow, interval = sys.argv[1:6]
    import ipywidgets  # noqa: F401  (the same imports in both modes: a fair baseline)
    import requests  # noqa: F401

    import modelslab_widget  # noqa: F401

    print("ready", flush=True)
    eids = json.loads(sys.stdin.readline())
    watcher = watch_project if mode == "project" else watch_naive
    result = watcher(eids, base_url, key, workflow, float(interval))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
