"""Delivery stage: the ledger, and a sender that delivers each (issue, subscriber) message exactly once.

The ledger
----------
`deliveries` has one row per (issue, subscriber), unique, created by `prepare_ledger()` for every active
subscriber whose topics have something in the issue (the others are reported as skipped). It never touches a
row that exists, so re-running or backfilling a date cannot queue anyone twice. The row stores the Message-ID
(deterministic) and the variant key (`"<lang>|<topic;topic>"`, the key of `records.VariantSpec`).

Row states::

    pending --claim--> sending --250--> sent
                          |---4xx-----> failed (attempts+1, next_attempt_at = backoff) --due--> claimed again
                          |---5xx-----> bounced (and the subscriber too when the answer condemns the address)
                          |---drop----> pending (the server did not acknowledge it; attempts+1)
                          '---subscriber no longer active--> skipped
    sending --recover_stale()--> pending      (a crashed worker's rows, by hand or by the scheduler)

Exactly once, and the one exception
-----------------------------------
A worker claims a batch (`claim_batch`: status=sending, worker, claimed_at, COMMITTED before anything is
sent), opens one SMTP connection, and for each row: assembles the message, sends it, and commits `sent` right
after the server's 250. Rows in `sending` are never picked up by another worker, so no message is sent twice
while workers run normally, however many there are (PostgreSQL: `FOR UPDATE SKIP LOCKED` gives each worker
disjoint rows).

A worker killed mid-batch leaves its claimed rows in `sending`. They are NOT resent automatically: nobody can
tell whether the last message was accepted by the server just before the kill. `recover_stale(session,
issue_id, older_than)` puts rows claimed longer ago than `older_than` back to pending; the next run sends them.
Cost: at most ONE duplicate per killed worker (the message in flight when it died; the batch's earlier
messages were marked sent, its later ones never left). `older_than` must exceed the time a live worker holds
a batch (batch_size / rate), or a live worker's rows could be resent; the default is 15 minutes.

A dropped connection puts the in-flight message back to pending. The server did not answer 250; in the rare
case where the drop fell between the final "." and the reply, it may still have delivered it (RFC 5321 6.1):
this is the other source of a possible duplicate, inherent to SMTP.

Commits: one per message, right after the 250, because the guarantee above depends on it. The sender keeps a
dedicated connection for these marks (autocommit: one statement, one round trip) and, unless `durable_marks`,
does not flush each one to disk: a committed mark survives the sender's death, which is the failure this
design is about; what a crash of the database machine can cost is spelled out in `_FastMarks`. Claims are
always flushed. Measured in bench/send.py: the whole path runs at ~0.9x a bare smtplib loop on SQLite.

SQLite: the claim is a single `UPDATE ... WHERE id IN (SELECT ... LIMIT n) RETURNING`, atomic, so even two
senders could not claim the same row, but SQLite serialises writers: use one sender (`workers` is capped at 1
there). PostgreSQL: run as many as you like (`workers=N` threads here, or several processes/hosts).

Failures and the circuit breaker
--------------------------------
4xx: `failed`, retried with exponential backoff (`retry_base_s` * 2^(attempts-1), capped at `retry_max_s`)
until `max_attempts`; the run waits for retries that fall due within `retry_wait_s`, later ones are left for
the next run. 5xx: `bounced`; when the answer condemns the address (any 5xx to RCPT, or 5.1.x / 5.2.1), the
subscriber becomes `bounced` too and is skipped by every later issue. The breaker stops the run when more than
`max_error_rate` of the last `breaker_window` attempts failed (after at least `breaker_min` attempts): a
broken relay or a blocklisting should not burn through the whole list. The report says why, with counts and
the last errors; unsent claimed rows go back to pending.

Configuration (`[delivery]`, all optional): batch_size (50), rate_limit_per_s (0 = unlimited),
max_error_rate (0.2), breaker_window (50), breaker_min (20), max_attempts (5), retry_base_s (60), retry_max_s
(3600), retry_wait_s (600), stale_after_s (900, used by `send_date(recover=True)`), reconnect_tries (3),
reconnect_delay_s (1), workers (1), durable_marks (false). Message settings: see `newsletter.message`;
transports: see `newsletter.transport`.

Entry points: `send_date()` (the CLI's `send`: issue, ledger, variants, send; dry run; test copy) and
`deliveries_for_date()` (`deliveries`); the pieces (`prepare_ledger`, `claim_batch`, `recover_stale`,
`send_issue`, `send_test`, `deliveries_report`) for the DAG and tests.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import Connection, Row, and_, bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from newsletter.config import Settings
from newsletter.db import get_engine, session_scope
from newsletter.issue import freeze_issue
from newsletter.message import MessageSettings, MessageTemplate, Person, assemble, make_message_id
from newsletter.models import Delivery, IssueItem, IssueRow, Sighting, Subscriber
from newsletter.records import VariantSpec
from newsletter.topics import normalize_key
from newsletter.transport import SendFailure, TransportError, TransportFactory
from newsletter.transport import transport_factory as configured_transport

log = logging.getLogger(__name__)

STATUSES = ("pending", "sending", "sent", "failed", "bounced", "skipped")
Progress = Callable[[str], None]
_T = Delivery.__table__  # Core statements for the per-message updates: no ORM unit-of-work on the hot path


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    """SQLite hands DateTime(timezone=True) back naive (stored as UTC): make it comparable."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


