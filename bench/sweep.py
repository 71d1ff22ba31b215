"""A 200-run sweep against the simulator (issue 19): threads, memory, front-end bytes, time.

Run with ``make bench`` (or ``.venv/bin/python bench/sweep.py``). Prints figures; asserts
nothing. The simulator (queue limit 15, 2 s runs with one 512 px image each) runs in this
process; the sweep runs in a fresh child process (so the simulator's threads and images are
not counted), with its grid made and every widget message recorded instead of sent
(``recorder.py``). The baseline for threads and memory is a ``RunBoard`` of 200 runs in
another child; for time, the ideal: waves of 15 runs one after the other with no lag.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RUNS = 200
QUEUE_LIMIT = 15
RUN_SECONDS = 2.0
INTERVAL = 0.25
PARAMETERS = [{"key": "prompt", "type": "string", "required": True},
              {"key": "seed", "type": "integer", "required": False}]


def child(mode: str, base_url: str, key: str, workflow: str, ids: str) -> dict[str, Any]:
    """In the child: watch the sweep (or the board of ``ids``) to the end, sampling."""
    import recorder

    recorded = recorder.install()
    from footprint import Peak, threads_left

    from modelslab_widget import RunBoard, Sweep, WorkflowsClient

    client = WorkflowsClient(key, base_url=base_url)
    peak = Peak()
    began = time.monotonic()
    folder = tempfile.TemporaryDirectory()
    if mode == "sweep":
        runs = [{"prompt": f"a lighthouse, variation {n // 4}", "seed": n % 4}
                for n in range(RUNS)]
        watched: Any = Sweep(workflow, runs, client=client, poll_interval=INTERVAL,
                             manifest=Path(folder.name) / "bench.jsonl")
        watched.grid_view()
        done = lambda: watched.done  # noqa: E731
    else:
        watched = RunBoard(client=client, poll_interval=INTERVAL)
        for execution_id in json.loads(ids):
            watched.add(workflow, execution_id)
        done = lambda: all(row.settled for row in watched.runs)  # noqa: E731
    while not done():
        peak.sample()
        time.sleep(0.05)
    took = time.monotonic() - began
    counts = watched.counts()
    sent = sum(message.nbytes for message in recorded.messages)
    watched.close()
    client.close()
    folder.cleanup()
    return {"threads": peak.threads, "rss_mb": peak.rss, "seconds": took, "counts": counts,
            "bytes": sent, "threads_after": threads_left(peak.base_threads)}


def in_child(mode: str, sim: Any, workflow: str, ids: list[int]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(Path(__file__)), "child", mode, sim.base_url, sim.api_key,
         workflow, json.dumps(ids)],
        capture_output=True, text=True, timeout=600, cwd=HERE)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{mode} child failed: {done.stderr[-2000:]}")
    return json.loads(lines[-1])


def main() -> None:
    from modelslab_widget.simulator import Simulator

    steps = [("Text to Image", RUN_SECONDS / 2), ("Image Upscaler", RUN_SECONDS / 2)]
    ideal = math.ceil(RUNS / QUEUE_LIMIT) * RUN_SECONDS
    print(f"Sweep: {RUNS} runs of {RUN_SECONDS:g} s, queue limit {QUEUE_LIMIT} (the sweep is "
          f"not told), polling every {INTERVAL:g} s, its grid made")
    with Simulator(queue_limit=QUEUE_LIMIT) as sim:
        workflow = sim.add_workflow(parameters=PARAMETERS, steps=steps)
        sweep = in_child("sweep", sim, workflow, [])
        board_runs = [sim.add_run(workflow, steps=steps) for _ in range(RUNS)]
        board = in_child("board", sim, workflow, board_runs)
        refused = sim.queue_full_count
    cells = max(1, sweep["counts"].get("completed", 0))
    rows = [
        ("threads (peak, beyond the start)", f"{sweep['threads']}",
         f"{board['threads']} (a board of {RUNS})", sweep["threads"] <= board["threads"] + 1),
        ("RSS growth", f"{sweep['rss_mb']:.1f} MB", f"{board['rss_mb']:.1f} MB (board)",
         sweep["rss_mb"] <= 60),
        ("bytes to the front end / completed cell", f"{sweep['bytes'] / cells / 1024:.1f} KB",
         f"{board['bytes'] / RUNS / 1024:.1f} KB (board row)",
         sweep["bytes"] / cells <= 20 * 1024),
        ("total time", f"{sweep['seconds']:.1f} s",
         f"{ideal:.0f} s ideal (x{sweep['seconds'] / ideal:.2f})",
         sweep["seconds"] <= 1.2 * ideal),
    ]
    goals = ["<= board + 1", "<= 60 MB", "<= 20 KB", "<= 1.2 x ideal"]
    for (label, value, baseline, ok), goal in zip(rows, goals, strict=True):
        print(f"  {label:<42} {value:>10}   vs {baseline:<28} goal {goal:<14} "
              f"{'PASS' if ok else 'MISS'}")
    print(f"  counts {sweep['counts']} · queue-full 429s {refused} · threads left after "
          f"close {sweep['threads_after']}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        print(json.dumps(child(*sys.argv[2:7])), flush=True)
    else:
        main()
