"""Read-only status for operators: issues, deliveries, sources and subscribers, as plain JSON-able dicts.

What the "Paper Digest" view in the Airflow UI renders (package `newsletter_airflow`): the library answers, the
plugin only draws. Every query reads counts and short columns (never the stored HTML of a variant), so a
status page stays cheap on a store of years. Times are ISO 8601 strings in UTC.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.config import Settings
from newsletter.db import session_scope
from newsletter.db.models import Delivery, FetchLog, IssueItem, IssueRow, IssueVariant, Paper, Sighting, Subscriber
from newsletter.deliver.ledger import STATUSES, aware, parse_variant_key
from newsletter.issue.build import archive_name
from newsletter.pipeline.steps import _consecutive_failures, archive_dir, archive_url, render_options
from newsletter.registry.topics import topic_names

LANGUAGES = ("en", "zh", "bilingual")
SUBSCRIBER_STATUSES = ("active", "unsubscribed", "bounced", "complained")
# Ledger rows worth showing an operator: what went wrong, or what is stuck.
ERROR_STATUSES = ("failed", "bounced", "sending", "pending", "skipped")


def _iso(value: datetime | None) -> str | None:
    value = aware(value)
    return value.astimezone(UTC).isoformat() if value else None


def html_budget(settings: Settings) -> int:
    """`[render] html_budget_bytes`: the size an HTML part as sent must stay under (Gmail clips beyond)."""
    return render_options(settings).html_budget_bytes


# ---- the whole picture ------------------------------------------------------------------------------------


def overview(settings: Settings, limit: int = 14, max_failures: int = 2) -> dict[str, Any]:
    """The newest `limit` issues with their deliveries, every source, and subscribers by status and language."""
    with session_scope(settings.database_url) as session:
        rows = session.scalars(select(IssueRow).order_by(IssueRow.issue_date.desc()).limit(limit)).all()
        issues = _issue_summaries(session, settings, rows)
        newest = session.execute(select(func.max(Paper.first_seen), func.max(Paper.first_post_date))).first()
        return {
            "generated_at": _iso(datetime.now(UTC)),
            "budget_bytes": html_budget(settings),
            "issues": issues,
            "issues_total": session.scalar(select(func.count()).select_from(IssueRow)) or 0,
            "last_errors": last_delivery_errors(session, [r.id for r in rows]),
            # When a paper last arrived, and the newest day upstream posted one on.
            "newest_paper": {"at": _iso(newest[0]), "post_date": newest[1].isoformat()} if newest[0] else None,
            "papers_total": session.scalar(select(func.count()).select_from(Paper)) or 0,
            "sources": _sources(session, settings, max_failures),
            "max_failures": max_failures,
            "subscribers": _subscribers(session),
        }


def issue_status(settings: Settings, day: date, errors: int = 20, frequency: str = "daily") -> dict[str, Any] | None:
    """One issue in full (topics, variants, deliveries with the last errors), or None when `day` has none."""
    with session_scope(settings.database_url) as session:
        row = session.scalar(select(IssueRow).where(IssueRow.issue_date == day, IssueRow.frequency == frequency))
        if row is None:
            return None
        (issue,) = _issue_summaries(session, settings, [row])
        issue["last_errors"] = last_delivery_errors(session, [row.id], limit=errors)
        return issue


# ---- issues -----------------------------------------------------------------------------------------------


def _issue_summaries(session: Session, settings: Settings, rows: list[IssueRow]) -> list[dict[str, Any]]:
    """One dict per issue; four grouped queries whatever the number of issues."""
    ids = [r.id for r in rows]
    budget = html_budget(settings)
    topics, variants, deliveries = defaultdict(list), defaultdict(list), defaultdict(dict)
    for issue_id, topic, n in session.execute(
        select(IssueItem.issue_id, IssueItem.topic, func.count())
        .where(IssueItem.issue_id.in_(ids))
        .group_by(IssueItem.issue_id, IssueItem.topic)
        .order_by(IssueItem.issue_id, func.min(IssueItem.position))
    ):
        en, zh = topic_names(topic)
        topics[issue_id].append({"key": topic, "name": en, "name_zh": zh, "papers": n})
    for v in session.execute(
        select(IssueVariant.issue_id, IssueVariant.variant_key, IssueVariant.subject, IssueVariant.html_encoded_size,
               IssueVariant.n_full, IssueVariant.n_listed, IssueVariant.content_hash)
        .where(IssueVariant.issue_id.in_(ids))
        .order_by(IssueVariant.issue_id, IssueVariant.variant_key)
    ):  # fmt: skip
        lang, selection = parse_variant_key(v.variant_key)
        variants[v.issue_id].append({
            "key": v.variant_key, "lang": lang, "topics": sorted(selection) if selection else None,
            "subject": v.subject, "html_bytes": v.html_encoded_size, "over_budget": v.html_encoded_size > budget,
            "papers_full": v.n_full, "papers_listed": v.n_listed, "stale": v.content_hash != _hash(rows, v.issue_id),
        })  # fmt: skip
    for issue_id, status, n in session.execute(
        select(Delivery.issue_id, Delivery.status, func.count())
        .where(Delivery.issue_id.in_(ids))
        .group_by(Delivery.issue_id, Delivery.status)
    ):
        deliveries[issue_id][status] = n
    folder = archive_dir(settings)
    return [
        {
            "issue_id": r.id,
            "issue_date": r.issue_date.isoformat(),
            "frequency": r.frequency,  # weekly: the Monday-Sunday week ending on issue_date
            "timezone": settings.timezone,  # the issue covers this local day
            "papers": r.n_papers - r.n_highlights,  # new papers; the row counts highlights too
            "highlights": r.n_highlights,
            "featured": r.n_papers,
            "topics": topics[r.id],
            "variants": variants[r.id],
            "largest_html_bytes": max((v["html_bytes"] for v in variants[r.id]), default=None),
            "budget_bytes": budget,
            "frozen": r.frozen,
            "built_at": _iso(r.created_at),
            "updated_at": _iso(r.updated_at),
            "deliveries": {s: deliveries[r.id].get(s, 0) for s in STATUSES},
            "deliveries_total": sum(deliveries[r.id].values()),
            "archive_page": (folder / f"{archive_name(r.issue_date, r.frequency)}.html").is_file(),
            "archive_url": archive_url(settings, r.issue_date, r.frequency),
        }
        for r in rows
    ]


def _hash(rows: list[IssueRow], issue_id: int) -> str:
    return next(r.content_hash for r in rows if r.id == issue_id)


def last_delivery_errors(session: Session, issue_ids: list[int], limit: int = 10) -> list[dict[str, Any]]:
    """The most recently updated ledger rows that carry an error (a deferral, a bounce, a skip, a recovered
    claim), newest first: what an operator reads first when a subscriber says they got nothing."""
    rows = session.execute(
        select(IssueRow.issue_date, Subscriber.email, Delivery.status, Delivery.attempts, Delivery.last_error,
               Delivery.updated_at, Delivery.next_attempt_at)
        .join(IssueRow, IssueRow.id == Delivery.issue_id)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Delivery.issue_id.in_(issue_ids), Delivery.status.in_(ERROR_STATUSES), Delivery.last_error.is_not(None))
        .order_by(Delivery.updated_at.desc(), Delivery.id.desc())
        .limit(limit)
    )  # fmt: skip
    return [
        {"issue_date": day.isoformat(), "email": email, "status": status, "attempts": attempts, "error": error,
         "at": _iso(at), "next_attempt_at": _iso(next_at)}
        for day, email, status, attempts, error, at, next_at in rows
    ]  # fmt: skip


# ---- sources ----------------------------------------------------------------------------------------------


def _sources(session: Session, settings: Settings, max_failures: int) -> list[dict[str, Any]]:
    """Every configured source, then any source the fetch log knows but the config no longer has."""
    fetches = {
        name: {"fetches": n, "bytes_total": total or 0}
        for name, n, total in session.execute(
            select(FetchLog.source, func.count(), func.sum(FetchLog.n_bytes)).group_by(FetchLog.source)
        )
    }
    arrivals = _last_arrivals(session)
    configured = {s.name: s for s in settings.sources}
    out = []
    for name in [*configured, *sorted(set(fetches) - set(configured))]:
        src = configured.get(name)
        failures = _consecutive_failures(session, name)  # freshness_step's own count: page and alert agree
        out.append({
            "name": name, "kind": src.kind if src else None, "location": src.location if src else None,
            "configured": src is not None, "enabled": bool(src and src.enabled),
            "last_fetch": _last_fetch(session, name, ok_only=False),
            "last_ok": _last_fetch(session, name, ok_only=True),
            "consecutive_failures": failures, "alert": bool(src and src.enabled) and failures >= max_failures,
            "last_new_paper": arrivals.get(name),
            **fetches.get(name, {"fetches": 0, "bytes_total": 0}),
        })  # fmt: skip
    return out


def _last_fetch(session: Session, source: str, ok_only: bool) -> dict[str, Any] | None:
    query = select(FetchLog).where(FetchLog.source == source)
    if ok_only:
        query = query.where(FetchLog.error.is_(None))
    row = session.scalars(query.order_by(FetchLog.fetched_at.desc(), FetchLog.id.desc()).limit(1)).first()
    if row is None:
        return None
    return {"at": _iso(row.fetched_at), "http_status": row.http_status, "error": row.error, "bytes": row.n_bytes,
            "stored": row.stored, "location": row.location}  # fmt: skip


def _last_arrivals(session: Session) -> dict[str, dict[str, Any]]:
    """Per source, when it last brought a paper the store did not have: the newest first sighting of a paper
    (its earliest sighting row) that came from that source."""
    first = select(func.min(Sighting.id).label("id")).group_by(Sighting.paper_id).subquery()
    rows = session.execute(
        select(Sighting.source, func.max(Sighting.seen_at), func.max(Sighting.post_date), func.count())
        .join(first, first.c.id == Sighting.id)
        .group_by(Sighting.source)
    )
    return {
        source: {"at": _iso(at), "post_date": post_date.isoformat() if post_date else None, "papers": n}
        for source, at, post_date, n in rows
    }


# ---- subscribers ------------------------------------------------------------------------------------------


def _subscribers(session: Session) -> dict[str, Any]:
    """Counts by status and language; statuses and languages outside the known ones still show."""
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    for status, lang, n in session.execute(
        select(Subscriber.status, Subscriber.language, func.count()).group_by(Subscriber.status, Subscriber.language)
    ):
        counts[status][lang] = n
    statuses = [*SUBSCRIBER_STATUSES, *sorted(set(counts) - set(SUBSCRIBER_STATUSES))]
    languages = [*LANGUAGES, *sorted({lang for c in counts.values() for lang in c} - set(LANGUAGES))]
    return {
        "statuses": statuses,
        "languages": languages,
        "counts": {s: {lang: counts[s].get(lang, 0) for lang in languages} for s in statuses},
        "totals": {s: sum(counts[s].values()) for s in statuses},
        "total": sum(sum(c.values()) for c in counts.values()),
    }
