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
from newsletter.db.models import Delivery, Subscriber
from newsletter.deliver.ledger import (
    aware,
    deliveries_report,
    delivery_config,
    needed_variants,
    prepare_ledger,
    recover_stale,
)
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
    with session_scope(settings.database_url) as s:  # the claim is the row's last change
        assert all(d.updated_at == d.claimed_at is not None for d in s.scalars(select(Delivery)))


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


def _second_issue(settings: Settings) -> int:
    """Another day's issue with its own ledger, to show that a query stays within its issue."""
    url = settings.database_url
    with session_scope(url) as s:
        record_posts(s, [post("2024-12-06", "3DGS", paper("2412.00009", "Next"))], "test")
    with session_scope(url) as s:
        other = build_issue(s, Period.day(date(2024, 12, 6), "Asia/Shanghai"), IssueSettings()).issue_id
    with session_scope(url) as s:
        prepare_ledger(s, other)
    return other


def _set(s, delivery_id: int, **values) -> None:
    s.execute(update(Delivery).where(Delivery.id == delivery_id).values(**values))


def test_report_lists_every_failed_bounced_and_stuck_row_of_the_issue_by_status_then_id(settings):
    """The failure list: this issue's failed, bounced and `sending` rows (not sent/pending, not another issue's),
    one entry per row (the subscriber join), by status then id; worker and claim time only for `sending` rows
    (a failed row keeps the claim time of its last attempt, which the report must not show as a live claim)."""
    url = settings.database_url
    issue_id, _ = prepared(settings, 7)
    other = _second_issue(settings)
    claimed = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    with session_scope(url) as s:
        a, b, c, d, e, f, g = sorted(s.scalars(select(Delivery.id).where(Delivery.issue_id == issue_id)))
        _set(s, a, status="sending", worker="w1", claimed_at=claimed, attempts=1)
        _set(s, b, status="bounced", worker="w0", claimed_at=claimed, attempts=1, last_error="550 unknown")
        _set(s, c, status="failed", worker="w0", claimed_at=claimed, attempts=2, last_error="451 later")
        _set(s, d, status="sent", worker="w0", claimed_at=claimed, attempts=1)
        _set(s, e, status="sending", worker="w2", claimed_at=claimed + timedelta(seconds=1), attempts=3)
        _set(s, f, status="failed", attempts=1, last_error="421 busy")
        _set(s, g, status="skipped", last_error="nothing to read")
        s.execute(update(Delivery).where(Delivery.issue_id == other).values(status="failed", last_error="theirs"))
        email_of = dict(s.execute(select(Delivery.id, Subscriber.email).join(Subscriber)).all())
    with session_scope(url) as s:
        report = deliveries_report(s, issue_id)
    assert report["counts"] == {"pending": 0, "sending": 2, "sent": 1, "failed": 2, "bounced": 1, "skipped": 1}
    assert (report["issue_id"], report["issue_date"], report["total"]) == (issue_id, "2024-12-05", 7)
    got = [
        (x["email"], x["status"], x["attempts"], x["error"], x["worker"], x["claimed_at"]) for x in report["failures"]
    ]
    assert got == [
        (email_of[b], "bounced", 1, "550 unknown", None, None),
        (email_of[c], "failed", 2, "451 later", None, None),
        (email_of[f], "failed", 1, "421 busy", None, None),
        (email_of[a], "sending", 1, None, "w1", claimed.isoformat()),
        (email_of[e], "sending", 3, None, "w2", (claimed + timedelta(seconds=1)).isoformat()),
    ]


def test_needed_variants_are_those_of_rows_still_to_send_in_this_issue(settings):
    """Rows pending, claimed or failed need their variant rendered; sent, bounced and skipped rows do not, nor
    do other issues' rows."""
    url = settings.database_url
    issue_id, _ = prepared(settings, 6)
    other = _second_issue(settings)
    with session_scope(url) as s:
        ids = sorted(s.scalars(select(Delivery.id).where(Delivery.issue_id == issue_id)))
        for did, status in zip(ids, ("pending", "sending", "failed", "sent", "bounced", "skipped"), strict=True):
            _set(s, did, status=status, variant=f"v-{status}")
        s.execute(update(Delivery).where(Delivery.issue_id == other).values(status="pending", variant="v-other"))
    with session_scope(url) as s:
        assert needed_variants(s, issue_id) == {"v-pending", "v-sending", "v-failed"}
        assert needed_variants(s, other) == {"v-other"}


def test_report_of_an_unknown_issue_is_empty(settings):
    with session_scope(settings.database_url) as s:
        report = deliveries_report(s, 424242)
    assert report == {
        "issue_id": 424242,
        "issue_date": None,
        "total": 0,
        "counts": {"pending": 0, "sending": 0, "sent": 0, "failed": 0, "bounced": 0, "skipped": 0},
        "failures": [],
    }


def test_a_claim_takes_only_its_issues_rows_and_a_small_chunk_queues_everyone(settings):
    """Claims never reach into another issue's ledger; prepare_ledger flushes its inserts every `chunk` rows
    without losing or doubling any (the default chunk, 1000, is larger than any test's subscriber list)."""
    issue_id, _ = prepared(settings, 9)
    url = settings.database_url
    with session_scope(url) as s:
        record_posts(s, [post("2024-12-06", "3DGS", paper("2412.00009", "Next"))], "test")
    with session_scope(url) as s:
        other = build_issue(s, Period.day(date(2024, 12, 6), "Asia/Shanghai"), IssueSettings()).issue_id
    with session_scope(url) as s:
        result = prepare_ledger(s, other, chunk=2)
    assert result.created >= 5 and result.created + len(result.skipped) == 9
    with session_scope(url) as s:
        queued = s.scalars(select(Delivery.subscriber_id).where(Delivery.issue_id == other)).all()
        assert len(queued) == len(set(queued)) == result.created
        claimed = claim_batch(s, issue_id, "w", 20)
    assert {d.issue_id for d in claimed} == {issue_id} and len(claimed) == 9
