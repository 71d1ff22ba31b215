"""WorkflowLauncher: a form built from a workflow's schema that starts runs and watches them.

Threads. The schema is fetched synchronously in ``__init__``: the form's widgets depend on
it and must be created on the main thread, and there is no way back to the main thread from
a pool thread; one GET bounded by the client's timeout is cheaper than a second, async
"Loading…" code path. The picker's list (``WorkflowLauncher()`` with no ID) is fetched
the same way, and so is a chosen workflow's schema (the picker's handler runs on the main
thread). For the same reason the Run button's handler (which ipywidgets runs on the main
thread) POSTs synchronously and creates the run's ``WorkflowRunWidget`` right there. Only
the history rows' values (status, thumbnail) are set later, from pool threads.

One click, one run. ipywidgets delivers clicks one after another and ``Button.click()``
does not look at ``disabled``: a double click queues two click messages, and the second is
handled right *after* the first handler returned. So the handler ignores clicks while the
button is disabled, and the button is re-enabled only ``RELAUNCH_DELAY`` after the answer
(by the shared scheduler), which swallows the queued duplicate while a real second click
still works a moment later. ``POST .../run`` itself is never retried once sent (client).

Rate limits. Every launch is a ``PendingRun`` (``pending.py``) and every schema read is sent
in a slot of the workflow's request budget (``budget.py``). When the budget has no room, or
the POST is answered 429 (no run started), ``launch()`` returns at once a card showing the
pending run (a ``QueuedRunWidget``, the ordinary card given a ``pending=``): it sends the
POST from a pool thread when the budget allows, and the history row follows it like any
card. A 429 saying the account's queue is full holds the launch (and every later one of the
account, in order) in the account's line (``account.py``) until one of the account's runs
ends; nothing else slows.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import ipywidgets as widgets
from traitlets import TraitError

from . import render
from .budget import RequestKind, budget_for, note_limit, send_in_slot
from .checks import known_keywords
from .client import WorkflowsClient, path_segment
from .errors import ModelsLabError, NetworkError, RateLimitError, ValidationError
from .images import encode_small
from .models import Parameter, WorkflowInfo, WorkflowSummary
from .pending import REMOVED, STARTED, LaunchPhase, PendingRun
from .queued import QueuedRunWidget
from .sanitize import shorten
from .scheduler import Job, Scheduler, shared_scheduler
from .widget import CARD_LAYOUT, WorkflowRunWidget, card_options, close_with_parts

#: workflow_id -> the values last submitted for it in this kernel (pre-filled next time)
REMEMBERED: dict[str, dict[str, Any]] = {}

RELAUNCH_DELAY = 0.5  # seconds the Run button stays disabled after the server answered
SCHEMA_WAIT = 10.0  # longest wait (main thread) for a schema read's slot; then it goes anyway
HISTORY_THUMB = 64  # pixels
PROMPT_PREVIEW = 60  # characters of the prompt shown in a history row
OPTION_NAME = 60  # characters of a workflow's name shown in the picker
REQUIRED = "This field is required."
NO_WORKFLOWS_HINT = (
    "The list holds only workflows enabled for the API: open a workflow in ModelsLab's "
    "workflow editor, enable it as an API endpoint, then press Reload. "
    "Or pass its ID: WorkflowLauncher(workflow_id)."
)

_NOT_SET = object()


def input_kind(parameter: Parameter) -> str:
    """Which input a parameter gets: textarea, text, float, int or bool."""
    kind = parameter.type
    if kind == "string":
        return "textarea" if "prompt" in parameter.key.lower() else "text"
    return {"number": "float", "integer": "int", "boolean": "bool"}.get(kind, "text")


NUMBER_KINDS = ("float", "int")


def parse_number(text: str, kind: str) -> float | int:
    """A number box's text as the schema's type: "512" or "512.0" for an integer."""
    text = text.strip()
    if kind == "int":
        try:
            return int(text)  # exact: a seed above 2**53 must not go through float
        except ValueError:
            pass  # "512.0" or "1e3" still name whole numbers
    try:
        number = float(text.replace("_", ""))
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise ValueError("Enter a number.")
    if kind == "int":
        if not number.is_integer():
            raise ValueError("Enter a whole number.")
        return int(number)
    return number


def number_text(value: Any) -> str:
    """A remembered number as the user would type it: 768, not 768.0."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return str(value)


