"""The sender: claims ledger batches and delivers each message exactly once over one transport connection.

Retries with backoff, the circuit breaker, crash recovery and the one possible duplicate are explained in
docs/architecture.md ("Delivery"). SIGTERM/SIGINT stop a send politely (`newsletter.deliver.stopping`): the
message in flight is finished, every row claimed and not attempted goes back to pending, and the report says
how many (`interrupted`, `released`).
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from functools import cache
from typing import Any

from sqlalchemy import Connection, Row, bindparam, func, select, update
from sqlalchemy.orm import Session

from newsletter import retry
from newsletter.config import DeliverySettings, Settings
from newsletter.db import get_engine, serialize, session_scope
from newsletter.db.models import Delivery, IssueRow, Subscriber
from newsletter.deliver.ledger import (
    DELIVERIES,
    Progress,
    aware,
    claim_statement,
    claimable,
    deliveries_report,
    delivery_config,
    needed_variants,
    parse_variant_key,
    utcnow,
)
from newsletter.deliver.message import MessageSettings, MessageTemplate, Person, assemble
from newsletter.deliver.picks import Picker, batch_picks, foryou_of
from newsletter.deliver.stopping import SendInterrupted, StopRequest, stop_on_signals
from newsletter.deliver.transport import SendFailure, Transport, TransportError, TransportFactory
from newsletter.deliver.transport import transport_factory as configured_transport
from newsletter.issue.build import freeze_issue, issue_lock
from newsletter.render.variant import ForYou

log = logging.getLogger(__name__)


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
    interrupted: str | None = None  # the signal that stopped the run (SIGTERM, SIGINT); None: not interrupted
    released: int = 0  # rows claimed by this run and never attempted, put back to pending when it stopped
    abandoned: int = 0  # messages abandoned in flight by a second signal: left `sending` (recovered later)
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
        for name in ("sent", "deferred", "gave_up", "bounced", "requeued", "skipped", "reconnects", "released",
                     "abandoned"):  # fmt: skip
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.elapsed_s = max(self.elapsed_s, other.elapsed_s)
        self.stopped = self.stopped or other.stopped
        self.interrupted = self.interrupted or other.interrupted
        self.errors = (self.errors + other.errors)[-20:]
        return self

    def as_dict(self) -> dict:
        return {**asdict(self), "attempted": self.attempted, "rate_per_s": round(self.rate, 1)}

    def summary(self, stop_reason: bool = True) -> str:
        """One line of counts, and why the run stopped (unless the caller says that on a line of its own)."""
        if self.dry_run:
            total = sum(self.would_send.values())
            return f"dry run: {total} message(s) would be sent in {len(self.would_send)} variant(s); nothing sent"
        head = (
            f"sent {self.sent}, deferred {self.deferred}, bounced {self.bounced}, gave up {self.gave_up}, "
            f"requeued {self.requeued}, skipped {self.skipped} in {self.elapsed_s:.1f}s ({self.rate:.0f}/s)"
        )
        return head + (f"; STOPPED: {self.stopped}" if self.stopped and stop_reason else "")


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


class _Interrupted(Exception):
    """A stop signal arrived: end the run between two messages."""


@cache
def _mark_statement(names: tuple[str, ...]):
    """`UPDATE deliveries SET <names>, updated_at WHERE id = :did`, built once per set of columns (building a
    statement per message costs more than executing it)."""
    values = {name: bindparam(name) for name in (*names, "updated_at")}
    return update(DELIVERIES).where(DELIVERIES.c.id == bindparam("did")).values(values)


class _Sender:
    """One worker: claim, send over one connection per batch, mark, repeat (see the module docstring).

    It holds two database connections for the whole run, and uses Core statements: `conn` for claims, reads and
    releases (ordinary transactions), `marks` for the per-message outcome, in autocommit mode (one statement =
    one transaction = one round trip) and with the flush policy of `_FastMarks`. The mark is the only database
    work on the hot path, so it must cost little (ORM session machinery would double it)."""

    def __init__(self, settings, cfg, ms, issue_id, issue_date, variants, factory, worker, progress, stop):
        self.url, self.cfg, self.ms = settings.database_url, cfg, ms
        self.issue_id, self.issue_date = issue_id, issue_date
        self.variants, self.factory, self.progress = variants, factory, progress
        self.report = SendReport(issue_id, worker)
        self.breaker = CircuitBreaker(cfg.breaker_window, cfg.breaker_min, cfg.max_error_rate)
        self.templates: dict[str, MessageTemplate] = {}
        self.pick_templates: dict[str, MessageTemplate] = {}
        self.foryou: dict[str, ForYou | None] = {}
        self.picker = Picker(issue_id)
        self.transport = None
        self.held: set[int] = set()  # claimed by us, not yet attempted
        self.in_flight: int | None = None  # the row whose message is being handed to the server
        self.stop: StopRequest = stop
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
            abandoned = None
            try:
                while True:
                    self._check_stop()
                    rows = self._claim(conn)
                    if rows:
                        self._batch(conn, rows)
                    elif not self._wait_for_retries(conn):
                        break
            except _Stop as stop:
                self.report.stopped = str(stop)
            except _Interrupted:
                self.report.interrupted = self.stop.signal_name
            except SendInterrupted:
                abandoned = self.in_flight  # maybe accepted by the server: left to recover_stale, like a kill
                self.report.interrupted = self.stop.signal_name
            finally:
                self._close()
                self.report.released += self._release(conn, keep=abandoned)
                self.report.abandoned += abandoned is not None
                fast_marks.restore()
                self.report.elapsed_s = time.monotonic() - started
        return self.report

    def _check_stop(self) -> None:
        if self.stop:
            raise _Interrupted

    def _claim(self, conn: Connection) -> list[Row]:
        claim = claim_statement(self.issue_id, self.worker, self.cfg.batch_size, self.cfg.max_attempts)
        rows = list(conn.execute(claim))
        conn.commit()  # durable (flushed) before anything is sent
        return sorted(rows, key=lambda r: r.id)

    # -- one batch, one connection --

    def _batch(self, conn: Connection, rows: list[Row]) -> None:
        self.held = {r.id for r in rows}
        subs = {
            s.id: s for s in conn.execute(select(*_SUB_COLUMNS).where(_S.c.id.in_([r.subscriber_id for r in rows])))
        }
        picks = batch_picks(self.picker, conn, rows, subs, {r.variant: self._foryou(r.variant) for r in rows})
        conn.commit()
        self._connect()
        try:
            for row in rows:
                self._check_stop()  # a stop signal ends the batch between two messages, never inside one
                self._one(row, subs.get(row.subscriber_id), picks.get(row.id))
        finally:
            self._close()
        if self.progress:
            self.progress(f"{self.worker}: {self.report.summary()}")

    def _one(self, row: Row, sub: Row | None, pick: tuple[str, str] | None = None) -> None:
        if sub is None or sub.status != "active":
            self._mark(row.id, status="skipped", last_error=f"subscriber {sub.status if sub else 'deleted'}")
            self.report.skipped += 1
            return
        try:
            if pick:  # "For you" (#11): the variant's rendering with room for it
                msg = assemble(self._pick_template(row.variant), sub, message_id=row.message_id, pick=pick)
            else:
                msg = assemble(self._template(row.variant), sub, message_id=row.message_id)
        except Exception as exc:  # a bad address or variant must not stop everyone else's delivery
            log.exception("cannot build message for %s", sub.email)
            self._give_up(row, sub, f"cannot build message: {exc}")
            return
        self._pace()
        self._check_stop()
        self.in_flight = row.id
        try:
            self.stop.in_flight = True
            try:
                self.transport.send(self.ms.from_email, sub.email, msg)
            finally:
                self.stop.in_flight = False
        except SendFailure as failure:
            self._failed(row, sub, failure)
        else:
            now = utcnow()
            self._mark(row.id, status="sent", sent_at=now, attempts=row.attempts + 1, last_error=None,
                       next_attempt_at=None)  # fmt: skip
            self.report.sent += 1
            self._record(True)
        self.in_flight = None

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
            due = utcnow() + timedelta(seconds=self.cfg.backoff(attempts))
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
        self.marks.execute(_mark_statement(tuple(sorted(values))), {"did": did, "updated_at": utcnow(), **values})
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
            self.stop.sleep(self.next_slot - now)
        self.next_slot += 1.0 / rate

    def _template(self, key: str) -> MessageTemplate:
        template = self.templates.get(key)
        if template is None:
            variant = self.variants[key]
            lang = getattr(variant, "lang", None) or parse_variant_key(key)[0]
            template = MessageTemplate.build(variant, self.ms, self.issue_id, self.issue_date, lang=lang)
            self.templates[key] = template
        return template

    def _foryou(self, key: str) -> ForYou | None:
        if key not in self.foryou:
            try:
                self.foryou[key] = foryou_of(self.variants[key]) if key in self.variants else None
            except Exception:  # a stored rendering that does not load: that variant goes out without picks
                log.exception("variant %s: unreadable 'For you' rendering; sending it without picks", key)
                self.foryou[key] = None
        return self.foryou[key]

    def _pick_template(self, key: str) -> MessageTemplate:
        template = self.pick_templates.get(key)
        if template is None:
            foryou = self._foryou(key)
            template = MessageTemplate.build(foryou, self.ms, self.issue_id, self.issue_date, lang=foryou.lang)
            self.pick_templates[key] = template
        return template

    # -- connection --

    def _connect(self) -> None:
        """Open a connection; an unreachable server is retried (reconnect_tries, reconnect_delay_s doubling)."""
        tries = self.cfg.reconnect_tries + 1
        try:
            self.transport = retry.call(
                self._open,
                retry.Backoff(tries, self.cfg.reconnect_delay_s),
                transient=SendFailure,  # open() raises it when the server cannot be reached
                on_retry=self._count_reconnect,
            )
        except SendFailure as failure:
            raise _Stop(f"cannot connect after {tries} tries: {failure}") from failure
        except TransportError as exc:
            raise _Stop(f"transport unusable: {exc}") from exc

    def _open(self) -> Transport:
        transport = self.factory()
        transport.open()
        return transport

    def _count_reconnect(self, _failed_try: int) -> None:
        self.report.reconnects += 1

    def _reconnect(self) -> None:
        self._close()
        self.report.reconnects += 1
        self._connect()

    def _close(self) -> None:
        transport, self.transport = self.transport, None
        if transport is not None:
            # After an abandoned message the session is mid-exchange: drop it (a QUIT would wait for the answer).
            abort = getattr(transport, "abort", None) if self.stop.abandoned else None
            (abort or transport.close)()

    # -- end of run --

    def _release(self, conn: Connection, keep: int | None = None) -> int:
        """Claimed rows never attempted (the run stopped) go back to pending: they were certainly not sent.
        `keep`: a row whose message was abandoned mid-exchange stays `sending` (it may have been accepted).
        Returns how many rows went back."""
        release = self.held - {keep}
        self.held.clear()
        if not release:
            return 0
        conn.rollback()
        result = conn.execute(
            update(DELIVERIES)
            .where(DELIVERIES.c.id.in_(release), DELIVERIES.c.status == "sending", DELIVERIES.c.worker == self.worker)
            .values(status="pending", worker=None, claimed_at=None, updated_at=utcnow())
        )
        conn.commit()
        return result.rowcount or 0

    def _wait_for_retries(self, conn: Connection) -> bool:
        """Deferred rows fall due within retry_wait_s: wait for the first, then claim again. Else end the run."""
        query = select(func.min(DELIVERIES.c.next_attempt_at)).where(
            DELIVERIES.c.issue_id == self.issue_id,
            DELIVERIES.c.status == "failed",
            DELIVERIES.c.attempts < self.cfg.max_attempts,
        )
        due = aware(conn.execute(query).scalar())
        conn.commit()
        if due is None:
            return False
        wait = (due - utcnow()).total_seconds()
        if wait > self.cfg.retry_wait_s:
            return False
        if wait > 0:
            if self.progress:
                self.progress(f"{self.worker}: waiting {wait:.0f}s for deferred messages")
            self.stop.sleep(wait)  # a stop signal ends the wait; the next claim check ends the run
        return True


_S = Subscriber.__table__
_SUB_COLUMNS = (_S.c.id, _S.c.email, _S.c.name, _S.c.status, _S.c.keywords, _S.c.seeds)


def _bounce_subscriber(conn: Connection, subscriber_id: int, reason: str) -> None:
    """`subscribers.set_status(sub, "bounced")` in Core (committed with the delivery's mark)."""
    now = utcnow()
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
    (PostgreSQL only; capped at 1 on SQLite). Keyword `overrides` set other `[delivery]` values."""
    cfg = delivery_config(
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
        issue_date, frequency = issue.issue_date, issue.frequency
        if dry_run:
            return _dry_run(session, issue_id, issue_date, variants, ms, cfg, worker)
    with session_scope(settings.database_url) as session:
        serialize(session, issue_lock(issue_date, frequency))  # never in the middle of a concurrent rebuild
        freeze_issue(session, issue_id)  # from now on a rebuild keeps exactly these papers
    n = cfg.workers if not settings.database_url.startswith("sqlite") else 1
    names = [worker] if n == 1 else [f"{worker}/{i}" for i in range(n)]
    stop = StopRequest()
    senders = [_Sender(settings, cfg, ms, issue_id, issue_date, variants, factory, w, progress, stop) for w in names]
    # One sender runs in this thread, so a second signal may abandon its message in flight; with threads the
    # signal reaches only this (waiting) thread, and each sender finishes its own message.
    with stop_on_signals(stop, abandon=n == 1):
        report = senders[0].run() if n == 1 else _run_threads(senders, worker)
    if report.interrupted:  # stopped early by a signal (one that came after the last message changes nothing)
        _interrupted(report, report.interrupted)
    with session_scope(settings.database_url) as session:
        report.left = deliveries_report(session, issue_id, max_failures=0)["counts"]
    return report


def _interrupted(report: SendReport, signal_name: str) -> None:
    """The report of a run stopped by a signal: what went back to pending (and what may need recovery)."""
    report.interrupted = signal_name
    report.stopped = f"interrupted by {signal_name}: {report.released} claimed message(s) put back to pending"
    if report.abandoned:
        report.stopped += (
            f"; {report.abandoned} abandoned in flight stay 'sending' until recovered (`send --recover` after "
            "stale_after_s; at most one duplicate each)"
        )


def _run_threads(senders: list[_Sender], worker: str) -> SendReport:
    """Each sender in its own thread; their reports merged. A sender's exception is re-raised here."""
    with ThreadPoolExecutor(max_workers=len(senders), thread_name_prefix=worker) as pool:
        futures = [pool.submit(sender.run) for sender in senders]
    total = SendReport(senders[0].issue_id, worker)
    for future in futures:  # all have finished: leaving the `with` waited for them
        total.merge(future.result())
    return total


def would_send(session: Session, issue_id: int, cfg: DeliverySettings) -> dict[str, int]:
    query = (
        select(Delivery.variant, func.count())
        .where(claimable(issue_id, utcnow(), cfg.max_attempts))
        .group_by(Delivery.variant)
    )
    return {key: n for key, n in session.execute(query)}


def probe_variants(variants: Mapping[str, Any], keys: Iterable[str], ms: MessageSettings, issue_id: int, day) -> None:
    """Build one message of each variant (a dry run proves they all assemble)."""
    probe = Person(0, "dry-run@example.invalid", "")
    for key in keys:
        variant = variants[key]
        lang = getattr(variant, "lang", None) or parse_variant_key(key)[0]
        assemble(MessageTemplate.build(variant, ms, issue_id, day, lang=lang), probe)


def _dry_run(session, issue_id, issue_date, variants, ms, cfg, worker) -> SendReport:
    """Count what would be sent per variant and build one message of each; write nothing."""
    report = SendReport(issue_id, worker, dry_run=True, would_send=would_send(session, issue_id, cfg))
    probe_variants(variants, report.would_send, ms, issue_id, issue_date)
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
    from newsletter.deliver.subscribers import normalise_email

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
