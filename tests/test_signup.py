"""Self-service sign-up (#11, item 1) over real HTTP (uvicorn + httpx) with a real SMTP server (aiosmtpd), on
SQLite and PostgreSQL: the form, double opt-in, the welcome email, the same answer for every address, rate
limits, the honeypot, exactly one email per request, expiry and the purge; and that only confirmed (active)
subscribers are ever queued or sent an issue."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import func, select, update

from newsletter.config import ConfigError, Settings, load_settings
from newsletter.db import session_scope
from newsletter.db.models import Delivery, SignupRequest, Subscriber
from newsletter.deliver import signup, tokens
from newsletter.deliver.ledger import prepare_ledger
from newsletter.pipeline.send import send_date
from tests.cli_runner import invoke
from tests.smtp_server import FaultyHandler, SmtpServer
from tests.test_deliver import DAY, make_issue, with_delivery
from tests.test_webapp import LiveServer, _add

FORM = {"email": "new@example.org", "name": "Ada", "language": "zh", "scope": "some", "topic": ["NeRF", "3DGS"]}


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
def app_settings(settings: Settings, tmp_path, token_secret: str, smtp: SmtpServer, monkeypatch) -> Settings:
    """The web app sending its emails by SMTP to the test server (NEWSLETTER_SMTP_URL, as in production)."""
    monkeypatch.setenv("NEWSLETTER_SMTP_URL", smtp.url)
    return replace(settings, web=settings.web.updated(archive_dir=str(tmp_path / "archive")))


def _serve(settings: Settings) -> tuple[LiveServer, httpx.Client]:
    server = LiveServer(settings).__enter__()
    return server, httpx.Client(base_url=server.url, timeout=10)


@pytest.fixture
def web(app_settings: Settings) -> Iterator[tuple[LiveServer, httpx.Client]]:
    server, client = _serve(app_settings)
    try:
        yield server, client
    finally:
        client.close()
        server.__exit__(None, None, None)


@pytest.fixture
def client(web) -> httpx.Client:
    return web[1]


def _mails_to(smtp: SmtpServer, address: str) -> list[EmailMessage]:
    return [message_from_bytes(r.data, policy=policy.default) for r in smtp.handler.received if address in r.rcpt_tos]


def _wait_mails(smtp: SmtpServer, n: int) -> None:
    assert smtp.wait_for(n, timeout=20), f"expected {n} emails, the server got {len(smtp.handler.received)}"


def _text(msg: EmailMessage) -> str:
    return msg.get_body(("plain",)).get_content()


def _links(msg: EmailMessage) -> list[str]:
    return re.findall(r"https?://\S+", _text(msg))


def _sub(db_url: str, email: str) -> Subscriber | None:
    with session_scope(db_url) as s:
        sub = s.scalar(select(Subscriber).where(Subscriber.email == email))
        if sub is not None:
            s.expunge(sub)
        return sub


def _requests(db_url: str, **where) -> list[SignupRequest]:
    with session_scope(db_url) as s:
        rows = list(s.scalars(select(SignupRequest).filter_by(**where).order_by(SignupRequest.id)))
        s.expunge_all()
        return rows


def _path(link: str) -> str:
    """The path and query of a link in an email (its host is [web] base_url; the test server has its own port)."""
    parts = urlsplit(link)
    return f"{parts.path}?{parts.query}"


def _settle(db_url: str) -> None:
    """Wait until every sign-up the app was handed has been handled, and every email queued (the welcome is a
    background task of the confirmation) has been sent or has failed: all of it happens after the answer. The
    hand-over itself runs just after the answer, so "idle" must hold for a while, not once."""
    deadline, calm = time.monotonic() + 30, 0
    while calm < 10:
        assert time.monotonic() < deadline, "sign-up requests or emails still queued after 30 s"
        idle = signup.SignupWorker.wait_all(20)
        with session_scope(db_url) as s:
            busy = s.scalar(
                select(func.count()).select_from(SignupRequest).where(SignupRequest.status.in_(("pending", "sending")))
            )
        calm = calm + 1 if idle and not busy else 0
        time.sleep(0.03)


# ---- the form --------------------------------------------------------------------------------------------


def test_form_is_plain_html_with_labels_in_both_languages(client):
    r = client.get("/subscribe")
    assert r.status_code == 200
    html = r.text
    assert '<form method="post" novalidate>' in html and "<script" not in html  # works without JavaScript
    for field in ("email", "name", "website"):
        assert f'<label for="{field}">' in html and f'id="{field}"' in html
    assert 'type="email" id="email" name="email"' in html and 'autocomplete="email"' in html
    assert '<div class="hp" aria-hidden="true">' in html and 'tabindex="-1"' in html  # the honeypot
    assert '<input type="radio" name="language" value="bilingual" checked>' in html
    assert '<input type="checkbox" name="topic" value="3DGS">' in html and "3D高斯泼溅" in html
    assert "Subscribe to Paper Digest" in html and "订阅论文速递" in html and 'lang="zh-CN"' in html
    assert "default-src 'none'" in r.headers["content-security-policy"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"email": "not-an-address"}, "Please enter a valid email address."),
        ({"email": ""}, "请输入有效的邮箱地址。"),
        ({"language": "fr"}, "Please choose a language."),
        ({"scope": "some", "topic": ["no-such-topic"]}, "Tick at least one topic"),
        ({"name": "x" * 101}, "The name is too long"),
    ],
)
def test_a_bad_form_is_shown_again_with_the_reason(client, db_url, smtp, change, message):
    r = client.post("/subscribe", data={**FORM, **change})
    assert r.status_code == 422 and 'role="alert"' in r.text and message in r.text
    assert 'value="Ada"' in r.text or "name" in change  # what was typed is kept
    assert _requests(db_url) == [] and smtp.handler.received == []


# ---- double opt-in ---------------------------------------------------------------------------------------


def test_sign_up_confirm_and_welcome(client, db_url, smtp, app_settings):
    folder = Path(app_settings.web.archive_dir)
    folder.mkdir(parents=True)
    for day in ("2024-12-04", "2024-12-05"):
        (folder / f"{day}.html").write_text("<html></html>", encoding="utf-8")

    r = client.post("/subscribe", data=FORM)
    assert r.status_code == 200 and "Check your inbox" in r.text and "请查收邮件" in r.text
    assert "new@example.org" in r.text and "48 hours" in r.text
    assert r.headers["cache-control"] == "no-store"
    _settle(db_url)
    sub = _sub(db_url, "new@example.org")
    assert (sub.status, sub.name, sub.language, sub.topics) == ("pending", "Ada", "zh", ["3DGS", "NeRF"])

    _wait_mails(smtp, 1)
    [mail] = _mails_to(smtp, "new@example.org")
    assert str(mail["Subject"]) == "请确认订阅论文速递"  # the language chosen on the form
    assert mail["Auto-Submitted"] == "auto-generated" and mail["From"] == app_settings.delivery.from_addr
    [link] = [u for u in _links(mail) if "/confirm?token=" in u]
    assert link.startswith(f"{app_settings.web.base_url}/confirm?token=")
    assert link in mail.get_body(("html",)).get_content()

    page = client.get(_path(link))  # what a link scanner does: nothing changes
    assert page.status_code == 200 and '<form method="post">' in page.text and "Confirm subscription" in page.text
    assert _sub(db_url, "new@example.org").status == "pending"

    done = client.post(_path(link))
    assert done.status_code == 200 and "You are subscribed" in done.text and "订阅成功" in done.text
    assert _sub(db_url, "new@example.org").status == "active"

    _wait_mails(smtp, 2)
    welcome = _mails_to(smtp, "new@example.org")[1]
    assert str(welcome["Subject"]) == "欢迎订阅论文速递"
    assert welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    links = _links(welcome)
    assert f"{app_settings.web.base_url}/archive/2024-12-05" in links  # the latest archive page
    [prefs] = [u for u in links if "/preferences?token=" in u]
    assert client.get(_path(prefs)).status_code == 200  # the preferences link works

    again = client.post(_path(link))  # a repeat (or a second click) confirms nothing more
    assert again.status_code == 200 and "You are subscribed" in again.text
    _settle(db_url)
    assert len(_mails_to(smtp, "new@example.org")) == 2
    assert [r.kind for r in _requests(db_url, email="new@example.org")] == ["confirm", "welcome"]


def test_bilingual_confirmation_email_has_both_languages(client, smtp):
    client.post("/subscribe", data={**FORM, "language": "bilingual", "scope": "all"})
    _wait_mails(smtp, 1)
    [mail] = _mails_to(smtp, "new@example.org")
    assert str(mail["Subject"]) == "Confirm your subscription to Paper Digest | 请确认订阅论文速递"
    body = _text(mail)
    assert "Hi Ada," in body and "Please confirm" in body and "请确认您希望" in body


def test_only_confirmed_subscribers_are_queued_and_sent_issues(client, db_url, smtp, app_settings):
    """A pending sign-up gets no ledger row and no issue; once confirmed, the next send reaches it."""
    issue_id = make_issue(db_url)
    _add(db_url, "old@example.org")
    client.post("/subscribe", data={**FORM, "scope": "all"})
    _wait_mails(smtp, 1)
    with session_scope(db_url) as s:
        pending = s.scalar(select(Subscriber).where(Subscriber.email == "new@example.org"))
        result = prepare_ledger(s, issue_id, subscribers=[pending])
        assert result.created == 0 and result.inactive == 1
    settings = with_delivery(app_settings)
    assert send_date(settings, DAY).sent == 1  # old@ only
    assert [r.rcpt_tos for r in smtp.handler.received[1:]] == [["old@example.org"]]
    with session_scope(db_url) as s:
        assert s.scalar(select(func.count()).select_from(Delivery)) == 1

    [mail] = _mails_to(smtp, "new@example.org")
    [link] = [u for u in _links(mail) if "/confirm?token=" in u]
    assert client.post(_path(link)).status_code == 200
    _wait_mails(smtp, 3)  # the welcome
    assert send_date(settings, DAY).sent == 1  # the same issue, now to the new subscriber only (exactly once)
    assert len(_mails_to(smtp, "new@example.org")) == 3


# ---- the same answer for every address -------------------------------------------------------------------


@pytest.mark.parametrize("status", ["active", "bounced", "complained", "pending", "unsubscribed"])
def test_the_answer_does_not_tell_whether_an_address_is_known(client, db_url, smtp, status):
    fresh = client.post("/subscribe", data={**FORM, "email": "fresh@example.org"})
    sid = _add(db_url, "known@example.org", "en", ["3DGS"], status=status)
    before = _sub(db_url, "known@example.org")
    known = client.post("/subscribe", data={**FORM, "email": "known@example.org"})
    assert known.status_code == fresh.status_code == 200
    assert known.content.replace(b"known@", b"fresh@") == fresh.content  # byte for byte, but for the address
    _settle(db_url)
    after = _sub(db_url, "known@example.org")
    # The form never changes a known address: confirming is what would (and only for pending/unsubscribed).
    assert (after.status, after.language, after.topics, after.status_changed_at) == (
        before.status, before.language, before.topics, before.status_changed_at
    )  # fmt: skip
    mails = _mails_to(smtp, "known@example.org")
    assert len(mails) == (1 if status in ("pending", "unsubscribed") else 0)
    if status == "unsubscribed":  # someone who left may come back, by confirming with the new choices
        [link] = [u for u in _links(mails[0]) if "/confirm?token=" in u]
        assert client.post(_path(link)).status_code == 200
        with session_scope(db_url) as s:
            sub = s.get(Subscriber, sid)
            assert (sub.status, sub.language, sub.topics) == ("active", "zh", ["3DGS", "NeRF"])


def test_a_suppressed_address_cannot_be_confirmed_with_an_old_link(client, db_url, smtp):
    client.post("/subscribe", data=FORM)
    _wait_mails(smtp, 1)
    [link] = [u for u in _links(_mails_to(smtp, "new@example.org")[0]) if "/confirm?token=" in u]
    with session_scope(db_url) as s:  # it bounced in the meantime (an operator marked it)
        s.execute(update(Subscriber).where(Subscriber.email == "new@example.org").values(status="bounced"))
    r = client.post(_path(link))
    assert r.status_code == 400 and "This link is not valid" in r.text
    assert _sub(db_url, "new@example.org").status == "bounced"


def test_honeypot_gets_the_same_answer_and_nothing_happens(client, db_url, smtp):
    human = client.post("/subscribe", data={**FORM, "email": "human@example.org"})
    bot = client.post("/subscribe", data={**FORM, "email": "bot@example.org", "website": "http://spam.example"})
    assert bot.status_code == 200 and bot.content.replace(b"bot@", b"human@") == human.content
    _settle(db_url)
    assert _sub(db_url, "bot@example.org") is None and _mails_to(smtp, "bot@example.org") == []


# ---- rate limits -----------------------------------------------------------------------------------------


def test_per_address_limit(app_settings, db_url, smtp):
    settings = replace(app_settings, signup=app_settings.signup.updated(max_per_address=2, max_per_client=100))
    server, client = _serve(settings)
    try:
        answers = {client.post("/subscribe", data=FORM).content for _ in range(5)}
        assert len(answers) == 1  # the same page each time, over the limit or not
        _settle(db_url)
    finally:
        client.close()
        server.__exit__(None, None, None)
    assert len(_mails_to(smtp, "new@example.org")) == 2  # 5 requests, 2 emails
    assert len(_requests(db_url, email="new@example.org")) == 2


def test_per_client_limit(app_settings, db_url, smtp):
    settings = replace(app_settings, signup=app_settings.signup.updated(max_per_client=3))
    server, client = _serve(settings)
    try:
        for i in range(6):
            assert client.post("/subscribe", data={**FORM, "email": f"u{i}@example.org"}).status_code == 200
        _settle(db_url)
    finally:
        client.close()
        server.__exit__(None, None, None)
    assert sorted(r.rcpt_tos[0] for r in smtp.handler.received) == [
        "u0@example.org",
        "u1@example.org",
        "u2@example.org",
    ]
    # Over the limit: no row, no email (u3..u5 are not even pending).
    assert _sub(db_url, "u4@example.org") is None
    assert {r.client for r in _requests(db_url)} == {signup.client_key("127.0.0.1")}  # a keyed hash, not the IP


# ---- exactly once, failures, expiry, bad tokens ----------------------------------------------------------


def test_one_email_per_request_however_often_it_is_sent(app_settings, db_url, smtp):
    form = signup.parse_form("once@example.org", "", "en", None)
    with session_scope(db_url) as s:
        outcome = signup.request_signup(s, app_settings.signup, form, None)
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(signup.send_request(app_settings, outcome.request_id)))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["sent", "taken", "taken", "taken"]
    assert signup.send_request(app_settings, outcome.request_id) == "taken"
    assert len(smtp.handler.received) == 1


def test_a_refused_email_is_marked_failed(app_settings, db_url, monkeypatch):
    with SmtpServer(FaultyHandler(reject={"gone@example.org"})) as refusing:
        monkeypatch.setenv("NEWSLETTER_SMTP_URL", refusing.url)
        form = signup.parse_form("gone@example.org", "", "en", None)
        with session_scope(db_url) as s:
            rid = signup.request_signup(s, app_settings.signup, form, None).request_id
        assert signup.send_request(app_settings, rid) == "failed"
    [row] = _requests(db_url)
    assert row.status == "failed" and "550" in row.error
    assert signup.send_request(app_settings, rid) == "taken"  # never retried behind the person's back


def test_an_expired_link_shows_a_way_back_and_confirms_nothing(client, db_url, smtp):
    client.post("/subscribe", data=FORM)
    _wait_mails(smtp, 1)
    [req] = _requests(db_url)
    past = datetime.now(UTC) - timedelta(minutes=1)
    with session_scope(db_url) as s:
        s.execute(update(SignupRequest).where(SignupRequest.id == req.id).values(expires_at=past))
    token = tokens.make_confirm_token(req.id, req.email, int(past.timestamp()))  # what the email would carry
    for method in ("GET", "POST"):
        r = client.request(method, "/confirm", params={"token": token})
        assert r.status_code == 410 and "This confirmation link has expired" in r.text and 'href="subscribe"' in r.text
    assert _sub(db_url, "new@example.org").status == "pending"
    # The email's own link carried the old expiry: the signature covers it, so it is no longer valid at all.
    [link] = [u for u in _links(_mails_to(smtp, "new@example.org")[0]) if "/confirm?token=" in u]
    assert client.post(_path(link)).status_code == 400


def test_bad_confirmation_tokens_all_get_the_same_400(client, db_url, smtp):
    client.post("/subscribe", data=FORM)
    _wait_mails(smtp, 1)
    [link] = [u for u in _links(_mails_to(smtp, "new@example.org")[0]) if "/confirm?token=" in u]
    good = parse_qs(urlsplit(link).query)["token"][0]
    rid, _c, expires, sig = good.split(".")
    bad = [
        f"{rid}.c.{expires}.{sig[:-1]}{'A' if sig[-1] != 'A' else 'B'}",  # tampered
        f"{rid}.c.{int(expires) + 3600}.{sig}",  # extended
        tokens.make_confirm_token(int(rid) + 99, "new@example.org", int(expires)),  # unknown id
        tokens.make_confirm_token(int(rid), "other@example.org", int(expires)),  # another address
        tokens.make_token(1, "unsubscribe", "new@example.org"),  # another kind of token
        "not-a-token",
        "",
    ]
    answers = {(r.status_code, r.content) for t in bad for r in (client.get(f"/confirm?token={t}"),
                                                                 client.post(f"/confirm?token={t}"))}  # fmt: skip
    assert len(answers) == 1 and next(iter(answers))[0] == 400
    assert _sub(db_url, "new@example.org").status == "pending"


# ---- purge -----------------------------------------------------------------------------------------------


def test_purge_pending_deletes_old_unconfirmed_sign_ups_only(app_settings, db_url):
    cfg = app_settings.signup
    with session_scope(db_url) as s:
        for email in ("stale@example.org", "fresh@example.org"):
            signup.request_signup(s, cfg, signup.parse_form(email, "", "en", None), None)
    _add(db_url, "reader@example.org")
    old = datetime.now(UTC) - timedelta(days=cfg.purge_after_days, hours=1)
    with session_scope(db_url) as s:
        s.execute(update(Subscriber).where(Subscriber.email == "stale@example.org").values(updated_at=old))
        s.execute(update(SignupRequest).where(SignupRequest.email == "stale@example.org").values(created_at=old))
        s.execute(update(Subscriber).where(Subscriber.email == "reader@example.org").values(updated_at=old))
    config = app_settings.config_path
    result = invoke("--config", config, "subscribers", "purge-pending", NEWSLETTER_DATABASE_URL=db_url)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "purged 1 unconfirmed sign-ups, 1 request rows"
    assert _sub(db_url, "stale@example.org") is None
    assert _sub(db_url, "fresh@example.org").status == "pending"
    assert _sub(db_url, "reader@example.org").status == "active"  # only pending rows are ever purged
    again = invoke("--config", config, "subscribers", "purge-pending", NEWSLETTER_DATABASE_URL=db_url)
    assert again.output.strip() == "purged 0 unconfirmed sign-ups, 0 request rows"


def test_a_second_request_restarts_the_purge_clock(app_settings, db_url):
    cfg = app_settings.signup
    form = signup.parse_form("again@example.org", "", "en", None)
    with session_scope(db_url) as s:
        signup.request_signup(s, cfg, form, None)
        old = datetime.now(UTC) - timedelta(days=cfg.purge_after_days, hours=1)
        s.execute(update(Subscriber).values(updated_at=old))
        s.execute(update(SignupRequest).values(created_at=old))
    with session_scope(db_url) as s:
        assert signup.request_signup(s, cfg, form, None).reason == "pending"
    with session_scope(db_url) as s:
        assert signup.purge_pending(s, cfg).as_dict() == {"subscribers": 0, "requests": 1}
    assert _sub(db_url, "again@example.org").status == "pending"


# ---- configuration ---------------------------------------------------------------------------------------


def test_signup_section_is_typed(tmp_path):
    path = tmp_path / "newsletter.toml"
    path.write_text("[signup]\nconfirm_ttl_hours = 24\nmax_per_address = 1\npurge_after_days = 2\n", "utf-8")
    cfg = load_settings(path).signup
    assert (cfg.confirm_ttl_hours, cfg.max_per_address, cfg.purge_after_days, cfg.max_per_client) == (24, 1, 2, 10)
    path.write_text("[signup]\nmax_per_adress = 1\n", "utf-8")
    with pytest.raises(ConfigError, match=r"\[signup\] max_per_adress: unknown key .*did you mean 'max_per_address'"):
        load_settings(path)
    path.write_text("[signup]\nconfirm_ttl_hours = 72\npurge_after_days = 1\n", "utf-8")
    with pytest.raises(ConfigError, match="purge_after_days must not be shorter than confirm_ttl_hours"):
        load_settings(path)


def test_sign_up_can_be_switched_off(app_settings, db_url):
    settings = replace(app_settings, signup=app_settings.signup.updated(enabled=False))
    server, client = _serve(settings)
    try:
        assert client.get("/subscribe").status_code == 404
        assert client.post("/subscribe", data=FORM).status_code == 404
    finally:
        client.close()
        server.__exit__(None, None, None)
    assert _sub(db_url, "new@example.org") is None


def test_subscribers_list_shows_pending(app_settings, db_url):
    with session_scope(db_url) as s:
        signup.request_signup(s, app_settings.signup, signup.parse_form("p@example.org", "", "en", None), None)
    result = invoke(
        "--config", app_settings.config_path, "subscribers", "list", "--status", "pending",
        NEWSLETTER_DATABASE_URL=db_url,
    )  # fmt: skip
    assert result.exit_code == 0 and "p@example.org" in result.output and "1 subscribers" in result.output


def test_confirmation_goes_to_the_outbox_when_that_is_the_transport(app_settings, db_url, tmp_path, monkeypatch):
    """The embedded default: no SMTP configured, so sign-up emails land in the outbox Maildir, like issues."""
    import mailbox

    monkeypatch.delenv("NEWSLETTER_SMTP_URL")
    settings = replace(app_settings, delivery=app_settings.delivery.updated(outbox=str(tmp_path / "outbox")))
    server, client = _serve(settings)
    try:
        assert client.post("/subscribe", data=FORM).status_code == 200
        _settle(db_url)
    finally:
        client.close()
        server.__exit__(None, None, None)
    [raw] = [bytes(m) for m in mailbox.Maildir(tmp_path / "outbox", create=False)]
    msg = message_from_bytes(raw, policy=policy.default)
    assert msg["Delivered-To"] == "new@example.org"
    assert [u for u in _links(msg) if "/confirm?token=" in u]
    assert [r.status for r in _requests(db_url)] == ["sent"]


def test_a_flood_of_posts_is_dropped_beyond_the_queue_limit(app_settings, db_url, monkeypatch):
    """The worker's queue is bounded: posts beyond `max_queued` waiting requests are dropped, not stored up."""
    gate = threading.Event()
    worker = signup.SignupWorker(app_settings, max_queued=3)
    monkeypatch.setattr(worker, "_handle", lambda form, client: gate.wait(10))  # the worker is busy
    form = signup.parse_form("flood@example.org", "", "en", None)
    accepted = [worker.submit(form, None) for _ in range(10)]
    gate.set()
    assert worker.wait_idle(10)
    assert accepted == [True] * 3 + [False] * 7 and worker.dropped == 7
    assert worker.submit(form, None) is True  # room again once the queue has drained
