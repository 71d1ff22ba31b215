"""WorkflowLauncher: a form built from a workflow's schema that starts runs and watches them.

Threads. The schema is fetched synchronously in ``__init__``: the form's widgets depend on
it and must be created on the main thread, and there is no way back to the main thread from
a pool thread; one GET bounded by the client's timeout is cheaper than a second, async
"Loading…" code path. For the same reason the Run button's handler (which ipywidgets runs on
the main thread) POSTs synchronously and creates the run's ``WorkflowRunWidget`` right
there. Only the history rows' values (status, thumbnail) are set later, from pool threads.

One click, one run. ipywidgets delivers clicks one after another and ``Button.click()``
does not look at ``disabled``: a double click queues two click messages, and the second is
handled right *after* the first handler returned. So the handler ignores clicks while the
button is disabled, and the button is re-enabled only ``RELAUNCH_DELAY`` after the answer
(by the shared scheduler), which swallows the queued duplicate while a real second click
still works a moment later. ``POST .../run`` itself is never retried once sent (client).
"""

from __future__ import annotations

import math
import threading
from html import escape
from typing import Any

import ipywidgets as widgets
from traitlets import TraitError

from . import render
from .client import WorkflowsClient, path_segment
from .errors import ModelsLabError, NetworkError, RateLimitError, ValidationError
from .media import encode_small
from .models import Parameter, WorkflowInfo
from .scheduler import Job, Scheduler, shared_scheduler
from .widget import CARD_LAYOUT, WorkflowRunWidget, close_with_parts

#: workflow_id -> the values last submitted for it in this kernel (pre-filled next time)
REMEMBERED: dict[str, dict[str, Any]] = {}

RELAUNCH_DELAY = 0.5  # seconds the Run button stays disabled after the server answered
HISTORY_THUMB = 64  # pixels
PROMPT_PREVIEW = 60  # characters of the prompt shown in a history row
LABEL_WIDTH = "11em"

LAUNCHER_STYLE = """<style>
.mlw-field-error{color:var(--jp-error-color1,#d32f2f);margin:0 0 4px 11em;
 font-size:var(--jp-ui-font-size0,11px);overflow-wrap:anywhere}
.mlw-history-row{display:flex;gap:8px;align-items:center;min-width:0}
.mlw-history-row>span{white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
</style>"""

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


class _Field:
    """One parameter's input, with the error line under it."""

    def __init__(self, parameter: Parameter, remembered: dict[str, Any]) -> None:
        self.parameter = parameter
        self.kind = input_kind(parameter)
        self.input = self._make_input()
        self.error = widgets.HTML()
        self.box = widgets.VBox([self.input, self.error])
        # An optional checkbox is sent only once touched: False shown in an untouched box must
        # not override the workflow's own default. (Empty text and number boxes are left out.)
        self.touched = False
        if parameter.key in remembered:
            value = remembered[parameter.key]
            try:
                self.input.value = number_text(value) if self.kind in NUMBER_KINDS else value
                self.touched = True
            except TraitError:
                pass  # the schema changed type since: start blank
        self.input.observe(self._on_edit, "value")

    def _make_input(self) -> widgets.Widget:
        param = self.parameter
        label = param.key + (" *" if param.required else "")
        where = " · ".join(x for x in (param.node_name, param.node_id) if x)
        tooltip = f"{param.key} ({param.type}{', required' if param.required else ''})"
        tooltip += f" · {where}" if where else ""
        common: dict[str, Any] = {
            "description": label, "description_allow_html": False, "tooltip": tooltip,
            "style": {"description_width": LABEL_WIDTH},
        }
        if self.kind == "textarea":
            return widgets.Textarea(
                layout=widgets.Layout(width="100%", max_width="720px", height="4.5em"),
                placeholder="required" if param.required else "", **common,
            )
        if self.kind in NUMBER_KINDS:
            # A text box, not FloatText: that cannot be empty, and a 0 shown in it reads as
            # "width 0" when the workflow's own default is what will be used.
            return widgets.Text(
                layout=widgets.Layout(width="22em"),
                placeholder="required" if param.required else "default", **common,
            )
        if self.kind == "bool":
            return widgets.Checkbox(indent=True, layout=widgets.Layout(width="auto"), **common)
        return widgets.Text(
            layout=widgets.Layout(width="100%", max_width="720px"),
            placeholder="required" if param.required else "", **common,
        )

    def _on_edit(self, change: dict[str, Any]) -> None:
        self.touched = True

    def value(self) -> Any:
        """The value to send, or _NOT_SET to leave the parameter out; ValueError when a
        number box holds something that is not a number."""
        value = self.input.value
        if self.kind == "bool":
            return value if self.parameter.required or self.touched else _NOT_SET
        if not value.strip():
            return _NOT_SET
        return parse_number(value, self.kind) if self.kind in NUMBER_KINDS else value

    def show_errors(self, messages: list[str]) -> None:
        text = "<br>".join(escape(message) for message in messages)
        self.error.value = f'<div class="mlw-card mlw-field-error" role="alert">⚠ {text}</div>'

    def widgets(self) -> list[widgets.Widget]:
        return [self.input, self.error, self.box]


