"""Delivery against a real SMTP server (aiosmtpd on 127.0.0.1) with fault injection, on SQLite and PostgreSQL.

After every scenario the messages are counted AT THE SERVER, per recipient: every active subscriber exactly
once, a rejected address never, and after a SIGKILL at most one duplicate per kill.
"""

from __future__ import annotations

import json
import mailbox
import os
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from sqlalchemy import select, update

from newsletter.config import ConfigError, DeliverySettings, Settings, SmtpSettings, load_settings
from newsletter.db import session_scope
from newsletter.db.models import Delivery, IssueRow, Subscriber
from newsletter.deliver import subscribers
from newsletter.deliver.ledger import (
    aware,
    claim_statement,
    deliveries_report,
    needed_variants,
    parse_variant_key,
    prepare_ledger,
    recover_stale,
    variant_key,
)
from newsletter.deliver.message import MessageSettings, MessageTemplate, Person, assemble
from newsletter.deliver.sender import default_worker, send_issue, send_test
from newsletter.deliver.transport import (
    _SMTP,
    OutboxTransport,
    SmtpConfig,
    SmtpTransport,
    TransportError,
    _may_need_dot_stuffing,
    parse_smtp_url,
    smtp_config,
    transport_factory,
)
from newsletter.issue.build import IssueSettings, Period, build_issue
from newsletter.pipeline.send import deliveries_for_date, send_date
from newsletter.records import VariantSpec
from newsletter.render.variant import PH_GREETING, PH_PREFERENCES_URL, PH_UNSUBSCRIBE_URL, RenderedVariant
from newsletter.store.record import record_posts
from tests.conftest import PG_SKIP, PG_URL
from tests.smtp_server import FaultyHandler, SmtpServer
from tests.test_store import paper, post

ROOT = Path(__file__).resolve().parents[1]
DAY = date(2024, 12, 5)
NAMES = ("", "Ada", "张伟", "Grace Hopper")
LANGS = ("en", "zh", "bilingual")
TOPICS = (None, ["3DGS"], ["NeRF"], ["3DGS", "NeRF"])
FAST = {  # test timings: immediate retries and reconnects, a breaker that tolerates the injected faults
    "batch_size": 5,
    "retry_base_s": 0.05,
    "retry_wait_s": 30,
    "reconnect_delay_s": 0.01,
    "max_error_rate": 0.5,
    "breaker_min": 20,
}


# ---- fixtures and helpers --------------------------------------------------------------------------------


def with_delivery(settings: Settings, **values) -> Settings:
    return replace(settings, delivery=settings.delivery.updated(**{**FAST, **values}))


def make_issue(url: str) -> int:
    """An issue for DAY with topics 3DGS (2 papers) and NeRF (1), through the store and issue stages."""
    with session_scope(url) as s:
        record_posts(
            s,
            [
                post(DAY.isoformat(), "3DGS", paper("2412.00001", "Splat A"), paper("2412.00002", "Splat B")),
                post(DAY.isoformat(), "NeRF", paper("2412.00003", "Field C")),
            ],
            "test",
        )
    with session_scope(url) as s:
        return build_issue(s, Period.day(DAY, "Asia/Shanghai"), IssueSettings()).issue_id


def add_subscribers(url: str, n: int, start: int = 0, topics=TOPICS) -> list[str]:
    emails = []
    with session_scope(url) as s:
        for i in range(start, start + n):
            sub = subscribers.add(
                s, f"user{i:03d}@example.com", NAMES[i % len(NAMES)], LANGS[i % len(LANGS)], topics[i % len(topics)]
            )
            emails.append(sub.email)
    return emails


def hand_variant(key: str) -> RenderedVariant:
    """A small variant with the real placeholders, Chinese text and the key in the body (to check routing)."""
    lang, topics = parse_variant_key(key)
    body = "高斯泼溅 Gaussian splatting, 神经辐射场. " * 40
    html = (
        f'<!doctype html><html lang="zh-CN"><body><p>{PH_GREETING}</p><h1>论文速递 [{key}]</h1><p>{body}</p>'
        f'<a href="{PH_UNSUBSCRIBE_URL}">退订</a> · <a href="{PH_PREFERENCES_URL}">设置</a></body></html>'
    )
    links = f"Unsubscribe: {PH_UNSUBSCRIBE_URL}\nPreferences: {PH_PREFERENCES_URL}\n"
    text = f"{PH_GREETING}\n\n论文速递 [{key}]\n{body}\n\n{links}"
    subject = f"Paper Digest {DAY} · 3 papers | 论文速递 · 3 篇论文 [{key}]"
    return RenderedVariant(lang, topics, subject, "", html, text, html_encoded_size=0, n_full=3, n_listed=0)


def variants_for(url: str, issue_id: int) -> dict[str, RenderedVariant]:
    with session_scope(url) as s:
        return {k: hand_variant(k) for k in needed_variants(s, issue_id)}


def smtp(server: SmtpServer):
    cfg = parse_smtp_url(server.url)
    return lambda: SmtpTransport(cfg)


def ledger(url: str, issue_id: int) -> dict[str, tuple[str, int]]:
    """email -> (status, attempts)."""
    with session_scope(url) as s:
        rows = s.execute(
            select(Subscriber.email, Delivery.status, Delivery.attempts)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(Delivery.issue_id == issue_id)
        )
        return {email: (status, attempts) for email, status, attempts in rows}


