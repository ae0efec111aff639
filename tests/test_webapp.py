"""The web app over real HTTP: uvicorn in a background thread, httpx as the client, SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import socket
import threading
import time
from dataclasses import replace

import httpx
import pytest
import uvicorn

from newsletter.config import ConfigError, Settings, load_settings
from newsletter.db import session_scope
from newsletter.deliver import subscribers, tokens
from newsletter.web.app import RedactTokens, check_secret, create_app, mask_email, parse_day, serve, web_archive_dir

ONE_CLICK = {"List-Unsubscribe": "One-Click"}  # RFC 8058 body, sent form-urlencoded
# Sent through httpx: a missing day, impossible dates, loose formats, non-ASCII digits, encoded traversal.
BAD_DAYS = (
    "2024-12-08",
    "2024-13-01",
    "2024-02-30",
    "2024-1-07",
    "20241207",
    "2024-12-07.html",
    "２０２４-12-07",
    "..%2Fsecret.html",
    "%2e%2e%2fsecret.html",
    "%2e%2e",
)
# Sent over a raw socket, byte for byte (httpx resolves "../" before sending).
TRAVERSALS = (
    "/archive/..",
    "/archive/../secret.html",
    "/archive/../../secret.html",
    "/archive/..%2f..%2fsecret.html",
    "/archive/2024-12-07/../../secret.html",
    "/archive/%2e%2e/secret.html",
)


class LiveServer:
    """uvicorn.Server on 127.0.0.1 and a free port, in a thread; stopped by should_exit."""

    def __init__(self, settings: Settings) -> None:
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    @property
    def port(self) -> int:
        return self.server.servers[0].sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def _add(db_url: str, email: str, language: str = "bilingual", topics=None, status: str = "active") -> int:
    with session_scope(db_url) as s:
        sub = subscribers.add(s, email, "", language, topics)
        subscribers.set_status(sub, status, "test setup")
        return sub.id


def _token(db_url: str, sid: int, purpose: str) -> str:
    with session_scope(db_url) as s:
        return tokens.make_token(sid, purpose, _get(s, sid).email)


def _get(session, sid: int):
    from newsletter.db.models import Subscriber

    return session.get(Subscriber, sid)


def _state(db_url: str, sid: int) -> tuple[str, str, list | None, str | None]:
    with session_scope(db_url) as s:
        sub = _get(s, sid)
        return sub.status, sub.language, sub.topics, sub.status_reason


def _raw_get(port: int, target: str) -> tuple[int, bytes]:
    """A request with the target exactly as written: httpx would normalise '../' away before sending."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1]), data


# ---- unsubscribe -----------------------------------------------------------------------------------------


def test_unsubscribe_page_confirms_without_changing_anything(client, db_url):
    sid = _add(db_url, "ada@example.org")
    r = client.get("/unsubscribe", params={"token": _token(db_url, sid, "unsubscribe")})
    assert r.status_code == 200
    assert '<form method="post">' in r.text and '<button type="submit">' in r.text
    assert '<html lang="en">' in r.text and 'lang="zh-CN"' in r.text and "退订" in r.text
    assert "a…@example.org" in r.text and "ada@example.org" not in r.text
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert _state(db_url, sid)[0] == "active"  # GET is for people; link scanners must not unsubscribe anyone


def test_one_click_post_unsubscribes_and_is_idempotent(client, db_url):
    sid = _add(db_url, "ada@example.org")
    url = f"/unsubscribe?token={_token(db_url, sid, 'unsubscribe')}"
    first = client.post(url, data=ONE_CLICK)
    assert first.status_code == 200
    assert first.request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert "You are unsubscribed" in first.text and "您已成功退订" in first.text
    assert _state(db_url, sid)[0] == "unsubscribed"
    assert _state(db_url, sid)[3] == "one-click"
    with session_scope(db_url) as s:
        changed_at = _get(s, sid).status_changed_at
    second = client.post(url, data=ONE_CLICK)
    assert (second.status_code, second.text) == (200, first.text)
    with session_scope(db_url) as s:
        assert _get(s, sid).status_changed_at == changed_at  # the repeat changed nothing
    # The confirmation page now says so, and offers a way back.
    again = client.get(url)
    assert again.status_code == 200 and "already unsubscribed" in again.text and "preferences?token=" in again.text


def test_post_with_empty_body_unsubscribes_too(client, db_url):
    sid = _add(db_url, "bob@example.org")
    r = client.post(f"/unsubscribe?token={_token(db_url, sid, 'unsubscribe')}")
    assert r.status_code == 200
    assert _state(db_url, sid)[0] == "unsubscribed"
    assert _state(db_url, sid)[3] == "unsubscribe page"