def option_label(workflow: WorkflowSummary) -> str:
    """A picker entry (plain text): the name, with the rate limit and the call count as a
    hint, e.g. "My Workflow — 10/min · 150 runs"."""
    hints: list[str] = []
    if workflow.rate_limit is not None:
        hints.append(f"{workflow.rate_limit}/min")
    if workflow.call_count is not None:
        hints.append(f"{workflow.call_count} run{'s' if workflow.call_count != 1 else ''}")
    name = shorten(" ".join(str(workflow.name or "").split()) or workflow.id, OPTION_NAME)
    return f"{name} — {' · '.join(hints)}" if hints else name


class _Field:
    """One parameter's input, with the error line under it."""

    def __init__(self, parameter: Parameter, initial: dict[str, Any]) -> None:
        self.parameter = parameter
        self.kind = input_kind(parameter)
        self.input = self._make_input()
        self.error = widgets.HTML()
        self.messages: list[str] = []  # what the error line says now
        self.box = widgets.VBox([self.input, self.error])
        # An optional checkbox is sent only once touched: False shown in an untouched box must
        # not override the workflow's own default. (Empty text and number boxes are left out.)
        self.touched = False
        if parameter.key in initial:
            value = initial[parameter.key]
            try:
                self.input.value = number_text(value) if self.kind in NUMBER_KINDS else value
                self.touched = True
            except TraitError:
                pass  # the schema changed type since: start blank
        self.input.observe(self._on_edit, "value")

    def _make_input(self) -> widgets.Widget:
        param = self.parameter
        where = " · ".join(x for x in (param.node_name, param.node_id) if x)
        tooltip = f"{param.key} ({param.type}{', required' if param.required else ''})"
        tooltip += f" · {where}" if where else ""
        common: dict[str, Any] = {
            # HTML only for the small key beside the words; render escapes both
            "description": render.field_label(param.key, param.required),
            "description_allow_html": True, "tooltip": tooltip,
            "style": {"description_width": render.LAUNCHER_LABEL_WIDTH},
        }
        # Narrow outputs: the field's label and its box wrap onto two lines (the box keeps a
        # usable width, LAUNCHER_STYLE's .mlw-field rules) instead of squeezing the box.
        made: widgets.Widget
        if self.kind == "textarea":
            made = widgets.Textarea(
                layout=widgets.Layout(width="100%", max_width="760px", height="4.5em",
                                      flex_flow="row wrap"),
                placeholder="required" if param.required else "", **common,
            )
        elif self.kind in NUMBER_KINDS:
            # A text box, not FloatText: that cannot be empty, and a 0 shown in it reads as
            # "width 0" when the workflow's own default is what will be used.
            made = widgets.Text(
                layout=widgets.Layout(width="100%", max_width="27em", flex_flow="row wrap"),
                placeholder="required" if param.required else "default", **common,
            )
        elif self.kind == "bool":
            made = widgets.Checkbox(indent=True, layout=widgets.Layout(width="auto"), **common)
        else:
            made = widgets.Text(
                layout=widgets.Layout(width="100%", max_width="760px", flex_flow="row wrap"),
                placeholder="required" if param.required else "", **common,
            )
        made.add_class(render.FIELD_CLASS)
        return made

    def _on_edit(self, change: dict[str, Any]) -> None:
        self.touched = True
        self.show_errors([])  # the user is fixing it: the old message no longer applies

    def value(self) -> Any:
        """The value to send, or _NOT_SET to leave the parameter out; ValueError when a
        number box holds something that is not a number."""
        value = self.input.value
        if self.kind == "bool":
            return value if self.parameter.required or self.touched else _NOT_SET
        if not value.strip():
            return _NOT_SET
        return parse_number(value, self.kind) if self.kind in NUMBER_KINDS else value

    def problem(self) -> str:
        """Why the field cannot be sent as it is; "" when it can."""
        try:
            value = self.value()
        except ValueError as error:
            return str(error)
        return REQUIRED if self.parameter.required and value is _NOT_SET else ""

    def show_errors(self, messages: list[str]) -> None:
        """Mark the field (error style, messages under it), or unmark it with []."""
        if not messages and not self.messages:
            return  # nothing shown: no message to send to the browser
        self.messages = list(messages)
        self.error.value = render.field_error(self.messages)
        if self.messages:
            self.input.add_class("mlw-invalid")
        else:
            self.input.remove_class("mlw-invalid")

    def widgets(self) -> list[widgets.Widget]:
        return [self.input, self.error, self.box]


