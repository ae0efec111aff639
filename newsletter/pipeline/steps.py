"""The pipeline's steps as plain functions over Settings: what the CLI and the Airflow tasks both call.

Each step is idempotent for its period and returns small JSON-able dicts (ids and counts) so Airflow's XCom
never carries content. Heavy work reads and writes the database.
"""

from __future__ import annotations

import email
import logging
import socket
from datetime import UTC, date, datetime
from email import policy
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from newsletter.config import Settings
from newsletter.db import serialize, session_scope
from newsletter.db.models import (
    Delivery,
    FetchLog,
    IssueItem,
    IssueRow,
    IssueVariant,
    OpenAlert,
    Paper,
    Subscriber,
)
from newsletter.deliver.ledger import (
    deliveries_report,
    needed_variants,
    parse_variant_key,
    prepare_ledger,
    recover_stale,
)
from newsletter.deliver.message import MessageSettings, MessageTemplate, Person, assemble
from newsletter.deliver.picks import Picker, batch_picks, foryou_of
from newsletter.deliver.sender import send_issue, send_test
from newsletter.deliver.transport import OutboxTransport, outbox_dir
from newsletter.issue.build import Period, archive_name, build_issue, issue_lock
from newsletter.pipeline.ingest import SourceReport, ingest, replay
from newsletter.records import Frequency, Issue, Language, VariantSpec
from newsletter.render.feed import write_feed
from newsletter.render.variant import RenderOptions, render_archive, render_variant
from newsletter.translate import cache as translations
from newsletter.translate.run import TranslateReport, pending, translate_items

log = logging.getLogger(__name__)


def web_base_url(settings: Settings) -> str:
    return settings.web.base_url


def archive_url(settings: Settings, day: date, frequency: str = Frequency.DAILY) -> str:
    return f"{web_base_url(settings)}/archive/{archive_name(day, frequency)}"


def render_options(settings: Settings) -> RenderOptions:
    return RenderOptions(**settings.render.model_dump())


def period_for(settings: Settings, day: date, frequency: str = Frequency.DAILY) -> Period:
    """The period of the `frequency` issue covering `day`: that local day, or its Monday-Sunday week."""
    return Period.of(day, settings.timezone, frequency)


# ---- variants ---------------------------------------------------------------------------------------------


def subscriber_variants(settings: Settings, frequency: str | None = None) -> list[VariantSpec]:
    """The distinct (language, topics) choices of active subscribers (of one frequency when given): one render
    each, whatever the headcount."""
    query = select(Subscriber.language, Subscriber.topics).where(Subscriber.status == "active")
    if frequency:
        query = query.where(Subscriber.frequency == frequency)
    with session_scope(settings.database_url) as session:
        rows = session.execute(query)
        specs = {VariantSpec(lang, frozenset(t) if t else None) for lang, t in rows}
    return sorted(specs, key=lambda s: s.key)


# ---- steps ------------------------------------------------------------------------------------------------


def translation_model(settings: Settings) -> str | None:
    """The model whose cached translations issues show: [translate] model when enabled, else none."""
    return settings.translate.model if settings.translate.enabled else None


def build_step(settings: Settings, period: Period) -> tuple[Issue | None, dict]:
    """Build (or rebuild identically) the issue for a period. Two runs building the same issue at once take
    turns (the second finds the first's issue), as does a send freezing it (`deliver.sender.send_issue`)."""
    with session_scope(settings.database_url) as session:
        serialize(session, issue_lock(period.last, period.frequency))
        issue = build_issue(session, period, settings.issue, translation_model(settings))
    if issue is None:
        return None, {
            "issue_id": None, "issue_date": period.last.isoformat(), "frequency": str(period.frequency),
            "papers": 0, "highlights": 0,
        }  # fmt: skip
    issue.archive_url = archive_url(settings, issue.issue_date, issue.frequency)
    return issue, {
        "issue_id": issue.issue_id,
        "issue_date": issue.issue_date.isoformat(),
        "frequency": issue.frequency,
        "period_first": period.first.isoformat(),
        "papers": issue.n_papers,
        "highlights": len(issue.highlights),
        "topics": len(issue.sections),
        "content_hash": issue.content_hash,
    }