def test_complaint_stays_a_complaint(client, db_url):
    sid = _add(db_url, "carol@example.org", status="complained")
    r = client.post(f"/unsubscribe?token={_token(db_url, sid, 'unsubscribe')}", data=ONE_CLICK)
    assert r.status_code == 200
    assert _state(db_url, sid)[0] == "complained"


def test_multipart_one_click_counts_as_one_click(client, db_url):
    """RFC 8058 allows multipart/form-data too (some mail clients send it)."""
    sid = _add(db_url, "dan@example.org")
    r = client.post(
        f"/unsubscribe?token={_token(db_url, sid, 'unsubscribe')}", files={"List-Unsubscribe": (None, "One-Click")}
    )
    assert r.status_code == 200 and r.request.headers["content-type"].startswith("multipart/form-data")
    assert _state(db_url, sid)[::3] == ("unsubscribed", "one-click")


def test_a_malformed_one_click_body_still_unsubscribes(client, db_url):
    """The token authorises: a body the form parser refuses (multipart without a boundary) changes nothing."""
    sid = _add(db_url, "eve@example.org")
    r = client.post(
        f"/unsubscribe?token={_token(db_url, sid, 'unsubscribe')}",
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "multipart/form-data"},
    )
    assert r.status_code == 200 and "You are unsubscribed" in r.text
    assert _state(db_url, sid)[::3] == ("unsubscribed", "unsubscribe page")


# ---- preferences -----------------------------------------------------------------------------------------


def test_preferences_form_lists_registry_and_own_topics(client, db_url):
    sid = _add(db_url, "ada@example.org", "en", ["3DGS", "Point Cloud Registration"])
    r = client.get("/preferences", params={"token": _token(db_url, sid, "preferences")})
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store"
    assert '<input type="radio" name="language" value="en" checked>' in r.text
    assert '<input type="checkbox" name="topic" value="3DGS" checked>' in r.text
    assert '<input type="checkbox" name="topic" value="NeRF">' in r.text  # from the registry
    assert 'value="元宇宙/虚拟人"' in r.text and "3D高斯泼溅" in r.text
    assert '<input type="checkbox" name="topic" value="Point Cloud Registration" checked>' in r.text
    assert '<input type="radio" name="scope" value="all">' in r.text  # a selection, not "all topics"
    assert 'name="resubscribe"' not in r.text  # only for people who unsubscribed
    assert "unsubscribe?token=" in r.text


def test_preferences_change_language_and_topics(client, db_url):
    sid = _add(db_url, "ada@example.org")
    url = f"/preferences?token={_token(db_url, sid, 'preferences')}"
    form = {"language": "zh", "scope": "some", "topic": ["NeRF", "3DGS", "not-a-topic"]}
    r = client.post(url, data=form)
    assert r.status_code == 200 and "已保存" in r.text and "Saved." in r.text
    assert _state(db_url, sid)[:3] == ("active", "zh", ["3DGS", "NeRF"])  # invented topics are dropped
    assert '<input type="checkbox" name="topic" value="NeRF" checked>' in r.text  # the page shows the result

    r = client.post(url, data={"language": "bilingual", "scope": "all", "topic": ["NeRF"]})
    assert r.status_code == 200
    assert _state(db_url, sid)[:3] == ("active", "bilingual", None)  # "all topics" wins over ticks


def test_preferences_reject_an_unusable_form(client, db_url):
    sid = _add(db_url, "ada@example.org", "en", ["3DGS"])
    url = f"/preferences?token={_token(db_url, sid, 'preferences')}"
    r = client.post(url, data={"language": "fr", "scope": "all"})
    assert r.status_code == 422 and 'role="alert"' in r.text and "请选择语言" in r.text
    r = client.post(url, data={"language": "zh", "scope": "some"})
    assert r.status_code == 422 and "Tick at least one topic" in r.text
    assert _state(db_url, sid)[:3] == ("active", "en", ["3DGS"])


def test_resubscribe_from_preferences(client, db_url):
    sid = _add(db_url, "ada@example.org", status="unsubscribed")
    url = f"/preferences?token={_token(db_url, sid, 'preferences')}"
    page = client.get(url)
    assert '<input type="checkbox" name="resubscribe" value="1">' in page.text
    client.post(url, data={"language": "en", "scope": "all"})
    assert _state(db_url, sid)[0] == "unsubscribed"  # saving alone does not resubscribe
    r = client.post(url, data={"language": "en", "scope": "all", "resubscribe": "1"})
    assert r.status_code == 200 and 'name="resubscribe"' not in r.text
    assert _state(db_url, sid)[:2] == ("active", "en")


# ---- bad tokens ------------------------------------------------------------------------------------------


