"""Sweep over real sockets: many runs launched under the account's queue limit (the sweep not
told it), each exactly once, refusals kept, cancel, and a killed kernel resumed from the
manifest with nothing launched twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from modelslab_widget import Sweep, WorkflowsClient
from modelslab_widget.manifest import read
from modelslab_widget.simulator import Fault, Simulator

from .conftest import wait_for

PARAMETERS = [{"key": "prompt", "type": "string", "required": True},
              {"key": "seed", "type": "integer", "required": False}]
RUN = 1.0  # seconds each run takes
STEPS = [("Text to Image", RUN / 2), ("Image Upscaler", RUN / 2)]
INTERVAL = 0.1





def test_a_3x4_grid_under_a_queue_limit_of_3_launches_each_run_once_in_waves(
        qsim, qclient, sweeps):
    workflow = qsim.add_workflow(parameters=PARAMETERS, steps=STEPS)
    axes = {"prompt": ["a cat", "a fox", "an owl"], "seed": [1, 2, 3, 4]}
    began = time.monotonic()
    sweep = sweeps(workflow, axes, grid=True, client=qclient)
    assert sweep.wait(60) == {"completed": 12}
    took = time.monotonic() - began
    results = sweep.results()
    assert [r["params"] for r in results] == [{"prompt": p, "seed": s}
                                              for p in axes["prompt"] for s in axes["seed"]]
    assert qsim.runs_started(workflow) == 12  # each exactly once
    for result in results:
        assert qsim.launch_params(result["execution_id"]) == result["params"]
    assert qsim.queue_full_count <= 3 and sweep.max_queued == 3  # learnt from the 429
    ideal = 4 * RUN  # waves of three
    assert took <= 1.25 * ideal + 2 * INTERVAL, took
    assert all(r["duration"] and r["outputs"] and r["error"] == "" for r in results)


def test_a_refused_run_keeps_its_reason_and_the_others_complete(qsim, qclient, sweeps):
    workflow = qsim.add_workflow(parameters=PARAMETERS, steps=STEPS)
    sweep = sweeps(workflow, [{"prompt": "a cat"}, {"seed": 3}, {"prompt": "a fox"}],
                   client=qclient)
    assert sweep.wait(30) == {"completed": 2, "refused": 1}
    refused = sweep.results()[1]
    assert refused["status"] == "refused" and refused["execution_id"] is None
    assert "prompt" in refused["error"]  # the server's field message
    assert qsim.runs_started(workflow) == 2


def test_cancel_sends_no_launch_after_it_returns_and_cancels_the_launched(qsim, qclient,
                                                                         sweeps):
    workflow = qsim.add_workflow(parameters=PARAMETERS,
                                 steps=[("Text to Image", 20.0), ("Image Upscaler", 20.0)])
    sweep = sweeps(workflow, [{"prompt": f"p{n}"} for n in range(8)], client=qclient)
    wait_for(lambda: qsim.runs_started(workflow) >= 2, timeout=10)
    sweep.cancel()
    posts = qsim.request_count("run")
    launched = [r for r in sweep.results() if r["execution_id"] is not None]
    assert launched and all(r["status"] == "cancelled" or r["status"] == "pending"
                            or r["status"] == "running" for r in launched)
    counts = sweep.wait(10)
    assert qsim.request_count("run") == posts  # nothing sent after cancel() returned
    assert counts.get("skipped", 0) == 8 - len(launched)
    assert counts.get("cancelled", 0) == len(launched)
    assert qsim.request_count("cancel") == len(launched)


def test_wait_raises_timeout_naming_what_is_left(qsim, qclient, sweeps):
    workflow = qsim.add_workflow(parameters=PARAMETERS, steps=STEPS)
    sweep = sweeps(workflow, [{"prompt": "a"}, {"prompt": "b"}], client=qclient,
                   autostart=False)
    assert qsim.request_count("run") == 0  # autostart=False: nothing sent yet
    with pytest.raises(TimeoutError, match="2 of the sweep's 2 runs"):
        sweep.wait(0.01)
    assert sweep.wait(30) == {"completed": 2}


KILLED_SWEEP = textwrap.dedent("""
    import os, sys, time
    from modelslab_widget import Sweep, WorkflowsClient
    client = WorkflowsClient(os.environ["KEY"], base_url=os.environ["BASE"])
    sweep = Sweep(os.environ["WF"], [{"prompt": f"p{n}"} for n in range(9)], client=client,
                  poll_interval=0.1, max_queued=3, manifest=os.environ["MANIFEST"])
    def between_launches():  # three running, none on its way (a kill mid-send is lost)
        statuses = [r["status"] for r in sweep.results()]
        return statuses.count("sending") == 0 and statuses.count("waiting") == 6
    while not between_launches():
        time.sleep(0.005)
    os._exit(9)  # killed: no clean-up, nothing written but what the manifest already has