def translate_step(settings: Settings, issue_id: int) -> dict:
    """English for the Chinese summary and takeaways of the issue's papers ([translate]), each paper once: what
    is cached for its current text and the model is not asked again. Never raises for a translation problem
    (timeout, HTTP error, malformed answer): those papers stay Chinese-only, each a warning, counted. No
    database transaction is held open while the endpoint thinks; each answered batch is stored at once."""
    cfg = settings.translate
    if not cfg.enabled:
        return {"enabled": False, "issue_id": issue_id}
    report = TranslateReport()
    with session_scope(settings.database_url) as session:
        paper_ids = list(session.scalars(select(IssueItem.paper_id).where(IssueItem.issue_id == issue_id)))
        items = pending(session, paper_ids, cfg.model, report)

    def save(done) -> None:
        with session_scope(settings.database_url) as session:
            translations.save(session, done, cfg.model)

    translate_items(items, cfg, save, report)
    log.info("%s (issue %s, model %s)", report.summary(), issue_id, cfg.model)
    return {"enabled": True, "issue_id": issue_id, "model": cfg.model, **report.as_dict()}


def render_step(settings: Settings, issue: Issue, specs: list[VariantSpec]) -> dict:
    """Render each variant once and store it; an unchanged issue reuses what is stored. Two runs rendering the
    same new variant at once both store it (an upsert: the same content, one row), neither fails."""

    opts = render_options(settings)
    rendered, reused, largest = 0, 0, 0
    with session_scope(settings.database_url) as session:
        stored = {
            v.variant_key: v
            for v in session.scalars(select(IssueVariant).where(IssueVariant.issue_id == issue.issue_id))
        }
        for spec in specs:
            row = stored.get(spec.key)
            # A row rendered before "For you" existed (#11) has no pick rendering: render it again.
            if row is not None and row.content_hash == issue.content_hash and (row.foryou or not opts.foryou_top_k):
                reused += 1
                largest = max(largest, row.html_encoded_size)
                continue
            variant = render_variant(issue, spec.lang, spec.topics, opts)
            _store_variant(session, issue.issue_id, spec.key, variant, issue.content_hash)
            rendered += 1
            largest = max(largest, variant.html_encoded_size)
    return {"variants": len(specs), "rendered": rendered, "reused": reused, "largest_html_bytes": largest}


def _store_variant(session, issue_id: int, key: str, variant, content_hash: str) -> None:
    """INSERT ... ON CONFLICT (issue_id, variant_key) DO UPDATE: a concurrent run that stored the same variant
    first is overwritten with identical content instead of failing on the unique key."""
    values = {
        "subject": variant.subject,
        "preheader": variant.preheader,
        "html": variant.html,
        "text": variant.text,
        "html_encoded_size": variant.html_encoded_size,
        "n_full": variant.n_full,
        "n_listed": variant.n_listed,
        "content_hash": content_hash,
        "created_at": datetime.now(UTC),
        "foryou": variant.foryou.as_dict() if variant.foryou else None,
    }
    dialect = session.get_bind().dialect.name
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect]
    statement = insert(IssueVariant).values(issue_id=issue_id, variant_key=key, **values)
    session.execute(statement.on_conflict_do_update(index_elements=["issue_id", "variant_key"], set_=values))


def load_variants(settings: Settings, issue_id: int) -> dict[str, IssueVariant]:
    with session_scope(settings.database_url) as session:
        rows = session.scalars(select(IssueVariant).where(IssueVariant.issue_id == issue_id)).all()
        return {r.variant_key: r for r in rows}


def write_archive(settings: Settings, issue: Issue, out_dir: str | Path | None = None) -> Path:
    """The archive page for an issue, in the folder the web app serves."""

    folder = Path(out_dir or archive_dir(settings))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{archive_name(issue.issue_date, issue.frequency)}.html"
    path.write_text(render_archive(issue, render_options(settings)), encoding="utf-8")
    write_feed_file(settings, folder)
    return path


