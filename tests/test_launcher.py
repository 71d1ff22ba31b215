"""WorkflowLauncher against the simulator over loopback: forms from schemas, required marks,
one run per double click, 422 messages on their fields, 429, remembered values, history."""

from __future__ import annotations

import io
import itertools
import json
import socket
import time
from pathlib import Path

import ipywidgets as widgets
import pytest
from ipywidgets.widgets.widget import _instances as live_widgets

from modelslab_widget import WorkflowRunWidget, WorkflowsClient
from modelslab_widget.budget import budget_for
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
    button.comm.handle_msg({"content": {"data": {"method": "custom",
                                                 "content": {"event": "click"}}},
                            "buffers": []})


def test_form_from_the_documented_schema(documented, make):
    launcher = make(documented)
    inputs = launcher.inputs
    assert list(inputs) == ["prompt", "negative_prompt", "width"]
    assert isinstance(inputs["prompt"], widgets.Textarea)
    assert isinstance(inputs["negative_prompt"], widgets.Textarea)  # prompt-like
    assert isinstance(inputs["width"], widgets.Text)  # a number box that can be empty
    assert inputs["width"].placeholder == "default" and inputs["width"].value == ""
    assert [w.description for w in inputs.values()] == [
        'Prompt *<span class="mlw-key">prompt</span>',
        'Negative prompt<span class="mlw-key">negative_prompt</span>',
        'Width<span class="mlw-key">width</span>',
    ]
    assert "Text to Image" in inputs["prompt"].tooltip
    header = launcher.header.value
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
    marked = [key for key, w in launcher.inputs.items() if " *<span" in w.description]
    assert marked == ["title", "steps"]
    assert launcher.inputs["init_image"].tooltip.endswith("<i>Loader</i>")  # plain text
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
    press(launcher.run_button)
    assert launcher.run_button.disabled  # still, after the answer came back
    press(launcher.run_button)  # the second click of the double click, queued meanwhile
    assert sim.runs_started(documented) == 1 and len(launcher.runs) == 1
    wait_for(lambda: not launcher.run_button.disabled, timeout=3)
    press(launcher.run_button)  # a deliberate later click does launch again
    assert sim.runs_started(documented) == 2 and len(launcher.runs) == 2
    assert launcher.current_run is launcher.runs[1]


def invalid(widget: widgets.Widget) -> bool:
    """Whether the browser shows the widget in the error style (its synced CSS classes)."""
    return "mlw-invalid" in widget.get_state("_dom_classes")["_dom_classes"]


def test_every_field_is_checked_at_once_before_anything_is_sent(sim, make):
    # Issue 14.7: an empty required field was flagged only on the second Run, after another
    # field's error was fixed; nothing was highlighted; an error stayed after the fix.
    workflow = sim.add_workflow(parameters=EVERY_TYPE, steps=FAST)
    launcher = make(workflow)
    launcher.inputs["steps"].value = "twelve"
    assert launcher.launch() is None
    assert sim.runs_started(workflow) == 0
    assert launcher.errors == {"title": ["This field is required."],
                               "steps": ["Enter a number."]}
    assert invalid(launcher.inputs["title"]) and invalid(launcher.inputs["steps"])
    assert not invalid(launcher.inputs["strength"])
    assert "Please fix the highlighted fields." in launcher.message
    assert "2 fields to fix; nothing was sent." in launcher.message
    launcher.inputs["title"].value = "poster"  # editing a field clears its error at once
    assert launcher.errors == {"steps": ["Enter a number."]}
    assert not invalid(launcher.inputs["title"]) and invalid(launcher.inputs["steps"])
    launcher.inputs["steps"].value = "12"
    assert launcher.errors == {} and not invalid(launcher.inputs["steps"])
    assert launcher.launch() is not None and sim.runs_started(workflow) == 1
    assert launcher.message == ""


def test_a_servers_field_message_shows_on_its_field_until_edited(sim, documented, make):
    launcher = make(documented)
    # The workflow changes on the server after the form was built: width becomes required.
    parameters = json.loads(SCHEMA.read_text())["parameters"]
    parameters[2] = {**parameters[2], "required": True}
    sim.add_workflow(documented, parameters=parameters, steps=FAST)
    launcher.inputs["prompt"].value = "a lighthouse"
    assert launcher.launch() is None
    assert launcher.errors == {"width": ["The width field is required."]}  # the server's words
    assert invalid(launcher.inputs["width"])
    assert "Please fix the highlighted fields." in launcher.message
    assert sim.runs_started(documented) == 0
    launcher.inputs["width"].value = "640"
    assert launcher.errors == {} and not invalid(launcher.inputs["width"])
    assert launcher.launch() is not None and sim.runs_started(documented) == 1


