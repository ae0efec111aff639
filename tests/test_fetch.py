"""HTTP fetching against a real local server: conditional GET, retries, timeouts, User-Agent."""

from __future__ import annotations

import pytest

from newsletter.config import FetchSettings
from newsletter.ingest.fetch import fetch
from tests.httpserver import Server, slow

FAST = FetchSettings(timeout=0.5, retries=2, backoff=0.01)


@pytest.fixture
def server():
    with Server() as srv:
        yield srv


def conditional(handler):
    if handler.headers.get("If-None-Match") == '"v1"':
        return 304, {"ETag": '"v1"'}, b""
    return 200, {"ETag": '"v1"', "Last-Modified": "Thu, 05 Dec 2024 14:50:33 GMT"}, b"<feed/>"


def test_conditional_get_turns_into_304(server):
    server.routes["/atom.xml"] = conditional
    first = fetch(server.base + "/atom.xml", FAST)
    assert first.status == 200 and first.body == b"<feed/>" and first.etag == '"v1"'
    second = fetch(server.base + "/atom.xml", FAST, etag=first.etag, last_modified=first.last_modified)
    assert second.not_modified and second.ok and second.body == b""
    assert server.requests[1][1]["If-Modified-Since"] == "Thu, 05 Dec 2024 14:50:33 GMT"


def test_user_agent_names_the_project(server):
    server.routes["/a"] = (200, {}, b"x")
    fetch(server.base + "/a", FAST)
    assert server.requests[0][1]["User-Agent"].startswith("paper-digest/")


def test_transient_errors_are_retried_with_backoff(server):
    answers = iter([(503, {}, b"busy"), (500, {}, b"oops"), (200, {}, b"ok")])
    server.routes["/flaky"] = lambda _h: next(answers)
    slept: list[float] = []
    result = fetch(server.base + "/flaky", FAST, sleep=slept.append)
    assert result.status == 200 and result.attempts == 3 and slept == [0.01, 0.02]


def test_retries_are_bounded(server):
    server.routes["/down"] = (500, {}, b"down")
    result = fetch(server.base + "/down", FAST, sleep=lambda _s: None)
    assert not result.ok and result.attempts == 3 and "500" in result.error


def test_404_is_not_retried(server):
    result = fetch(server.base + "/missing", FAST, sleep=lambda _s: None)
    assert result.status == 404 and result.attempts == 1 and not result.ok


def test_timeout_is_reported(server):
    server.routes["/slow"] = slow(1.5)
    result = fetch(server.base + "/slow", FetchSettings(timeout=0.2, retries=0))
    assert result.status is None and "timeout" in result.error


def test_unreachable_host_is_reported():
    result = fetch("http://127.0.0.1:9/feed", FetchSettings(timeout=0.5, retries=1, backoff=0), sleep=lambda _s: None)
    assert result.status is None and not result.ok and result.attempts == 2