def write_feed_file(settings: Settings, folder: str | Path | None = None) -> Path:
    """`feed.xml` next to the archive pages: what `GET /feed.xml` serves, as a static file (render/feed.py)."""
    with session_scope(settings.database_url) as session:
        return write_feed(
            session,
            Path(folder or archive_dir(settings)),
            settings.web.base_url,
            settings.render.site_name,
            settings.render.site_name_zh,
        )


def archive_dir(settings: Settings) -> Path:
    """The folder `newsletter serve` publishes at /archive/<date>."""
    return Path(settings.web.archive_dir)


# ---- ingest and monitoring -------------------------------------------------------------------------------


def ingest_step(settings: Settings, source: str | None = None) -> dict:
    """Ingest one source (or all enabled ones); never raises for a failed source, the caller decides."""

    return _ingest_summary(ingest(settings, [source] if source else None), source)


def replay_step(settings: Settings, source: str | None, since: datetime, until: datetime) -> dict:
    """Backfills: re-read the payloads archived between `since` and `until`, without the network. Idempotent:
    what the store already has stays as it is; a parser improved since then fills in what it missed."""

    reports = replay(settings, since, until, source) or [SourceReport(source or "all", status="not modified")]
    return _ingest_summary(reports, source)


def _ingest_summary(reports: list, source: str | None) -> dict:
    out = {
        "source": source or "all",
        "status": "failed" if any(r.failed for r in reports) else reports[0].status if reports else "ok",
        "sources_failed": [r.source for r in reports if r.failed],
        "sources_not_modified": sum(r.status == "not modified" for r in reports),
        "error": "; ".join(f"{r.source}: {r.error}" for r in reports if r.error) or None,
    }
    for name in ("posts", "posts_new", "papers_new", "papers_seen", "papers_updated", "acceptances"):
        out[name] = sum(getattr(r.stats, name) for r in reports)
    out["warnings"] = sum(len(r.stats.warnings) for r in reports)
    out["warning_lines"] = [w for r in reports for w in r.stats.warnings][:50]
    return out


def _consecutive_failures(session, source: str, limit: int = 10) -> int:

    rows = session.execute(
        select(FetchLog.http_status, FetchLog.error)
        .where(FetchLog.source == source)
        .order_by(FetchLog.fetched_at.desc(), FetchLog.id.desc())
        .limit(limit)
    ).all()
    count = 0
    for status, error in rows:
        if error is None and status in (None, 200, 304):
            break
        count += 1
    return count


NO_NEW_PAPERS = "no-new-papers"


def freshness_step(settings: Settings, day: date, max_failures: int = 2, track: bool = False) -> dict:
    """Alerts: a weekday that brought zero new papers, or a source that failed `max_failures` runs in a row.

    `alerts` lists every condition that holds; `notify` those worth an email now. With `track` (the daily
    digest, once per issue day) the zero-papers alert notifies once per outage: the first weekday without
    papers opens it (`open_alerts`), later ones find it open, and the first day with new papers closes it. A
    failing source notifies on every call (the daily reminder; ingest_feeds emails the first failure itself)."""

    with session_scope(settings.database_url) as session:
        new = session.scalar(select(func.count()).select_from(Paper).where(Paper.first_post_date == day)) or 0
        failing = {
            s.name: n
            for s in settings.sources
            if s.enabled and (n := _consecutive_failures(session, s.name)) >= max_failures
        }
        stalled = opened = day.weekday() < 5 and new == 0
        if track and (stalled or new):  # a weekend without papers neither starts nor ends an outage
            opened = _track_outage(session, NO_NEW_PAPERS, day, stalled)
    alerts, notify = [], []
    if stalled:
        alerts.append(f"no new papers for {day} ({day:%A}): is upstream stalled or is ingestion broken?")
        if opened:
            notify.append(alerts[-1])
    sources = [f"source {name} failed {n} runs in a row" for name, n in failing.items()]
    alerts += sources
    notify += sources
    return {"day": day.isoformat(), "new_papers": new, "failing_sources": failing, "alerts": alerts, "notify": notify}