def test_a_message_for_no_field_of_the_form_does_not_claim_highlights(sim, documented, make):
    launcher = make(documented)
    # A parameter the form does not have, with markup in its name (escaped when shown).
    parameters = [*json.loads(SCHEMA.read_text())["parameters"],
                  {"key": "<script>seed</script>", "type": "integer", "required": True}]
    sim.add_workflow(documented, parameters=parameters, steps=FAST)
    launcher.inputs["prompt"].value = "a lighthouse"
    assert launcher.launch() is None
    assert launcher.errors == {}
    assert "highlighted" not in launcher.message
    assert "The server refused the parameters." in launcher.message
    assert "&lt;script&gt;seed&lt;/script&gt;: The &lt;script&gt;seed" in launcher.message
    assert "<script>" not in launcher.message


def test_a_rate_limited_launch_waits_its_turn_and_is_sent_again(sim, documented, make):
    sim.post_faults(documented, [Fault("rate_limit", retry_after=1)])
    launcher = make(documented)
    launcher.inputs["prompt"].value = "a lighthouse"
    press(launcher.run_button)
    run = launcher.current_run
    assert run is not None and run.execution_id is None and launcher.message == ""
    assert "Queued here: starts in 1 s" in run.message_html
    assert "Queued here" in launcher.history[0].text.value
    assert run.wait(10).status == "completed"  # a 429 started nothing: sent once more
    assert sim.runs_started(documented) == 1 and launcher.runs == [run]
    assert f"Run {run.execution_id}" in launcher.history[0].text.value


def test_lost_answer_is_not_retried_and_says_the_run_may_exist(sim, documented, make):
    sim.post_faults(documented, [Fault("drop")])  # the server starts the run, then hangs up
    launcher = make(documented)
    launcher.inputs["prompt"].value = "a lighthouse"
    assert launcher.launch() is None
    assert sim.runs_started(documented) == 1  # exactly one: POST is never re-sent
    assert "may have started anyway" in launcher.message


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
    assert launcher.errors == {key: [message]} and invalid(launcher.inputs[key])
    assert "fix the highlighted fields" in launcher.message
    with pytest.raises(ValueError, match=key):
        launcher.values()
    launcher.inputs[key].value = "3"
    assert launcher.launch() is not None and sim.runs_started(workflow) == 1
    assert launcher.errors == {}


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
    press(launcher.run_button)
    run = launcher.runs[0]
    row = launcher.history[0]
    wait_for(lambda: "Running" in row.text.value or run.status == "completed", timeout=5)
    run.wait(10)
    wait_for(lambda: row.image.layout.visibility == "visible", timeout=5)
    assert "✓ Completed" in row.text.value and f"Run {run.execution_id}" in row.text.value
    assert "a lighthouse at dusk, a lighthouse" in row.text.value and "…" in row.text.value
    thumb = Image.open(io.BytesIO(row.image.value))
    assert thumb.format == "JPEG" and max(thumb.size) <= 64
    assert launcher.history == [row] and row.run is run
    assert repr(launcher).endswith("· 1 run (1 completed)")


def test_unknown_workflow_shows_an_error_and_reload_recovers(sim, make):
    launcher = make("no-such-workflow")
    assert "Could not load the workflow" in launcher.message
    assert launcher.run_button.layout.display == "none" and launcher.launch() is None
    assert "not loaded" in repr(launcher)
    sim.add_workflow("no-such-workflow", steps=FAST)
    press(launcher.reload_button)
    assert list(launcher.inputs) == ["prompt", "negative_prompt", "width"]
    assert launcher.run_button.layout.display == "" and launcher.message == ""


def test_close_leaves_no_threads_or_widgets(no_leftover_threads, sim, documented, client):
    before = len(live_widgets)
    launcher = WorkflowLauncher(documented, client=client, poll_interval=0.1)
    launcher.inputs["prompt"].value = "one"
    press(launcher.run_button)
    launcher.runs[0].wait(10)
    launcher.inputs["prompt"].value = "two"
    launcher.launch()  # still running when closed
    launcher.close()
    assert len(live_widgets) == before
    assert all(run.comm is None for run in launcher.runs)


