"""WorkflowLauncher against the simulator over loopback: forms from schemas, required marks,
one run per double click, 422 messages on their fields, 429, remembered values, history."""

from __future__ import annotations

import io
import json
from pathlib import Path

import ipywidgets as widgets
import pytest
from ipywidgets.widgets.widget import _instances as live_widgets

from modelslab_widget import WorkflowRunWidget
from modelslab_widget.errors import ValidationError
from modelslab_widget.launcher import REMEMBERED, WorkflowLauncher, input_kind, parse_number
from modelslab_widget.models import Parameter
from modelslab_widget.simulator import Fault

from .conftest import wait_for

FAST = [("Text to Image", 0.2), ("Image Upscaler", 0.2)]
SCHEMA = Path(__file__).parent / "fixtures" / "api-examples" / "workflow-schema.json"
EVERY_TYPE = [
    {"key": "title", "type": "string", "required": True},
    {"key": "strength", "type": "number", "required": False},
    {"key": "steps", "type": "integer", "required": True},
    {"key": "tile", "type": "boolean", "required": False},
    {"key": "init_image", "type": "image", "required": False, "node_name": "<i>Loader</i>"},
]


@pytest.fixture(autouse=True)
def forget_remembered():
    REMEMBERED.clear()
    yield
    REMEMBERED.clear()


@pytest.fixture
def documented(sim) -> str:
    """A workflow with the documented schema's parameters (prompt*, negative_prompt, width)."""
    parameters = json.loads(SCHEMA.read_text())["parameters"]
    return sim.add_workflow(name="Image <Generator>", parameters=parameters, steps=FAST)


@pytest.fixture
def make(client):
    made: list[WorkflowLauncher] = []

    def build(workflow_id, **kwargs):
        kwargs.setdefault("client", client)
        kwargs.setdefault("poll_interval", 0.1)
        launcher = WorkflowLauncher(workflow_id, **kwargs)
        made.append(launcher)
        return launcher

    yield build
    for launcher in made:
        launcher.close()


def press(button: widgets.Button) -> None:
    """A click as the front end delivers it (a comm message handled on the main thread)."""
    button._handle_button_msg(None, {"event": "click"}, [])


def test_form_from_the_documented_schema(documented, make):
    launcher = make(documented)
    inputs = launcher.inputs
    assert list(inputs) == ["prompt", "negative_prompt", "width"]
    assert isinstance(inputs["prompt"], widgets.Textarea)
    assert isinstance(inputs["negative_prompt"], widgets.Textarea)  # prompt-like
    assert isinstance(inputs["width"], widgets.Text)  # a number box that can be empty
    assert inputs["width"].placeholder == "default" and inputs["width"].value == ""
    assert [w.description for w in inputs.values()] == ["prompt *", "negative_prompt", "width"]
    assert "Text to Image" in inputs["prompt"].tooltip
    header = launcher._header.value
    assert "* required" in header and "Image &lt;Generator&gt;" in header
    assert "<Generator>" not in header
    assert launcher.values() == {}  # nothing typed: untouched optional width is left out
    assert repr(launcher) == "WorkflowLauncher · Image <Generator> · 3 parameters · 0 runs"


def test_form_with_every_parameter_type(sim, make):
    workflow = sim.add_workflow(parameters=EVERY_TYPE, steps=FAST)
    launcher = make(workflow)
    kinds = {key: type(w) for key, w in launcher.inputs.items()}
    assert kinds == {
        "title": widgets.Text, "strength": widgets.Text, "steps": widgets.Text,
        "tile": widgets.Checkbox, "init_image": widgets.Text,
    }
    assert launcher.inputs["steps"].placeholder == "required"
    marked = [w.description for w in launcher.inputs.values() if w.description.endswith(" *")]
    assert marked == ["title *", "steps *"]
    assert launcher.inputs["init_image"].tooltip.endswith("<i>Loader</i>")  # plain text
    assert launcher.inputs["init_image"].description_allow_html is False
    # Empty boxes are left out (the workflow's default applies); an untouched optional
    # checkbox too; numbers go as the schema's type.
    assert launcher.values() == {}
    launcher.inputs["title"].value = "poster"
    launcher.inputs["tile"].value = True
    launcher.inputs["steps"].value = " 30.0 "
    assert launcher.values() == {"title": "poster", "steps": 30, "tile": True}
    launcher.inputs["strength"].value = "0.75"
    assert launcher.values()["strength"] == 0.75
    run = launcher.launch()
    assert isinstance(run, WorkflowRunWidget) and sim.runs_started(workflow) == 1