_FIELD_TYPES = {"int": int, "float": float, "bool": bool}


@dataclass(frozen=True)
class DeliveryConfig:
    batch_size: int = 50
    rate_limit_per_s: float = 0.0  # 0: as fast as the server takes them
    max_error_rate: float = 0.2
    breaker_window: int = 50
    breaker_min: int = 20
    max_attempts: int = 5
    retry_base_s: float = 60.0
    retry_max_s: float = 3600.0
    retry_wait_s: float = 600.0
    stale_after_s: float = 900.0
    reconnect_tries: int = 3
    reconnect_delay_s: float = 1.0  # first pause before reconnecting; doubles
    workers: int = 1
    durable_marks: bool = False  # flush every "sent" mark to disk (see _FastMarks)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> DeliveryConfig:
        section = settings.section("delivery")
        values = {}
        for f in fields(cls):
            raw = overrides.get(f.name)
            raw = section.get(f.name) if raw is None else raw
            if raw is not None:
                values[f.name] = _FIELD_TYPES[str(f.type)](raw)
        return cls(**values)

    def backoff(self, attempts: int) -> float:
        return min(self.retry_max_s, self.retry_base_s * 2 ** max(0, attempts - 1))


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


def _count(session: Session, issue_id: int) -> int:
    return session.scalar(select(func.count()).select_from(Delivery).where(Delivery.issue_id == issue_id)) or 0


def prepare_ledger(
    session: Session,
    issue_id: int,
    subscribers: Iterable[Subscriber] | None = None,
    ms: MessageSettings | None = None,
    chunk: int = 1000,
) -> LedgerResult:
    """One pending row per (issue, active subscriber with something to read) that has none yet. Idempotent and
    safe to run concurrently (INSERT ... ON CONFLICT DO NOTHING); existing rows are never modified.
    `subscribers`: default every active subscriber, streamed from the database."""
    issue = session.get(IssueRow, issue_id)
    if issue is None:
        raise ValueError(f"no issue with id {issue_id}")
    ms = ms or MessageSettings()
    topics = issue_topics(session, issue_id)
    if subscribers is None:
        subscribers = _active_subscribers(session, chunk)
    result, before, now, rows, eligible = LedgerResult(), _count(session, issue_id), _now(), [], 0
    for sub in subscribers:
        if sub.status != "active":
            result.inactive += 1
            continue
        if sub.topics and not any(normalize_key(t) in topics for t in sub.topics):
            result.skipped.append(sub.email)
            continue
        eligible += 1
        rows.append(_ledger_row(issue, sub, ms, now))
        if len(rows) >= chunk:
            session.execute(_insert(session), rows)
            rows = []
    if rows:
        session.execute(_insert(session), rows)
    result.created = _count(session, issue_id) - before
    result.existing = eligible - result.created
    return result


def _active_subscribers(session: Session, chunk: int) -> Iterator[Subscriber]:
    """Every active subscriber, `chunk` at a time by id (memory stays flat however long the list)."""
    last = 0
    while True:
        query = select(Subscriber).where(Subscriber.status == "active", Subscriber.id > last)
        page = list(session.scalars(query.order_by(Subscriber.id).limit(chunk)))
        if not page:
            return
        yield from page
        last = page[-1].id
        for sub in page:
            session.expunge(sub)


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


def _claimable(issue_id: int, now: datetime, max_attempts: int):
    retry_due = and_(_T.c.status == "failed", _T.c.next_attempt_at <= now, _T.c.attempts < max_attempts)
    return and_(_T.c.issue_id == issue_id, or_(_T.c.status == "pending", retry_due))