def test_labels_read_as_words_with_the_key_beside_them(sim, make):
    workflow = sim.add_workflow(parameters=[
        {"key": "negative_prompt", "type": "string", "required": True},
        {"key": "<b>cfg</b>_scale", "type": "number"},
    ], steps=FAST)
    launcher = make(workflow)
    negative = launcher.inputs["negative_prompt"]
    assert negative.description == (
        'Negative prompt *<span class="mlw-key">negative_prompt</span>')
    hostile = launcher.inputs["<b>cfg</b>_scale"].description
    assert hostile == ('&lt;b&gt;cfg&lt;/b&gt; scale'
                       '<span class="mlw-key">&lt;b&gt;cfg&lt;/b&gt;_scale</span>')


def test_each_history_row_opens_its_runs_card(sim, documented, make, client):
    launcher = make(documented)
    for prompt in ("first", "second"):
        launcher.inputs["prompt"].value = prompt
        assert launcher.launch() is not None
    first, second = launcher.history
    assert [row.run for row in launcher.history] == launcher.runs
    assert launcher.current_run is second.run  # the newest run's card shows
    assert first.open_button.disabled is False and second.open_button.disabled is True
    press(first.open_button)
    assert launcher.current_run is first.run
    assert first.open_button.disabled is True and second.open_button.disabled is False
    press(second.open_button)
    assert launcher.current_run is second.run
    stranger = WorkflowRunWidget(documented, 1, client=client, autostart=False)
    with pytest.raises(ValueError, match="not a run of this launcher"):
        launcher.open_run(stranger)
    stranger.close()
    assert launcher.current_run is second.run


# -- the picker: WorkflowLauncher() with no workflow ID ----------------------------------------


def labels(launcher: WorkflowLauncher) -> dict[str, str]:
    """The picker's entries: workflow ID -> the text shown for it."""
    return {value: label for label, value in launcher.picker.options}


def test_the_picker_lists_workflows_and_builds_the_chosen_ones_form(sim, documented, make):
    every = sim.add_workflow(name="Every <type>", parameters=EVERY_TYPE, steps=FAST,
                             rate_limit=5)
    launcher = make(None)
    assert launcher.picker.layout.display == "" and launcher.message == ""
    shown = labels(launcher)
    assert {documented, every} <= set(shown)
    assert shown[every] == "Every <type> — 5/min · 0 runs"  # plain text: a Dropdown escapes
    assert launcher.workflow_id == launcher.picker.value  # the first one is chosen
    launcher.picker.value = documented
    assert list(launcher.inputs) == ["prompt", "negative_prompt", "width"]
    assert launcher.info is not None and launcher.info.name == "Image <Generator>"
    launcher.inputs["prompt"].value = "typed, not sent"
    launcher.picker.value = every  # switching rebuilds the form for the other workflow
    assert list(launcher.inputs) == ["title", "strength", "steps", "tile", "init_image"]
    launcher.inputs["title"].value = "poster"
    launcher.inputs["steps"].value = "20"
    run = launcher.launch()
    assert run is not None and run.workflow_id == every
    assert sim.runs_started(every) == 1 and sim.runs_started(documented) == 0
    launcher.picker.value = documented  # what was typed there is still there
    assert launcher.inputs["prompt"].value == "typed, not sent"
    launcher.picker.value = every
    assert launcher.values() == {"title": "poster", "steps": 20}
    assert launcher.history[0].run is run and launcher.current_run is run


def test_the_picker_says_how_to_enable_a_workflow_when_there_is_none(sim, make):
    sim.list_faults([Fault("json", body={"status": "success", "workflows": []})])
    launcher = make(None)
    assert launcher.workflows == [] and launcher.picker.layout.display == "none"
    assert "No workflows are enabled for the API" in launcher.message
    assert "enable it as an API endpoint" in launcher.message
    assert launcher.run_button.layout.display == "none" and launcher.inputs == {}
    assert launcher.launch() is None and repr(launcher).startswith(
        "WorkflowLauncher · no workflow chosen")
    press(launcher.reload_button)  # the next answer lists the workflows again
    assert launcher.workflows and launcher.inputs and launcher.message == ""
    assert launcher.run_button.layout.display == ""


def test_a_bad_key_shows_in_the_launchers_message_area(sim, make):
    with WorkflowsClient("sim-wrong-key", base_url=sim.base_url) as wrong:
        launcher = make(None, client=wrong)
        assert "Could not list your workflows" in launcher.message
        assert "Check the API key" in launcher.message
        assert launcher.reload_button.layout.display == "" and launcher.inputs == {}
        assert "sim-wrong-key" not in launcher.message and sim.api_key not in launcher.message