def prepared(settings: Settings, n: int = 24) -> tuple[int, list[str]]:
    issue_id = make_issue(settings.database_url)
    emails = add_subscribers(settings.database_url, n)
    with session_scope(settings.database_url) as s:
        prepare_ledger(s, issue_id)
    return issue_id, emails


def send(settings: Settings, issue_id: int, server: SmtpServer, **kw):
    return send_issue(settings, issue_id, variants_for(settings.database_url, issue_id), smtp(server), **kw)


def assert_exactly_once(server: SmtpServer, emails: list[str], never: tuple[str, ...] = ()) -> None:
    counts = server.counts()
    wrong = {e: counts[e] for e in emails if counts[e] != (0 if e in never else 1)}
    assert not wrong, f"messages per recipient at the server: {wrong}"
    assert set(counts) <= set(emails), f"unexpected recipients: {set(counts) - set(emails)}"


# ---- ledger ----------------------------------------------------------------------------------------------


def test_prepare_ledger_is_idempotent_and_skips_who_has_nothing_to_read(settings):
    url = settings.database_url
    issue_id = make_issue(url)
    emails = add_subscribers(url, 12)
    [gan] = add_subscribers(url, 1, start=50, topics=(["GAN"],))  # a topic with no paper in this issue
    [gone] = add_subscribers(url, 1, start=60)
    with session_scope(url) as s:
        subscribers.set_status(subscribers.get(s, gone), "unsubscribed")
    with session_scope(url) as s:
        first = prepare_ledger(s, issue_id)
    assert (first.created, first.existing, first.skipped) == (12, 0, [gan])
    with session_scope(url) as s:  # a delivered row must survive any re-run untouched
        s.execute(update(Delivery).where(Delivery.subscriber_id == 1).values(status="sent", attempts=1))
    add_subscribers(url, 2, start=70)  # subscribed since: a re-run (backfill) queues only them
    with session_scope(url) as s:
        again = prepare_ledger(s, issue_id)
    assert (again.created, again.existing) == (2, 12)
    rows = ledger(url, issue_id)
    assert len(rows) == 14 and gan not in rows and gone not in rows
    assert rows[emails[0]] == ("sent", 1)
    with session_scope(url) as s:
        ids = s.scalars(select(Delivery.message_id).where(Delivery.issue_id == issue_id)).all()
        keys = set(s.scalars(select(Delivery.variant).where(Delivery.issue_id == issue_id)))
    assert len(set(ids)) == 14 and all(i.startswith(f"<issue-{issue_id}.sub-") for i in ids)
    assert keys == {variant_key(lang, t) for lang in LANGS for t in TOPICS}


def test_variant_key_is_the_pipeline_key():
    for lang, topics in [("en", None), ("zh", ["NeRF", "3DGS"]), ("bilingual", ["元宇宙/虚拟人"])]:
        spec = VariantSpec(lang, frozenset(topics) if topics else None)
        assert variant_key(lang, topics) == spec.key
        assert parse_variant_key(spec.key) == (spec.lang, spec.topics)


def claim_batch(session, issue_id: int, worker: str, size: int, max_attempts: int = 5) -> list[Delivery]:
    """What a sender does with `claim_statement` (then it commits and sends): claim, read the rows claimed."""
    claimed = [row.id for row in session.execute(claim_statement(issue_id, worker, size, max_attempts))]
    query = select(Delivery).where(Delivery.id.in_(claimed)).order_by(Delivery.id)
    return list(session.scalars(query.execution_options(populate_existing=True)))


def test_claim_is_disjoint_and_sending_rows_are_not_reclaimed(settings):
    issue_id, _ = prepared(settings, 12)
    with session_scope(settings.database_url) as s:
        a = claim_batch(s, issue_id, "a", 5)
        b = claim_batch(s, issue_id, "b", 5)
        c = claim_batch(s, issue_id, "c", 5)
        d = claim_batch(s, issue_id, "d", 5)
    ids = [r.id for r in a + b + c]
    assert len(ids) == len(set(ids)) == 12 and d == []
    assert {r.status for r in a + b + c} == {"sending"} and {r.worker for r in a} == {"a"}
    with session_scope(settings.database_url) as s:
        assert recover_stale(s, issue_id, timedelta(hours=1)) == 0  # too recent: might be a live worker
        assert recover_stale(s, issue_id, 0) == 12
        assert len(claim_batch(s, issue_id, "e", 50)) == 12


# ---- sending ---------------------------------------------------------------------------------------------


def test_send_delivers_each_once_and_a_rerun_sends_nothing(settings):
    settings = with_delivery(settings)
    issue_id, emails = prepared(settings)
    with SmtpServer() as server:
        report = send(settings, issue_id, server)
        assert (report.sent, report.ok, report.left["sent"]) == (24, True, 24)
        again = send(settings, issue_id, server)
        assert again.sent == 0
        assert_exactly_once(server, emails)
        by_rcpt = {r.rcpt_tos[0]: r for r in server.handler.received}
    with session_scope(settings.database_url) as s:
        assert s.get(IssueRow, issue_id).frozen  # delivery started: the issue's membership is fixed
        rows = {sub.email: (sub, d) for sub, d in s.execute(select(Subscriber, Delivery).join(Delivery))}
    for email, received in by_rcpt.items():
        _, row = rows[email]
        msg = message_from_bytes(received.data, policy=policy.default)
        assert msg["Message-ID"] == row.message_id and msg["To"].addresses[0].addr_spec == email
        html = msg.get_body(("html",)).get_content()
        assert f"[{row.variant}]" in html  # each subscriber got their own variant
        assert row.status == "sent" and row.sent_at is not None and row.attempts == 1


