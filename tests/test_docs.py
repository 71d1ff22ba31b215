"""The documentation: the README's links, and the built site (``make docs``) in Chromium.

The README is read on GitHub, so each of its relative links must name a file of the
repository (and, for a Markdown file with an anchor, one of its headings). The site test
serves ``site/`` from a local ``http.server`` thread and opens two pages in Debian's Chromium
through Playwright: the tutorial (the executed quickstart notebook: its final card, completed,
with thumbnails that loaded) and the widgets' API reference (``WorkflowRunWidget`` and the
docstring of its ``wait``). Every request to anything but that server is refused and counted:
the pages must work offline. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import functools
import http.server
import inspect
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SITE = ROOT / "site"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
MAX_README_LINES = 200
# [text](target) and ![alt](target); the target ends at whitespace or the closing bracket
LINK = re.compile(r"!?\[[^\]]*\]\(\s*([^)\s]+)[^)]*\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def _skip_or_fail(reason: str) -> None:
    """Skip loudly on a developer machine; on CI a missing prerequisite is a failure."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)")
    pytest.skip(f"!!! NOT TESTED: {reason}")


def _github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(markdown_file: Path) -> set[str]:
    text = FENCE.sub("", markdown_file.read_text(encoding="utf-8"))
    return {_github_anchor(m.group(1)) for m in re.finditer(r"^#+\s+(.+)$", text, re.MULTILINE)}


def _relative_links(markdown: str) -> list[str]:
    targets = LINK.findall(FENCE.sub("", markdown))
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.IGNORECASE)]


def test_the_readme_is_short() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines"


def test_every_relative_link_of_the_readme_resolves() -> None:
    links = _relative_links(README.read_text(encoding="utf-8"))
    assert len(links) >= 10, links  # the docs pages, the screenshot, the project files
    broken = []
    for link in links:
        path, _, anchor = link.partition("#")
        target = (README.parent / path).resolve() if path else README
        if not target.exists():
            broken.append(f"{link}: no such file")
        elif anchor and target.suffix == ".md" and anchor not in _anchors(target):
            broken.append(f"{link}: no heading #{anchor} in {path or 'README.md'}")
    assert not broken, "\n".join(broken)


def test_the_link_check_sees_a_broken_link() -> None:
    """The checker itself: a missing file and a missing heading are both found."""
    links = _relative_links("[a](docs/nope.md) ![b](docs/screenshot.png) [c](https://x.org)")
    assert links == ["docs/nope.md", "docs/screenshot.png"]
    assert not (ROOT / "docs" / "nope.md").exists()
    assert "supported-versions" in _anchors(ROOT / "docs" / "index.md")
    assert "no-such-heading" not in _anchors(ROOT / "docs" / "index.md")


# -- the built site in Chromium ------------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No line on stderr per request the browser makes."""


@pytest.fixture(scope="module")
def site_url() -> Iterator[str]:
    if not (SITE / "index.html").is_file():
        _skip_or_fail(f"{SITE} has no built site: run `make docs` first")
    handler = functools.partial(_QuietHandler, directory=str(SITE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="docs-site", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser_page(
    site_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Any, list[str]]]:
    """A Chromium page that may reach only the site's server; refused URLs are listed."""
    if not CHROMIUM.exists():
        _skip_or_fail(f"{CHROMIUM} not found: install Debian's chromium (`make browser-deps`)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _skip_or_fail("the playwright Python package is not installed")
    refused: list[str] = []

    def only_the_site(route: Any) -> None:
        url = route.request.url
        if url.startswith((site_url, "data:")):
            route.continue_()
        else:
            refused.append(url)
            route.abort()

    profile = tmp_path_factory.mktemp("chromium-docs-profile")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 1000},
        )
        try:
            context.set_default_timeout(30_000)
            context.route("**/*", only_the_site)
            yield (context.pages[0] if context.pages else context.new_page()), refused
        finally:
            context.close()


def _first_sentence(docstring: str | None) -> str:
    """A docstring's opening words as the page shows them (Markdown code marks dropped)."""
    text = " ".join((docstring or "").split()).replace("``", "")
    return text.split(". ")[0]


@pytest.mark.browser
@pytest.mark.timeout(120)
def test_the_tutorial_shows_the_final_card_with_its_thumbnails(
    site_url: str, browser_page: tuple[Any, list[str]]
) -> None:
    from playwright.sync_api import expect

    page, refused = browser_page
    page.goto(f"{site_url}/tutorial/", wait_until="load")
    card = page.locator(".mlw-static").first  # the final card (render.static_card)
    expect(card).to_be_visible()
    expect(card.locator(".mlw-badge")).to_have_text(re.compile(r"Completed"))
    expect(card).to_contain_text("Run ")
    expect(page.locator("article")).to_contain_text("2/2 steps")
    thumbnails = card.locator("img")
    assert thumbnails.count() >= 2, "the final card shows fewer than two thumbnails"
    card.scroll_into_view_if_needed()
    widths = page.eval_on_selector_all(
        "article img", "imgs => imgs.map(i => [i.alt, i.complete, i.naturalWidth])"
    )
    assert widths and all(done and width > 0 for _, done, width in widths), widths
    ARTIFACTS.mkdir(exist_ok=True)
    card.screenshot(path=str(ARTIFACTS / "docs-tutorial-card.png"))
    page.evaluate("window.scrollTo(0, 0)")  # else the sticky header is drawn mid-page
    page.screenshot(path=str(ARTIFACTS / "docs-tutorial.png"), full_page=True)
    assert not refused, f"the tutorial asked for what is not on the site: {refused}"


@pytest.mark.browser
@pytest.mark.timeout(120)
def test_the_api_reference_shows_the_card_and_its_wait_docstring(
    site_url: str, browser_page: tuple[Any, list[str]]
) -> None:
    from playwright.sync_api import expect

    from modelslab_widget import WorkflowRunWidget

    page, refused = browser_page
    page.goto(f"{site_url}/reference/widgets/", wait_until="load")
    # mkdocstrings gives each object's heading its dotted path as id
    expect(page.locator("h2[id='modelslab_widget.WorkflowRunWidget']")).to_contain_text(
        "WorkflowRunWidget"
    )
    wait_heading = "h3[id='modelslab_widget.WorkflowRunWidget.wait']"
    wait_doc = page.locator(f"{wait_heading} ~ div.doc-contents").first
    expect(wait_doc).to_contain_text(_first_sentence(inspect.getdoc(WorkflowRunWidget.wait)))
    expect(wait_doc).to_contain_text("TimeoutError")
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator(wait_heading).scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "docs-reference.png"))
    assert not refused, f"the reference asked for what is not on the site: {refused}"