def test_no_network_shows_in_the_launchers_message_area(make):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with WorkflowsClient("sim-key", base_url=f"http://127.0.0.1:{port}/api/v1",
                         timeout=(0.5, 0.5), backoff_factor=0.01) as offline:
        launcher = make(None, client=offline)
        assert "Could not list your workflows" in launcher.message
        assert launcher.picker.layout.display == "none"
        assert launcher.reload_button.layout.display == ""


def test_the_picker_takes_the_list_as_untrusted_input(sim, documented, make):
    listed = [{"id": "..", "name": "dot dot"}, {"id": "", "name": "no id"},
              {"id": documented, "name": "<b>Mine</b>", "rate_limit": None, "call_count": 1}]
    sim.list_faults([Fault("json", body={"status": "success", "workflows": listed})])
    launcher = make(None)
    assert launcher.picker.options == (("<b>Mine</b> — 1 run", documented),)
    assert [w.id for w in launcher.workflows] == [documented]
    assert list(launcher.inputs) == ["prompt", "negative_prompt", "width"]


def test_a_schema_with_20000_parameters_builds_the_first_200_and_says_so(sim, make):
    from modelslab_widget.models import MAX_PARAMETERS

    many = [{"key": f"p{n}", "type": "string"} for n in range(20_000)]
    launcher = make(sim.add_workflow(parameters=many, steps=FAST))
    assert list(launcher.inputs) == [f"p{n}" for n in range(MAX_PARAMETERS)]
    assert launcher.info.dropped_parameters == 20_000 - MAX_PARAMETERS
    assert f"{20_000 - MAX_PARAMETERS:,} more parameters" in launcher.header.value


def test_a_full_account_queue_holds_only_the_launch_until_a_run_of_ours_ends(
        sim, make, client):
    """The account's queue limit (rate-limits.mdx) is not the workflow's rate limit: the
    watched run's polls go on at their interval, and the held launch goes at its end."""
    sim.queue_limit = 1
    workflow = sim.add_workflow(parameters=[{"key": "prompt", "type": "string"}],
                                steps=[("Text to Image", 1.0), ("Image Upscaler", 1.0)])
    launcher = make(workflow, poll_interval=0.5)
    launcher.inputs["prompt"].value = "a lighthouse"
    first = launcher.launch()
    assert first is not None and first.execution_id is not None
    second = launcher.launch()
    assert second is not None and second.execution_id is None
    assert sim.queue_full_count == 1
    assert "account&#x27;s queue is full" in second.message_html
    assert "allows 1 queued runs" in second.message_html
    third = launcher.launch()  # joins the line behind it: never sent while the queue is full
    assert third is not None and sim.queue_full_count == 1
    wait_for(lambda: first.status == "completed", timeout=10)
    end_seen = time.monotonic()
    wait_for(lambda: second.execution_id is not None, timeout=5, step=0.01)
    sent_after_end = time.time() - first.snapshot.completed_at.timestamp()
    assert sent_after_end <= 0.5 + 0.25  # one poll interval, and the POST's own time
    times = sim.accepted_request_times(workflow)
    held = [t for t in times if t <= end_seen]  # the first run's polls, the refused POST
    gaps = [b - a for a, b in itertools.pairwise(held)]
    assert max(gaps) <= 0.5 + 0.2, gaps  # polls went on at 0.5 s while the launch was held
    assert not budget_for(client.account, workflow).limited
    assert second.wait(10).status == "completed"
    assert third.wait(15).status == "completed"
    assert sim.runs_started(workflow) == 3  # none lost, none sent twice
    assert [run.execution_id for run in launcher.runs] == sorted(sim.run_ids(workflow))


def test_a_misspelt_run_option_is_refused_before_anything_is_sent(sim, documented, client):
    with pytest.raises(TypeError, match=r"'poll_intervall'.*did you mean 'poll_interval'"):
        WorkflowLauncher(documented, client=client, poll_intervall=0.5)
    assert sim.request_count("workflow") == 0


def test_each_run_card_is_labelled_with_its_prompt(sim, documented, make):
    launcher = make(documented)
    launcher.inputs["prompt"].value = "a lighthouse at dusk"
    run = launcher.launch()
    assert run is not None and run.label == "a lighthouse at dusk"
    assert "a lighthouse at dusk" in run.header_html