def _claim_statement(issue_id: int, worker: str, size: int, max_attempts: int):
    """`UPDATE ... SET status='sending' WHERE id IN (SELECT ... LIMIT size FOR UPDATE SKIP LOCKED) RETURNING`:
    one statement, so the claim is atomic on SQLite too (which renders no FOR UPDATE)."""
    now = _now()
    ids = (
        select(_T.c.id)
        .where(_claimable(issue_id, now, max_attempts))
        .order_by(_T.c.id)
        .limit(size)
        .with_for_update(skip_locked=True)
    )
    return (
        update(_T)
        .where(_T.c.id.in_(ids))
        .values(status="sending", worker=worker, claimed_at=now, updated_at=now)
        .returning(_T.c.id, _T.c.subscriber_id, _T.c.variant, _T.c.message_id, _T.c.attempts)
    )


def claim_batch(session: Session, issue_id: int, worker: str, size: int, max_attempts: int = 5) -> list[Delivery]:
    """Claim up to `size` sendable rows (pending, or failed and due) for `worker`, and COMMIT: from here on no
    other worker touches them. PostgreSQL: FOR UPDATE SKIP LOCKED, so concurrent workers get disjoint rows.
    SQLite: the same single UPDATE statement, atomic."""
    claimed = [row.id for row in session.execute(_claim_statement(issue_id, worker, size, max_attempts))]
    session.commit()
    if not claimed:
        return []
    query = select(Delivery).where(Delivery.id.in_(claimed)).order_by(Delivery.id)
    return list(session.scalars(query.execution_options(populate_existing=True)))


def recover_stale(session: Session, issue_id: int, older_than: timedelta | float) -> int:
    """Rows left in `sending` by a crashed worker (claimed longer ago than `older_than`) -> pending. Their next
    send may duplicate the one message that worker had in flight (module docstring). Returns the row count."""
    if not isinstance(older_than, timedelta):
        older_than = timedelta(seconds=older_than)
    now = _now()
    result = session.execute(
        update(_T)
        .where(_T.c.issue_id == issue_id, _T.c.status == "sending", _T.c.claimed_at <= now - older_than)
        .values(status="pending", worker=None, claimed_at=None, updated_at=now, last_error="recovered: stale claim")
    )
    session.commit()
    return result.rowcount or 0


_REPORT_COLUMNS = (Subscriber.email, Delivery.status, Delivery.attempts, Delivery.last_error, Delivery.next_attempt_at,
                   Delivery.worker, Delivery.claimed_at)  # fmt: skip


def deliveries_report(session: Session, issue_id: int, max_failures: int = 200) -> dict:
    """Counts by status, and the failed/bounced/stuck rows with their reasons."""
    counts = dict.fromkeys(STATUSES, 0)
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
            "next_attempt_at": _iso(_aware(next_at)),
            "worker": worker if status == "sending" else None,
            "claimed_at": _iso(_aware(claimed_at)) if status == "sending" else None,
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