def test_a_dropped_connection_requeues_the_message_and_reconnects(settings):  # (a)
    settings = with_delivery(settings, batch_size=10)
    issue_id, emails = prepared(settings, 30)
    with SmtpServer(FaultyHandler(drop_every=4)) as server:
        report = send(settings, issue_id, server)
        assert_exactly_once(server, emails)
        drops = server.handler.drops
    # One sender, rows in id order, 4 messages per connection: batches of 10 send 8 and lose 2 to cuts, the
    # requeued ones lead the next batch (8+2, 8+2, 8+2, 5+1, then the last one): exactly 7 cuts.
    assert (drops, report.requeued, report.reconnects) == (7, 7, 7)
    assert report.sent == 30 and report.ok
    assert {status for status, _ in ledger(settings.database_url, issue_id).values()} == {"sent"}


def test_an_unreachable_server_is_retried_then_stops_the_run_with_nothing_lost(settings):
    settings = with_delivery(settings, reconnect_tries=2)
    issue_id, _ = prepared(settings, 6)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = parse_smtp_url(f"smtp://127.0.0.1:{probe.getsockname()[1]}")
    tried: list[int] = []

    def factory():
        tried.append(1)
        return SmtpTransport(closed)

    report = send_issue(settings, issue_id, variants_for(settings.database_url, issue_id), factory)
    assert len(tried) == 3 and report.reconnects == 2
    assert report.stopped.startswith("cannot connect after 3 tries: disconnected at connect")
    assert report.sent == 0 and {s for s, _ in ledger(settings.database_url, issue_id).values()} == {"pending"}


def test_451_is_retried_later_in_the_same_run(settings):  # (b)
    settings = with_delivery(settings)
    issue_id, emails = prepared(settings)
    greylisted = {emails[2]: 1, emails[7]: 2, emails[19]: 1}
    with SmtpServer(FaultyHandler(tempfail=dict(greylisted))) as server:
        report = send(settings, issue_id, server)
        assert_exactly_once(server, emails)
        assert server.handler.tempfailed == 4
    assert (report.sent, report.deferred, report.ok) == (24, 4, True)
    rows = ledger(settings.database_url, issue_id)
    assert rows[emails[7]] == ("sent", 3) and rows[emails[2]] == ("sent", 2) and rows[emails[0]] == ("sent", 1)


def test_451_not_yet_due_is_left_for_the_next_run(settings):  # (b), across runs
    settings = with_delivery(settings, retry_base_s=3600, retry_wait_s=0)
    issue_id, emails = prepared(settings, 10)
    with SmtpServer(FaultyHandler(tempfail={emails[3]: 1})) as server:
        first = send(settings, issue_id, server)
        assert (first.sent, first.deferred, first.left["failed"]) == (9, 1, 1)
        with session_scope(settings.database_url) as s:
            report = deliveries_report(s, issue_id)
        [failure] = report["failures"]
        assert failure["email"] == emails[3] and failure["error"].startswith("transient at rcpt: 451")
        assert send(settings, issue_id, server).sent == 0  # not due yet
        with session_scope(settings.database_url) as s:  # an hour passes
            s.execute(
                update(Delivery)
                .where(Delivery.status == "failed")
                .values(next_attempt_at=datetime(2000, 1, 1, tzinfo=UTC))
            )
        assert send(settings, issue_id, server).sent == 1
        assert_exactly_once(server, emails)


def test_each_failure_leaves_its_row_exactly_so(settings):
    """One run, three failures: a 550 bounces the row and the subscriber (reason and time recorded); a 451
    defers it with a due time from the backoff; a 451 on the last allowed attempt gives up (no due time).
    Each keeps its attempt count and error, and the report counts each once, naming who and why."""
    settings = with_delivery(settings, retry_base_s=3600, retry_wait_s=0, max_attempts=3)
    issue_id, emails = prepared(settings, 6)
    dead, later, last = emails[1], emails[2], emails[3]
    with session_scope(settings.database_url) as s:
        s.execute(update(Delivery).where(Delivery.subscriber_id == subscribers.get(s, last).id).values(attempts=2))
    before = datetime.now(UTC)
    with SmtpServer(FaultyHandler(reject={dead}, tempfail={later: 1, last: 1})) as server:
        report = send(settings, issue_id, server)
        assert_exactly_once(server, emails, never=(dead, later, last))
    after = datetime.now(UTC)
    assert (report.sent, report.bounced, report.deferred, report.gave_up, report.requeued) == (3, 1, 1, 1, 0)
    with session_scope(settings.database_url) as s:
        rows = {
            e: s.scalar(select(Delivery).join(Subscriber).where(Subscriber.email == e)) for e in (dead, later, last)
        }
        got = {e: (r.status, r.attempts, r.next_attempt_at is None) for e, r in rows.items()}
        assert got == {dead: ("bounced", 1, True), later: ("failed", 1, False), last: ("failed", 3, True)}
        due = aware(rows[later].next_attempt_at)
        assert before + timedelta(seconds=3600) <= due <= after + timedelta(seconds=3600)
        assert rows[dead].last_error.startswith("permanent at rcpt: 550 5.1.1")
        assert rows[later].last_error.startswith("transient at rcpt: 451") and rows[last].last_error.startswith(
            "transient at rcpt: 451"
        )
        assert report.errors == [f"{e}: {rows[e].last_error}" for e in (dead, later, last)]
        sub = subscribers.get(s, dead)
        assert (sub.status, sub.status_reason) == ("bounced", rows[dead].last_error)
        assert sub.status_changed_at is not None and sub.updated_at == sub.status_changed_at
        assert before <= aware(sub.status_changed_at) <= after