def test_bad_tokens_all_get_the_same_400(client, db_url):
    sid = _add(db_url, "ada@example.org")
    good_unsub = _token(db_url, sid, "unsubscribe")
    good_prefs = _token(db_url, sid, "preferences")
    head, sig = good_unsub.rsplit(".", 1)
    bad = {
        "tampered signature": f"{head}.{sig[:-1]}{'A' if sig[-1] != 'A' else 'B'}",
        "unknown id": tokens.make_token(sid + 1000, "unsubscribe", "ada@example.org"),
        "huge unknown id": tokens.make_token(9_999_999_999, "unsubscribe", "ada@example.org"),
        "other email": tokens.make_token(sid, "unsubscribe", "eve@example.org"),
        "other secret": good_unsub.replace(sig, "x" * len(sig)),
        "malformed": "not-a-token",
        "full-width id": f"１.u.{sig}",
        "empty": "",
    }
    answers = {}
    for reason, token in bad.items():
        for method in ("GET", "POST"):
            r = client.request(
                method, "/unsubscribe", params={"token": token}, data=ONE_CLICK if method == "POST" else None
            )
            answers[(reason, method)] = (r.status_code, r.content, r.headers["cache-control"])
    wrong_purpose = client.post("/unsubscribe", params={"token": good_prefs}, data=ONE_CLICK)
    answers[("wrong purpose", "POST")] = (wrong_purpose.status_code, wrong_purpose.content, "no-store")
    for method in ("GET", "POST"):
        r = client.request(method, "/preferences", params={"token": good_unsub}, data={"language": "zh"})
        answers[("wrong purpose prefs", method)] = (r.status_code, r.content, r.headers["cache-control"])
    missing = client.get("/unsubscribe")
    answers[("no token", "GET")] = (missing.status_code, missing.content, missing.headers["cache-control"])

    assert len(set(answers.values())) == 1, {k: v[0] for k, v in answers.items()}
    status, body, _ = next(iter(answers.values()))
    assert status == 400 and b"This link is not valid" in body and "此链接无效".encode() in body
    assert _state(db_url, sid)[:3] == ("active", "bilingual", None)  # nothing changed


@pytest.mark.parametrize("route", ["unsubscribe", "preferences"])
def test_bodies_over_64_kb_get_413_and_change_nothing(client, db_url, route):
    sid = _add(db_url, "ada@example.org", "en", ["3DGS"])
    purpose = "unsubscribe" if route == "unsubscribe" else "preferences"
    url = f"/{route}?token={_token(db_url, sid, purpose)}"
    padding = "x" * (64 * 1024)
    declared = client.post(url, data={"language": "zh", "scope": "all", "pad": padding})  # Content-Length
    chunks = iter([b"language=zh&scope=all&pad=", padding.encode(), b"x"])
    streamed = client.post(  # chunked: no Content-Length, counted as it arrives
        url, content=chunks, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    for r in (declared, streamed):
        assert r.status_code == 413 and r.text == "Content Too Large"
        assert r.headers["content-type"] == "text/plain; charset=utf-8"
        assert r.headers["x-content-type-options"] == "nosniff"
    assert "content-length" not in streamed.request.headers
    assert _state(db_url, sid)[:3] == ("active", "en", ["3DGS"])
    just_under = client.post(url, data={"language": "zh", "scope": "all", "pad": "x" * 60_000})
    assert just_under.status_code == 200


def test_subscriber_for_token_spends_an_hmac_on_unknown_ids(db_url, monkeypatch):
    from newsletter.web.app import subscriber_for_token

    monkeypatch.setenv("NEWSLETTER_TOKEN_SECRET", "one-secret")
    monkeypatch.delenv("NEWSLETTER_TOKEN_SECRET_OLD", raising=False)
    calls = []
    real = tokens._sign
    monkeypatch.setattr(tokens, "_sign", lambda *a: calls.append(a) or real(*a))
    with session_scope(db_url) as s:
        assert subscriber_for_token(s, tokens.make_token(424242, "unsubscribe", "x@example.org"), "unsubscribe") is None
    assert len(calls) == 2  # one to make the token, one to verify it against the dummy address


# ---- archive ---------------------------------------------------------------------------------------------


def test_archive_serves_written_pages_and_nothing_else(client, live, web_settings, tmp_path):
    folder = web_archive_dir(web_settings)
    folder.mkdir(parents=True)
    page = '<!DOCTYPE html><html lang="zh-CN"><body><p style="color:red">第一期 issue one</p></body></html>'
    (folder / "2024-12-07.html").write_text(page, encoding="utf-8")
    (folder / "2024-12-09.html").write_text(page, encoding="utf-8")
    (folder / "notes.txt").write_text("not an issue", encoding="utf-8")
    (tmp_path / "secret.html").write_text("TOP SECRET", encoding="utf-8")

    r = client.get("/archive/2024-12-07")
    assert r.status_code == 200 and r.text == page
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert "style-src 'unsafe-inline'" in r.headers["content-security-policy"]
    assert "script-src" not in r.headers["content-security-policy"]  # default-src 'none' covers scripts

    index = client.get("/archive/")
    assert index.status_code == 200
    assert index.text.index('href="2024-12-09"') < index.text.index('href="2024-12-07"')  # newest first
    assert "notes" not in index.text

    for bad in BAD_DAYS:
        r = client.get(f"/archive/{bad}")
        assert r.status_code == 404, bad
        assert "TOP SECRET" not in r.text
    for target in TRAVERSALS:
        status, raw = _raw_get(live.port, target)
        assert status == 404, target
        assert b"TOP SECRET" not in raw


def test_archive_index_without_folder(client):
    r = client.get("/archive/")
    assert r.status_code == 200 and "No issues yet." in r.text


def test_parse_day_is_strict():
    assert parse_day("2024-12-07").isoformat() == "2024-12-07"
    for bad in ("2024-12-7", "2024-12-07 ", "2024-12-07\n", "٢٠٢٤-12-07", "2024/12/07", "../2024-12-07", ""):
        assert parse_day(bad) is None, bad


def test_archive_dir_is_relative_to_the_config_file(tmp_path):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "newsletter.toml").write_text("", encoding="utf-8")
    cfg = load_settings(tmp_path / "conf" / "newsletter.toml")
    assert web_archive_dir(cfg) == (tmp_path / "conf" / "var" / "archive").resolve()
    (tmp_path / "newsletter.toml").write_text('[web]\narchive_dir = "site/issues"\n', encoding="utf-8")
    cfg = load_settings(tmp_path / "newsletter.toml")
    assert web_archive_dir(cfg) == (tmp_path / "site" / "issues").resolve()


