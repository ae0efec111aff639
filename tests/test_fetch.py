"""HTTP fetching against a real local server: conditional GET, retries, timeouts, User-Agent."""

from __future__ import annotations

import zlib

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


# ---- the decoded-size cap (#9, 1.1) -----------------------------------------------------------------------


def gzip_of_zeros(megabytes: int, members: int = 1) -> bytes:
    """A gzip body inflating to `megabytes` MB of zeros (about 1,000:1), built without holding it inflated."""
    out = []
    for _ in range(members):
        packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        block = bytes(1_000_000)
        out += [packer.compress(block) for _ in range(megabytes // members)]
        out.append(packer.flush())
    return b"".join(out)


CAPPED = FetchSettings(timeout=5, retries=2, backoff=0.01, max_payload_mb=1)


def test_a_gzip_bomb_is_refused_at_the_decoded_cap_and_not_retried(server):
    bomb = gzip_of_zeros(50)
    assert len(bomb) < 100_000
    server.routes["/bomb"] = (200, {"Content-Encoding": "gzip"}, bomb)
    result = fetch(server.base + "/bomb", CAPPED, sleep=lambda _s: None)
    assert (result.status, result.ok, result.body, result.attempts) == (200, False, b"", 1)
    assert result.error == "payload over 1 MB"
    assert server.requests[0][1]["Accept-Encoding"] == "gzip, deflate"  # never br/zstd: we inflate ourselves


def test_a_plain_body_over_the_cap_is_refused(server):
    server.routes["/big"] = (200, {}, b"x" * 1_000_001)
    assert fetch(server.base + "/big", CAPPED).error == "payload over 1 MB"
    server.routes["/edge"] = (200, {}, b"x" * 1_000_000)  # exactly the cap: accepted
    assert fetch(server.base + "/edge", CAPPED).body == b"x" * 1_000_000


def raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


@pytest.mark.parametrize(
    "encoding, body, size",
    [
        ("gzip", gzip_of_zeros(3, members=3), 3_000_000),  # several members, each past one output chunk
        ("deflate", zlib.compress(bytes(2_500_000)), 2_500_000),  # zlib-wrapped, as RFC 9110 says
        ("deflate", raw_deflate(bytes(1_500_000)), 1_500_000),  # raw, as some servers send it
    ],
)
def test_bodies_under_the_cap_inflate_exactly(server, encoding, body, size):
    server.routes["/ok"] = (200, {"Content-Encoding": encoding}, body)
    result = fetch(server.base + "/ok", FetchSettings(max_payload_mb=5))
    assert result.ok and result.body == bytes(size)


def test_an_undecodable_body_is_one_clear_error(server):
    server.routes["/junk"] = (200, {"Content-Encoding": "gzip"}, b"not gzip at all")
    result = fetch(server.base + "/junk", FAST)
    assert not result.ok and result.error.startswith("body does not decode as gzip")
