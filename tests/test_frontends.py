"""The quickstart in the other Jupyter front ends, in Debian's Chromium: Jupyter Notebook 7
(Run > Run All Cells) and Voila (runs the notebook when the page opens). Each reaches one
completed card with loaded thumbnails; screenshots go to ``test-artifacts/``. JupyterLab 4
is tests/test_browser.py. Core ipywidgets only: no extension of ours is installed."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .test_browser import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    JUPYTER,
    NOTEBOOK,
    _free_port,
    _run_from_menu,
    _skip_or_fail,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]


def _serve(
    command: list[str], base: Path, ready_url: str | None, port: int = 0
) -> Iterator[Path]:
    """Run a Jupyter server in a throwaway HOME/config, without MODELSLAB_API_KEY, until
    ``ready_url`` answers (None: until ``port`` accepts connections); yields its log."""
    root, home = base / "root", base / "home"
    root.mkdir()
    home.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    env = {k: v for k, v in os.environ.items() if k != "MODELSLAB_API_KEY"}
    env.update(
        HOME=str(home), JUPYTER_CONFIG_DIR=str(base / "config"),
        JUPYTER_RUNTIME_DIR=str(base / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(base / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(base / "workspaces"),
        PATH=f"{JUPYTER.parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    log = base / "server.log"
    as_root = hasattr(os, "geteuid") and os.geteuid() == 0
    root_flag = ["--allow-root"] if as_root and "voila" not in command[0] else []
    with log.open("wb") as out:
        proc = subprocess.Popen([*command, *root_flag], env=env, cwd=root, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"{command[0]} exited with {proc.returncode}:\n{log.read_text()}")
            try:
                if ready_url is None:
                    socket.create_connection(("127.0.0.1", port), timeout=2).close()
                    break
                with urllib.request.urlopen(ready_url, timeout=2) as answer:
                    if answer.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{command[0]} did not answer within 60 s:\n{log.read_text()}")
            time.sleep(0.2)
        yield log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@pytest.fixture
def browser_page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not CHROMIUM.exists():
        _skip_or_fail(f"{CHROMIUM} not found: install Debian's chromium (`make browser-deps`)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _skip_or_fail("the playwright Python package is not installed")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()


def _kernel_ready_flag(page: Any) -> list[float]:
    """Filled when the front end got its kernel_info_reply (the kernel is usable)."""
    ready: list[float] = []

    def on_websocket(ws: Any) -> None:
        def on_frame(payload: str | bytes) -> None:
            data = payload if isinstance(payload, bytes) else payload.encode()
            if b"kernel_info_reply" in data:
                ready.append(time.monotonic())

        if "/api/kernels/" in ws.url:
            ws.on("framereceived", on_frame)

    page.on("websocket", on_websocket)
    return ready


def _completed_card(page: Any, name: str, log: Path) -> list[Any]:
    """Wait for exactly one card to complete with two loaded thumbnails; screenshot it."""
    from playwright.sync_api import expect

    try:
        badge = page.locator(".mlw-badge")
        expect(badge.first).to_contain_text("Completed", timeout=90_000)
        card = page.locator(".widget-vbox", has=page.locator(".mlw-badge")).last
        page.wait_for_function(
            """el => { const imgs = [...el.querySelectorAll('img')];
                       return imgs.length >= 2
                              && imgs.every(i => i.complete && i.naturalWidth > 0); }""",
            arg=card.element_handle(), polling=100, timeout=30_000,
        )
    except Exception as exc:
        page.screenshot(path=ARTIFACTS / f"{name}-failure.png")
        raise AssertionError(f"{name}: no completed card\n{log.read_text()[-3000:]}") from exc
    expect(badge).to_have_count(1)  # one card: not duplicated by the final-state update
    expect(page.locator(".mlw-static")).to_have_count(0)  # the live view, not the HTML
    sizes = card.locator("img").evaluate_all(
        "imgs => imgs.map(i => [i.src.slice(0, 5), i.naturalWidth, i.naturalHeight])"
    )
    page.mouse.move(0, 0)
    card.scroll_into_view_if_needed()
    card.screenshot(path=ARTIFACTS / f"{name}.png")
    return sizes


def test_quickstart_live_in_notebook7(tmp_path_factory, browser_page) -> None:
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    page = browser_page
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"{exc}\n{exc.stack}"))
    port, token = _free_port(), secrets.token_hex(16)
    url = f"http://127.0.0.1:{port}"
    command = [str(JUPYTER), "notebook", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
               f"--IdentityProvider.token={token}", "--ServerApp.disable_check_xsrf=True"]
    for log in _serve(command, tmp_path_factory.mktemp("notebook7"),
                      f"{url}/api/status?token={token}"):
        ready = _kernel_ready_flag(page)
        page.goto(f"{url}/notebooks/{NOTEBOOK.name}?token={token}")
        expect(page.locator(".jp-Notebook")).to_be_visible(timeout=90_000)
        deadline = time.monotonic() + 90
        while not ready:
            assert time.monotonic() < deadline, f"no kernel_info_reply\n{log.read_text()}"
            page.wait_for_timeout(50)
        _run_from_menu(page, "Run All Cells", ".jp-CodeCell .jp-InputPrompt")
        # live: a step row says running before the end
        page.wait_for_function(
            "() => document.querySelector('.mlw-step .mlw-s-running') !== null",
            polling=100, timeout=30_000,
        )
        sizes = _completed_card(page, "notebook7", log)
        assert len(sizes) >= 2 and all(src == "blob:" and w > 0 for src, w, _ in sizes), sizes
        printed = page.locator(".jp-OutputArea-output pre", has_text="2/2 steps").first
        expect(printed).to_contain_text("Run 12345 · completed · 2/2 steps", timeout=30_000)
    # Notebook 7.6's own start-up reads a settings schema that is not there (a TypeError
    # thrown in notebook_core.js, with or without this package); any other error fails.
    errors = [e for e in errors if not ("reading 'schema'" in e and "notebook_core" in e)]
    assert not errors, errors


def test_quickstart_live_in_voila(tmp_path_factory, browser_page) -> None:
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    page = browser_page
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"{exc}\n{exc.stack}"))
    voila = JUPYTER.with_name("voila")
    if not voila.exists():
        _skip_or_fail(f"{voila} not found: voila is not installed in this venv")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    command = [str(voila), NOTEBOOK.name, "--no-browser", f"--port={port}",
               "--Voila.ip=127.0.0.1"]
    # ready once it listens (a GET of the page would already run the notebook once)
    for log in _serve(command, tmp_path_factory.mktemp("voila"), None, port):
        page.goto(url)
        sizes = _completed_card(page, "voila", log)
        assert len(sizes) >= 2 and all(w > 0 for _, w, _ in sizes), sizes
        expect(page.get_by_text("Run 12345 · completed · 2/2 steps")).to_be_visible()
    assert not errors, errors