def test_550_bounces_the_delivery_and_the_subscriber(settings):  # (c)
    settings = with_delivery(settings)
    issue_id, emails = prepared(settings)
    dead = emails[5]
    with SmtpServer(FaultyHandler(reject={dead})) as server:
        report = send(settings, issue_id, server)
        assert_exactly_once(server, emails, never=(dead,))
    assert (report.sent, report.bounced) == (23, 1)
    assert ledger(settings.database_url, issue_id)[dead] == ("bounced", 1)
    with session_scope(settings.database_url) as s:
        sub = subscribers.get(s, dead)
        assert sub.status == "bounced" and "550 5.1.1" in sub.status_reason
        report = deliveries_report(s, issue_id)
        assert report["counts"]["bounced"] == 1 and report["failures"][0]["email"] == dead
        # ... and the next issue does not queue them.
        record_posts(s, [post("2024-12-06", "3DGS", paper("2412.00009", "Next"))], "test")
    with session_scope(settings.database_url) as s:
        nxt = build_issue(s, Period.day(date(2024, 12, 6), "Asia/Shanghai"), IssueSettings()).issue_id
    with session_scope(settings.database_url) as s:
        result = prepare_ledger(s, nxt)
    assert dead not in ledger(settings.database_url, nxt) and result.inactive == 0


def test_circuit_breaker_stops_a_failing_run(settings):
    settings = with_delivery(
        settings, batch_size=10, max_error_rate=0.3, breaker_window=10, breaker_min=10, durable_marks=True
    )
    issue_id, _ = prepared(settings, 40)
    with SmtpServer(FaultyHandler(tempfail_all=True)) as server:
        report = send(settings, issue_id, server)
        assert server.counts() == {}
    assert report.stopped and "circuit breaker" in report.stopped and "100%" in report.stopped
    assert report.sent == 0 and report.deferred == 10 and "451 4.7.1" in report.errors[-1]
    assert report.left["sending"] == 0  # nothing claimed is left behind
    assert report.left["pending"] == 30 and report.left["failed"] == 10


def test_a_refused_sender_stops_the_run_without_touching_subscribers(settings):
    settings = with_delivery(settings)
    issue_id, _ = prepared(settings, 10)
    with SmtpServer(FaultyHandler(refuse_sender=True)) as server:
        report = send(settings, issue_id, server)
        assert server.counts() == {}
    assert report.stopped.startswith("server refuses the sender: session at mail: 553")
    assert (report.sent, report.bounced, report.left["pending"]) == (0, 0, 10)
    with session_scope(settings.database_url) as s:
        assert {sub.status for sub in s.scalars(select(Subscriber))} == {"active"}
        rows = s.scalars(select(Delivery).where(Delivery.issue_id == issue_id).order_by(Delivery.id)).all()
        # The one it tried is released as it was (unclaimed, its attempt not counted) with the reason.
        tried = [r for r in rows if r.last_error]
        assert [(r.attempts, r.worker, r.claimed_at) for r in tried] == [(0, None, None)]
        assert tried[0].last_error == report.stopped.removeprefix("server refuses the sender: ")
        assert report.errors == [f"{s.get(Subscriber, tried[0].subscriber_id).email}: {tried[0].last_error}"]


def test_unsubscribed_after_the_ledger_is_skipped(settings):
    settings = with_delivery(settings, rate_limit_per_s=1000)
    issue_id, emails = prepared(settings, 10)
    with session_scope(settings.database_url) as s:
        subscribers.set_status(subscribers.get(s, emails[4]), "unsubscribed")
    with SmtpServer() as server:
        report = send(settings, issue_id, server)
        assert_exactly_once(server, emails, never=(emails[4],))
    assert (report.sent, report.skipped) == (9, 1)
    assert ledger(settings.database_url, issue_id)[emails[4]][0] == "skipped"


def test_dry_run_changes_nothing(settings):
    settings = with_delivery(settings)
    issue_id, _ = prepared(settings, 8)
    with SmtpServer() as server:
        report = send(settings, issue_id, server, dry_run=True)
        assert server.counts() == {}
    assert report.dry_run and sum(report.would_send.values()) == 8 and report.sent == 0
    assert (report.issue_id, report.worker) == (issue_id, default_worker())
    assert report.left == {"pending": 8, "sending": 0, "sent": 0, "failed": 0, "bounced": 0, "skipped": 0}
    assert {s for s, _ in ledger(settings.database_url, issue_id).values()} == {"pending"}
    with session_scope(settings.database_url) as s:
        assert not s.get(IssueRow, issue_id).frozen