@dataclass
class SendReport:
    issue_id: int
    worker: str
    dry_run: bool = False
    sent: int = 0
    deferred: int = 0  # 4xx: failed, retry scheduled
    gave_up: int = 0  # failed for good (max_attempts reached or the message could not be built)
    bounced: int = 0
    requeued: int = 0  # connection dropped: back to pending
    skipped: int = 0  # subscriber no longer active
    reconnects: int = 0
    elapsed_s: float = 0.0
    stopped: str | None = None  # why the run stopped before the ledger was done; None: completed
    errors: list[str] = field(default_factory=list)  # the last errors, "email: reason"
    left: dict[str, int] = field(default_factory=dict)  # ledger counts by status when the run ended
    would_send: dict[str, int] = field(default_factory=dict)  # dry run: rows per variant
    note: str | None = None  # context for the reader (ledger counts, "no issue", test copy)

    @property
    def attempted(self) -> int:
        return self.sent + self.deferred + self.gave_up + self.bounced + self.requeued

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed_s if self.elapsed_s else 0.0

    @property
    def ok(self) -> bool:
        return self.stopped is None

    def merge(self, other: SendReport) -> SendReport:
        for name in ("sent", "deferred", "gave_up", "bounced", "requeued", "skipped", "reconnects"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.elapsed_s = max(self.elapsed_s, other.elapsed_s)
        self.stopped = self.stopped or other.stopped
        self.errors = (self.errors + other.errors)[-20:]
        return self

    def as_dict(self) -> dict:
        return {**asdict(self), "attempted": self.attempted, "rate_per_s": round(self.rate, 1)}

    def summary(self) -> str:
        if self.dry_run:
            total = sum(self.would_send.values())
            return f"dry run: {total} message(s) would be sent in {len(self.would_send)} variant(s); nothing sent"
        head = (
            f"sent {self.sent}, deferred {self.deferred}, bounced {self.bounced}, gave up {self.gave_up}, "
            f"requeued {self.requeued}, skipped {self.skipped} in {self.elapsed_s:.1f}s ({self.rate:.0f}/s)"
        )
        return head + (f"; STOPPED: {self.stopped}" if self.stopped else "")


class CircuitBreaker:
    """Trips when more than `max_rate` of the last `window` attempts failed (once `min_attempts` were made)."""

    def __init__(self, window: int, min_attempts: int, max_rate: float):
        self.outcomes: deque[bool] = deque(maxlen=max(1, window))
        self.min_attempts, self.max_rate = max(1, min(min_attempts, window)), max_rate

    def record(self, ok: bool) -> bool:
        self.outcomes.append(ok)
        return self.tripped

    @property
    def error_rate(self) -> float:
        return self.outcomes.count(False) / len(self.outcomes) if self.outcomes else 0.0

    @property
    def tripped(self) -> bool:
        return len(self.outcomes) >= self.min_attempts and self.error_rate > self.max_rate


def default_worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class _Stop(Exception):
    """Ends the run (breaker, unusable transport); the message says why."""


@cache
def _mark_statement(names: tuple[str, ...]):
    """`UPDATE deliveries SET <names>, updated_at WHERE id = :did`, built once per set of columns (building a
    statement per message costs more than executing it)."""
    values = {name: bindparam(name) for name in (*names, "updated_at")}
    return update(_T).where(_T.c.id == bindparam("did")).values(values)


class _Sender:
    """One worker: claim, send over one connection per batch, mark, repeat (see the module docstring).

    It holds two database connections for the whole run, and uses Core statements: `conn` for claims, reads and
    releases (ordinary transactions), `marks` for the per-message outcome, in autocommit mode (one statement =
    one transaction = one round trip) and with the flush policy of `_FastMarks`. The mark is the only database
    work on the hot path, so it must cost little (ORM session machinery would double it)."""

    def __init__(self, settings, cfg, ms, issue_id, issue_date, variants, factory, worker, progress):
        self.url, self.cfg, self.ms = settings.database_url, cfg, ms
        self.issue_id, self.issue_date = issue_id, issue_date
        self.variants, self.factory, self.progress = variants, factory, progress
        self.report = SendReport(issue_id, worker)
        self.breaker = CircuitBreaker(cfg.breaker_window, cfg.breaker_min, cfg.max_error_rate)
        self.templates: dict[str, MessageTemplate] = {}
        self.transport = None
        self.held: set[int] = set()  # claimed by us, not yet attempted
        self.next_slot = 0.0
        self.marks: Connection | None = None

    @property
    def worker(self) -> str:
        return self.report.worker

    def run(self) -> SendReport:
        started = time.monotonic()
        engine = get_engine(self.url)
        with engine.connect() as conn, engine.connect() as marks:
            self.marks = marks
            fast_marks = _FastMarks(marks, self.cfg.durable_marks)
            try:
                while True:
                    rows = self._claim(conn)
                    if rows:
                        self._batch(conn, rows)
                    elif not self._wait_for_retries(conn):
                        break
            except _Stop as stop:
                self.report.stopped = str(stop)
            finally:
                self._close()
                self._release(conn)
                fast_marks.restore()
                self.report.elapsed_s = time.monotonic() - started
        return self.report

    def _claim(self, conn: Connection) -> list[Row]:
        claim = _claim_statement(self.issue_id, self.worker, self.cfg.batch_size, self.cfg.max_attempts)
        rows = list(conn.execute(claim))
        conn.commit()  # durable (flushed) before anything is sent
        return sorted(rows, key=lambda r: r.id)

    # -- one batch, one connection --

    def _batch(self, conn: Connection, rows: list[Row]) -> None:
        self.held = {r.id for r in rows}
        subs = {
            s.id: s for s in conn.execute(select(*_SUB_COLUMNS).where(_S.c.id.in_([r.subscriber_id for r in rows])))
        }
        conn.commit()
        self._connect()
        try:
            for row in rows:
                self._one(row, subs.get(row.subscriber_id))
        finally:
            self._close()
        if self.progress:
            self.progress(f"{self.worker}: {self.report.summary()}")

    def _one(self, row: Row, sub: Row | None) -> None:
        if sub is None or sub.status != "active":
            self._mark(row.id, status="skipped", last_error=f"subscriber {sub.status if sub else 'deleted'}")
            self.report.skipped += 1
            return
        try:
            msg = assemble(self._template(row.variant), sub, message_id=row.message_id)
        except Exception as exc:  # a bad address or variant must not stop everyone else's delivery
            log.exception("cannot build message for %s", sub.email)
            self._give_up(row, sub, f"cannot build message: {exc}")
            return
        self._pace()
        try:
            self.transport.send(self.ms.from_email, sub.email, msg)
        except SendFailure as failure:
            self._failed(row, sub, failure)
        else:
            now = _now()
            self._mark(row.id, status="sent", sent_at=now, attempts=row.attempts + 1, last_error=None,
                       next_attempt_at=None)  # fmt: skip
            self.report.sent += 1
            self._record(True)

    def _failed(self, row: Row, sub: Row, f: SendFailure) -> None:
        attempts, error, did = row.attempts + 1, str(f), row.id
        if f.kind == "session":  # our sender address is refused: the same for everyone
            self._mark(did, status="pending", last_error=error, worker=None, claimed_at=None)
            self._error(sub, error)
            raise _Stop(f"server refuses the sender: {error}")
        if f.kind == "permanent":
            if f.recipient_gone:
                _bounce_subscriber(self.marks, sub.id, error)  # first: a crash here leaves the row to retry
            self._mark(did, status="bounced", attempts=attempts, last_error=error, next_attempt_at=None)
            self.report.bounced += 1
        elif attempts >= self.cfg.max_attempts:
            self._mark(did, status="failed", attempts=attempts, last_error=error, next_attempt_at=None)
            self.report.gave_up += 1
        elif f.kind == "transient":
            due = _now() + timedelta(seconds=self.cfg.backoff(attempts))
            self._mark(did, status="failed", attempts=attempts, last_error=error, next_attempt_at=due)
            self.report.deferred += 1
        else:  # disconnected: not acknowledged, so not sent; back in the queue
            self._mark(did, status="pending", attempts=attempts, last_error=error, worker=None,
                       claimed_at=None)  # fmt: skip
            self.report.requeued += 1
        self._error(sub, error)
        self._record(False)
        if f.kind == "disconnected" or self.transport is None:
            self._reconnect()

    def _give_up(self, row: Row, sub: Row, error: str) -> None:
        attempts = max(row.attempts + 1, self.cfg.max_attempts)
        self._mark(row.id, status="failed", attempts=attempts, last_error=error)
        self.report.gave_up += 1
        self._error(sub, error)
        self._record(False)

    def _error(self, sub: Row, error: str) -> None:
        self.report.errors = [*self.report.errors[-19:], f"{sub.email}: {error}"]

    def _mark(self, did: int, **values: Any) -> None:
        """Record one outcome, committed at once (autocommit): the exactly-once guarantee rests on it."""
        self.marks.execute(_mark_statement(tuple(sorted(values))), {"did": did, "updated_at": _now(), **values})
        self.marks.commit()  # ends SQLAlchemy's bookkeeping; the statement itself is already committed
        self.held.discard(did)

    def _record(self, ok: bool) -> None:
        if self.breaker.record(ok):
            raise _Stop(
                f"circuit breaker: {self.breaker.error_rate:.0%} of the last {len(self.breaker.outcomes)} attempts "
                f"failed (max {self.cfg.max_error_rate:.0%})"
            )

    def _pace(self) -> None:
        rate = self.cfg.rate_limit_per_s
        if rate <= 0:
            return
        now = time.monotonic()
        self.next_slot = max(self.next_slot, now)
        if self.next_slot > now:
            time.sleep(self.next_slot - now)
        self.next_slot += 1.0 / rate

    def _template(self, key: str) -> MessageTemplate:
        template = self.templates.get(key)
        if template is None:
            variant = self.variants[key]
            lang = getattr(variant, "lang", None) or parse_variant_key(key)[0]
            template = MessageTemplate.build(variant, self.ms, self.issue_id, self.issue_date, lang=lang)
            self.templates[key] = template
        return template

    # -- connection --

    def _connect(self) -> None:
        failure: Exception | None = None
        for attempt in range(self.cfg.reconnect_tries + 1):
            if attempt:
                time.sleep(self.cfg.reconnect_delay_s * 2 ** (attempt - 1))
                self.report.reconnects += 1
            transport = self.factory()
            try:
                transport.open()
            except SendFailure as exc:
                failure = exc
                continue
            except TransportError as exc:
                raise _Stop(f"transport unusable: {exc}") from exc
            self.transport = transport
            return
        raise _Stop(f"cannot connect after {self.cfg.reconnect_tries + 1} tries: {failure}")

    def _reconnect(self) -> None:
        self._close()
        self.report.reconnects += 1
        self._connect()

    def _close(self) -> None:
        transport, self.transport = self.transport, None
        if transport is not None:
            transport.close()

    # -- end of run --

    def _release(self, conn: Connection) -> None:
        """Claimed rows never attempted (the run stopped) go back to pending: they were certainly not sent."""
        if not self.held:
            return
        conn.rollback()
        conn.execute(
            update(_T)
            .where(_T.c.id.in_(self.held), _T.c.status == "sending", _T.c.worker == self.worker)
            .values(status="pending", worker=None, claimed_at=None, updated_at=_now())
        )
        conn.commit()
        self.held.clear()

    def _wait_for_retries(self, conn: Connection) -> bool:
        """Deferred rows fall due within retry_wait_s: wait for the first, then claim again. Else end the run."""
        query = select(func.min(_T.c.next_attempt_at)).where(
            _T.c.issue_id == self.issue_id, _T.c.status == "failed", _T.c.attempts < self.cfg.max_attempts
        )
        due = _aware(conn.execute(query).scalar())
        conn.commit()
        if due is None:
            return False
        wait = (due - _now()).total_seconds()
        if wait > self.cfg.retry_wait_s:
            return False
        if wait > 0:
            if self.progress:
                self.progress(f"{self.worker}: waiting {wait:.0f}s for deferred messages")
            time.sleep(wait)
        return True


_S = Subscriber.__table__
_SUB_COLUMNS = (_S.c.id, _S.c.email, _S.c.name, _S.c.status)


def _bounce_subscriber(conn: Connection, subscriber_id: int, reason: str) -> None:
    """`subscribers.set_status(sub, "bounced")` in Core (committed with the delivery's mark)."""
    now = _now()
    conn.execute(
        update(_S)
        .where(_S.c.id == subscriber_id, _S.c.status == "active")
        .values(status="bounced", status_reason=reason[:500], status_changed_at=now, updated_at=now)
    )


class _FastMarks:
    """The marks connection: autocommit, and (unless `durable_marks`) no disk flush per mark.

    SQLite (WAL): synchronous=NORMAL on this connection; claims keep the default (FULL) on theirs, and a FULL
    commit flushes the whole WAL, earlier marks included. PostgreSQL: synchronous_commit=off here only.
    A committed mark survives the SENDER crashing, which is what the ledger is built for: the database has it.
    A crash of the database machine itself can lose the marks made since the last flush: those rows fall back
    to `sending`, never to `pending` (claims are flushed), so nothing is resent by itself; after `recover_stale`
    up to one batch may be sent twice. `durable_marks = true` flushes every mark instead (~0.3-0.7 ms each)."""

    def __init__(self, conn: Connection, durable: bool):
        self.conn, self.dialect = conn, conn.dialect.name
        conn.execution_options(isolation_level="AUTOCOMMIT")  # reset by the pool when the connection returns
        self.saved: Any = None
        self.active = not durable and self.dialect in ("sqlite", "postgresql")
        if self.dialect == "sqlite" and self.active:
            self.saved = conn.exec_driver_sql("PRAGMA synchronous").scalar()
            conn.exec_driver_sql("PRAGMA synchronous=NORMAL")
        elif self.active:
            conn.exec_driver_sql("SET synchronous_commit TO off")
        conn.commit()

    def restore(self) -> None:
        """Back to the connection's defaults before it returns to the pool."""
        if not self.active:
            return
        if self.dialect == "sqlite":
            self.conn.exec_driver_sql(f"PRAGMA synchronous={int(self.saved)}")
        else:
            self.conn.exec_driver_sql("RESET synchronous_commit")
        self.conn.commit()


def send_issue(
    settings: Settings,
    issue_id: int,
    variants: Mapping[str, Any],
    transport_factory: TransportFactory | None = None,
    worker: str | None = None,
    batch_size: int | None = None,
    rate_limit_per_s: float | None = None,
    max_error_rate: float | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
    workers: int | None = None,
    **overrides: Any,
) -> SendReport:
    """Send every sendable ledger row of the issue. `variants`: variant key -> a rendered variant (anything
    with subject, html and text, e.g. `RenderedVariant` or a stored `IssueVariant`); every key of
    `needed_variants()` must be there. Freezes the issue. `workers` > 1 runs that many senders in threads
    (PostgreSQL only; capped at 1 on SQLite). Keyword `overrides` set other `DeliveryConfig` fields."""
    cfg = DeliveryConfig.from_settings(
        settings,
        batch_size=batch_size,
        rate_limit_per_s=rate_limit_per_s,
        max_error_rate=max_error_rate,
        workers=workers,
        **overrides,
    )
    ms = MessageSettings.from_settings(settings)
    factory = transport_factory or configured_transport(settings)
    worker = worker or default_worker()
    with session_scope(settings.database_url) as session:
        issue = session.get(IssueRow, issue_id)
        if issue is None:
            raise ValueError(f"no issue with id {issue_id}")
        missing = needed_variants(session, issue_id) - set(variants)
        if missing:
            raise ValueError(f"variants not rendered: {', '.join(sorted(missing))}")
        issue_date = issue.issue_date
        if dry_run:
            return _dry_run(session, issue_id, issue_date, variants, ms, cfg, worker)
        freeze_issue(session, issue_id)  # from now on a rebuild keeps exactly these papers
    n = cfg.workers if not settings.database_url.startswith("sqlite") else 1
    names = [worker] if n == 1 else [f"{worker}/{i}" for i in range(n)]
    senders = [_Sender(settings, cfg, ms, issue_id, issue_date, variants, factory, w, progress) for w in names]
    report = senders[0].run() if n == 1 else _run_threads(senders, worker)
    with session_scope(settings.database_url) as session:
        report.left = deliveries_report(session, issue_id, max_failures=0)["counts"]
    return report


def _run_threads(senders: list[_Sender], worker: str) -> SendReport:
    reports: list[SendReport] = []
    errors: list[BaseException] = []

    def run(sender: _Sender) -> None:
        try:
            reports.append(sender.run())
        except BaseException as exc:  # re-raised below: a thread must not swallow it
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,), name=s.worker) for s in senders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    total = SendReport(senders[0].issue_id, worker)
    for r in reports:
        total.merge(r)
    return total


