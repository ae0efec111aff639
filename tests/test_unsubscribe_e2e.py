"""One-click unsubscribe end to end, through real components only: an issue is sent through the configured
SMTP transport to a real server (aiosmtpd); the `List-Unsubscribe` URL is taken out of the message the server
received; it is POSTed, as a mail client does (RFC 8058: body `List-Unsubscribe=One-Click`), to the web app
running in uvicorn; and the next issue's ledger leaves the address out. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta
from email import message_from_bytes, policy

import httpx
import pytest
from sqlalchemy import select

from newsletter.config import Settings
from newsletter.db import session_scope
from newsletter.db.models import Delivery, Subscriber
from newsletter.deliver import subscribers
from newsletter.pipeline.send import deliveries_for_date, send_date
from newsletter.store.record import record_posts
from tests.smtp_server import SmtpServer
from tests.test_deliver import DAY, add_subscribers, make_issue, with_delivery
from tests.test_store import paper, post
from tests.test_webapp import LiveServer

NEXT_DAY = DAY + timedelta(days=1)
ONE_CLICK_BODY = b"List-Unsubscribe=One-Click"


@pytest.fixture
def app_settings(settings: Settings, tmp_path, monkeypatch) -> Settings:
    monkeypatch.setenv("NEWSLETTER_TOKEN_SECRET", "e2e-unsubscribe-secret-at-least-32-bytes")
    monkeypatch.delenv("NEWSLETTER_TOKEN_SECRET_OLD", raising=False)
    return with_delivery(replace(settings, web=settings.web.updated(archive_dir=str(tmp_path / "a"))))


def _message_to(server: SmtpServer, address: str):
    [raw] = [r.data for r in server.handler.received if r.rcpt_tos == [address]]
    return message_from_bytes(raw, policy=policy.default)


def _ledger_emails(settings: Settings, day) -> list[str]:
    report = deliveries_for_date(settings, day)
    assert report is not None and report["failures"] == []
    with session_scope(settings.database_url) as s:
        rows = s.execute(
            select(Subscriber.email)
            .join(Delivery, Delivery.subscriber_id == Subscriber.id)
            .where(Delivery.issue_id == report["issue_id"])
        )
        return sorted(rows.scalars())


def test_one_click_unsubscribe_from_a_delivered_message(app_settings, monkeypatch):
    url = app_settings.database_url
    make_issue(url)
    emails = add_subscribers(url, 3, topics=(None,))  # every topic: the next issue has something for all
    leaver = emails[1]
    with LiveServer(app_settings) as web, SmtpServer() as smtp:
        settings = replace(app_settings, web=app_settings.web.updated(base_url=web.url))
        monkeypatch.setenv("NEWSLETTER_SMTP_URL", smtp.url)
        assert send_date(settings, DAY).sent == 3

        msg = _message_to(smtp, leaver)
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        # Exactly one URI, the HTTPS(/HTTP) one-click link: no mailto that nothing would process.
        [link] = re.fullmatch(r"<([^<>]+)>", str(msg["List-Unsubscribe"]).strip()).groups()
        assert link.startswith(f"{web.url}/unsubscribe?token=")

        with httpx.Client(timeout=10) as client:
            assert client.get(link).status_code == 200  # a link scanner's GET changes nothing
            with session_scope(url) as s:
                assert subscribers.get(s, leaver).status == "active"
            answer = client.post(
                link, content=ONE_CLICK_BODY, headers={"Content-Type": "application/x-www-form-urlencoded"}
            )
        assert answer.status_code == 200
        with session_scope(url) as s:
            sub = subscribers.get(s, leaver)
            assert (sub.status, sub.status_reason) == ("unsubscribed", "one-click")

        # The next issue: queued for everyone else, never for the address that left.
        with session_scope(url) as s:
            record_posts(s, [post(NEXT_DAY.isoformat(), "3DGS", paper("2412.00009", "Next Splat"))], "test")
        assert send_date(settings, NEXT_DAY).sent == 2
        second = [r.rcpt_tos[0] for r in smtp.handler.received[3:]]
    assert _ledger_emails(settings, DAY) == sorted(emails)
    assert _ledger_emails(settings, NEXT_DAY) == sorted(e for e in emails if e != leaver)
    assert sorted(second) == sorted(e for e in emails if e != leaver)
