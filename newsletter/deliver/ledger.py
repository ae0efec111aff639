"""The delivery ledger: one row per (issue, subscriber), created once, claimed in batches, recovered after a crash.

Row states and the exactly-once argument are in docs/architecture.md ("Delivery").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from newsletter.config import DeliverySettings, Settings
from newsletter.db.models import Delivery, IssueItem, IssueRow, Sighting, Subscriber
from newsletter.deliver.message import MessageSettings, make_message_id
from newsletter.records import DeliveryStatus, VariantSpec
from newsletter.registry.topics import normalize_key

log = logging.getLogger(__name__)
Progress = Callable[[str], None]
DELIVERIES = Delivery.__table__  # Core statements for the per-message updates: no ORM unit-of-work on the hot path


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime | None) -> datetime | None:
    """SQLite hands DateTime(timezone=True) back naive (stored as UTC): make it comparable."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


STATUSES = tuple(str(status) for status in DeliveryStatus)  # report columns, in lifecycle order


def delivery_config(settings: Settings, **overrides: Any) -> DeliverySettings:
    """`[delivery]` with per-run overrides (command-line flags, tests); None keeps the configured value."""
    return settings.delivery.updated(**{k: v for k, v in overrides.items() if v is not None})


# ---- variants --------------------------------------------------------------------------------------------


def variant_key(lang: str, topics: Iterable[str] | None) -> str:
    """The key of `records.VariantSpec`, from a subscriber's language and topics."""
    return VariantSpec(lang, frozenset(topics) if topics else None).key


def parse_variant_key(key: str) -> tuple[str, frozenset[str] | None]:
    spec = VariantSpec.parse(key)
    return spec.lang, spec.topics


def issue_topics(session: Session, issue_id: int) -> set[str]:
    """Normalised topic keys a selection can match in this issue, as render's filter sees them: the sections
    (primary topics of new papers) and every topic a highlighted paper was posted under."""
    new = select(IssueItem.topic).distinct().where(IssueItem.issue_id == issue_id, IssueItem.role == "new")
    highlighted = select(IssueItem.paper_id).where(IssueItem.issue_id == issue_id, IssueItem.role == "highlight")
    also = select(Sighting.topic).distinct().where(Sighting.paper_id.in_(highlighted))
    return {normalize_key(t) for t in [*session.scalars(new), *session.scalars(also)]}


def needed_variants(session: Session, issue_id: int) -> set[str]:
    """Variant keys of the rows that may still be sent (render exactly these before `send_issue`)."""
    rows = session.scalars(
        select(Delivery.variant)
        .distinct()
        .where(Delivery.issue_id == issue_id, Delivery.status.in_(("pending", "sending", "failed")))
    )
    return {r for r in rows if r is not None}


# ---- ledger ----------------------------------------------------------------------------------------------


@dataclass
class LedgerResult:
    created: int = 0
    existing: int = 0  # rows already there (a re-run): left untouched
    skipped: list[str] = field(default_factory=list)  # active subscribers with nothing in the issue
    inactive: int = 0  # unsubscribed/bounced subscribers passed in: never queued
    other_frequency: int = 0  # subscribers passed in who read the other frequency (daily vs weekly): never queued

    def as_dict(self) -> dict:
        return {**asdict(self), "skipped": len(self.skipped)}


def _insert(session: Session):
    name = session.get_bind().dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - other databases are not supported by the project
        raise NotImplementedError(name)
    return insert(Delivery).on_conflict_do_nothing(index_elements=["issue_id", "subscriber_id"])


def _insert_new(session: Session, rows: list[dict]) -> int:
    """Insert the rows that do not exist yet; how many this statement inserted (skipped conflicts return none)."""
    return len(session.execute(_insert(session).returning(Delivery.id), rows).all())


def prepare_ledger(
    session: Session,
    issue_id: int,
    subscribers: Iterable[Subscriber] | None = None,
    ms: MessageSettings | None = None,
    chunk: int = 1000,
) -> LedgerResult:
    """One pending row per (issue, active subscriber of the issue's frequency with something to read) that has
    none yet. Idempotent and safe to run concurrently (INSERT ... ON CONFLICT DO NOTHING); existing rows are never
    modified. `created` counts the rows this call inserted (RETURNING), `existing` those another run (earlier, or
    at the same time) had inserted: two concurrent first runs say N new / 0 existing and 0 new / N existing.
    `subscribers`: default every active subscriber of that frequency, streamed from the database.
    Daily readers never get a weekly issue and weekly readers never a daily one."""
    issue = session.get(IssueRow, issue_id)
    if issue is None:
        raise ValueError(f"no issue with id {issue_id}")
    ms = ms or MessageSettings()
    topics = issue_topics(session, issue_id)
    if subscribers is None:
        subscribers = _active_subscribers(session, chunk, issue.frequency)
    result, now, rows, eligible = LedgerResult(), utcnow(), [], 0
    for sub in subscribers:
        if sub.status != "active":
            result.inactive += 1
            continue
        if (sub.frequency or "daily") != issue.frequency:
            result.other_frequency += 1
            continue
        if sub.topics and not any(normalize_key(t) in topics for t in sub.topics):
            result.skipped.append(sub.email)
            continue
        eligible += 1
        rows.append(_ledger_row(issue, sub, ms, now))
        if len(rows) >= chunk:
            result.created += _insert_new(session, rows)
            rows = []
    if rows:
        result.created += _insert_new(session, rows)
    result.existing = eligible - result.created
    return result