def _would_send(session: Session, issue_id: int, cfg: DeliveryConfig) -> dict[str, int]:
    query = (
        select(Delivery.variant, func.count())
        .where(_claimable(issue_id, _now(), cfg.max_attempts))
        .group_by(Delivery.variant)
    )
    return {key: n for key, n in session.execute(query)}


def _probe(variants: Mapping[str, Any], keys: Iterable[str], ms: MessageSettings, issue_id: int, day) -> None:
    """Build one message of each variant (a dry run proves they all assemble)."""
    probe = Person(0, "dry-run@example.invalid", "")
    for key in keys:
        variant = variants[key]
        lang = getattr(variant, "lang", None) or parse_variant_key(key)[0]
        assemble(MessageTemplate.build(variant, ms, issue_id, day, lang=lang), probe)


def _dry_run(session, issue_id, issue_date, variants, ms, cfg, worker) -> SendReport:
    """Count what would be sent per variant and build one message of each; write nothing."""
    report = SendReport(issue_id, worker, dry_run=True, would_send=_would_send(session, issue_id, cfg))
    _probe(variants, report.would_send, ms, issue_id, issue_date)
    report.left = deliveries_report(session, issue_id, max_failures=0)["counts"]
    session.rollback()
    return report


def send_test(
    settings: Settings,
    issue_id: int,
    issue_date: date,
    variant: Any,
    to_addr: str,
    transport_factory: TransportFactory | None = None,
    name: str = "",
    lang: str | None = None,
) -> str:
    """One copy of a variant to `to_addr`, outside the ledger (a proof before the real send). When the address
    is a subscriber's, their id and name make the links work. Returns the Message-ID."""
    from newsletter.subscribers import normalise_email

    ms = MessageSettings.from_settings(settings)
    email = normalise_email(to_addr)
    with session_scope(settings.database_url) as session:
        sub = session.scalar(select(Subscriber).where(Subscriber.email == email))
        person = Person(sub.id, sub.email, sub.name) if sub else Person(0, email, name)
    lang = lang or getattr(variant, "lang", None) or "bilingual"
    template = MessageTemplate.build(variant, ms, issue_id, issue_date, lang=lang)
    message_id = f"<test-{issue_id}.{uuid.uuid4().hex[:12]}@{ms.domain}>"  # unique: clients must not dedupe it
    factory = transport_factory or configured_transport(settings)
    with factory() as transport:
        transport.send(ms.from_email, email, assemble(template, person, message_id=message_id))
    return message_id


