"""The one web-URL rule: what is fetched, linked or played, and the host downloads count by."""

from __future__ import annotations

import pytest

from modelslab_widget import render
from modelslab_widget.urls import is_web_url, url_host, without_credentials


@pytest.mark.parametrize("url", [
    "https://cdn.example/a.png", "http://127.0.0.1:8000/x", " HTTPS://Example.org/a b ",
    "http://[::1]:8000/x", "https://user@cdn.example/a.png",
])
def test_http_and_https_urls_with_a_host_are_web_urls(url):
    assert is_web_url(url)


@pytest.mark.parametrize("url", [
    "javascript:alert(1)", "file:///etc/passwd", "data:image/png;base64,AAAA", "https:///x.png",
    "http://user@/x.png", "http://:8000/x.png", "https://?q=1", "//cdn.example/a.png",
    "http://[::1/x.png", "ftp://example.org/a.png", "", None, 42,
])
def test_everything_else_is_not(url):
    assert not is_web_url(url)


@pytest.mark.parametrize("url", ["https:///x.mp4", "http://user@/x.mp4", "javascript:alert(1)"])
def test_links_and_players_follow_the_same_rule(url):
    """A URL with no host is neither a link nor a player's source."""
    assert render.safe_link(url, "x") == "x"
    assert "<video" not in render.output_tile(0, url, "video")
    assert "<audio" not in render.output_tile(0, url, "audio")


def test_a_web_url_is_a_link_and_a_source():
    assert "<a href" in render.safe_link("https://cdn.example/x.mp4", "x")
    assert "<video" in render.output_tile(0, "https://cdn.example/x.mp4", "video")


def test_url_host_is_the_lower_case_host_and_port():
    assert url_host("https://CDN.example:8443/a.png") == "cdn.example:8443"
    assert url_host("https://cdn.example/a.png") == "cdn.example:"
    assert url_host("http://[::1/x") == ""


@pytest.mark.parametrize(("url", "shown"), [
    ("https://user:PASSWORD@gw.example/api/v1", "https://gw.example/api/v1"),
    ("http://a@b@host:8080/x?q=1", "http://host:8080/x?q=1"),
    ("https://modelslab.com/api/v1", "https://modelslab.com/api/v1"),
    ("http://[::1/x", None),
])
def test_a_shown_url_never_carries_credentials(url, shown):
    assert without_credentials(url) == shown