# ---- health, headers, serving ----------------------------------------------------------------------------


def test_healthz(client):
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok", "database": "ok"}


def test_healthz_503_when_the_database_is_down(web_settings):
    down = replace(web_settings, database_url="postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=2")
    with LiveServer(down) as server, httpx.Client(base_url=server.url, timeout=10) as c:
        r = c.get("/healthz")
    assert r.status_code == 503 and r.json() == {"status": "error", "database": "unavailable"}


def test_stylesheet_is_allowed_by_its_hash_and_nothing_external(client, db_url):
    sid = _add(db_url, "ada@example.org")
    r = client.get("/preferences", params={"token": _token(db_url, sid, "preferences")})
    css = re.search(r"<style>(.*?)</style>", r.text, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in r.headers["content-security-policy"]
    assert "unsafe-inline" not in r.headers["content-security-policy"]
    assert not re.search(r"<(script|link|img|iframe)\b|style=|https?://", r.text)
    assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"


def test_html_is_escaped(client, db_url):
    sid = _add(db_url, "ada@example.org", topics=["<script>alert(1)</script>"])
    r = client.get("/preferences", params={"token": _token(db_url, sid, "preferences")})
    assert "<script>" not in r.text and "&lt;script&gt;" in r.text


def test_tokens_are_redacted_from_access_logs():
    args = ("1.2.3.4:5", "POST", "/unsubscribe?token=12.u.abcDEF_-&x=1", "1.1", 200)
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d', args, None)
    RedactTokens().filter(record)
    assert "abcDEF" not in record.getMessage() and "token=[redacted]&x=1" in record.getMessage()


@pytest.mark.parametrize("secret", [None, "   ", "s3cret", "x" * 31])
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "0.0.0.0"])
def test_serve_refuses_the_dev_secret_on_every_address(settings, monkeypatch, secret, host):  # #9.3
    monkeypatch.delenv("NEWSLETTER_TOKEN_SECRET_OLD", raising=False)
    if secret is None:
        monkeypatch.delenv("NEWSLETTER_TOKEN_SECRET", raising=False)
    else:
        monkeypatch.setenv("NEWSLETTER_TOKEN_SECRET", secret)
    with pytest.raises(ConfigError, match=r"^NEWSLETTER_TOKEN_SECRET .*refusing to serve on") as info:
        serve(settings, host, 0)  # refuses before uvicorn starts
    assert "\n" not in str(info.value)
    monkeypatch.setenv("NEWSLETTER_TOKEN_SECRET", "x" * 32)
    check_secret(host)


def test_mask_email():
    assert mask_email("ada@example.org") == "a…@example.org"