def test_missing_variant_is_refused_before_sending(settings):
    settings = with_delivery(settings)
    issue_id, _ = prepared(settings, 6)
    with SmtpServer() as server, pytest.raises(ValueError, match="variants not rendered"):
        send_issue(settings, issue_id, {}, smtp(server))


def test_test_recipient_gets_one_copy_outside_the_ledger(settings):
    settings = with_delivery(settings)
    issue_id, _ = prepared(settings, 4)
    with SmtpServer() as server:
        mid = send_test(settings, issue_id, DAY, hand_variant("zh|"), "Proof@Example.org", smtp(server), lang="zh")
        assert server.counts() == {"proof@example.org": 1}
        msg = message_from_bytes(server.handler.received[0].data, policy=policy.default)
    assert msg["Message-ID"] == mid and mid.startswith(f"<test-{issue_id}.")
    assert "你好" in msg.get_body(("plain",)).get_content()
    assert {s for s, _ in ledger(settings.database_url, issue_id).values()} == {"pending"}


def test_a_test_copy_to_a_subscriber_greets_them_and_carries_their_own_links(settings, token_secret):
    """A proof sent to a subscriber's address (any case) uses their id and name, so its links work; to anyone
    else, the name given and no subscriber id. The language is the variant's; every copy has its own
    Message-ID (clients must not take a second proof for a duplicate)."""
    import re

    from newsletter.deliver.tokens import parse_token, verify

    settings = with_delivery(settings)
    issue_id, emails = prepared(settings, 2)  # user001@example.com is "Ada"
    with session_scope(settings.database_url) as s:
        ada = s.scalar(select(Subscriber.id).where(Subscriber.email == emails[1]))
    with SmtpServer() as server:
        mids = [
            send_test(settings, issue_id, DAY, hand_variant("zh|"), emails[1].upper(), smtp(server)),
            send_test(settings, issue_id, DAY, hand_variant("zh|"), "guest@example.org", smtp(server), name="Grace"),
        ]
        msgs = [message_from_bytes(r.data, policy=policy.default) for r in server.handler.received]
    domain = MessageSettings.from_settings(settings).domain
    assert [m["Message-ID"] for m in msgs] == mids and mids[0] != mids[1]
    assert all(re.fullmatch(rf"<test-{issue_id}\.[0-9a-f]{{12}}@{re.escape(domain)}>", mid) for mid in mids)
    assert [m["To"].addresses[0].addr_spec for m in msgs] == [emails[1], "guest@example.org"]
    texts = [m.get_body(("plain",)).get_content() for m in msgs]
    assert texts[0].startswith("Ada，你好！") and texts[1].startswith("Grace，你好！")
    tokens = [re.search(r"unsubscribe\?token=([^\s\"&]+)", t).group(1) for t in texts]
    assert parse_token(tokens[0])[0] == ada and verify(tokens[0], emails[1], "unsubscribe")
    assert parse_token(tokens[1])[0] == 0
    assert {st for st, _ in ledger(settings.database_url, issue_id).values()} == {"pending"}


def test_reports_merge_counts_and_keep_the_first_stop():
    from newsletter.deliver.sender import SendReport

    counters = ("sent", "deferred", "gave_up", "bounced", "requeued", "skipped", "reconnects")
    a = SendReport(
        1, "a", **{c: i + 1 for i, c in enumerate(counters)}, elapsed_s=2.0, errors=[f"a{i}" for i in range(15)]
    )
    b = SendReport(1, "b", **{c: 10 * (i + 1) for i, c in enumerate(counters)}, elapsed_s=3.0, stopped="breaker open")
    b.errors = [f"b{i}" for i in range(10)]
    merged = a.merge(b)
    assert merged is a
    assert [getattr(a, c) for c in counters] == [11 * (i + 1) for i in range(len(counters))]
    assert (a.elapsed_s, a.stopped) == (3.0, "breaker open")
    assert a.errors == [*(f"a{i}" for i in range(5, 15)), *(f"b{i}" for i in range(10))]  # the last 20
    c = SendReport(1, "c", stopped="first").merge(SendReport(1, "d", stopped="second", elapsed_s=1.0))
    assert (c.stopped, c.elapsed_s) == ("first", 1.0)


def test_outbox_is_a_maildir_of_parseable_messages(settings, tmp_path):
    settings = with_delivery(settings)
    issue_id, emails = prepared(settings, 7)
    outbox = tmp_path / "var" / "outbox"  # parents are created too
    report = send_issue(
        settings, issue_id, variants_for(settings.database_url, issue_id), lambda: OutboxTransport(outbox)
    )
    assert report.sent == 7
    files = sorted((outbox / "new").iterdir())
    assert len(files) == 7 and not list((outbox / "tmp").iterdir())
    seen = []
    for path in files:
        msg = message_from_bytes(path.read_bytes(), policy=policy.default)  # each file is one message
        assert (
            msg.get_content_type() == "multipart/alternative"
            and msg["Delivered-To"] == msg["To"].addresses[0].addr_spec
        )
        assert "论文速递" in msg.get_body(("plain",)).get_content()
        seen.append(msg["To"].addresses[0].addr_spec)
    assert sorted(seen) == sorted(emails)
    box = mailbox.Maildir(outbox, create=False)  # what a mail client sees
    assert sorted(m["Delivered-To"] for m in box) == sorted(emails)