""")


def test_a_killed_kernel_resumes_from_the_manifest_and_launches_nothing_twice(
        qsim, qclient, sweeps, tmp_path):
    workflow = qsim.add_workflow(parameters=PARAMETERS, steps=STEPS)
    manifest = tmp_path / "killed.jsonl"
    env = {**os.environ, "KEY": qsim.api_key, "BASE": qsim.base_url, "WF": workflow,
           "MANIFEST": str(manifest)}
    child = subprocess.run([sys.executable, "-c", KILLED_SWEEP], env=env, timeout=60)
    assert child.returncode == 9
    assert qsim.runs_started(workflow) == 3
    sweep = Sweep.resume(manifest, client=qclient, poll_interval=INTERVAL)
    assert sweep.wait(60) == {"completed": 9}
    assert qsim.runs_started(workflow) == 9  # none twice
    ids = [r["execution_id"] for r in sweep.results()]
    assert len(set(ids)) == 9
    sweep.close()
    assert {record.state for record in read(manifest).runs} == {"ended"}


def test_a_launch_whose_answer_was_lost_is_shown_lost_and_not_resent(qsim, qclient,
                                                                       tmp_path):
    workflow = qsim.add_workflow(parameters=PARAMETERS, steps=STEPS)
    manifest = tmp_path / "lost.jsonl"
    head = {"manifest": 1, "workflow_id": workflow, "base_url": qsim.base_url,
            "runs": [{"prompt": "sent, no answer"}, {"prompt": "never sent"}], "axes": None}
    manifest.write_text(json.dumps(head) + "\n" + json.dumps({"run": 0, "state": "sending"})
                        + "\n" + '{"run": 1, "sta')  # a kill mid-write leaves half a line
    sweep = Sweep.resume(manifest, client=qclient, poll_interval=INTERVAL)
    try:
        assert sweep.wait(30) == {"lost": 1, "completed": 1}
        assert "answer was lost" in sweep.results()[0]["error"]
        assert qsim.runs_started(workflow) == 1
    finally:
        sweep.close()


def test_bad_arguments_are_refused_by_name(qclient, tmp_path):
    with pytest.raises(ValueError, match="max_queued"):
        Sweep("wf", [{"prompt": "a"}], client=qclient, max_queued=0, manifest=tmp_path / "a")
    with pytest.raises(ValueError, match="'when'"):
        Sweep("wf", [{"when": object()}], client=qclient, manifest=tmp_path / "b")
    with pytest.raises(ValueError, match="run 2: parameter 'strength'"):  # the client's rule
        Sweep("wf", [{"strength": 1.0}, {"strength": float("nan")}], client=qclient,
              manifest=tmp_path / "e")
    with pytest.raises(ValueError, match="at least one run"):
        Sweep("wf", [], client=qclient, manifest=tmp_path / "c")
    with pytest.raises(ValueError, match="axis 'seed'"):
        Sweep.grid("wf", {"seed": []}, client=qclient, manifest=tmp_path / "d")
    assert not any(Path(tmp_path).iterdir())  # nothing written for a refused sweep


def test_results_label_dataframe_and_saved_outputs(qsim, qclient, sweeps, tmp_path):
    pd = pytest.importorskip("pandas")
    workflow = qsim.add_workflow(parameters=PARAMETERS, steps=STEPS)
    sweep = sweeps(workflow, {"prompt": ["a cat"], "seed": [1, 2]}, grid=True,
                   base={"negative_prompt": "blurry"}, client=qclient)
    sweep.wait(30)
    assert [run.label for run in sweep.runs] == ["seed=1", "seed=2"]
    frame = sweep.to_dataframe()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame["seed"]) == [1, 2] and set(frame["status"]) == {"completed"}
    saved = sweep.save_outputs(tmp_path / "out")
    assert sorted(p.name.split("-")[1] for p in saved) == ["seed=1", "seed=2"]
    assert qsim.api_key not in sweep.manifest.read_text()


def test_an_account_on_a_larger_plan_is_found_one_launch_beyond_at_a_time(tmp_path):
    with Simulator(queue_limit=10) as sim, WorkflowsClient(sim.api_key,
                                                           base_url=sim.base_url) as client:
        workflow = sim.add_workflow(parameters=PARAMETERS, steps=STEPS)
        sweep = Sweep(workflow, [{"prompt": f"p{n}"} for n in range(14)], client=client,
                      poll_interval=INTERVAL, manifest=tmp_path / "plan.jsonl")
        try:
            assert sweep.wait(60) == {"completed": 14}
            assert sweep.max_queued == 10  # 5, then 10 when a sixth was accepted
            assert sim.queue_full_count <= 1  # the eleventh, whose 429 names the limit
            assert sim.runs_started(workflow) == 14
        finally:
            sweep.close()


def test_a_429_is_recorded_requeued_and_the_launch_sent_again_once(sim, sweeps):
    workflow = sim.add_workflow(parameters=PARAMETERS, steps=STEPS)
    sim.post_faults(workflow, [Fault("rate_limit", retry_after=0.2)])
    with WorkflowsClient(sim.api_key, base_url=sim.base_url) as client:
        sweep = sweeps(workflow, [{"prompt": "a cat"}, {"prompt": "a fox"}], client=client)
        assert sweep.wait(30) == {"completed": 2}
        sweep.close()
    events = [json.loads(line) for line in sweep.manifest.read_text().splitlines()[1:]]
    first = [event["state"] for event in events if event["run"] == 0]
    assert first == ["sending", "requeued", "sending", "launched", "ended"]
    assert sim.request_count("run") == 3 and sim.runs_started(workflow) == 2