def test_input_kinds():
    assert input_kind(Parameter("prompt")) == "textarea"
    assert input_kind(Parameter("Style_Prompt")) == "textarea"
    assert input_kind(Parameter("prompt", type="number")) == "float"
    assert input_kind(Parameter("x", type="weird")) == "text"


def test_a_double_click_launches_one_run(sim, documented, make):
    sim.post_faults(documented, [Fault("slow", delay=0.2)])  # the answer takes a while
    launcher = make(documented)
    launcher.inputs["prompt"].value = "a lighthouse"
    press(launcher._run_button)
    assert launcher._run_button.disabled  # still, after the answer came back
    press(launcher._run_button)  # the second click of the double click, queued meanwhile
    assert sim.runs_started(documented) == 1 and len(launcher.runs) == 1
    wait_for(lambda: not launcher._run_button.disabled, timeout=3)
    press(launcher._run_button)  # a deliberate later click does launch again
    assert sim.runs_started(documented) == 2 and len(launcher.runs) == 2
    assert launcher._current.children == (launcher.runs[1],)


def test_missing_required_field_gets_the_servers_message_on_it(sim, documented, make):
    launcher = make(documented)
    launcher.inputs["width"].value = "640"
    assert launcher.launch() is None
    errors = {field.parameter.key: field.error.value for field in launcher._fields}
    assert "The prompt field is required." in errors["prompt"]
    assert errors["negative_prompt"] == errors["width"] == ""
    assert "highlighted fields" in launcher._message.value
    assert sim.runs_started(documented) == 0 and launcher.runs == []
    launcher.inputs["prompt"].value = "fixed"
    assert launcher.launch() is not None
    assert all(field.error.value == "" for field in launcher._fields)
    assert launcher._message.value == ""


def test_validation_messages_are_escaped_and_unknown_fields_listed(documented, make, client,
                                                                   monkeypatch):
    launcher = make(documented)

    def refuse(workflow_id, params):
        raise ValidationError("422", errors={"prompt": ["<b>too</b> long", "second"],
                                             "body": ["<script>x</script>"]})

    monkeypatch.setattr(client, "run_workflow", refuse)
    launcher.inputs["prompt"].value = "x"
    launcher.launch()
    prompt_error = launcher._fields[0].error.value
    assert "&lt;b&gt;too&lt;/b&gt; long<br>second" in prompt_error and "<b>" not in prompt_error
    assert "body: &lt;script&gt;" in launcher._message.value
    assert "<script>" not in launcher._message.value


def test_rate_limit_says_when_to_try_again(sim, documented, make):
    sim.post_faults(documented, [Fault("rate_limit", retry_after=7)])
    launcher = make(documented)
    launcher.inputs["prompt"].value = "a lighthouse"
    press(launcher._run_button)
    assert "Rate limited: try again in 7 s." in launcher._message.value
    assert launcher.runs == [] and sim.runs_started(documented) == 0


def test_lost_answer_is_not_retried_and_says_the_run_may_exist(sim, documented, make):
    sim.post_faults(documented, [Fault("drop")])  # the server starts the run, then hangs up
    launcher = make(documented)
    launcher.inputs["prompt"].value = "a lighthouse"
    assert launcher.launch() is None
    assert sim.runs_started(documented) == 1  # exactly one: POST is never re-sent
    assert "may have started anyway" in launcher._message.value