# ---- the whole step, for the CLI and the DAG -------------------------------------------------------------


def send_date(
    settings: Settings,
    day: date,
    *,
    dry_run: bool = False,
    test_recipient: str | None = None,
    workers: int | None = None,
    recover: bool = False,
    progress: Progress | None = None,
    transport_factory: TransportFactory | None = None,
) -> SendReport:
    """`newsletter send --date D`: build (or load the frozen) issue, queue the ledger, render the variants it
    needs, send. `dry_run`: nothing is sent, queued or frozen (the issue itself is built and stored, as the
    issue step would); the report says what would be sent per variant (each variant is rendered and one
    message of it assembled). `test_recipient`: one copy to that address
    (their own variant if they subscribe, else bilingual with every topic), outside the ledger. `recover`: first
    put rows of crashed workers (claimed longer than `stale_after_s` ago) back to pending."""
    from newsletter import pipeline  # the render/issue steps; imported here, pipeline may import this module

    cfg, ms = DeliveryConfig.from_settings(settings), MessageSettings.from_settings(settings)
    issue, _ = pipeline.build_step(settings, pipeline.period_for(settings, day))
    if issue is None:
        return SendReport(0, default_worker(), dry_run=dry_run, note=f"no issue for {day}: nothing to send")
    if test_recipient:
        return _send_test_copy(settings, issue, test_recipient, transport_factory)
    with session_scope(settings.database_url) as session:
        ledger = prepare_ledger(session, issue.issue_id, ms=ms)
        recovered = recover_stale(session, issue.issue_id, cfg.stale_after_s) if recover and not dry_run else 0
        if dry_run:
            report = SendReport(issue.issue_id, default_worker(), dry_run=True)
            report.would_send = _would_send(session, issue.issue_id, cfg)
            report.left = deliveries_report(session, issue.issue_id, max_failures=0)["counts"]
            session.rollback()  # the ledger rows were only counted
    note = f"ledger: {ledger.created} new, {ledger.existing} existing, {len(ledger.skipped)} with nothing to read"
    if recovered:
        note += f"; {recovered} stale claim(s) recovered"
    if dry_run:
        from newsletter.render import render_variant

        opts = pipeline.render_options(settings)
        variants = {k: render_variant(issue, *parse_variant_key(k), opts) for k in report.would_send}
        _probe(variants, variants, ms, issue.issue_id, issue.issue_date)
        report.note = note
        return report
    variants = pipeline.variants_for_sending(settings, issue.issue_id, issue)
    report = send_issue(settings, issue.issue_id, variants, transport_factory, workers=workers, progress=progress)
    report.note = note
    return report


def _send_test_copy(settings: Settings, issue, address: str, factory: TransportFactory | None) -> SendReport:
    from newsletter import pipeline
    from newsletter.render import render_variant
    from newsletter.subscribers import normalise_email

    with session_scope(settings.database_url) as session:
        sub = session.scalar(select(Subscriber).where(Subscriber.email == normalise_email(address)))
        key = variant_key(sub.language, sub.topics) if sub else variant_key("bilingual", None)
    variant = render_variant(issue, *parse_variant_key(key), pipeline.render_options(settings))
    mid = send_test(settings, issue.issue_id, issue.issue_date, variant, address, factory)
    report = SendReport(issue.issue_id, default_worker(), sent=1)
    report.note = f"test copy of variant {key!r} sent to {address} ({mid}); the ledger is unchanged"
    return report


def deliveries_for_date(settings: Settings, day: date) -> dict | None:
    """`newsletter deliveries --date D`: the ledger report of that date's issue (None when there is none)."""
    with session_scope(settings.database_url) as session:
        issue_id = session.scalar(select(IssueRow.id).where(IssueRow.issue_date == day))
        return None if issue_id is None else deliveries_report(session, issue_id)
