"""HTML for the run card: pure functions from run state to escaped markup.

Every string that comes from the API goes through ``html.escape`` here, and only http(s)
URLs become links. Colours are JupyterLab's ``--jp-*`` variables (with fallbacks for other
front ends), so the card follows the light and dark themes; status is always an icon and a
word, never colour alone. Nothing here imports ipywidgets, which keeps it easy to test.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any
from urllib.parse import unquote, urlsplit

from .text import ICONS, MAX_ROWS, format_seconds, shorten, step_window

STYLE = """<style>
.mlw-card{font-family:var(--jp-ui-font-family,sans-serif);font-size:var(--jp-ui-font-size1,13px);
 color:var(--jp-ui-font-color1,#212121);}
.mlw-header{display:flex;flex-wrap:wrap;align-items:center;gap:4px 10px;min-width:0}
.mlw-title{font-weight:600}
.mlw-sub{color:var(--jp-ui-font-color2,#616161);overflow:hidden;text-overflow:ellipsis;
 white-space:nowrap;max-width:32em}
.mlw-time{margin-left:auto;font-variant-numeric:tabular-nums;color:var(--jp-ui-font-color2,#616161)}
.mlw-badge{display:inline-flex;align-items:center;gap:4px;padding:1px 8px;border-radius:10px;
 font-weight:600;border:1px solid currentColor;white-space:nowrap}
.mlw-s-pending,.mlw-s-unknown{color:var(--jp-ui-font-color2,#616161)}
.mlw-s-running{color:var(--jp-brand-color1,#1976d2)}
.mlw-s-completed{color:var(--jp-success-color1,#388e3c)}
.mlw-s-failed{color:var(--jp-error-color1,#d32f2f)}
.mlw-s-cancelled{color:var(--jp-warn-color1,#f57c00)}
.mlw-progress{height:4px;margin:6px 0 2px;border-radius:2px;overflow:hidden;
 background:var(--jp-layout-color3,#e0e0e0)}
.mlw-progress>div{height:100%;background:var(--jp-brand-color1,#1976d2);transition:width .3s}
.mlw-progress.mlw-s-completed>div{background:var(--jp-success-color1,#388e3c)}
.mlw-progress.mlw-s-failed>div{background:var(--jp-error-color1,#d32f2f)}
.mlw-step{display:grid;grid-template-columns:1.4em minmax(0,1fr) 7em 5.5em;gap:0 8px;
 align-items:center;line-height:24px}
.mlw-step>span{min-width:0;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.mlw-icon{text-align:center;font-weight:700}
.mlw-dur{text-align:right;font-variant-numeric:tabular-nums;color:var(--jp-ui-font-color2,#616161)}
.mlw-spin{display:inline-block;animation:mlw-spin 1s linear infinite}
@keyframes mlw-spin{to{transform:rotate(360deg)}}
@media (prefers-reduced-motion:reduce){.mlw-spin{animation:none}}
.mlw-message{padding:6px 10px;border-radius:4px;border-left:4px solid;margin:4px 0;
 overflow-wrap:anywhere;max-height:12em;overflow:auto;background:var(--jp-layout-color2,#eee)}
.mlw-message.mlw-error{border-color:var(--jp-error-color1,#d32f2f)}
.mlw-message.mlw-note{border-color:var(--jp-warn-color1,#f57c00)}
.mlw-hint{color:var(--jp-ui-font-color2,#616161);margin-top:2px}
.mlw-caption{font-size:var(--jp-ui-font-size0,11px);color:var(--jp-ui-font-color2,#616161);
 max-width:256px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.mlw-caption a{color:var(--jp-content-link-color,#1976d2)}
.mlw-placeholder{width:160px;height:100px;display:flex;align-items:center;justify-content:center;
 text-align:center;padding:6px;box-sizing:border-box;border:1px dashed var(--jp-border-color1,#bbb);
 color:var(--jp-ui-font-color2,#616161);overflow-wrap:anywhere;overflow:hidden;
 font-size:var(--jp-ui-font-size0,11px)}
</style>"""


def status_class(status: str) -> str:
    return status if status in ICONS else "unknown"


def icon(status: str) -> str:
    symbol = ICONS.get(status, ICONS["unknown"])
    return f'<span class="mlw-spin">{symbol}</span>' if status == "running" else symbol


def status_word(status: str) -> str:
    return status.replace("_", " ").capitalize()


def status_label(status: str, word: str | None = None) -> str:
    """Icon and word in the status colour (board rows, launcher history)."""
    text = escape(word if word is not None else status_word(status))
    return f'<span class="mlw-s-{status_class(status)}">{icon(status)} {text}</span>'


def badge(status: str) -> str:
    word = escape(status_word(status))
    return (
        f'<span class="mlw-badge mlw-s-{status_class(status)}" title="Run status">'
        f"{icon(status)} {word}</span>"
    )


def header(
    *,
    status: str,
    workflow_id: str,
    execution_id: str,
    elapsed: float | None,
    finished: bool,
    steps_done: int,
    steps_known: int,
    remaining: float | None = None,
) -> str:
    timing = "Took" if finished else "Elapsed"
    left = f" · ~{format_seconds(remaining)} left" if remaining is not None else ""
    return (
        '<div class="mlw-header">'
        f"{badge(status)}"
        f'<span class="mlw-title">Run {escape(execution_id)}</span>'
        f'<span class="mlw-sub" title="{escape(workflow_id)}">workflow {escape(workflow_id)}</span>'
        f'<span class="mlw-time">{steps_done}/{steps_known} steps · {timing} '
        f"{format_seconds(elapsed)}{left}</span></div>"
    )


def progress_bar(
    status: str, steps: Sequence[Mapping[str, Any]], fraction: float | None = None
) -> str:
    """Expected time done when known (``fraction``), else steps done out of steps known."""
    done = sum(1 for step in steps if step.get("status") == "completed")
    known = len(steps)
    if status == "completed":
        percent = 100
    elif fraction is not None:
        percent = int(100 * min(1.0, max(0.0, fraction)))
    else:
        percent = int(100 * done / max(1, known))
    return (
        f'<div class="mlw-progress mlw-s-{status_class(status)}" role="progressbar" '
        f'aria-valuenow="{done}" aria-valuemax="{known}"><div style="width:{percent}%"></div></div>'
    )


WAITING_FOR_STEPS = '<div class="mlw-card mlw-sub">Waiting for the first steps…</div>'


def step_row(index: int, step: Mapping[str, Any], running_for: float | None) -> str:
    """One step as a small grid of its own (fixed columns, so separate rows line up)."""
    status = str(step.get("status") or "unknown")
    name = escape(str(step.get("name") or f"Step {index + 1}"))
    seconds = step.get("duration")
    if seconds is None:
        seconds = running_for
    cls = f"mlw-s-{status_class(status)}"
    return (
        '<div class="mlw-card mlw-step">'
        f'<span class="mlw-icon {cls}" aria-hidden="true">{icon(status)}</span>'
        f'<span class="mlw-name" title="{name}">{name}</span>'
        f'<span class="{cls}">{escape(status.replace("_", " "))}</span>'
        f'<span class="mlw-dur">{format_seconds(seconds) if seconds is not None else ""}</span>'
        "</div>"
    )


def hidden_steps(count: int, where: str) -> str:
    """The line standing for the steps outside the window ("… 3 earlier steps")."""
    if not count:
        return ""
    return (
        f'<div class="mlw-card mlw-step"><span></span><span class="mlw-sub">… {count} {where} '
        f'step{"s" if count != 1 else ""}</span></div>'
    )


@dataclass(frozen=True)
class StepsView:
    """The step list as separate fragments, one per view, so a change touches only its row.
    ``before`` is the waiting line or the earlier steps' count; empty strings mean hidden."""

    before: str
    rows: list[str]
    after: str


def steps_view(
    steps: Sequence[Mapping[str, Any]], running_for: Mapping[int, float], rows: int = MAX_ROWS
) -> StepsView:
    """The rows to show (a window of ``rows`` for long runs); ``running_for`` holds the live
    timers of running steps by index."""
    if not steps:
        return StepsView(WAITING_FOR_STEPS, [], "")
    start, end = step_window([str(step.get("status")) for step in steps], rows)
    return StepsView(
        hidden_steps(start, "earlier"),
        [step_row(i, steps[i], running_for.get(i)) for i in range(start, end)],
        hidden_steps(len(steps) - end, "more"),
    )


def summary(
    *,
    status: str,
    workflow_id: str,
    execution_id: str,
    elapsed: float | None,
    finished: bool,
    steps: Sequence[Mapping[str, Any]],
    remaining: float | None = None,
    fraction: float | None = None,
) -> str:
    """Header and progress bar: the part of the card that moves with every tick.
    ``remaining`` and ``fraction`` come from earlier runs' timings when there are some."""
    done = sum(1 for step in steps if step.get("status") == "completed")
    top = header(
        status=status, workflow_id=workflow_id, execution_id=execution_id, elapsed=elapsed,
        finished=finished, steps_done=done, steps_known=len(steps), remaining=remaining,
    )
    return f'<div class="mlw-card">{top}{progress_bar(status, steps, fraction)}</div>'


def message(kind: str, title: str, text: str = "", hint: str = "") -> str:
    """An error panel (``kind="error"``) or a notice (``kind="note"``)."""
    if not title:
        return ""
    role = "alert" if kind == "error" else "status"
    body = f"<div>{escape(text)}</div>" if text else ""
    tip = f'<div class="mlw-hint">{escape(hint)}</div>' if hint else ""
    return (
        f'<div class="mlw-card mlw-message mlw-{kind}" role="{role}">'
        f"<b>{escape(title)}</b>{body}{tip}</div>"
    )


def _scheme(url: str) -> str:
    try:
        return urlsplit(url).scheme.lower()
    except ValueError:  # malformed, e.g. an unclosed IPv6 bracket
        return ""


def safe_link(url: str, label: str) -> str:
    """A link that opens in a new tab, or plain text when the URL is not http(s)."""
    if _scheme(url) not in ("http", "https"):
        return escape(label)
    return (
        f'<a href="{escape(url, quote=True)}" target="_blank" rel="noopener noreferrer">'
        f"{escape(label)} ↗</a>"
    )


def short_name(url: str) -> str:
    try:
        name = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    except ValueError:
        name = ""
    return name or url


def caption(index: int, url: str, size: tuple[int, int] | None) -> str:
    dims = f" · {size[0]}×{size[1]}" if size else ""
    return (
        f'<div class="mlw-card mlw-caption" title="{escape(url)}">'
        f"{safe_link(url, short_name(url))}{dims}</div>"
    )


def placeholder(index: int, url: str, reason: str) -> str:
    return (
        f'<div class="mlw-card"><div class="mlw-placeholder" role="img" '
        f'aria-label="image unavailable">⚠ Image #{index + 1} unavailable: {escape(reason)}</div>'
        f"{caption(index, url, None)}</div>"
    )


def more_outputs(urls: Sequence[str], start: int) -> str:
    if not urls:
        return ""
    links = ", ".join(safe_link(url, f"#{start + i + 1}") for i, url in enumerate(urls))
    return f'<div class="mlw-card mlw-caption">{len(urls)} more: {links}</div>'


# -- launcher --------------------------------------------------------------------------------
# The launcher's form, picker and history. Its own rules are scoped with two classes
# (``.mlw-card.mlw-field-error``) because every run card injects STYLE again further down the
# page, and a later ``.mlw-card{color:…}`` would otherwise win and grey out the error lines.

LAUNCHER_LABEL_WIDTH = "17.5em"

LAUNCHER_STYLE = """<style>
.mlw-card.mlw-field-error{color:var(--jp-error-color1,#d32f2f);margin:0 0 4px 17.5em;
 font-size:var(--jp-ui-font-size0,11px);overflow-wrap:anywhere}
.mlw-invalid input,.mlw-invalid textarea{border-color:var(--jp-error-color1,#d32f2f)!important;
 box-shadow:0 0 0 1px var(--jp-error-color1,#d32f2f)!important}
.mlw-invalid .widget-label,.mlw-invalid label{color:var(--jp-error-color1,#d32f2f)!important}
.mlw-key{font-family:var(--jp-code-font-family,monospace);font-size:var(--jp-ui-font-size0,11px);
 color:var(--jp-ui-font-color2,#616161);margin-left:4px}
.mlw-history-row{display:flex;gap:8px;align-items:center;min-width:0}
.mlw-history-row>span{white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
</style>"""

HISTORY_TITLE = '<div class="mlw-card mlw-title">History</div>'


def field_words(key: str) -> str:
    """A parameter key as words: ``negative_prompt`` -> ``Negative prompt`` (plain text)."""
    words = " ".join(key.replace("_", " ").replace("-", " ").split())
    return words[:1].upper() + words[1:] if words else key


def field_label(key: str, required: bool) -> str:
    """A field's label: the key as words, ``*`` when required, and the key itself small
    beside it (it is what ``launcher.inputs`` and the API call the field)."""
    mark = " *" if required else ""
    return f'{escape(field_words(key))}{mark}<span class="mlw-key">{escape(key)}</span>'


def field_error(messages: Sequence[str]) -> str:
    """The error line under a field; empty when there is nothing to say."""
    if not messages:
        return ""
    text = "<br>".join(escape(message) for message in messages)
    return f'<div class="mlw-card mlw-field-error" role="alert">⚠ {text}</div>'


def launcher_header(name: str, description: str, any_required: bool, parameters: int) -> str:
    """The form's title block: the workflow's name and description, the ``*`` note."""
    about = f'<div class="mlw-sub">{escape(description)}</div>' if description else ""
    note = '<div class="mlw-hint">* required</div>' if any_required else ""
    empty = "" if parameters else '<div class="mlw-hint">No parameters.</div>'
    return (
        f'<div class="mlw-card"><div class="mlw-title">{escape(name)}</div>'
        f"{about}{note}{empty}</div>"
    )


def history_row(
    number: int, status: str, execution_id: str, prompt: str, error: str, preview: int
) -> str:
    """One launched run in the history: number, status, run ID, the prompt shortened."""
    run_id = escape(execution_id) if execution_id else "…"
    return (
        f'<div class="mlw-card mlw-history-row" title="{escape(error)}">'
        f"<span>#{number}</span>{status_label(status)}<span>Run {run_id}</span>"
        f'<span class="mlw-sub" title="{escape(prompt)}">'
        f"{escape(shorten(prompt, preview))}</span></div>"
    )


def note_line(text: str) -> str:
    """A small note under the header (e.g. that an answer was cut); "" for no text."""
    return f'<div class="mlw-card mlw-caption">{escape(text)}</div>' if text else ""