def test_outbox_keeps_the_bytes_and_reports_an_unusable_folder(tmp_path):
    msg = b"Subject: x\r\n\r\n.leading dot\r\nFrom the start\r\nno final line break"
    with OutboxTransport(tmp_path / "outbox") as outbox:
        outbox.send("d@example.org", "a@example.org", msg)
    [path] = (tmp_path / "outbox" / "new").iterdir()
    assert path.read_bytes() == b"Return-Path: <d@example.org>\r\nDelivered-To: a@example.org\r\n" + msg
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(TransportError, match="outbox"):
        OutboxTransport(tmp_path / "file" / "outbox").open()


def test_send_date_dry_run_test_copy_then_real_send(settings):
    """The CLI's step end to end: issue, ledger, real rendering, test copy, send, report, re-run."""
    settings = with_delivery(settings)
    make_issue(settings.database_url)
    emails = add_subscribers(settings.database_url, 4, topics=(None, ["3DGS"]))  # 4 variants, 4 people
    with SmtpServer() as server:
        factory = smtp(server)
        dry = send_date(settings, DAY, dry_run=True, transport_factory=factory)
        assert dry.dry_run and sum(dry.would_send.values()) == 4 and len(dry.would_send) == 4
        assert server.counts() == {} and deliveries_for_date(settings, DAY)["total"] == 0
        proof = send_date(settings, DAY, test_recipient=emails[1], transport_factory=factory)
        assert proof.sent == 1 and server.counts() == {emails[1]: 1} and "test copy" in proof.note
        report = send_date(settings, DAY, transport_factory=factory)
        assert (report.sent, report.ok) == (4, True) and "4 new" in report.note
        again = send_date(settings, DAY, transport_factory=factory)
        assert again.sent == 0 and "0 new, 4 existing" in again.note
        counts = server.counts()
        msg = message_from_bytes(server.handler.received[-1].data, policy=policy.default)
    assert counts == {e: 2 if e == emails[1] else 1 for e in emails}  # the proof copy + the real one
    assert msg["Subject"].startswith(("Paper Digest 2024-12-05", "论文速递 2024-12-05"))
    assert "/unsubscribe?token=" in msg.get_body(("html",)).get_content()
    report = deliveries_for_date(settings, DAY)
    assert report["counts"]["sent"] == 4 and report["failures"] == []
    assert deliveries_for_date(settings, date(2030, 1, 1)) is None


# ---- crash and concurrency -------------------------------------------------------------------------------


def _child_main() -> None:
    """Entry point of the killed sender (run via `python -c`): args as JSON in argv[1]."""
    args = json.loads(sys.argv[1])
    settings = Settings(database_url=args["url"], delivery=DeliverySettings(**{**FAST, "batch_size": 8}))
    variants = variants_for(args["url"], args["issue_id"])
    cfg = SmtpConfig("127.0.0.1", args["port"], timeout=120)
    send_issue(settings, args["issue_id"], variants, lambda: SmtpTransport(cfg), worker="doomed")


def test_sigkill_mid_batch_costs_at_most_one_duplicate(settings):  # (d)
    settings = with_delivery(settings, batch_size=8)
    issue_id, emails = prepared(settings, 20)
    # The 3rd message is accepted by the server, which then holds back its "250": the sender is killed in the
    # one window where nobody knows whether the message went out.
    with SmtpServer(FaultyHandler(hang_at=3)) as server:
        args = json.dumps({"url": settings.database_url, "issue_id": issue_id, "port": server.port})
        child = subprocess.Popen(
            [sys.executable, "-c", "from tests.test_deliver import _child_main; _child_main()", args],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        try:
            assert server.wait_for(3, timeout=60), "the sender never reached the server"
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=30)
        server.handler.release()
        assert child.returncode == -signal.SIGKILL
        rows = ledger(settings.database_url, issue_id)
        assert sum(s == "sent" for s, _ in rows.values()) == 2  # marked right after each 250
        assert sum(s == "sending" for s, _ in rows.values()) == 6  # the rest of the killed batch: claimed
        # A normal run sends everything else but never touches the dead worker's rows...
        assert send(settings, issue_id, server).sent == 12
        assert sum(s == "sending" for s, _ in ledger(settings.database_url, issue_id).values()) == 6
        # ... until they are recovered by hand (or by the scheduler, after stale_after_s).
        with session_scope(settings.database_url) as s:
            assert recover_stale(s, issue_id, 0) == 6
        assert send(settings, issue_id, server).sent == 6
        counts = server.counts()
    # Everyone once, except the one message in flight at the kill: at most one duplicate per kill, and here
    # exactly that one (the bound is tight).
    assert counts == {e: 2 if e == emails[2] else 1 for e in emails}
    assert {s for s, _ in ledger(settings.database_url, issue_id).values()} == {"sent"}


@pytest.fixture
def pg_settings(tmp_path, monkeypatch):
    """PostgreSQL only (SKIP LOCKED concurrency), in a throwaway schema."""
    if PG_SKIP:
        pytest.skip(PG_SKIP)
    import sqlalchemy as sa

    monkeypatch.chdir(tmp_path)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(PG_URL)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    yield Settings(database_url=f"{PG_URL}?options=-csearch_path%3D{schema}")
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    engine.dispose()


