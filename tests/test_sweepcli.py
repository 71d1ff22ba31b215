"""``modelslab-widget sweep``: a runs file launched under the queue limit, progress lines, the
manifest, --json results, --resume, and the exit status."""

from __future__ import annotations

import json

import pytest

from modelslab_widget.cli import main
from modelslab_widget.simulator import Simulator

PARAMETERS = [{"key": "prompt", "type": "string", "required": True},
              {"key": "seed", "type": "integer", "required": False}]
STEPS = [("Text to Image", 0.2), ("Image Upscaler", 0.2)]


@pytest.fixture
def env(monkeypatch):
    with Simulator(queue_limit=2) as sim:
        monkeypatch.setenv("MODELSLAB_API_KEY", sim.api_key)
        monkeypatch.setenv("MODELSLAB_BASE_URL", sim.base_url)
        yield sim


def runs_file(tmp_path, lines: list[str]):
    path = tmp_path / "runs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_every_run_completed_exits_0_with_progress_and_the_manifest(env, tmp_path, capsys):
    workflow = env.add_workflow(parameters=PARAMETERS, steps=STEPS)
    runs = runs_file(tmp_path, [json.dumps({"prompt": "a cat", "seed": s}) for s in (1, 2, 3)])
    assert main(["sweep", workflow, str(runs), "--interval", "0.05"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("manifest: ")
    assert "#3 · seed=3 · completed" in out and "sweep done: 3 completed" in out
    assert env.runs_started(workflow) == 3 and env.queue_full_count <= 1


def test_json_results_on_stdout_and_a_refused_run_exits_1(env, tmp_path, capsys):
    workflow = env.add_workflow(parameters=PARAMETERS, steps=STEPS)
    runs = runs_file(tmp_path, ['{"prompt": "a cat"}', "", '{"seed": 9}'])
    assert main(["sweep", workflow, str(runs), "--interval", "0.05", "--json"]) == 1
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    assert document["counts"] == {"completed": 1, "refused": 1}
    assert "prompt" in document["results"][1]["error"]
    assert "sweep done" in captured.err and env.api_key not in captured.out + captured.err


def test_resume_carries_on_a_manifest(env, tmp_path, capsys):
    workflow = env.add_workflow(parameters=PARAMETERS, steps=STEPS)
    runs = runs_file(tmp_path, ['{"prompt": "a"}', '{"prompt": "b"}'])
    manifest = tmp_path / "m.jsonl"
    assert main(["sweep", workflow, str(runs), "--interval", "0.05",
                 "--manifest", str(manifest)]) == 0
    assert main(["sweep", "--resume", str(manifest), "--interval", "0.05"]) == 0
    assert env.runs_started(workflow) == 2  # all launched already: nothing sent again
    assert "sweep done: 2 completed" in capsys.readouterr().out


@pytest.mark.parametrize(("lines", "message"), [
    (["{not json"], "line 1: not JSON"),
    (['["a list"]'], "line 1: expected an object"),
    ([""], "holds no runs"),
])
def test_a_bad_runs_file_says_which_line_and_exits_2(env, tmp_path, capsys, lines, message):
    workflow = env.add_workflow(parameters=PARAMETERS, steps=STEPS)
    assert main(["sweep", workflow, str(runs_file(tmp_path, lines))]) == 2
    assert message in capsys.readouterr().err
    assert env.request_count("run") == 0