def _track_outage(session, key: str, day: date, holds: bool) -> bool:
    """Keep `open_alerts` in step with the condition `key` as checked for `day`; True only when this check
    opened the outage (the one time to notify). A day older than the open outage's first day (a backfill)
    neither ends it nor extends it."""
    row = session.get(OpenAlert, key)
    if not holds:
        if row is not None and day >= row.since:
            session.delete(row)
        return False
    if row is not None:
        row.last_seen = max(row.last_seen, day)
        return False
    values = {"key": key, "since": day, "last_seen": day, "opened_at": datetime.now(UTC)}
    # ON CONFLICT DO NOTHING: when two checks race, exactly one of them opens the outage (and notifies).
    opened = session.execute(_insert_ignore(session, OpenAlert).values(values).returning(OpenAlert.key))
    return opened.scalar() is not None


def _insert_ignore(session, model):
    dialect = session.get_bind().dialect.name
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect]
    return insert(model).on_conflict_do_nothing()


# ---- delivery ---------------------------------------------------------------------------------------------


def preview_step(settings: Settings, issue: Issue, spec: VariantSpec) -> tuple:
    """(variant, html part, text part, .eml bytes) exactly as a subscriber of that variant would get them; the
    parts are read back out of the assembled message, so what is written is what is sent."""

    variant = render_variant(issue, spec.lang, spec.topics, render_options(settings))
    template = MessageTemplate.build(
        variant, MessageSettings.from_settings(settings), issue.issue_id, issue.issue_date, lang=spec.lang
    )
    eml = assemble(template, Person(0, "preview@example.invalid", "Preview"))
    msg = email.message_from_bytes(eml, policy=policy.default)
    html = msg.get_body(("html",)).get_content()
    text = msg.get_body(("plain",)).get_content()
    return variant, html, text, eml


def prepare_step(settings: Settings, issue_id: int) -> dict:
    """Queue one ledger row per active subscriber with something to read (idempotent), and requeue the rows a
    crashed sender left in `sending` (see `recover_step`): a scheduled, retried or cleared run finishes them."""

    with session_scope(settings.database_url) as session:
        result = prepare_ledger(session, issue_id, ms=MessageSettings.from_settings(settings))
    return {**result.as_dict(), "recovered": recover_step(settings, issue_id)}


def recover_step(settings: Settings, issue_id: int) -> int:
    """Rows of this issue claimed longer than `[delivery] stale_after_s` ago -> pending. Such a claim belongs to
    a killed sender (a live one finishes a batch far sooner); its in-flight message may have been accepted, so
    this costs at most one duplicate per killed sender. Logged; returns the row count."""

    with session_scope(settings.database_url) as session:
        n = recover_stale(session, issue_id, settings.delivery.stale_after_s)
    if n:
        log.warning(
            "issue %s: %s row(s) left in 'sending' for over %ss by a crashed sender requeued (at most one "
            "duplicate per crashed sender)", issue_id, n, settings.delivery.stale_after_s,
        )  # fmt: skip
    return n


