"""Kernel CPU per status request: 100 runs watched at 2 s, UI included, against a naive loop.

Run with ``make bench`` (part of it) or ``.venv/bin/python bench/pollcost.py [runs] [seconds]``.
Prints figures, never asserts on time.

The simulator runs in this process; each side watches in a child process of its own, so the
child's CPU time (user + system, ``resource.getrusage``) is the kernel's cost and nothing of
the server's. Both children import the same modules first (a fair baseline), watch the same
``runs`` long-running runs (no run ends inside the measuring window), warm up for one round,
then measure ``seconds`` of steady polling:

- project: a ``WorkflowRunWidget`` per run at ``poll_interval=2``, every widget message
  serialised by the recording comm (``bench/recorder.py``), as ipykernel would send it;
- naive: one thread per run, ``requests.get`` + ``time.sleep(2)``, JSON decoded, no UI.

The figure is CPU milliseconds per status request answered in the window (the simulator
counts the requests), and project / naive. A shared machine drifts by tens of percent within
a minute, so the two sides take turns: ``rounds`` rounds (the order alternating), each
measuring ``seconds / rounds`` per side; the figures are each side's median, and every
round's own ratio is printed too, so the spread is in plain view.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
INTERVAL = 2.0
GOAL = 1.5  # project / naive, CPU per status request


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child(mode: str, base_url: str, key: str, workflow: str, warmup: float,
          seconds: float) -> None:
    import ipywidgets  # noqa: F401  (the same imports on both sides)
    import requests

    import modelslab_widget  # noqa: F401

    eids = json.loads(sys.stdin.readline())
    stop = threading.Event()
    if mode == "project":
        sys.path.insert(0, str(HERE))
        import recorder

        recorder.install()
        from modelslab_widget import WorkflowRunWidget

        cards = [WorkflowRunWidget(workflow, eid, api_key=key, base_url=base_url,
                                   poll_interval=INTERVAL) for eid in eids]
    else:
        def loop(eid: int) -> None:
            url = f"{base_url}/workflows/{workflow}/runs/{eid}"
            while not stop.is_set():
                requests.get(url, headers={"key": key}, timeout=30).json()
                stop.wait(INTERVAL)

        threads = [threading.Thread(target=loop, args=(eid,), daemon=True) for eid in eids]
        for thread in threads:
            thread.start()
    time.sleep(warmup)
    print("measure", flush=True)
    start = cpu_seconds()
    time.sleep(seconds)
    used = cpu_seconds() - start
    print(json.dumps({"cpu": used}), flush=True)
    stop.set()
    if mode == "project":
        for card in cards:
            card.close()


def measure(sim: Any, workflow: str, mode: str, runs: int, seconds: float) -> dict[str, float]:
    eids = [sim.add_run(workflow, steps=[("Text to Image", 600.0)], queue_time=0.0)
            for _ in range(runs)]
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", mode, sim.base_url, sim.api_key, workflow,
         str(INTERVAL * 2), str(seconds)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(eids) + "\n")
    proc.stdin.flush()
    line = proc.stdout.readline().strip()
    if line != "measure":
        raise RuntimeError(f"the {mode} child said {line!r}")
    before = sum(sim.request_count("status", eid) for eid in eids)
    connections = sim.connection_count
    answer = json.loads(proc.stdout.readline())
    requests = sum(sim.request_count("status", eid) for eid in eids) - before
    connections = sim.connection_count - connections
    proc.wait(timeout=60)
    return {"cpu": answer["cpu"], "requests": requests, "connections": connections}


def main() -> None:
    from modelslab_widget.simulator import Simulator

    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 30.0
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    results: dict[str, list[dict[str, float]]] = {"naive": [], "project": []}
    with Simulator() as sim:
        for index in range(rounds):
            order = ("naive", "project") if index % 2 == 0 else ("project", "naive")
            for mode in order:
                workflow = sim.add_workflow(name=f"pollcost {mode} {index}")
                results[mode].append(measure(sim, workflow, mode, runs, seconds / rounds))
    per = {mode: [1000 * r["cpu"] / max(1, r["requests"]) for r in rs]
           for mode, rs in results.items()}
    median = {mode: statistics.median(values) for mode, values in per.items()}
    ratio = median["project"] / median["naive"]
    print(f"Kernel CPU per status request, {runs} runs watched at {INTERVAL:g} s, "
          f"{rounds} rounds of {seconds / rounds:g} s a side (UI included for the project)")
    for mode in ("project", "naive"):
        rs = results[mode]
        print(f"{mode:8} {median[mode]:6.2f} ms per request (median) · "
              f"{sum(int(r['requests']) for r in rs):5d} requests · "
              f"{sum(r['cpu'] for r in rs):6.2f} s CPU · "
              f"{sum(int(r['connections']) for r in rs):4d} connections opened")
    each = " ".join(f"x{p / n:.2f}" for p, n in zip(per["project"], per["naive"], strict=True))
    verdict = "PASS" if ratio <= GOAL else "MISS"
    print(f"project/naive x{ratio:.2f} (goal <= x{GOAL:g}) {verdict} · each round: {each}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        mode, base_url, key, workflow, warmup, seconds = sys.argv[2:8]
        child(mode, base_url, key, workflow, float(warmup), float(seconds))
    else:
        main()