class _HistoryRow:
    """One launched run: a 64 px thumbnail slot and a line with its live status."""

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
        self.box = widgets.HBox([self.image, self.text], layout=widgets.Layout(
            align_items="center", margin="2px 0"))

    def follow(self, run: WorkflowRunWidget) -> None:
        self.run = run
        run.observe(self._on_status, "status")
        self.render()  # the first answer may have come before we observed

    def _on_status(self, change: dict[str, Any]) -> None:
        self.render()

    def render(self) -> None:
        run = self.run
        status = run.status if run is not None else "unknown"
        run_id = escape(str(run.execution_id)) if run is not None else "…"
        preview = render.shorten(self.prompt, PROMPT_PREVIEW)
        error = run.error if run is not None and status == "failed" else ""
        markup = (
            f'<div class="mlw-card mlw-history-row" title="{escape(error)}">'
            f"<span>#{self.number}</span>{render.status_label(status)}<span>Run {run_id}</span>"
            f'<span class="mlw-sub" title="{escape(self.prompt)}">'
            f"{escape(preview)}</span></div>"
        )
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
        close_with_parts(self.image, self.text, self.box)


class WorkflowLauncher(widgets.VBox):
    """A form for a workflow's parameters with a Run button; each run is watched below it
    and listed in a small history.

    ``WorkflowLauncher(workflow_id, api_key=..., base_url=...)`` or ``client=...``; other
    keyword arguments go to each run's ``WorkflowRunWidget`` (``poll_interval``, ...).
    Create it on the main thread (it fetches the schema there, once).
    """

    def __init__(
        self,
        workflow_id: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        client: WorkflowsClient | None = None,
        scheduler: Scheduler | None = None,
        **run_kwargs: Any,
    ) -> None:
        path_segment(workflow_id, "workflow_id")
        self.workflow_id = str(workflow_id)
        self.info: WorkflowInfo | None = None
        self.inputs: dict[str, widgets.Widget] = {}  # parameter key -> its input widget
        self.runs: list[WorkflowRunWidget] = []
        self._run_kwargs = run_kwargs
        self._owns_client = client is None
        self._client = client or WorkflowsClient(api_key, base_url=base_url)
        self._scheduler = scheduler or shared_scheduler()
        self._fields: list[_Field] = []
        self._history_rows: list[_HistoryRow] = []
        self._enable_job: Job | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._build_views()
        super().__init__(children=self._children(), layout=widgets.Layout(**CARD_LAYOUT))
        self.reload()

    # -- public API ---------------------------------------------------------------------

    def reload(self) -> None:
        """Fetch the workflow's schema and (re)build the form; on the main thread."""
        self._message.value = ""
        try:
            info = self._client.get_workflow(self.workflow_id)
        except ModelsLabError as error:
            self._show("error", "Could not load the workflow", str(error),
                       "Check the workflow ID and the API key, then press Reload.")
            self._reload_button.layout.display = ""
            self._run_button.layout.display = "none"
            return
        self.info = info
        self._reload_button.layout.display = "none"
        self._run_button.layout.display = ""
        self._build_form(info)

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

    def _checked_values(self) -> dict[str, Any] | None:
        """The values, or None after marking every field that holds something invalid."""
        problems = 0
        for field in self._fields:
            field.error.value = ""
            try:
                field.value()
            except ValueError as error:
                field.show_errors([str(error)])
                problems += 1
        if problems:
            self._show("error", "Please fix the highlighted fields.")
            return None
        return self.values()

    def launch(self) -> WorkflowRunWidget | None:
        """Start a run with the form's values, as the Run button does (main thread): returns
        its widget, or None when the server refused (the reason is shown in the form)."""
        if self.info is None or self._closed:
            return None
        params = self._checked_values()
        if params is None:
            return None  # nothing sent: the fields say what to fix
        REMEMBERED[self.workflow_id] = dict(params)
        self._show("note", "Starting a run…")
        try:
            execution_id = self._client.run_workflow(self.workflow_id, params)
        except ModelsLabError as error:
            self._show_launch_error(error)
            return None
        self._message.value = ""
        return self._watch(execution_id, params)

    def close(self) -> None:
        """Close every run widget, row and input this launcher made (and its own client)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            job, self._enable_job = self._enable_job, None
        if job is not None:
            job.cancel()
        for row in self._history_rows:
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
        name = self.info.name if self.info else f"workflow {self.workflow_id} (not loaded)"
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
            render.STYLE + LAUNCHER_STYLE, layout=widgets.Layout(display="none")
        )
        self._header = widgets.HTML()
        self._form = widgets.VBox()
        self._run_button = widgets.Button(
            description="Run", icon="play", button_style="primary",
            tooltip="Start a run with these parameters", layout=widgets.Layout(width="auto"),
        )
        self._run_button.on_click(self._on_run_click)
        self._reload_button = widgets.Button(
            description="Reload", icon="refresh", tooltip="Fetch the workflow's schema again",
            layout=widgets.Layout(width="auto", display="none"),
        )
        self._reload_button.on_click(lambda _: self.reload())
        self._buttons = widgets.HBox([self._run_button, self._reload_button])
        self._message = widgets.HTML()
        self._current = widgets.Box()  # the newest run's card
        self._history_title = widgets.HTML()
        self._history = widgets.VBox()

    def _children(self) -> list[widgets.Widget]:
        return [self._style, self._header, self._form, self._buttons, self._message,
                self._current, self._history_title, self._history]

    def _own_widgets(self) -> list[widgets.Widget]:
        return [*self._children(), self._run_button, self._reload_button]

    def _build_form(self, info: WorkflowInfo) -> None:
        for field in self._fields:  # a reload replaces the form
            close_with_parts(*field.widgets())
        remembered = REMEMBERED.get(self.workflow_id, {})
        self._fields = [_Field(param, remembered) for param in info.parameters]
        self.inputs = {field.parameter.key: field.input for field in self._fields}
        self._form.children = tuple(field.box for field in self._fields)
        any_required = any(param.required for param in info.parameters)
        description = (
            f'<div class="mlw-sub">{escape(info.description)}</div>'
            if info.description else ""
        )
        note = '<div class="mlw-hint">* required</div>' if any_required else ""
        empty = "" if info.parameters else '<div class="mlw-hint">No parameters.</div>'
        self._header.value = (
            f'<div class="mlw-card"><div class="mlw-title">{escape(info.name)}</div>'
            f"{description}{note}{empty}</div>"
        )

    # -- running ------------------------------------------------------------------------

    def _on_run_click(self, _: widgets.Button) -> None:
        if self._run_button.disabled or self._closed:
            return  # a click queued while the previous one was being handled
        self._run_button.disabled = True
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
                self._run_button.disabled = False

    def _watch(self, execution_id: int | str, params: dict[str, Any]) -> WorkflowRunWidget:
        row = _HistoryRow(len(self.runs) + 1, _prompt_of(params))
        kwargs = {"scheduler": self._scheduler, **self._run_kwargs}
        user_callback = kwargs.pop("on_complete", None)

        def completed(run: WorkflowRunWidget) -> None:
            row.on_complete(run)
            if user_callback is not None:
                user_callback(run)

        run = WorkflowRunWidget(
            self.workflow_id, execution_id, client=self._client, on_complete=completed,
            **kwargs,
        )
        row.follow(run)
        self.runs.append(run)
        self._history_rows.append(row)
        self._current.children = (run,)
        self._history.children = tuple(r.box for r in reversed(self._history_rows))
        self._history_title.value = '<div class="mlw-card mlw-title">History</div>'
        return run

    def _show_launch_error(self, error: ModelsLabError) -> None:
        if isinstance(error, ValidationError) and error.errors:
            fields = {field.parameter.key: field for field in self._fields}
            others: list[str] = []
            for key, messages in error.errors.items():
                if key in fields:
                    fields[key].show_errors(messages)
                else:
                    others += [f"{key}: {message}" for message in messages]
            self._show("error", "Please fix the highlighted fields.", "; ".join(others))
        elif isinstance(error, RateLimitError):
            wait = error.retry_after
            when = f"in {math.ceil(wait)} s" if wait is not None else "in a moment"
            self._show("error", f"Rate limited: try again {when}.", str(error))
        elif isinstance(error, NetworkError):
            self._show("error", "No answer from ModelsLab", str(error),
                       "The run may have started anyway: check before launching again.")
        else:
            self._show("error", "The run was not started", str(error))

    def _show(self, kind: str, title: str, text: str = "", hint: str = "") -> None:
        self._message.value = render.message(kind, title, text, hint)


def _prompt_of(params: dict[str, Any]) -> str:
    """The text that best names a run: the prompt, else another prompt-like or text value."""
    keys = sorted(params, key=lambda k: (
        k != "prompt", "prompt" not in k.lower(), k.lower().startswith("negative")))
    text = next((params[k] for k in keys if isinstance(params[k], str)), "")
    return " ".join(text.split())
