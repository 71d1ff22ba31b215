"""HTML for the run card: pure functions from run state to escaped markup.

Every string that comes from the API goes through ``html.escape`` here, and only http(s)
URLs become links. Colours are JupyterLab's ``--jp-*`` variables (with fallbacks for other
front ends), so the card follows the light and dark themes; status is always an icon and a
word, never colour alone. Nothing here imports ipywidgets, which keeps it easy to test.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any
from urllib.parse import unquote, urlsplit

from .runstate import RunState
from .sanitize import shorten
from .text import (
    ICONS,
    MAX_ROWS,
    WATCH_ERROR,
    counts_text,
    format_seconds,
    step_window,
)
from .urls import is_web_url

ID_CLASS = "mlw-id"  # a long ID shown shortened: its first 8 characters and "…"

STYLE = """<style>
.mlw-card{font-family:var(--jp-ui-font-family,sans-serif);font-size:var(--jp-ui-font-size1,13px);
 color:var(--jp-ui-font-color1,#212121);}
.mlw-header{display:flex;flex-wrap:wrap;align-items:center;gap:4px 10px;min-width:0}
.mlw-title{font-weight:600;white-space:nowrap}
.mlw-title.mlw-label{white-space:normal;overflow-wrap:break-word;min-width:0}
.mlw-sub{color:var(--jp-ui-font-color2,#616161);min-width:0;overflow-wrap:anywhere}
.mlw-time{margin-left:auto;text-align:right;font-variant-numeric:tabular-nums;
 color:var(--jp-ui-font-color2,#616161)}
.mlw-time>span{white-space:nowrap}
.mlw-id{display:inline-block;max-width:9.5ch;overflow:hidden;text-overflow:ellipsis;
 white-space:nowrap;vertical-align:bottom;font-family:var(--jp-code-font-family,monospace)}
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
.mlw-step{display:grid;grid-template-columns:1.4em minmax(0,1fr) 6em 5.5em;gap:0 8px;
 align-items:center;line-height:24px}
.mlw-step>span{min-width:0;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.mlw-step>.mlw-name{white-space:normal;overflow-wrap:anywhere;line-height:18px;padding:3px 0}
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
    """The run status whose colour and icon ``status`` takes; a launch's own states
    (``LAUNCH_STATUS``) look like the run status they stand nearest to."""
    status = _LAUNCH_LOOKS.get(status, status)
    return status if status in ICONS else "unknown"


def icon(status: str, live: bool = True) -> str:
    """The status symbol; a running one spins only while the run is ``live`` (watched)."""
    symbol = ICONS[status_class(status)]
    spinning = status == "running" and live
    return f'<span class="mlw-spin">{symbol}</span>' if spinning else symbol


def status_word(status: str) -> str:
    return status.replace("_", " ").capitalize()


# What a view shows about its own watching, besides the run's status (``state=``):
LIVE = ""  # watched: a running run's icon spins
PAUSED = "paused"  # this view stopped watching (Stop, or its time limit)
UNWATCHED = "not watched"  # watching ended on an error before the run ended
_COULD_NOT_WATCH = "Could not watch"


def watch_word(state: RunState) -> str:
    """Which of the three a view of ``state`` (``RunWatch.state_for(view)``) shows."""
    if state.ended or state.watching:
        return LIVE
    if state.gave_up:
        return UNWATCHED
    return PAUSED if state.paused else LIVE  # the badge when nothing at all is known of the run


def status_label(status: str, word: str | None = None, state: str = LIVE) -> str:
    """Icon and word in the status colour (board rows, launcher history); a ``state`` other
    than LIVE stops the spinner and is said after the status: "Running · paused"."""
    text = word if word is not None else status_word(status)
    if state:
        text = f"{text} · {state}"
    return (
        f'<span class="mlw-s-{status_class(status)}">{icon(status, not state)} '
        f"{escape(text)}</span>"
    )


def badge(status: str, state: str = LIVE) -> str:
    if state == UNWATCHED and status_class(status) == "unknown":
        cls, symbol, word = "failed", "⚠", _COULD_NOT_WATCH
    else:
        cls, symbol = status_class(status), icon(status, not state)
        word = status_word(status) + (f" · {state}" if state else "")
    return (
        f'<span class="mlw-badge mlw-s-{cls}" title="Run status">{symbol} {escape(word)}</span>'
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
    state: str = LIVE,
    overdue: bool = False,
    label: str = "",
) -> str:
    """Badge, the run's label (when it has one) and ID, the workflow ID, the time line. An
    estimate shows only while the run is watched; a step past its usual time says so
    instead of a time left it cannot know.
    Once watching failed before anything was known, the time line (all dashes) is left out."""
    title = f'<span class="mlw-title">Run {escape(execution_id)}</span>'
    if label:
        title = (f'<span class="mlw-title mlw-label">{escape(label)}</span>'
                 f'<span class="mlw-sub">Run {escape(execution_id)}</span>')
    workflow = escape(workflow_id)
    # The workflow ID shows its first 8 characters and "…" (CSS: .mlw-id); the whole ID is
    # in the DOM (a selection copies it) and in the title (hover).
    sub = (f'<span class="mlw-sub">workflow '
           f'<span class="{ID_CLASS}" title="{workflow}">{workflow}</span></span>')
    time_line = ""
    if not (state == UNWATCHED and status_class(status) == "unknown"):
        timing = "Took" if finished else "Elapsed"
        pieces = [f"{steps_done}/{steps_known} steps", f"{timing} {format_seconds(elapsed)}"]
        if not state and not finished and overdue:
            pieces.append("taking longer than usual")
        elif not state and not finished and remaining is not None:
            pieces.append(f"~{format_seconds(remaining)} left")
        # each piece unbroken, its "·" at its end: a wrapped line never starts with "·"
        time_line = '<span class="mlw-time">' + " ".join(
            f"<span>{escape(piece)}{' ·' if i < len(pieces) - 1 else ''}</span>"
            for i, piece in enumerate(pieces)) + "</span>"
    return f'<div class="mlw-header">{badge(status, state)}{title}{sub}{time_line}</div>'


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
    state: str = LIVE,
    overdue: bool = False,
    with_bar: bool = True,
    label: str = "",
) -> str:
    """Header and progress bar: the part of the card that moves with every tick (the card
    shows the bar apart, ``with_bar=False`` and ``card_bar``, so it spans the buttons too).
    ``remaining``, ``fraction`` and ``overdue`` come from earlier runs' timings when there
    are some; ``state`` says whether this view is watching (see ``header``)."""
    done = sum(1 for step in steps if step.get("status") == "completed")
    top = header(
        status=status, workflow_id=workflow_id, execution_id=execution_id, elapsed=elapsed,
        finished=finished, steps_done=done, steps_known=len(steps), remaining=remaining,
        state=state, overdue=overdue, label=label,
    )
    if not with_bar:
        return f'<div class="mlw-card">{top}</div>'
    nothing_known = state == UNWATCHED and status_class(status) == "unknown"
    bar = "" if nothing_known else progress_bar(status, steps, fraction)
    return f'<div class="mlw-card">{top}{bar}</div>'


def card_bar(
    status: str, steps: Sequence[Mapping[str, Any]], fraction: float | None = None,
    state: str = LIVE,
) -> str:
    """The card's progress bar on its own, across the whole card (under the buttons too);
    nothing once watching failed before anything was known of the run."""
    if state == UNWATCHED and status_class(status) == "unknown":
        return ""
    return f'<div class="mlw-card">{progress_bar(status, steps, fraction)}</div>'


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


def safe_link(url: str, label: str) -> str:
    """A link that opens in a new tab, or plain text when the URL is not http(s)."""
    if not is_web_url(url):
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
LAUNCHER_CLASS = "mlw-launcher"  # the launcher's box: the container its narrow rules ask about
FIELD_CLASS = "mlw-field"  # a form field's widget (label and input box)
NARROW_FORM = "480px"  # a launcher narrower than this puts its labels above the boxes

# A field's box keeps 8em at least: where label and box do not fit on a line the box wraps
# under its label; in a launcher narrower than NARROW_FORM every label goes above its box,
# left-aligned, and the box takes the launcher's width (placeholders never break mid-word).
LAUNCHER_STYLE = f"""<style>
.{LAUNCHER_CLASS}{{container-type:inline-size}}
.{FIELD_CLASS}>input,.{FIELD_CLASS}>textarea,.{FIELD_CLASS}>select{{flex:1 1 0;min-width:8em}}
.{FIELD_CLASS} input::placeholder,.{FIELD_CLASS} textarea::placeholder{{white-space:nowrap;
 overflow-wrap:normal;word-break:keep-all}}
.mlw-card.mlw-field-error{{color:var(--jp-error-color1,#d32f2f);margin:0 0 4px 17.5em;
 font-size:var(--jp-ui-font-size0,11px);overflow-wrap:anywhere}}
.mlw-invalid input,.mlw-invalid textarea{{border-color:var(--jp-error-color1,#d32f2f)!important;
 box-shadow:0 0 0 1px var(--jp-error-color1,#d32f2f)!important}}
.mlw-invalid .widget-label,.mlw-invalid label{{color:var(--jp-error-color1,#d32f2f)!important}}
.mlw-key{{font-family:var(--jp-code-font-family,monospace);font-size:var(--jp-ui-font-size0,11px);
 color:var(--jp-ui-font-color2,#616161);margin-left:4px}}
.mlw-history-row{{display:flex;gap:8px;align-items:center;min-width:0}}
.mlw-history-row>span{{white-space:nowrap;overflow:hidden;text-overflow:ellipsis}}
@container (max-width:{NARROW_FORM}){{
 .{FIELD_CLASS}{{flex-direction:column!important;align-items:stretch!important;
  height:auto!important;max-width:100%!important;margin-left:0!important;margin-right:0!important}}
 .{FIELD_CLASS}>.widget-label{{width:auto!important;max-width:100%;text-align:left!important;
  white-space:normal;overflow-wrap:anywhere;line-height:1.4;height:auto}}
 .{FIELD_CLASS}>input,.{FIELD_CLASS}>textarea,.{FIELD_CLASS}>select{{flex:0 0 auto;width:100%;
  margin-left:0;margin-right:0;box-sizing:border-box}}
 .{FIELD_CLASS}>textarea{{min-height:4.5em}}
 .{FIELD_CLASS}.widget-checkbox{{align-items:flex-start!important}}
 .mlw-card.mlw-field-error{{margin-left:0}}
}}
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


#: What the status badge says of a launch with no run yet, by its ``launch_state``.
LAUNCH_STATUS = {"queued": "queued_here", "sending": "queued_here", "failed": "not_started",
                 "removed": "removed"}
# Waiting its turn looks pending; refused or lost looks failed; removed looks cancelled.
_LAUNCH_LOOKS = {"queued_here": "pending", "not_started": "failed", "removed": "cancelled"}


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


# -- the saved card ---------------------------------------------------------------------------
# What a notebook shows where no widget JavaScript runs (GitHub, nbviewer, nbconvert HTML,
# VS Code's preview): the card's final markup, self-contained. The fragments are the card's
# own views (already escaped above); images travel as data URIs; there is no script.


@dataclass(frozen=True)
class StaticImage:
    """A thumbnail for the saved card: the encoded bytes, their format, and its caption."""

    data: bytes
    format: str  # "jpeg" or "png"
    caption: str  # markup from caption()


def static_card(
    fragments: Sequence[str], items: Sequence[StaticImage | str], more: str = ""
) -> str:
    """The card as one HTML document fragment: its CSS, the given view fragments (header,
    step rows, message) and the gallery in output order: inline thumbnails with their links,
    and (as ready markup) the players and tiles of the other kinds."""
    import base64  # only the saved card needs it

    def slot(index: int, item: StaticImage | str) -> str:
        if isinstance(item, str):
            return f'<div style="margin:4px 8px 4px 0">{item}</div>'
        data = base64.b64encode(item.data).decode()
        return (
            '<div style="margin:4px 8px 4px 0">'
            f'<img alt="output #{index + 1}" style="display:block;max-width:100%" '
            f'src="data:image/{escape(item.format)};base64,{data}">{item.caption}</div>'
        )

    slots = "".join(slot(index, item) for index, item in enumerate(items))
    gallery = (
        f'<div class="mlw-gallery" style="display:flex;flex-flow:row wrap">{slots}{more}</div>'
        if slots or more else ""
    )
    body = "".join(fragment for fragment in fragments if fragment)
    return (
        f"{STYLE}{MEDIA_STYLE}<div class=\"mlw-static\" style=\"border:1px solid #e0e0e0;"
        f'padding:6px 10px;max-width:960px">{body}{gallery}</div>'
    )


def hint_line(text: str) -> str:
    """One quiet line under the header (e.g. how to see updates in Colab)."""
    return f'<div class="mlw-card mlw-hint" role="note">{escape(text)}</div>' if text else ""


# -- outputs of every kind -------------------------------------------------------------------
# Video and audio are players the browser streams from the output's URL (preload="metadata":
# it fetches only what it needs to show the first frame and the length); the kernel never
# downloads them. 3D models and other files are a tile with their type, size and a link.

MEDIA_STYLE = """<style>
.mlw-tile{display:flex;flex-direction:column;gap:2px}
.mlw-tile video{display:block;background:#000;border-radius:2px;object-fit:contain}
.mlw-tile audio{display:block;margin:8px 0}
.mlw-file{height:100px;display:flex;flex-direction:column;align-items:center;
 justify-content:center;gap:2px;padding:6px;box-sizing:border-box;text-align:center;
 border:1px solid var(--jp-border-color2,#e0e0e0);border-radius:4px;
 background:var(--jp-layout-color2,#eee);overflow:hidden}
.mlw-file-icon{font-size:28px;line-height:1.1}
.mlw-file-type{font-weight:600}
.mlw-kind{display:inline-flex;align-items:center;justify-content:center;min-width:40px;
 height:40px;padding:0 3px;box-sizing:border-box;border-radius:2px;
 border:1px solid var(--jp-border-color2,#e0e0e0);background:var(--jp-layout-color2,#eee);
 font-size:var(--jp-ui-font-size0,11px);color:var(--jp-ui-font-color2,#616161)}
</style>"""

KIND_ICONS = {"image": "🖼", "video": "▶", "audio": "♪", "model3d": "◆", "file": "📄"}
KIND_NAMES = {"image": "Image", "video": "Video", "audio": "Audio", "model3d": "3D model",
              "file": "File"}


def format_bytes(size: int | None) -> str:
    """``812 B``, ``12.4 KB``, ``5.7 MB``; "" when unknown."""
    if size is None or size < 0:
        return ""
    amount = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if amount < 1000 or unit == "GB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1000
    return ""


def type_name(url: str, content_type: str | None) -> str:
    """A file type as users name it: the URL's extension (``MP4``), else the media type's
    subtype (``video/mp4`` -> ``MP4``), else ""."""
    name = short_name(url) if "://" in url else ""
    stem, dot, ext = name.rpartition(".")
    if dot and stem and 0 < len(ext) <= 8:
        return ext.upper()
    subtype = (content_type or "").partition("/")[2].split(";")[0].strip()
    return subtype.removeprefix("x-").upper()[:16]


def output_caption(url: str, kind: str, content_type: str | None, size: int | None,
                   error: str | None = None) -> str:
    """The line under a non-image output: its link, type and size (or why they are unknown)."""
    details = [d for d in (type_name(url, content_type), format_bytes(size)) if d]
    if error:
        details.append(f"type unknown: {error}")
    extra = f" · {escape(' · '.join(details))}" if details else ""
    return (
        f'<div class="mlw-card mlw-caption" title="{escape(url)}">'
        f"{safe_link(url, short_name(url))}{extra}</div>"
    )


def output_tile(index: int, url: str, kind: str, content_type: str | None = None,
                size: int | None = None, *, box: int = 256, error: str | None = None) -> str:
    """A non-image output in the gallery: an inline ``<video>`` or ``<audio>`` player that
    streams from ``url`` (http(s) only), else a tile with its type, size and link."""
    label = escape(f"Output #{index + 1}: {KIND_NAMES.get(kind, 'File').lower()}", quote=True)
    line = output_caption(url, kind, content_type, size, error)
    source = escape(url.strip(), quote=True)
    if kind == "video" and is_web_url(url):
        player = (
            f'<video controls preload="metadata" playsinline src="{source}" '
            f'style="width:{box}px;max-height:{box}px" aria-label="{label}"></video>'
        )
    elif kind == "audio" and is_web_url(url):
        player = (
            f'<audio controls preload="metadata" src="{source}" '
            f'style="width:{box}px" aria-label="{label}"></audio>'
        )
    else:  # the tile says type and size, so its line is the link alone
        line = (
            f'<div class="mlw-card mlw-caption" title="{escape(url)}">'
            f"{safe_link(url, short_name(url))}"
            f"{f' · type unknown: {escape(error)}' if error else ''}</div>"
        )
        player = (
            f'<div class="mlw-file" style="width:{min(box, 200)}px" role="img" '
            f'aria-label="{label}"><span class="mlw-file-icon" aria-hidden="true">'
            f'{KIND_ICONS.get(kind, KIND_ICONS["file"])}</span>'
            f'<span class="mlw-file-type">{escape(KIND_NAMES.get(kind, "File"))}</span>'
            f'<span class="mlw-sub">{escape(" · ".join(_tile_details(url, content_type, size)))}'
            "</span></div>"
        )
    return (
        f'<div class="mlw-card mlw-tile" style="max-width:{box}px" role="group" '
        f'aria-label="{label}">{player}{line}</div>'
    )


def _tile_details(url: str, content_type: str | None, size: int | None) -> list[str]:
    return [d for d in (type_name(url, content_type), format_bytes(size)) if d]


def kind_badge(kind: str, index: int) -> str:
    """A board strip's stand-in for an output that has no thumbnail: its kind's icon."""
    name = KIND_NAMES.get(kind, "File")
    return (
        f'<span class="mlw-kind" title="output {index + 1}: {escape(name.lower())}">'
        f'{KIND_ICONS.get(kind, KIND_ICONS["file"])}&nbsp;{escape(name.split()[0])}</span>'
    )


def note_line(text: str) -> str:
    """A small note under the header (e.g. that an answer was cut); "" for no text."""
    return f'<div class="mlw-card mlw-caption">{escape(text)}</div>' if text else ""


# -- board ------------------------------------------------------------------------------------

STRIP_SIZE = 48  # pixels: board thumbnails are a few kB each
STRIP_COUNT = 4
ERROR_PREVIEW = 80

BOARD_STYLE = """<style>
.mlw-counts{font-weight:600;margin:2px 0 6px}
.mlw-row{display:flex;flex-wrap:wrap;align-items:center;gap:2px 10px;min-height:28px}
.mlw-row>span{min-width:0}
.mlw-row>.mlw-row-status{flex:0 0 8.5em}
.mlw-row>.mlw-row-run{flex:0 0 7em;white-space:nowrap}
.mlw-row>.mlw-row-label{flex:1 1 10em;font-weight:600;overflow-wrap:break-word}
.mlw-row>.mlw-row-step{flex:1 1 8em;overflow-wrap:anywhere}
.mlw-row>.mlw-dur{flex:0 0 4.5em;white-space:nowrap}
.mlw-strip{display:flex;gap:3px;align-items:center;flex:0 0 auto}
.mlw-strip img{max-width:48px;max-height:48px;border-radius:2px;display:block}
.mlw-strip .mlw-kind{min-width:40px;height:40px}
.mlw-row .mlw-err{color:var(--jp-error-color1,#d32f2f)}
</style>"""


def strip_html(thumbnails: Iterable[tuple[bytes, str] | str],
               reserve: tuple[int, int] = (0, 0)) -> str:
    """The row's tiny thumbnails, inlined as data: URIs; an output kind's name (``"video"``)
    in their place stands for an output without one (video, audio, 3D, other files).
    ``reserve`` (count, size in px) keeps their room from the start, so a row neither grows
    nor moves its time column when they arrive."""
    count, size = reserve
    room = (f' style="width:{count * size + 3 * max(0, count - 1)}px;height:{size}px"'
            if count > 0 and size > 0 else "")
    images = [
        kind_badge(item, i) if isinstance(item, str) else
        f'<img alt="output {i + 1}" src="data:image/{item[1]};base64,'
        f'{base64.b64encode(item[0]).decode("ascii")}">'
        for i, item in enumerate(thumbnails)
    ]
    return f'<span class="mlw-strip"{room}>{"".join(images)}</span>'


def row_html(
    *,
    status: str,
    execution_id: str,
    workflow_id: str,
    step: str,
    elapsed: float | None,
    error: str = "",
    thumbnails: Iterable[tuple[bytes, str] | str] = (),
    paused: bool = False,
    strip: tuple[int, int] = (STRIP_COUNT, STRIP_SIZE),
    label: str = "",
) -> str:
    """One board row: status, run id, its label, current step (or the error), elapsed,
    thumbnails.
    A ``paused`` row keeps the run's last status without the spinner ("Running · paused")."""
    if status == WATCH_ERROR:
        badge = status_label("failed", "Not watched")
    else:
        badge = status_label(status, state=PAUSED if paused else LIVE)
    detail = escape(step) or '<span class="mlw-sub">–</span>'
    if error:
        short = shorten(error, ERROR_PREVIEW)
        detail = f'<span class="mlw-err" title="{escape(error)}">{escape(short)}</span>'
    named = f'<span class="mlw-row-label">{escape(label)}</span>' if label else ""
    return (
        f'<div class="mlw-card mlw-row"><span class="mlw-row-status">{badge}</span>'
        f'<span class="mlw-row-run" title="workflow {escape(workflow_id)}">'
        f"Run {escape(execution_id)}</span>{named}"
        f'<span class="mlw-row-step">{detail}</span>'
        f'<span class="mlw-dur">{format_seconds(elapsed)}</span>'
        f"{strip_html(thumbnails, strip)}</div>"
    )


def counts_html(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    if not total:
        return '<div class="mlw-card mlw-counts mlw-sub">No runs yet: add some with add().</div>'
    return f'<div class="mlw-card mlw-counts">{escape(counts_text(counts))}</div>'


# -- the sweep grid ------------------------------------------------------------------------

SWEEP_STYLE = """<style>
.mlw-sweep-cell{display:flex;flex-direction:column;gap:2px;min-width:0}
.mlw-sweep-label{font-weight:600;overflow-wrap:break-word;line-height:16px}
.mlw-sweep-meta{display:flex;flex-wrap:wrap;gap:2px 8px;align-items:center}
.mlw-sweep-axis{font-weight:600;color:var(--jp-ui-font-color2,#616161);overflow-wrap:break-word;
 padding-top:4px}
</style>"""


def sweep_header(title: str, counts: Mapping[str, int], total: int, done: int) -> str:
    """The sweep's title, its counts by status and a bar of the runs done out of all."""
    percent = int(100 * done / max(1, total))
    state = "completed" if total and done == total else "running"
    words = counts_text(dict(counts)) or "nothing launched yet"
    return (
        f'<div class="mlw-card"><div class="mlw-header"><span class="mlw-title">'
        f'{escape(title)}</span><span class="mlw-sub">{escape(words)}</span>'
        f'<span class="mlw-time">{done} of {total} done</span></div>'
        f'<div class="mlw-progress mlw-s-{state}" role="progressbar" aria-valuenow="{done}" '
        f'aria-valuemax="{total}"><div style="width:{percent}%"></div></div></div>'
    )


def sweep_cell(*, number: int, label: str, status: str, duration: float | None,
               error: str = "", execution_id: str = "") -> str:
    """One run of the sweep: its number and label, status badge, duration or error."""
    run = f"Run {escape(execution_id)}" if execution_id else "not launched"
    detail = ""
    if error:
        detail = (f'<span class="mlw-err mlw-sub" title="{escape(error)}">'
                  f"{escape(shorten(error, ERROR_PREVIEW))}</span>")
    return (
        f'<div class="mlw-card mlw-sweep-cell"><span class="mlw-sweep-label">'
        f"#{number} {escape(label)}</span><span class=\"mlw-sweep-meta\">"
        f"{badge(status)}<span class=\"mlw-dur\">{format_seconds(duration)}</span>"
        f'<span class="mlw-sub">{run}</span></span>{detail}</div>'
    )


def axis_label(text: str) -> str:
    return f'<div class="mlw-card mlw-sweep-axis">{escape(text)}</div>'


def static_sweep(header: str, cells: Sequence[tuple[str, StaticImage | None]],
                 columns: int, column_labels: Sequence[str] = (),
                 row_labels: Sequence[str] = ()) -> str:
    """The sweep as one HTML fragment with no script (the saved notebook's grid): a table of
    the cells, with the axes' values as row and column headings when there are two axes."""
    import base64

    def cell(markup: str, image: StaticImage | None) -> str:
        picture = ""
        if image is not None:
            data = base64.b64encode(image.data).decode()
            picture = (f'<img alt="output" style="display:block;max-width:100%" '
                       f'src="data:image/{escape(image.format)};base64,{data}">')
        return f'<td style="vertical-align:top;padding:4px">{markup}{picture}</td>'

    rows = []
    if column_labels:
        heads = "".join(f'<th style="padding:4px">{axis_label(t)}</th>' for t in column_labels)
        rows.append(f"<tr>{'<th></th>' if row_labels else ''}{heads}</tr>")
    for start in range(0, len(cells), max(1, columns)):
        number = start // max(1, columns)
        head = (f'<th style="padding:4px;text-align:left">{axis_label(row_labels[number])}</th>'
                if number < len(row_labels) else "")
        body = "".join(cell(m, i) for m, i in cells[start:start + columns])
        rows.append(f"<tr>{head}{body}</tr>")
    return (f'{STYLE}{SWEEP_STYLE}<div class="mlw-static" style="border:1px solid #e0e0e0;'
            f'padding:6px 10px;max-width:100%;overflow-x:auto">{header}'
            f'<table style="border-collapse:collapse">{"".join(rows)}</table></div>')