@pytest.mark.parametrize(
    ("key", "text", "message"),
    [("steps", "twelve", "Enter a number."), ("steps", "2.5", "Enter a whole number."),
     ("strength", "nan", "Enter a number."), ("strength", "1e999", "Enter a number.")],
)
def test_a_bad_number_is_marked_on_its_field_and_nothing_is_sent(sim, make, key, text, message):
    workflow = sim.add_workflow(parameters=EVERY_TYPE, steps=FAST)
    launcher = make(workflow)
    launcher.inputs["title"].value = "poster"
    launcher.inputs["steps"].value = "20"
    launcher.inputs[key].value = text
    assert launcher.launch() is None
    assert sim.runs_started(workflow) == 0
    assert message in launcher._fields[[f.parameter.key for f in launcher._fields].index(key)
                                        ].error.value
    assert "fix the highlighted fields" in launcher._message.value
    with pytest.raises(ValueError, match=key):
        launcher.values()
    launcher.inputs[key].value = "3"
    assert launcher.launch() is not None and sim.runs_started(workflow) == 1
    assert all(not field.error.value for field in launcher._fields)


def test_numbers_parse_exactly_as_the_schema_type():
    assert parse_number(" 9007199254740993 ", "int") == 9007199254740993  # above 2**53
    assert parse_number("512.0", "int") == 512 and isinstance(parse_number("1e3", "int"), int)
    assert parse_number("1_000", "int") == 1000 and parse_number("0.75", "float") == 0.75
    assert isinstance(parse_number("3", "float"), float)


def test_values_are_remembered_per_workflow(sim, documented, make):
    first = make(documented)
    first.inputs["prompt"].value = "remember me"
    first.inputs["width"].value = "768"
    first.launch()
    first.close()
    again = make(documented)
    assert again.inputs["prompt"].value == "remember me"
    assert again.inputs["width"].value == "768"  # as typed, not "768.0"
    assert again.values() == {"prompt": "remember me", "width": 768.0}
    other = make(sim.add_workflow(steps=FAST))
    assert other.inputs["prompt"].value == "" and other.values() == {}


def test_a_completed_run_shows_in_history_with_a_thumbnail(sim, documented, make):
    from PIL import Image

    launcher = make(documented)
    long_prompt = "a lighthouse at dusk, " * 10
    launcher.inputs["prompt"].value = long_prompt
    press(launcher._run_button)
    run = launcher.runs[0]
    row = launcher._history_rows[0]
    wait_for(lambda: "Running" in row.text.value or run.status == "completed", timeout=5)
    run.wait(10)
    wait_for(lambda: row.image.layout.visibility == "visible", timeout=5)
    assert "✓ Completed" in row.text.value and f"Run {run.execution_id}" in row.text.value
    assert "a lighthouse at dusk, a lighthouse" in row.text.value and "…" in row.text.value
    thumb = Image.open(io.BytesIO(row.image.value))
    assert thumb.format == "JPEG" and max(thumb.size) <= 64
    assert launcher._history.children == (row.box,)
    assert repr(launcher).endswith("· 1 run (1 completed)")


def test_unknown_workflow_shows_an_error_and_reload_recovers(sim, make):
    launcher = make("no-such-workflow")
    assert "Could not load the workflow" in launcher._message.value
    assert launcher._run_button.layout.display == "none" and launcher.launch() is None
    assert "not loaded" in repr(launcher)
    sim.add_workflow("no-such-workflow", steps=FAST)
    press(launcher._reload_button)
    assert list(launcher.inputs) == ["prompt", "negative_prompt", "width"]
    assert launcher._run_button.layout.display == "" and launcher._message.value == ""


def test_close_leaves_no_threads_or_widgets(no_leftover_threads, sim, documented, client):
    before = len(live_widgets)
    launcher = WorkflowLauncher(documented, client=client, poll_interval=0.1)
    launcher.inputs["prompt"].value = "one"
    press(launcher._run_button)
    launcher.runs[0].wait(10)
    launcher.inputs["prompt"].value = "two"
    launcher.launch()  # still running when closed
    launcher.close()
    assert len(live_widgets) == before
    assert all(run.comm is None for run in launcher.runs)
