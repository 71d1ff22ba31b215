"""Parsing the documented example answers and hostile variations of them."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from modelslab_widget.errors import APIError, ResponseFormatError
from modelslab_widget.models import (
    RunAccepted,
    RunSnapshot,
    Step,
    WorkflowInfo,
    WorkflowSummary,
    cancel_message,
    parse_timestamp,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "api-examples"


def example(name: str) -> dict:
    return json.loads((EXAMPLES / f"{name}.json").read_text())


def test_running_example():
    snap = RunSnapshot.from_api(example("status-running"))
    assert snap.status == "running" and not snap.is_terminal
    assert snap.execution_id == 12345 and snap.workflow_id == "uuid-string"
    assert [s.name for s in snap.steps] == ["Text to Image", "Image Upscaler"]
    assert snap.steps[0].duration == 5.0
    assert snap.steps[1].status == "running" and snap.steps[1].duration is None
    assert snap.started_at == datetime(2024, 1, 15, 10, 30, tzinfo=timezone.utc)
    assert snap.completed_at is None and snap.execution_time is None and snap.outputs == ()


def test_completed_example_prefers_output_over_proxy_links():
    snap = RunSnapshot.from_api(example("status-completed"))
    assert snap.status == "completed" and snap.is_terminal
    assert snap.outputs == ("https://cdn.modelslab.com/generated/image1.png",)
    assert snap.proxy_links == ("https://cdn.modelslab.com/proxy/image1.png",)
    assert snap.execution_time == pytest.approx(15.234)
    assert [s.duration for s in snap.steps] == [5.0, 10.0]


def test_outputs_fall_back_to_proxy_links():
    body = example("status-completed")
    body["output"]["output"] = []
    assert RunSnapshot.from_api(body).outputs == ("https://cdn.modelslab.com/proxy/image1.png",)


def test_failed_example_keeps_error():
    snap = RunSnapshot.from_api(example("status-failed"))
    assert snap.status == "failed" and snap.is_terminal
    assert snap.error == "Image generation failed: Invalid prompt"


def test_webhook_payload_parses_flat():
    snap = RunSnapshot.from_api(example("webhook-completed"))
    assert snap.status == "completed" and snap.execution_id == 12345
    assert snap.outputs == ("https://cdn.modelslab.com/generated/image1.png",)
    assert snap.completed_at is not None and snap.steps == ()


def test_run_accepted_example():
    accepted = RunAccepted.from_api(example("run-accepted"))
    assert accepted.execution_id == 12345 and accepted.workflow_id == "uuid-string"
    assert accepted.status_url.endswith("/runs/12345")


def test_workflow_schema_example():
    info = WorkflowInfo.from_api(example("workflow-schema"))
    assert info.name == "Image Generator" and info.rate_limit == 10
    assert [p.key for p in info.parameters] == ["prompt", "negative_prompt", "width"]
    assert info.parameters[0].required and not info.parameters[1].required
    assert info.parameters[2].type == "number"
    assert info.endpoints["status"].endswith("/runs/{id}")


@pytest.mark.parametrize("status", ["cancelled", "CANCELED", " Cancelled "])
def test_cancelled_spellings_are_terminal(status):
    body = example("status-running")
    body["execution"]["status"] = status
    assert RunSnapshot.from_api(body).status == "cancelled"


def test_unknown_status_is_kept_and_not_terminal():
    body = example("status-running")
    body["execution"]["status"] = "Upscaling"
    body["steps"][1]["status"] = "warming_up"
    snap = RunSnapshot.from_api(body)
    assert snap.status == "upscaling" and not snap.is_terminal
    assert snap.steps[1].status == "warming_up"


def test_missing_and_null_fields_are_tolerated():
    body = {"status": "success", "execution": {"status": "running"}, "steps": [{}, {"name": None}]}
    snap = RunSnapshot.from_api(body)
    assert snap.execution_id is None and snap.started_at is None
    assert [s.name for s in snap.steps] == ["Step 1", "Step 2"]
    assert all(s.status == "unknown" for s in snap.steps)


def test_bad_field_types_are_tolerated():
    body = example("status-completed")
    body["execution"].update(execution_time="n/a", started_at=17, completed_at="yesterday")
    body["output"]["output"] = ["https://x/1.png", 5, None]
    snap = RunSnapshot.from_api(body)
    assert snap.execution_time is None and snap.started_at is None and snap.completed_at is None
    assert snap.outputs == ("https://x/1.png",)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ([], "got list"),
        ("running", "got str"),
        (None, "got null"),
        ({"status": "success"}, "no 'execution'"),
        ({"status": "success", "execution": [1]}, "'execution'"),
        ({"status": "success", "execution": {}, "steps": "two"}, "'steps'"),
        ({"status": "success", "execution": {}, "steps": [1]}, "steps[0]"),
    ],
)
def test_wrong_shapes_raise_response_format_error(body, words):
    with pytest.raises(ResponseFormatError, match=words.replace("[", r"\[").replace("]", r"\]")):
        RunSnapshot.from_api(body)


def test_error_status_on_200_raises_api_error_with_message():
    with pytest.raises(APIError, match="Server busy"):
        RunSnapshot.from_api({"status": "error", "message": "Server busy"})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-15T10:30:00Z", datetime(2024, 1, 15, 10, 30, tzinfo=timezone.utc)),
        ("2024-01-15T10:30:00.5Z", datetime(2024, 1, 15, 10, 30, 0, 500000, tzinfo=timezone.utc)),
        ("2024-01-15T10:30:00.123456789Z", datetime(2024, 1, 15, 10, 30, 0, 123456, timezone.utc)),
        ("2024-01-15T10:30:00", datetime(2024, 1, 15, 10, 30, tzinfo=timezone.utc)),
        ("2024-01-15T12:30:00+02:00", datetime(2024, 1, 15, 10, 30, tzinfo=timezone.utc)),
        ("not a date", None),
        ("", None),
        (None, None),
    ],
)
def test_timestamps(text, expected):
    assert parse_timestamp(text) == expected


def test_step_dict_round_trip_is_json_safe():
    step = Step.from_api(copy.deepcopy(example("status-completed")["steps"][0]))
    assert json.loads(json.dumps(step.to_dict())) == {
        "name": "Text to Image",
        "status": "completed",
        "started_at": "2024-01-15T10:30:00Z",
        "completed_at": "2024-01-15T10:30:05Z",
        "duration": 5.0,
    }


def test_elapsed_uses_the_server_clock_unless_it_is_ahead_of_ours():
    body = example("status-running")
    snap = RunSnapshot.from_api(body)
    now = snap.started_at + timedelta(seconds=7)
    assert snap.elapsed(now) == 7.0
    skewed = snap.started_at - timedelta(seconds=30)  # the server's clock runs 30 s ahead
    assert snap.elapsed(skewed) is None
    assert snap.elapsed(skewed, first_seen=skewed - timedelta(seconds=3)) == 3.0
    assert RunSnapshot.from_api(example("status-completed")).elapsed() == pytest.approx(15.234)


# -- workflow list and cancel answers ------------------------------------------------------

WORKFLOWS_LIST = {  # the documented example (workflows-list.json)
    "status": "success",
    "workflows": [{
        "id": "uuid-string", "name": "My Workflow",
        "description": "Generates images with custom prompts", "rate_limit": 10,
        "call_count": 150, "last_called_at": "2024-01-15T10:30:00Z",
        "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-15T10:30:00Z",
    }],
}


def test_workflow_list_example():
    (summary,) = WorkflowSummary.list_from_api(WORKFLOWS_LIST)
    assert summary == WorkflowSummary(
        id="uuid-string", name="My Workflow",
        description="Generates images with custom prompts", rate_limit=10, call_count=150,
        last_called_at=datetime(2024, 1, 15, 10, 30, tzinfo=timezone.utc),
        created_at=datetime(2024, 1, 1, tzinfo=timezone.utc),
        updated_at=datetime(2024, 1, 15, 10, 30, tzinfo=timezone.utc),
    )


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ({}, WorkflowSummary(id="", name="Untitled workflow")),
        ({"id": None, "name": None, "description": None, "rate_limit": None,
          "call_count": None, "last_called_at": None},
         WorkflowSummary(id="", name="Untitled workflow")),
        ({"id": 7, "rate_limit": "abc", "call_count": -3, "created_at": "yesterday"},
         WorkflowSummary(id="7", name="Untitled workflow")),
        ({"rate_limit": float("inf"), "call_count": 10**400},
         WorkflowSummary(id="", name="Untitled workflow")),  # too big: not believed
        ({"rate_limit": "12", "call_count": 3.0},
         WorkflowSummary(id="", name="Untitled workflow", rate_limit=12, call_count=3)),
    ],
)
def test_workflow_summary_tolerates_missing_null_and_odd_fields(item, expected):
    assert WorkflowSummary.from_api(item) == expected


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"status": "success"}, 0),
        ({"status": "success", "workflows": None}, 0),
        ({"workflows": [None, 3, "x", {"id": "a"}]}, 1),  # bad rows skipped, good kept
    ],
)
def test_workflow_list_tolerates_a_missing_list_and_bad_rows(payload, expected):
    assert len(WorkflowSummary.list_from_api(payload)) == expected


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (None, ResponseFormatError),
        ([1, 2], ResponseFormatError),
        ({"workflows": {"id": "a"}}, ResponseFormatError),
        ({"status": "error", "message": "API disabled"}, APIError),
    ],
)
def test_workflow_list_that_is_not_the_shape_raises_only_our_errors(payload, error):
    with pytest.raises(error):
        WorkflowSummary.list_from_api(payload)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"status": "success", "message": "Execution cancelled."}, "Execution cancelled."),
        ({"status": "success"}, "Execution cancelled."),
        ({"message": None}, "Execution cancelled."),
        (None, "Execution cancelled."),
        ({"message": "Stopped"}, "Stopped"),
    ],
)
def test_cancel_message(payload, expected):
    assert cancel_message(payload) == expected


def test_cancel_answer_with_status_error_is_an_api_error():
    with pytest.raises(APIError, match="nope"):
        cancel_message({"status": "error", "message": "nope"})


def running_body(**execution):
    return {"status": "success", "steps": [],
            "execution": {"id": 1, "status": "running", **execution}}


@pytest.mark.parametrize(
    "body",
    [
        running_body(execution_time=10**400),
        {"status": "success", "execution": {"id": 1, "status": "running"},
         "steps": [{"name": "x", "status": "completed",
                    "started_at": "0001-01-01T00:00:00+05:00", "completed_at": None}]},
    ],
    ids=["huge-number", "year-one-with-offset"],
)
def test_extreme_values_are_tolerated(body):
    snapshot = RunSnapshot.from_api(body)
    [step.to_dict() for step in snapshot.steps]
    assert snapshot.execution_time is None
