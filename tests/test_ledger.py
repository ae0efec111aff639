"""The ledger's own rules, one by one, on SQLite and PostgreSQL: claim sizes, order and attempts, the retry
schedule, the failure report. Written from the mutants that survived bench/mutation.py: each test here fails
for a change that every other test let through.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select, update

from newsletter.config import DeliverySettings, IssueSettings, Settings
from newsletter.db import session_scope
from newsletter.db.models import Delivery
from newsletter.deliver.ledger import aware, deliveries_report, delivery_config, prepare_ledger, recover_stale
from newsletter.issue.build import Period, build_issue
from newsletter.store.record import record_posts
from tests.test_deliver import claim_batch, prepared
from tests.test_store import paper, post

PAST = datetime(2000, 1, 1, tzinfo=UTC)


def test_retry_delays_double_from_the_base_up_to_the_cap():
    cfg = DeliverySettings(retry_base_s=60, retry_max_s=3600)
    assert [cfg.backoff(n) for n in range(9)] == [60, 60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert DeliverySettings(retry_base_s=0.5, retry_max_s=10).backoff(3) == 2.0


def test_config_from_settings_types_and_overrides():
    delivery = DeliverySettings(batch_size="7", rate_limit_per_s="2.5", durable_marks=1)
    cfg = delivery_config(Settings(delivery=delivery), max_attempts=3, batch_size=None)
    assert (cfg.batch_size, cfg.rate_limit_per_s, cfg.durable_marks, cfg.max_attempts) == (7, 2.5, True, 3)
    assert cfg.workers == DeliverySettings().workers  # absent everywhere: the default


def test_claims_take_at_most_size_rows_in_id_order_and_return_them_fresh(settings):
    issue_id, _ = prepared(settings, 12)
    with session_scope(settings.database_url) as s:
        ids = sorted(s.scalars(select(Delivery.id).where(Delivery.issue_id == issue_id)))
        loaded = s.scalars(select(Delivery)).all()  # in this session's identity map as "pending"
        assert {d.status for d in loaded} == {"pending"}
        batches = [claim_batch(s, issue_id, w, 5) for w in "abcd"]
    assert [[d.id for d in b] for b in batches] == [ids[:5], ids[5:10], ids[10:], []]
    # The objects returned are the claimed rows as now stored, not the stale copies the session held.
    assert all(d.status == "sending" and d.worker == w for b, w in zip(batches, "abcd", strict=True) for d in b)


def test_a_failed_row_is_claimed_again_only_when_due_and_under_max_attempts(settings):
    issue_id, _ = prepared(settings, 4)
    with session_scope(settings.database_url) as s:
        a, b, c, d = sorted(s.scalars(select(Delivery.id).where(Delivery.issue_id == issue_id)))
        due, later = PAST, datetime.now(UTC) + timedelta(hours=1)
        for did, attempts, when in ((a, 4, due), (b, 5, due), (c, 1, later), (d, 1, due)):
            s.execute(
                update(Delivery)
                .where(Delivery.id == did)
                .values(status="failed", attempts=attempts, next_attempt_at=when)
            )
    with session_scope(settings.database_url) as s:
        claimed = {row.id for row in claim_batch(s, issue_id, "w", 10)}  # default max_attempts: 5
    assert claimed == {a, d}  # b used its 5 attempts; c is not due yet
    with session_scope(settings.database_url) as s:
        s.execute(update(Delivery).where(Delivery.id == b).values(attempts=5))
        assert {row.id for row in claim_batch(s, issue_id, "w", 10, max_attempts=6)} == {b}


def test_report_lists_failures_with_when_they_are_retried(settings):
    issue_id, emails = prepared(settings, 3)
    retry_at = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
    with session_scope(settings.database_url) as s:
        first = min(s.scalars(select(Delivery.id).where(Delivery.issue_id == issue_id)))
        s.execute(
            update(Delivery)
            .where(Delivery.id == first)
            .values(status="failed", attempts=1, last_error="transient at rcpt: 451", next_attempt_at=retry_at)
        )
    with session_scope(settings.database_url) as s:
        report = deliveries_report(s, issue_id)
    assert report["counts"] == {"pending": 2, "sending": 0, "sent": 0, "failed": 1, "bounced": 0, "skipped": 0}
    assert report["total"] == 3 and report["issue_date"] == "2024-12-05"
    [failure] = report["failures"]
    assert failure == {
        "email": emails[0],
        "status": "failed",
        "attempts": 1,
        "error": "transient at rcpt: 451",
        "next_attempt_at": retry_at.isoformat(),
        "worker": None,
        "claimed_at": None,
    }


@pytest.mark.parametrize("max_failures", [0, 1])
def test_report_caps_the_failure_list(settings, max_failures):
    issue_id, _ = prepared(settings, 3)
    with session_scope(settings.database_url) as s:
        s.execute(update(Delivery).where(Delivery.issue_id == issue_id).values(status="bounced", last_error="550"))
    with session_scope(settings.database_url) as s:
        report = deliveries_report(s, issue_id, max_failures=max_failures)
    assert len(report["failures"]) == max_failures and report["counts"]["bounced"] == 3


def test_recover_stale_requeues_only_this_issues_old_claims(settings):
    """Rows left `sending` by a dead worker go back to pending, unowned and labelled; a live worker's fresh
    claim, rows in other states and other issues' rows are left alone."""
    url = settings.database_url
    issue_id, _ = prepared(settings, 5)
    with session_scope(url) as s:
        record_posts(s, [post("2024-12-06", "3DGS", paper("2412.00009", "Next"))], "test")
    with session_scope(url) as s:
        other = build_issue(s, Period.day(date(2024, 12, 6), "Asia/Shanghai"), IssueSettings()).issue_id
    with session_scope(url) as s:
        prepare_ledger(s, other)
    long_ago, recent = datetime.now(UTC) - timedelta(hours=2), datetime.now(UTC)
    with session_scope(url) as s:
        a, b, c, d, e = sorted(s.scalars(select(Delivery.id).where(Delivery.issue_id == issue_id)))
        states = {a: ("sending", long_ago), b: ("sending", long_ago), c: ("sending", recent), d: ("sent", long_ago)}
        for did, (status, at) in states.items():
            s.execute(update(Delivery).where(Delivery.id == did).values(status=status, worker="dead", claimed_at=at))
        s.execute(
            update(Delivery)
            .where(Delivery.issue_id == other)
            .values(status="sending", worker="dead", claimed_at=long_ago)
        )
    with session_scope(url) as s:
        assert recover_stale(s, issue_id, timedelta(hours=1)) == 2
    with session_scope(url) as s:
        rows = {r.id: r for r in s.scalars(select(Delivery))}
    for did in (a, b):
        r = rows[did]
        assert (r.status, r.worker, r.claimed_at, r.last_error) == ("pending", None, None, "recovered: stale claim")
        assert aware(r.updated_at) > recent
    assert (rows[c].status, rows[c].worker) == ("sending", "dead")  # claimed a moment ago: maybe alive
    assert (rows[d].status, rows[e].status) == ("sent", "pending")
    assert {r.status for r in rows.values() if r.issue_id == other} == {"sending"}