# What a ledger row needs of a subscriber: plain rows, not ORM objects (half the cost of a 10,000-reader ledger).
_LEDGER_COLUMNS = (
    Subscriber.id,
    Subscriber.email,
    Subscriber.status,
    Subscriber.frequency,
    Subscriber.topics,
    Subscriber.language,
)


def _active_subscribers(session: Session, chunk: int, frequency: str) -> Iterator[Subscriber]:
    """Every active subscriber of `frequency` (the columns a ledger row needs), `chunk` at a time by id (memory
    stays flat however long the list)."""
    last = 0
    while True:
        query = select(*_LEDGER_COLUMNS).where(
            Subscriber.status == "active", Subscriber.frequency == frequency, Subscriber.id > last
        )
        page = session.execute(query.order_by(Subscriber.id).limit(chunk)).all()
        if not page:
            return
        yield from page
        last = page[-1].id


def _ledger_row(issue: IssueRow, sub: Subscriber, ms: MessageSettings, now: datetime) -> dict:
    return {
        "issue_id": issue.id,
        "subscriber_id": sub.id,
        "status": "pending",
        "attempts": 0,
        "message_id": make_message_id(issue.id, issue.issue_date, sub.id, sub.email, ms.domain),
        "variant": variant_key(sub.language, sub.topics),
        "created_at": now,
        "updated_at": now,
    }


def claimable(issue_id: int, now: datetime, max_attempts: int):
    retry_due = and_(
        DELIVERIES.c.status == "failed", DELIVERIES.c.next_attempt_at <= now, DELIVERIES.c.attempts < max_attempts
    )
    return and_(DELIVERIES.c.issue_id == issue_id, or_(DELIVERIES.c.status == "pending", retry_due))


def claim_statement(issue_id: int, worker: str, size: int, max_attempts: int):
    """`UPDATE ... SET status='sending' WHERE id IN (SELECT ... LIMIT size FOR UPDATE SKIP LOCKED) RETURNING`:
    one statement, so the claim is atomic on SQLite too (which renders no FOR UPDATE)."""
    now = utcnow()
    ids = (
        select(DELIVERIES.c.id)
        .where(claimable(issue_id, now, max_attempts))
        .order_by(DELIVERIES.c.id)
        .limit(size)
        .with_for_update(skip_locked=True)
    )
    return (
        update(DELIVERIES)
        .where(DELIVERIES.c.id.in_(ids))
        .values(status="sending", worker=worker, claimed_at=now, updated_at=now)
        .returning(
            DELIVERIES.c.id,
            DELIVERIES.c.subscriber_id,
            DELIVERIES.c.variant,
            DELIVERIES.c.message_id,
            DELIVERIES.c.attempts,
        )
    )


def recover_stale(session: Session, issue_id: int, older_than: timedelta | float) -> int:
    """Rows left in `sending` by a crashed worker (claimed longer ago than `older_than`) -> pending. Their next
    send may duplicate the one message that worker had in flight (module docstring). Returns the row count;
    committed with the caller's transaction."""
    if not isinstance(older_than, timedelta):
        older_than = timedelta(seconds=older_than)
    now = utcnow()
    result = session.execute(
        update(DELIVERIES)
        .where(
            DELIVERIES.c.issue_id == issue_id,
            DELIVERIES.c.status == "sending",
            DELIVERIES.c.claimed_at <= now - older_than,
        )
        .values(status="pending", worker=None, claimed_at=None, updated_at=now, last_error="recovered: stale claim")
    )
    return result.rowcount or 0


_REPORT_COLUMNS = (Subscriber.email, Delivery.status, Delivery.attempts, Delivery.last_error, Delivery.next_attempt_at,
                   Delivery.worker, Delivery.claimed_at)  # fmt: skip


def deliveries_report(session: Session, issue_id: int, max_failures: int = 200) -> dict:
    """Counts by status, and the failed/bounced/stuck rows with their reasons."""
    counts = {status.value: 0 for status in DeliveryStatus}
    for status, n in session.execute(
        select(Delivery.status, func.count()).where(Delivery.issue_id == issue_id).group_by(Delivery.status)
    ):
        counts[status] = n
    rows = session.execute(
        select(*_REPORT_COLUMNS)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Delivery.issue_id == issue_id, Delivery.status.in_(("failed", "bounced", "sending")))
        .order_by(Delivery.status, Delivery.id)
        .limit(max_failures)
    )
    failures = [
        {
            "email": email,
            "status": status,
            "attempts": attempts,
            "error": error,
            "next_attempt_at": _iso(aware(next_at)),
            "worker": worker if status == "sending" else None,
            "claimed_at": _iso(aware(claimed_at)) if status == "sending" else None,
        }
        for email, status, attempts, error, next_at, worker, claimed_at in rows
    ]
    issue = session.get(IssueRow, issue_id)
    return {
        "issue_id": issue_id,
        "issue_date": issue.issue_date.isoformat() if issue else None,
        "total": sum(counts.values()),
        "counts": counts,
        "failures": failures,
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


# ---- the sender ------------------------------------------------------------------------------------------
