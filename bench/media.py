"""Figure: what the kernel downloads to show a mixed-output run, next to the naive baseline.

The naive card (the package before outputs had kinds) fetched every output whole to try to
thumbnail it; the project fetches images only and learns other kinds from the URL's
extension, or from a probe of at most 4 KB. Run: ``python bench/media.py``.
"""

from __future__ import annotations

import time

from modelslab_widget import WorkflowRunWidget, WorkflowsClient
from modelslab_widget.simulator import DEMO_WORKFLOW_ID, Simulator

OUTPUTS = ("png", "mp4", "mp4?noext", "wav", "glb")
VIDEO_BYTES = 6_000_000


def project(sim: Simulator, client: WorkflowsClient) -> tuple[int, float]:
    eid = sim.add_run(steps=[("Render", 0.1)], outputs=OUTPUTS, video_bytes=VIDEO_BYTES)
    card = WorkflowRunWidget(DEMO_WORKFLOW_ID, eid, client=client, poll_interval=0.05)
    card.wait(60)
    card.close()
    return sim.bytes_served(eid), _settle_seconds(sim, client)


def _settle_seconds(sim: Simulator, client: WorkflowsClient) -> float:
    """Seconds from the run's end to settled (thumbnails in, kinds known)."""
    eid = sim.add_run(steps=[("Render", 0.1)], outputs=OUTPUTS, video_bytes=VIDEO_BYTES)
    card = WorkflowRunWidget(DEMO_WORKFLOW_ID, eid, client=client, poll_interval=0.05)
    while card.status != "completed":
        time.sleep(0.005)
    ended = time.perf_counter()
    card.wait(60)
    took = time.perf_counter() - ended
    card.close()
    return took


def naive(sim: Simulator, client: WorkflowsClient) -> tuple[int, float]:
    """Every output fetched whole, as the old thumbnail loader did."""
    eid = sim.add_run(steps=[("Render", 0.1)], outputs=OUTPUTS, video_bytes=VIDEO_BYTES)
    while client.get_run(DEMO_WORKFLOW_ID, eid).status != "completed":
        time.sleep(0.05)
    started = time.perf_counter()
    for url in client.get_run(DEMO_WORKFLOW_ID, eid).outputs:
        client.fetch_image(url)
    return sim.bytes_served(eid), time.perf_counter() - started


def main() -> None:
    with Simulator() as sim, WorkflowsClient(sim.api_key, base_url=sim.base_url) as client:
        ours, ours_s = project(sim, client)
        base, base_s = naive(sim, client)
    print(f"outputs {', '.join(OUTPUTS)} (each MP4 {VIDEO_BYTES / 1e6:.0f} MB)")
    print(f"| bytes the kernel downloads | {ours / 1e3:.1f} KB | {base / 1e6:.2f} MB "
          f"| {ours / base:.4f} |")
    print(f"| end of run -> settled | {ours_s * 1e3:.0f} ms | {base_s * 1e3:.0f} ms "
          f"| {ours_s / base_s:.2f} |")


if __name__ == "__main__":
    main()