class HistoryRow:
    """One launched run: a 64 px thumbnail slot, a line with its live status, and an Open
    button that shows the run's card in the launcher."""

    def __init__(self, number: int, prompt: str) -> None:
        self.number = number
        self.prompt = prompt
        self.run: WorkflowRunWidget | None = None
        self._lock = threading.Lock()
        self._closed = False
        self.image = widgets.Image(
            format="jpeg",
            layout=widgets.Layout(width=f"{HISTORY_THUMB}px", height=f"{HISTORY_THUMB}px",
                                  object_fit="contain", visibility="hidden"),
        )
        self.text = widgets.HTML(layout=widgets.Layout(flex="1 1 auto", min_width="0"))
        self.open_button = widgets.Button(
            description="Open", tooltip="Show this run's card above",
            layout=widgets.Layout(width="auto", flex="0 0 auto"),
        )
        self.box = widgets.HBox([self.image, self.text, self.open_button],
                                layout=widgets.Layout(align_items="center", margin="2px 0"))

    def follow(self, run: WorkflowRunWidget) -> None:
        self.run = run
        run.observe(self._on_status, "status")
        self.render()  # the first answer may have come before we observed

    def launch_changed(self, run: WorkflowRunWidget) -> None:
        """A queued launch was sent, started, refused or removed (any thread)."""
        self.render()

    def _on_status(self, change: dict[str, Any]) -> None:
        self.render()

    def render(self) -> None:
        run = self.run
        status = run.status if run is not None else "unknown"
        run_id = str(run.execution_id) if run is not None and run.execution_id is not None else ""
        error = run.error if run is not None and status == "failed" else ""
        state = run.launch_state if run is not None else STARTED
        if state != STARTED:  # no execution ID yet: say what the launch is doing
            status = render.LAUNCH_STATUS[state]
            error = str(run.launch_error or "") if run is not None else ""
        markup = render.history_row(self.number, status, run_id, self.prompt, error,
                                    PROMPT_PREVIEW)
        with self._lock:
            if not self._closed:
                self.text.value = markup

    def on_complete(self, run: WorkflowRunWidget) -> None:
        """Called on a pool thread once the run ended and its thumbnails are in."""
        self.render()
        if not run.thumbnails:
            return
        data, fmt = encode_small(run.thumbnails[0], HISTORY_THUMB)
        with self._lock:
            if self._closed:
                return
            self.image.format = fmt
            self.image.value = data
            self.image.layout.visibility = "visible"

    def close(self) -> None:
        with self._lock:
            self._closed = True
        if self.run is not None:
            self.run.unobserve(self._on_status, "status")
        close_with_parts(self.image, self.text, self.open_button, self.box)


