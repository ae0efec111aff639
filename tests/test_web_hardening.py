"""Web details (#9, 2 and 6) over real HTTP: suppressed addresses stay suppressed, the 500 page has the security
headers, 413 has a Content-Type, HEAD answers wherever GET does, redirects never echo the Host header, and a
client leaving mid-POST is not an error."""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import replace

import httpx
import pytest

from newsletter.deliver import tokens
from newsletter.web.app import BASE_HEADERS, MAX_FORM_BYTES
from tests.test_webapp import ONE_CLICK, LiveServer, _add, _state, _token

SECURITY = [*(h.lower() for h in BASE_HEADERS), "content-security-policy"]


def _raw(port: int, request: bytes, read: bool = True) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while read and (chunk := sock.recv(65536)):
            data += chunk
    return data


# ---- suppressed addresses (#9, 2) ------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["bounced", "complained"])
def test_suppressed_address_cannot_reactivate_itself(client, db_url, status):
    sid = _add(db_url, "gone@example.org", status=status)
    r = client.post(f"/unsubscribe?token={_token(db_url, sid, 'unsubscribe')}", data=ONE_CLICK)
    assert r.status_code == 200 and "You are unsubscribed" in r.text  # the same answer as for anyone
    assert _state(db_url, sid)[0] == status
    url = f"/preferences?token={_token(db_url, sid, 'preferences')}"
    page = client.get(url)
    assert 'name="resubscribe"' not in page.text and "paused" in page.text  # says why, offers nothing to tick
    r = client.post(url, data={"language": "en", "scope": "all", "resubscribe": "1"})  # a hand-made form
    assert r.status_code == 200 and "paused" in r.text
    assert _state(db_url, sid)[0] == status  # still suppressed: only an operator changes it


# ---- responses -------------------------------------------------------------------------------------------


def test_500_page_carries_the_security_headers(web_settings, tmp_path):
    garbage = tmp_path / "not-a-database.db"
    garbage.write_bytes(b"this is not an SQLite file " * 100)
    broken = replace(web_settings, database_url=f"sqlite:///{garbage}")
    token = tokens.make_token(1, "unsubscribe", "a@example.org")
    with LiveServer(broken) as live, httpx.Client(base_url=live.url, timeout=10) as c:
        ok = c.get("/archive/")
        r = c.get("/unsubscribe", params={"token": token})  # the server closes the connection after a 500
    assert r.status_code == 500 and ok.status_code == 200
    for name in SECURITY:
        assert r.headers.get(name) == ok.headers.get(name), name
    assert r.headers["cache-control"] == "no-store" and r.headers["content-type"].startswith("text/plain")


def test_413_has_a_content_type(client, db_url):
    sid = _add(db_url, "big@example.org")
    for route, purpose in (("/unsubscribe", "unsubscribe"), ("/preferences", "preferences")):
        r = client.post(f"{route}?token={_token(db_url, sid, purpose)}", content=b"a=" + b"x" * (MAX_FORM_BYTES + 1))
        assert r.status_code == 413 and r.headers["content-type"] == "text/plain; charset=utf-8"
        assert all(name in r.headers for name in SECURITY)


def test_head_answers_wherever_get_does(client, db_url, web_settings, tmp_path):
    sid = _add(db_url, "head@example.org")
    folder = tmp_path / "archive"
    folder.mkdir()
    (folder / "2024-12-07.html").write_text("<html><body>issue</body></html>", encoding="utf-8")
    paths = [
        "/",
        "/archive",
        "/archive/",
        "/archive/2024-12-07",
        "/archive/2024-12-08",
        "/healthz",
        f"/unsubscribe?token={_token(db_url, sid, 'unsubscribe')}",
        f"/preferences?token={_token(db_url, sid, 'preferences')}",
        "/unsubscribe?token=forged",
    ]
    for path in paths:
        get, head = client.get(path), client.head(path)
        assert head.status_code == get.status_code, path
        assert head.content == b"", path
        same = ("content-type", "content-length", "location", "cache-control", *SECURITY)
        assert {h: head.headers.get(h) for h in same} == {h: get.headers.get(h) for h in same}, path
    assert _state(db_url, sid)[0] == "active"  # HEAD changes nothing, like GET


@pytest.mark.parametrize("path", ["/archive", "/", "/unsubscribe/", "/healthz/", "/archive/2024-12-07/"])
def test_redirects_never_echo_the_host_header(live, path):
    raw = _raw(live.port, f"GET {path} HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n".encode())
    head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
    assert "evil.example" not in head
    if " 307 " in head.splitlines()[0]:
        assert "\r\nlocation: archive/" in head


def test_client_leaving_mid_post_is_not_an_error(live, db_url, caplog):
    sid = _add(db_url, "leaver@example.org")
    errors: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.ERROR:
                errors.append(record)

    keep = Keep()
    logging.getLogger("uvicorn.error").addHandler(keep)
    try:
        with caplog.at_level(logging.INFO, logger="newsletter.web.app"):
            for route, purpose in (("/preferences", "preferences"), ("/unsubscribe", "unsubscribe")):
                target = f"{route}?token={_token(db_url, sid, purpose)}"
                request = (
                    f"POST {target} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                    f"Content-Length: 5000\r\n\r\nlanguage=en&scope=al"
                ).encode()
                _raw(live.port, request, read=False)  # closes with 4,980 bytes still announced
            deadline = time.monotonic() + 10  # until the server has seen both requests end (a condition)
            while time.monotonic() < deadline and len(_left(caplog)) + len(errors) < 2:
                time.sleep(0.02)
    finally:
        logging.getLogger("uvicorn.error").removeHandler(keep)
    assert [r.getMessage() for r in errors] == []
    assert len(_left(caplog)) == 2
    assert _state(db_url, sid)[0] == "active"  # half a request changed nothing


def _left(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "client disconnected" in r.getMessage()]