def plan_senders(settings: Settings, issue_id: int) -> list[int]:
    """Sender slots to map over: enough for the pending rows, at most `[delivery] workers`, 1 on SQLite."""

    cfg = settings.delivery
    with session_scope(settings.database_url) as session:
        counts = deliveries_report(session, issue_id, max_failures=0)["counts"]
    todo = counts.get("pending", 0) + counts.get("failed", 0)
    if not todo:
        return []
    limit = 1 if settings.database_url.startswith("sqlite") else max(1, cfg.workers)
    return list(range(min(limit, -(-todo // cfg.batch_size))))


def send_step(settings: Settings, issue_id: int, slot: int = 0, dry_run: bool = False) -> dict:
    """One sender: claims batches until none is left. dry_run writes every pending message to the outbox
    without touching the ledger (a real run afterwards still sends everything)."""

    if dry_run:
        return dry_run_to_outbox(settings, issue_id)
    recovered = recover_step(settings, issue_id)  # a retry after a killed attempt finishes that attempt's claims
    variants = variants_for_sending(settings, issue_id)
    report = send_issue(settings, issue_id, variants, worker=f"{socket.gethostname()}/{slot}")
    return {**report.as_dict(), "recovered": recovered}


def variants_for_sending(settings: Settings, issue_id: int, issue: Issue | None = None) -> dict[str, IssueVariant]:
    """Every variant the ledger still needs, rendered: a subscriber may have changed language or topics since the
    render step. render_step reuses a stored variant whose issue hash is unchanged, so this is cheap."""

    with session_scope(settings.database_url) as session:
        needed = needed_variants(session, issue_id)
        row = session.get(IssueRow, issue_id)
        issue_date, frequency = row.issue_date, row.frequency
    issue = issue or build_step(settings, period_for(settings, issue_date, frequency))[0]  # identical (frozen) rebuild
    render_step(settings, issue, [VariantSpec.parse(k) for k in sorted(needed)])
    return load_variants(settings, issue_id)


def dry_run_to_outbox(settings: Settings, issue_id: int) -> dict:
    """Every pending message into the outbox instead of SMTP, "For you" picks included; the ledger untouched."""
    ms = MessageSettings.from_settings(settings)
    variants = variants_for_sending(settings, issue_id)
    templates: dict[str, object] = {}
    written = 0
    with session_scope(settings.database_url) as session, OutboxTransport(outbox_dir(settings)) as outbox:
        issue = session.get(IssueRow, issue_id)
        rows = session.execute(
            select(Delivery.id, Delivery.subscriber_id, Delivery.variant, Subscriber)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(Delivery.issue_id == issue_id, Delivery.status.in_(("pending", "failed")))
        ).all()
        foryou = {key: foryou_of(v) for key, v in variants.items()}
        picks = batch_picks(Picker(issue_id), session.connection(), rows, {r[3].id: r[3] for r in rows}, foryou)
        for did, _sid, key, sub in rows:
            pick = picks.get(did)
            tkey = (key, bool(pick))
            if tkey not in templates:
                source = foryou[key] if pick else variants[key]
                templates[tkey] = MessageTemplate.build(
                    source, ms, issue_id, issue.issue_date, lang=parse_variant_key(key)[0]
                )
            msg = assemble(templates[tkey], sub, pick=pick) if pick else assemble(templates[tkey], sub)
            outbox.send(ms.from_email, sub.email, msg)
            written += 1
    return {"dry_run": True, "written_to_outbox": written, "outbox": str(outbox_dir(settings))}


def report_step(settings: Settings, issue_id: int) -> dict:

    with session_scope(settings.database_url) as session:
        return deliveries_report(session, issue_id)


def send_test_copy(
    settings: Settings, day: date, address: str, lang: str = Language.BILINGUAL, topics=None,
    frequency: str = Frequency.DAILY,
) -> dict:  # fmt: skip
    """One copy of the day's (or week's) issue to `address`, outside the ledger."""

    issue, _info = build_step(settings, period_for(settings, day, frequency))
    if issue is None:
        return {"sent": 0, "note": f"no {frequency} issue for {day}"}
    spec = VariantSpec(lang, frozenset(topics) if topics else None)
    variant = render_variant(issue, spec.lang, spec.topics, render_options(settings))
    mid = send_test(settings, issue.issue_id, issue.issue_date, variant, address, lang=spec.lang)
    return {"sent": 1, "to": address, "variant": spec.key, "message_id": mid}


def resend_step(settings: Settings, issue_id: int, reason: str) -> dict:
    """An explicit resend of an issue: its sent rows go back to pending. Logged with the reason, never implicit."""

    with session_scope(settings.database_url) as session:
        result = session.execute(
            update(Delivery)
            .where(Delivery.issue_id == issue_id, Delivery.status == "sent")
            .values(status="pending", last_error=f"resend requested: {reason}", updated_at=datetime.now(UTC))
        )
    logging.getLogger(__name__).warning("RESEND of issue %s: %s rows requeued (%s)", issue_id, result.rowcount, reason)
    return {"issue_id": issue_id, "requeued": result.rowcount, "reason": reason}