class ClaimBarrier:
    """A transport factory for concurrency tests: SMTP transports whose sender (thread) waits, before its first
    message, until `parties` senders are all there. A sender claims and commits a batch before it connects and
    sends, so getting through the barrier PROVES every sender holds claimed work at the same moment, on any
    machine; a sender left without work never arrives, and the barrier breaks (the test fails) after 60 s."""

    def __init__(self, server: SmtpServer, parties: int):
        self.cfg, self.barrier = parse_smtp_url(server.url), threading.Barrier(parties, timeout=60)
        self.arrived: set[str] = set()
        self.lock = threading.Lock()

    def __call__(self) -> SmtpTransport:
        return _GatedTransport(self.cfg, gate=self)


class _GatedTransport(SmtpTransport):
    def __init__(self, cfg: SmtpConfig, gate: ClaimBarrier):
        super().__init__(cfg)
        self.gate = gate

    def send(self, from_addr: str, to_addr: str, msg: bytes) -> None:
        with self.gate.lock:
            first = threading.current_thread().name not in self.gate.arrived
            self.gate.arrived.add(threading.current_thread().name)
        if first:
            self.gate.barrier.wait()
        super().send(from_addr, to_addr, msg)


def test_two_senders_on_postgresql_send_each_once(pg_settings):  # (e)
    settings = with_delivery(pg_settings, batch_size=4)
    issue_id, emails = prepared(settings, 60)
    variants = variants_for(settings.database_url, issue_id)
    # Each sender has its own engine (a different URL is a different engine), as two processes would.
    urls = [f"{settings.database_url}&application_name=sender-{n}" for n in "ab"]
    for url in urls:
        with session_scope(url):
            pass
    reports = {}
    with SmtpServer(FaultyHandler(tempfail={emails[10]: 1}, reject={emails[20]})) as server:
        gate = ClaimBarrier(server, 2)  # both senders hold a claimed batch before either sends

        def run(n: int) -> None:
            reports[n] = send_issue(replace(settings, database_url=urls[n]), issue_id, variants, gate, worker=f"w{n}")

        threads = [threading.Thread(target=run, args=(n,)) for n in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert_exactly_once(server, emails, never=(emails[20],))
    assert reports[0].sent + reports[1].sent == 59 and reports[0].sent > 0 and reports[1].sent > 0
    with session_scope(settings.database_url) as s:
        workers = set(s.scalars(select(Delivery.worker).where(Delivery.status == "sent")))
    assert workers == {"w0", "w1"}


def test_workers_option_runs_parallel_senders_on_postgresql(pg_settings):
    settings = with_delivery(pg_settings, batch_size=3)
    issue_id, emails = prepared(settings, 30)
    with SmtpServer() as server:
        gate = ClaimBarrier(server, 3)  # all three senders hold a claimed batch before any sends
        report = send_issue(settings, issue_id, variants_for(settings.database_url, issue_id), gate, workers=3,
                            worker="pool")  # fmt: skip
        assert_exactly_once(server, emails)
    assert report.sent == 30 and report.ok
    with session_scope(settings.database_url) as s:
        assert set(s.scalars(select(Delivery.worker))) == {"pool/0", "pool/1", "pool/2"}


def test_a_crash_in_one_sender_thread_is_raised_not_swallowed(pg_settings):
    settings = with_delivery(pg_settings, batch_size=3)
    issue_id, _ = prepared(settings, 12)

    def broken():
        raise RuntimeError("factory bug")

    with pytest.raises(RuntimeError, match="factory bug"):
        send_issue(settings, issue_id, variants_for(settings.database_url, issue_id), broken, workers=3)
    assert {s for s, _ in ledger(settings.database_url, issue_id).values()} == {"pending"}  # claims released


# ---- transport configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example.org", ("mail.example.org", 25, "none", None, None)),
        ("smtp://u:p@mail.example.org:587", ("mail.example.org", 587, "starttls", "u", "p")),
        ("smtp://u%40x.org:p%3A%2Fw@h:2525?tls=starttls", ("h", 2525, "starttls", "u@x.org", "p:/w")),
        ("smtp://h?tls=starttls", ("h", 587, "starttls", None, None)),
        ("smtps://u:@h", ("h", 465, "ssl", "u", "")),
        ("smtp://h?tls=ssl", ("h", 465, "ssl", None, None)),
        ("smtp://h:1025?tls=none", ("h", 1025, "none", None, None)),
    ],
)
def test_smtp_url(url, expected):
    cfg = parse_smtp_url(url)
    assert (cfg.host, cfg.port, cfg.tls, cfg.username, cfg.password) == expected
    assert "p:/w" not in cfg.describe()


@pytest.mark.parametrize("url", ["http://h", "smtp://h?tls=maybe", "smtp://:25", "smtp://h:notaport"])
def test_bad_smtp_url(url):
    with pytest.raises(ConfigError):
        parse_smtp_url(url)


