"""Property-based tests: arbitrary JSON never crashes the parser, and arbitrary text from the
API is always escaped in the card's HTML."""

from __future__ import annotations

import html
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelslab_widget import render
from modelslab_widget.errors import APIError, ResponseFormatError
from modelslab_widget.models import RunSnapshot, Step

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=25,
)
field_values = json_values | st.sampled_from(["completed", "running", "2024-01-15T10:30:00Z"])
run_like = st.fixed_dictionaries(
    {},
    optional={
        "status": st.sampled_from(["success", "error", "completed"]) | json_values,
        "execution": st.dictionaries(
            st.sampled_from(["id", "status", "started_at", "completed_at", "execution_time"]),
            field_values,
        )
        | json_values,
        "steps": st.lists(st.dictionaries(st.sampled_from(["name", "status"]), field_values))
        | json_values,
        "output": json_values,
        "error": json_values,
        "message": json_values,
    },
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(run_like | json_values)
def test_parser_raises_only_its_own_errors(payload):
    try:
        snapshot = RunSnapshot.from_api(payload)
    except (ResponseFormatError, APIError):
        return
    assert isinstance(snapshot.status, str) and isinstance(snapshot.steps, tuple)
    assert all(isinstance(url, str) for url in snapshot.outputs)
    repr(snapshot)
    [step.to_dict() for step in snapshot.steps]


hostile_text = st.text(max_size=200) | st.sampled_from(
    [
        "<script>alert(1)</script>",
        '"><img src=x onerror=alert(1)>',
        "' onmouseover='x",
        "مرحبا بالعالم \u202e gnp.exe",
        "🦊🖼️" * 40,
        "x" * 10_000,
        "</style><style>*{display:none}</style>",
    ]
)
TAG = re.compile(r"<(/?)([a-zA-Z]+)")
ALLOWED_TAGS = {"div", "span", "b", "a", "style"}


def assert_safe(markup: str, text: str | None) -> None:
    """Only the card's own tags, and (when given) the text present in its escaped form."""
    tags = {name.lower() for _, name in TAG.findall(markup)}
    assert tags <= ALLOWED_TAGS, tags
    if text is not None:
        assert html.escape(text) in markup


@settings(max_examples=300)
@given(name=hostile_text, status=hostile_text, error=hostile_text, wf=hostile_text)
def test_card_html_escapes_everything(name, status, error, wf):
    steps = [Step(name=name, status=status).to_dict()]
    header = render.header(
        status=status,
        workflow_id=wf,
        execution_id=name,
        elapsed=1.0,
        finished=False,
        steps_done=0,
        steps_known=1,
    )
    table = "".join(render.steps_view(steps, {}).rows)
    panel = render.message("error", "The run failed", error, "hint")
    for markup, text in ((header, None), (header, wf), (table, name or None), (panel, error)):
        assert_safe(markup, text)
        assert markup.count("<div") == markup.count("</div>")  # layout cannot be broken


@given(url=hostile_text)
def test_only_http_links(url):
    link = render.safe_link(url, "label")
    if "<a " in link:
        assert url.lower().startswith(("http:", "https:"))
        assert 'href="' + html.escape(url, quote=True) + '"' in link