class WorkflowLauncher(widgets.VBox):
    """A form for a workflow's parameters with a Run button; each run is watched below it
    and listed in a small history.

    ``WorkflowLauncher(workflow_id, api_key=..., base_url=...)`` or ``client=...``; other
    keyword arguments go to each run's ``WorkflowRunWidget`` (``poll_interval``, ...).
    Without a workflow ID it shows a picker of your API-enabled workflows
    (``client.list_workflows()``) and the form of the one chosen.
    Create it on the main thread (it fetches the list and the schema there).
    """

    def __init__(
        self,
        workflow_id: str | None = None,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        client: WorkflowsClient | None = None,
        scheduler: Scheduler | None = None,
        **run_kwargs: Any,
    ) -> None:
        if workflow_id is not None:
            path_segment(workflow_id, "workflow_id")
        known_keywords(run_kwargs, card_options(), "WorkflowLauncher")
        #: the workflow whose form shows (None until one is chosen in the picker)
        self.workflow_id: str | None = None if workflow_id is None else str(workflow_id)
        self.picking = workflow_id is None  # True: the picker chooses the workflow
        self.workflows: list[WorkflowSummary] = []  # the picker's choices
        self.info: WorkflowInfo | None = None
        self.inputs: dict[str, widgets.Widget] = {}  # parameter key -> its input widget
        self.runs: list[WorkflowRunWidget] = []
        self.history: list[HistoryRow] = []  # one per run, in the order of self.runs
        self._run_kwargs = run_kwargs
        self._owns_client = client is None
        self._client = client or WorkflowsClient(api_key, base_url=base_url)
        self._scheduler = scheduler or shared_scheduler()
        self._fields: list[_Field] = []
        self._form_workflow: str | None = None  # the workflow the fields were built for
        self._drafts: dict[str, dict[str, Any]] = {}  # workflow -> what was typed, unsent
        self._syncing_picker = False
        self._enable_job: Job | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._build_views()
        super().__init__(children=self._children(), layout=widgets.Layout(**CARD_LAYOUT))
        self.add_class(render.LAUNCHER_CLASS)  # narrow: labels above the boxes (render.py)
        self.reload()

    # -- public API ---------------------------------------------------------------------

    def reload(self) -> None:
        """Fetch the schema (with the picker, the list of workflows first) and rebuild the
        form; on the main thread."""
        self._message.value = ""
        if self.picking and not self._load_workflows():
            return
        self._load_schema()

    @property
    def message(self) -> str:
        """The message area's HTML (errors, notes); "" when it shows nothing."""
        return str(self._message.value)

    @property
    def errors(self) -> dict[str, list[str]]:
        """The highlighted fields: parameter key -> the messages shown under it."""
        return {field.parameter.key: list(field.messages)
                for field in self._fields if field.messages}

    @property
    def current_run(self) -> WorkflowRunWidget | None:
        """The run whose card shows under the form (the newest, or the one opened)."""
        shown = self._current.children
        return shown[0] if shown else None  # type: ignore[return-value]

    def open_run(self, run: WorkflowRunWidget) -> None:
        """Show one of this launcher's runs in its card area (a history row's Open button)."""
        if run not in self.runs:
            raise ValueError("not a run of this launcher")
        self._current.children = (run,)
        for row in self.history:
            row.open_button.disabled = row.run is run

    def values(self) -> dict[str, Any]:
        """The parameters the Run button would send now; ValueError naming the first field
        that does not hold a valid value."""
        chosen: dict[str, Any] = {}
        for field in self._fields:
            try:
                chosen[field.parameter.key] = field.value()
            except ValueError as error:
                raise ValueError(f"{field.parameter.key}: {error}") from None
        return {key: value for key, value in chosen.items() if value is not _NOT_SET}

    def launch(self) -> WorkflowRunWidget | None:
        """Start a run with the form's values, as the Run button does (main thread): returns
        its widget, or None when nothing was sent or the server refused (the reason shows
        in the form)."""
        workflow_id = self.workflow_id
        if self.info is None or self._closed or workflow_id is None:
            return None
        params = self._checked_values()
        if params is None:
            return None  # nothing sent: the fields say what to fix
        REMEMBERED[workflow_id] = dict(params)
        pending = PendingRun(self._client, workflow_id, params, scheduler=self._scheduler,
                             runtime=self._run_kwargs.get("runtime"))
        self._show("note", "Starting a run…")
        pending.start(inline=True)  # with room now, the POST goes here, before it returns
        if pending.phase is LaunchPhase.LAUNCHED and pending.execution_id is not None:
            self._message.value = ""
            return self._watch(workflow_id, pending.execution_id, params)
        if pending.phase.ended:  # refused, or its answer lost: the form says why
            self._show_launch_error(pending.error or RuntimeError("the run was not started"))
            return None
        return self._queue(workflow_id, params, pending)  # it waits its turn: its card shows it

    def remove_run(self, run: WorkflowRunWidget) -> bool:
        """Remove a launch that is still queued (its card and history row); False when it
        was already sent (main thread, like the card's Remove button)."""
        if run.pending is None or run not in self.runs:
            return False
        if not run.remove() and run.launch_state != REMOVED:  # the card's own button first
            return False
        index = self.runs.index(run)
        row = self.history.pop(index)
        self.runs.pop(index)
        self._history.children = tuple(r.box for r in reversed(self.history))
        if self.current_run is run:
            self._current.children = (self.runs[-1],) if self.runs else ()
            for other in self.history:
                other.open_button.disabled = other.run is self.current_run
        row.close()
        run.close()
        return True

    def close(self) -> None:
        """Close every run widget, row and input this launcher made (and its own client)."""
        if getattr(self, "_fields", None) is None:  # __init__ refused an argument
            return
        with self._lock:
            if self._closed:
                return
            self._closed = True
            job, self._enable_job = self._enable_job, None
        if job is not None:
            job.cancel()
        for row in self.history:
            row.close()
        for run in self.runs:
            run.close()
        for field in self._fields:
            close_with_parts(*field.widgets())
        close_with_parts(*self._own_widgets())
        close_with_parts(self.layout)
        super().close()
        if self._owns_client:
            self._client.close()

    def __repr__(self) -> str:
        if self.info is not None:
            name = self.info.name
        elif self.workflow_id is None:
            name = "no workflow chosen"
        else:
            name = f"workflow {self.workflow_id} (not loaded)"
        parts = [f"WorkflowLauncher · {name}"]
        if self.info is not None:
            count = len(self.info.parameters)
            parts.append(f"{count} parameter{'s' if count != 1 else ''}")
        statuses: dict[str, int] = {}
        for run in self.runs:
            statuses[run.status] = statuses.get(run.status, 0) + 1
        detail = ", ".join(f"{n} {status}" for status, n in statuses.items())
        parts.append(f"{len(self.runs)} run{'s' if len(self.runs) != 1 else ''}"
                     + (f" ({detail})" if detail else ""))
        return " · ".join(parts)

    # -- building -----------------------------------------------------------------------

    def _build_views(self) -> None:
        self._style = widgets.HTML(
            render.STYLE + render.LAUNCHER_STYLE, layout=widgets.Layout(display="none")
        )
        self.picker = widgets.Dropdown(
            description="Workflow", tooltip="Your workflows enabled for the API",
            style={"description_width": render.LAUNCHER_LABEL_WIDTH},
            layout=widgets.Layout(width="100%", max_width="760px", display="none",
                                  flex_flow="row wrap"),
        )
        self.picker.add_class(render.FIELD_CLASS)
        self.picker.observe(self._on_pick, "value")
        self.header = widgets.HTML()
        self._form = widgets.VBox()
        self.run_button = widgets.Button(
            description="Run", icon="play", button_style="primary",
            tooltip="Start a run with these parameters", layout=widgets.Layout(width="auto"),
        )
        self.run_button.on_click(self._on_run_click)
        self.reload_button = widgets.Button(
            description="Reload", icon="refresh", tooltip="Fetch the workflow's schema again",
            layout=widgets.Layout(width="auto", display="none"),
        )
        self.reload_button.on_click(lambda _: self.reload())
        self._buttons = widgets.HBox([self.run_button, self.reload_button])
        self._message = widgets.HTML()
        self._current = widgets.Box()  # the card of the newest run, or of the one opened
        self._history_title = widgets.HTML()
        self._history = widgets.VBox()

    def _children(self) -> list[widgets.Widget]:
        return [self._style, self.picker, self.header, self._form, self._buttons,
                self._message, self._current, self._history_title, self._history]

    def _own_widgets(self) -> list[widgets.Widget]:
        return [*self._children(), self.run_button, self.reload_button]

    def _load_workflows(self) -> bool:
        """Fill the picker from the API and choose a workflow; False (said in the message
        area, form cleared) when there is none to choose."""
        try:
            workflows = [w for w in self._client.list_workflows() if _usable_id(w.id)]
            for workflow in workflows:
                note_limit(self._client.account, workflow.id, workflow.rate_limit)
        except ModelsLabError as error:
            workflows = []
            self._fail("Could not list your workflows", str(error),
                       "Check the API key and the network, then press Reload.")
        else:
            if not workflows:
                self._fail("No workflows are enabled for the API", "", NO_WORKFLOWS_HINT,
                           kind="note")
        self.workflows = workflows
        if not workflows:
            self.picker.layout.display = "none"
            return False
        ids = [workflow.id for workflow in workflows]
        chosen = self.workflow_id if self.workflow_id in ids else ids[0]
        self._syncing_picker = True  # new options move the value: not the user's choice
        try:
            self.picker.options = [(option_label(w), w.id) for w in workflows]
            self.picker.value = chosen
        finally:
            self._syncing_picker = False
        self.picker.layout.display = ""
        self.workflow_id = chosen
        return True

    def _on_pick(self, change: dict[str, Any]) -> None:
        if self._syncing_picker or change["new"] in (None, self.workflow_id):
            return
        self._message.value = ""
        self.workflow_id = str(change["new"])
        self._load_schema()

    def _load_schema(self) -> None:
        if self.workflow_id is None:
            return
        try:
            info = self._read_schema(self.workflow_id)
        except ModelsLabError as error:
            self._fail("Could not load the workflow", str(error),
                       "Check the workflow ID and the API key, then press Reload.")
            return
        self.reload_button.layout.display = "none"
        self.run_button.layout.display = ""
        self._build_form(self.workflow_id, info)

    def _read_schema(self, workflow_id: str) -> WorkflowInfo:
        """GET the schema within the workflow's budget (waiting at most ``SCHEMA_WAIT`` for a
        slot: the form needs it), and remember the workflow's rate limit."""
        budget = budget_for(self._client.account, workflow_id)
        info = send_in_slot(budget, RequestKind.SCHEMA,
                            lambda: self._client.get_workflow(workflow_id), timeout=SCHEMA_WAIT)
        budget.note_limit(info.rate_limit)
        return info

    def _fail(self, title: str, text: str, hint: str, kind: str = "error") -> None:
        """Nothing to fill in: say why, offer Reload, hide Run."""
        self._clear_form()
        self._show(kind, title, text, hint)
        self.reload_button.layout.display = ""
        self.run_button.layout.display = "none"

    def _clear_form(self) -> None:
        """Drop the form, keeping what was typed in it for when its workflow shows again."""
        if self._form_workflow is not None:
            self._drafts[self._form_workflow] = {
                field.parameter.key: field.input.value for field in self._fields if field.touched
            }
        for field in self._fields:
            close_with_parts(*field.widgets())
        self._fields = []
        self.inputs = {}
        self._form.children = ()
        self.header.value = ""
        self.info = None
        self._form_workflow = None

    def _build_form(self, workflow_id: str, info: WorkflowInfo) -> None:
        self._clear_form()
        initial = {**REMEMBERED.get(workflow_id, {}), **self._drafts.get(workflow_id, {})}
        self._fields = [_Field(param, initial) for param in info.parameters]
        self.inputs = {field.parameter.key: field.input for field in self._fields}
        self._form.children = tuple(field.box for field in self._fields)
        any_required = any(param.required for param in info.parameters)
        self.header.value = render.launcher_header(
            info.name, info.description, any_required, len(info.parameters)
        ) + render.note_line(_dropped_parameters_note(info))
        self.info = info
        self._form_workflow = workflow_id

    # -- running ------------------------------------------------------------------------

    def _checked_values(self) -> dict[str, Any] | None:
        """The values, or None after marking every field that cannot be sent as it is
        (required and empty, or not a number): all of them at once, before any request."""
        marked = 0
        for field in self._fields:
            problem = field.problem()
            field.show_errors([problem] if problem else [])
            marked += bool(problem)
        if marked:
            self._show("error", "Please fix the highlighted fields.",
                       f"{marked} field{'s' if marked != 1 else ''} to fix; nothing was sent.")
            return None
        return self.values()

    def _on_run_click(self, _: widgets.Button) -> None:
        if self.run_button.disabled or self._closed:
            return  # a click queued while the previous one was being handled
        self.run_button.disabled = True
        try:
            self.launch()
        finally:
            with self._lock:
                if not self._closed:
                    self._enable_job = self._scheduler.call_later(
                        RELAUNCH_DELAY, self._enable_run, in_pool=False
                    )

    def _enable_run(self) -> None:
        with self._lock:
            self._enable_job = None
            if not self._closed:
                self.run_button.disabled = False

    def _watch(
        self, workflow_id: str, execution_id: int | str, params: dict[str, Any]
    ) -> WorkflowRunWidget:
        return self._add_run(params, lambda **kwargs: WorkflowRunWidget(
            workflow_id, execution_id, client=self._client, **kwargs))

    def _queue(self, workflow_id: str, params: dict[str, Any],
               pending: PendingRun) -> WorkflowRunWidget:
        """The card of a launch waiting its turn (main thread)."""
        self._message.value = ""
        holder: list[HistoryRow] = []

        def make(**kwargs: Any) -> QueuedRunWidget:
            run = QueuedRunWidget(
                workflow_id, params, client=self._client, pending=pending,
                on_state=lambda run: holder[0].launch_changed(run) if holder else None,
                **kwargs)
            run.remove_button.on_click(lambda _: self.remove_run(run))
            return run

        run = self._add_run(params, make, holder)
        return run

    def _add_run(self, params: dict[str, Any], make: Any,
                 holder: list[HistoryRow] | None = None) -> WorkflowRunWidget:
        row = HistoryRow(len(self.runs) + 1, _prompt_of(params))
        if holder is not None:
            holder.append(row)
        kwargs = {"scheduler": self._scheduler, "label": _prompt_of(params)[:200] or None,
                  **self._run_kwargs}
        user_callback = kwargs.pop("on_complete", None)

        def completed(run: WorkflowRunWidget) -> None:
            row.on_complete(run)
            if user_callback is not None:
                user_callback(run)

        run: WorkflowRunWidget = make(on_complete=completed, **kwargs)
        row.follow(run)
        row.open_button.on_click(lambda _: self.open_run(run))
        self.runs.append(run)
        self.history.append(row)
        self._history.children = tuple(r.box for r in reversed(self.history))
        self._history_title.value = render.HISTORY_TITLE
        self.open_run(run)
        return run

    def _show_launch_error(self, error: Exception) -> None:
        if isinstance(error, ValidationError) and error.errors:
            self._show_field_errors(error.errors)
        elif isinstance(error, RateLimitError):
            wait = error.retry_after
            when = f"in {math.ceil(wait)} s" if wait is not None else "in a moment"
            self._show("error", f"Rate limited: try again {when}.", str(error))
        elif isinstance(error, NetworkError):
            self._show("error", "No answer from ModelsLab", str(error),
                       "The run may have started anyway: check before launching again.")
        else:
            self._show("error", "The run was not started", str(error))

    def _show_field_errors(self, errors: dict[str, list[str]]) -> None:
        """A 422's messages under their fields; those of no field in the message area (and
        "highlighted" only when some field is)."""
        fields = {field.parameter.key: field for field in self._fields}
        others: list[str] = []
        for key, messages in errors.items():
            if key in fields:
                fields[key].show_errors(list(messages))
            else:
                others += [f"{key}: {message}" for message in messages]
        marked = any(key in fields and messages for key, messages in errors.items())
        title = ("Please fix the highlighted fields." if marked
                 else "The server refused the parameters.")
        self._show("error", title, "; ".join(others))

    def _show(self, kind: str, title: str, text: str = "", hint: str = "") -> None:
        self._message.value = render.message(kind, title, text, hint)


def _usable_id(workflow_id: str) -> bool:
    """Whether a listed ID can name a workflow in a request (the list is untrusted input:
    an empty or ".." ID would fail later, outside the message area)."""
    try:
        path_segment(workflow_id, "workflow_id")
    except ValueError:
        return False
    return True


def _prompt_of(params: dict[str, Any]) -> str:
    """The text that best names a run: the prompt, else another prompt-like or text value."""
    keys = sorted(params, key=lambda k: (
        k != "prompt", "prompt" not in k.lower(), k.lower().startswith("negative")))
    text = next((params[k] for k in keys if isinstance(params[k], str)), "")
    return " ".join(text.split())


def _dropped_parameters_note(info: WorkflowInfo) -> str:
    """Why a schema with thousands of parameters shows only the first ones ("" if whole)."""
    if not info.dropped_parameters:
        return ""
    return (f"The schema lists {info.dropped_parameters:,} more parameters than the "
            f"{len(info.parameters)} shown here; a run sends only the fields above.")