def test_smtp_settings_order(monkeypatch, tmp_path, token_secret):
    smtp = SmtpSettings(host="relay.example.org", tls="starttls", username="d")
    settings = Settings(delivery=DeliverySettings(smtp=smtp))
    monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", "s3cret")
    monkeypatch.delenv("NEWSLETTER_SMTP_URL", raising=False)
    assert smtp_config(settings) == SmtpConfig("relay.example.org", 587, "starttls", "d", "s3cret")
    monkeypatch.setenv("NEWSLETTER_SMTP_URL", "smtps://x:y@env.example.org")
    assert smtp_config(settings).host == "env.example.org"
    assert isinstance(transport_factory(Settings())(), SmtpTransport)  # the URL alone selects SMTP
    monkeypatch.delenv("NEWSLETTER_SMTP_URL")
    (tmp_path / "newsletter.toml").write_text("", encoding="utf-8")
    outbox = transport_factory(load_settings(tmp_path / "newsletter.toml"))()  # paths: relative to the file
    assert isinstance(outbox, OutboxTransport) and outbox.dir == tmp_path / "var" / "outbox"


def test_smtp_transport_reports_failures_by_kind():
    handler = FaultyHandler(tempfail={"t@example.org": 1}, reject={"r@example.org"})
    with SmtpServer(handler) as server, SmtpTransport(parse_smtp_url(server.url)) as t:
        msg = b"Subject: x\r\n\r\n.leading dot line\r\nbody\r\n"
        t.send("d@example.org", "ok@example.org", msg)
        for rcpt, kind, code, gone in [
            ("t@example.org", "transient", 451, False),
            ("r@example.org", "permanent", 550, True),
        ]:
            with pytest.raises(Exception) as info:
                t.send("d@example.org", rcpt, msg)
            assert (info.value.kind, info.value.code, info.value.recipient_gone) == (kind, code, gone)
        t.send("d@example.org", "t@example.org", msg)  # the connection survives RCPT failures
        assert server.counts() == {"ok@example.org": 1, "t@example.org": 1}
        assert b"\r\n.leading dot line" in server.handler.received[0].data  # dot-stuffing round trip


@pytest.mark.parametrize(
    "address",
    ["a@b.org", "a..b@x.org", ".a@x.org", "o'brien@x.org", "a{b}|c=d@x.org", "A.B@X.ORG", "#!$%&*/?^_`~@x.org",
     "Ada <ada@x.org>", "ada@x.org (Ada)", "pelé@x.org", "a b@x.org", '"a b"@x.org'],
)  # fmt: skip
def test_fast_envelope_is_what_smtplib_sends(address):
    """MAIL/RCPT skip smtplib's parseaddr for a plain addr-spec: the command must be what stock smtplib sends."""
    sent = []

    class Recorder(_SMTP):
        def putcmd(self, cmd, args=""):
            sent.append((cmd, args))

        def getreply(self):
            return 250, b"ok"

    class Stock(smtplib.SMTP):
        putcmd, getreply = Recorder.putcmd, Recorder.getreply

    for cls in (Recorder, Stock):
        smtp = cls()
        smtp.does_esmtp = True
        smtp.mail(address, ["size=10"])
        smtp.rcpt(address)
    assert sent[:2] == sent[2:]


def test_fast_data_path_delivers_what_smtplib_delivers():
    """`_FastData` skips smtplib's dot-stuffing regex when no line starts with ".": the server must receive
    exactly what stock `smtplib.SMTP.sendmail` delivers, for our real messages (fast path) and for messages
    that need stuffing or lack a final line break (smtplib's own path)."""
    template = MessageTemplate.build(hand_variant("zh|"), MessageSettings(), 1, DAY.isoformat())
    real = assemble(template, Person(7, "ada@example.org", "Ada"))
    assert not _may_need_dot_stuffing(real)  # takes the fast path
    messages = [
        real,
        real.removesuffix(b"\r\n"),  # no final line break
        b"Subject: x\r\n\r\n.leading dot\r\n..two dots\r\nend.\r\n.\r\n",
        b".Subject: x\r\n\r\n" + b"a." * 300 + b"\r\n.dot after many\r\n",  # CRLF only: our replace
        b"Subject: z\r\n\r\nbare\nLF\n.dot\r\n",  # bare LF: smtplib's own path
        b"Subject: w\r\n\r\nbare\rCR\r\n.dot\r\n",
        b"Subject: y\r\n\r\nno dots at all",
    ]
    with SmtpServer() as server:
        cfg = parse_smtp_url(server.url)
        with SmtpTransport(cfg) as ours:
            for msg in messages:
                ours.send("d@example.org", "fast@example.org", msg)
        with smtplib.SMTP(cfg.host, cfg.port, timeout=10) as stock:
            for msg in messages:
                stock.sendmail("d@example.org", ["stock@example.org"], msg)
        received = server.handler.received
    fast = [r.data for r in received if r.rcpt_tos == ["fast@example.org"]]
    stdlib = [r.data for r in received if r.rcpt_tos == ["stock@example.org"]]
    assert len(fast) == len(stdlib) == len(messages) and fast == stdlib
    assert fast[0] == real  # nothing added, nothing lost


@pytest.mark.parametrize(
    ("msg", "needs"),
    [
        (b".starts with a dot", True),
        (b"a\r\n.b", True),
        (b"a\n.", True),
        (b"a.b\r\nc. d.\r\n", False),
        (b"QUJD\r\nREVG\r\n", False),
        (b"x" + b"a." * 300, True),  # too many dots to check cheaply: stuff (harmless when not needed)
        (b"x" + b"a." * 100 + b"\n.", True),
    ],
)
def test_dot_stuffing_scan(msg, needs):
    assert _may_need_dot_stuffing(msg) is needs
