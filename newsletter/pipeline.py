"""The pipeline's steps as plain functions over Settings: what the CLI and the Airflow tasks both call.

Each step is idempotent for its period and returns small JSON-able dicts (ids and counts) so Airflow's XCom
never carries content. Heavy work reads and writes the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import select

from newsletter.config import Settings
from newsletter.db import session_scope
from newsletter.issue import IssueSettings, Period, build_issue
from newsletter.models import IssueRow, IssueVariant, Subscriber
from newsletter.records import Issue

MODES = ("en", "zh", "bilingual")


def issue_settings(settings: Settings) -> IssueSettings:
    return IssueSettings.from_config(settings.timezone, settings.section("issue"))


def web_base_url(settings: Settings) -> str:
    return str(settings.section("web").get("base_url", "http://127.0.0.1:8000")).rstrip("/")


def archive_url(settings: Settings, day: date) -> str:
    return f"{web_base_url(settings)}/archive/{day.isoformat()}"


def render_options(settings: Settings):
    from newsletter.render import RenderOptions

    section = settings.section("render")
    known = set(RenderOptions.__dataclass_fields__) - {"templates_dir", "archive_url"}
    return RenderOptions(**{k: v for k, v in section.items() if k in known})


def period_for(settings: Settings, day: date) -> Period:
    return Period.day(day, settings.timezone)


# ---- variants ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VariantSpec:
    lang: str
    topics: frozenset[str] | None  # None: every topic

    @property
    def key(self) -> str:
        return f"{self.lang}|{';'.join(sorted(self.topics or ()))}"

    @classmethod
    def parse(cls, key: str) -> VariantSpec:
        lang, _, topics = key.partition("|")
        return cls(lang, frozenset(topics.split(";")) if topics else None)

    @classmethod
    def of(cls, subscriber: Subscriber) -> VariantSpec:
        return cls(subscriber.language, frozenset(subscriber.topics) if subscriber.topics else None)


def subscriber_variants(settings: Settings) -> list[VariantSpec]:
    """The distinct (language, topics) choices of active subscribers: one render each, whatever the headcount."""
    with session_scope(settings.database_url) as session:
        rows = session.execute(select(Subscriber.language, Subscriber.topics).where(Subscriber.status == "active"))
        specs = {VariantSpec(lang, frozenset(t) if t else None) for lang, t in rows}
    return sorted(specs, key=lambda s: s.key)


# ---- steps ------------------------------------------------------------------------------------------------


def build_step(settings: Settings, period: Period) -> tuple[Issue | None, dict]:
    """Build (or rebuild identically) the issue for a period."""
    with session_scope(settings.database_url) as session:
        issue = build_issue(session, period, issue_settings(settings))
    if issue is None:
        return None, {"issue_id": None, "issue_date": period.last.isoformat(), "papers": 0, "highlights": 0}
    issue.archive_url = archive_url(settings, issue.issue_date)
    return issue, {
        "issue_id": issue.issue_id,
        "issue_date": issue.issue_date.isoformat(),
        "papers": issue.n_papers,
        "highlights": len(issue.highlights),
        "topics": len(issue.sections),
        "content_hash": issue.content_hash,
    }


def render_step(settings: Settings, issue: Issue, specs: list[VariantSpec]) -> dict:
    """Render each variant once and store it; an unchanged issue reuses what is stored."""
    from newsletter.render import render_variant

    opts = render_options(settings)
    rendered, reused, largest = 0, 0, 0
    with session_scope(settings.database_url) as session:
        stored = {
            v.variant_key: v
            for v in session.scalars(select(IssueVariant).where(IssueVariant.issue_id == issue.issue_id))
        }
        for spec in specs:
            row = stored.get(spec.key)
            if row is not None and row.content_hash == issue.content_hash:
                reused += 1
                largest = max(largest, row.html_encoded_size)
                continue
            variant = render_variant(issue, spec.lang, spec.topics, opts)
            if row is None:
                row = IssueVariant(issue_id=issue.issue_id, variant_key=spec.key)
                session.add(row)
            _store_variant(row, variant, issue.content_hash)
            rendered += 1
            largest = max(largest, variant.html_encoded_size)
    return {"variants": len(specs), "rendered": rendered, "reused": reused, "largest_html_bytes": largest}


def _store_variant(row: IssueVariant, variant, content_hash: str) -> None:
    row.subject, row.preheader, row.html, row.text = variant.subject, variant.preheader, variant.html, variant.text
    row.html_encoded_size, row.n_full, row.n_listed = variant.html_encoded_size, variant.n_full, variant.n_listed
    row.content_hash, row.created_at = content_hash, datetime.now(UTC)


def load_variants(settings: Settings, issue_id: int) -> dict[str, IssueVariant]:
    with session_scope(settings.database_url) as session:
        rows = session.scalars(select(IssueVariant).where(IssueVariant.issue_id == issue_id)).all()
        return {r.variant_key: r for r in rows}


def issue_row(settings: Settings, day: date) -> IssueRow | None:
    with session_scope(settings.database_url) as session:
        return session.scalar(select(IssueRow).where(IssueRow.issue_date == day))


def write_archive(settings: Settings, issue: Issue, out_dir: str | Path | None = None) -> Path:
    """The archive page for an issue, in the folder the web app serves."""
    from newsletter.render import render_archive

    folder = Path(out_dir or archive_dir(settings))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{issue.issue_date.isoformat()}.html"
    path.write_text(render_archive(issue, render_options(settings)), encoding="utf-8")
    return path


def archive_dir(settings: Settings) -> Path:
    """The folder `newsletter serve` publishes at /archive/<date>."""
    return settings.path(settings.section("web").get("archive_dir", "var/archive"))


# ---- ingest and monitoring -------------------------------------------------------------------------------


def ingest_step(settings: Settings, source: str | None = None) -> dict:
    """Ingest one source (or all enabled ones); never raises for a failed source, the caller decides."""
    from newsletter.ingest import ingest

    reports = ingest(settings, [source] if source else None)
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
    from newsletter.models import FetchLog

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


def freshness_step(settings: Settings, day: date, max_failures: int = 2) -> dict:
    """Alerts: a weekday that brought zero new papers, or a source that failed `max_failures` runs in a row."""
    from sqlalchemy import func

    from newsletter.models import Paper

    with session_scope(settings.database_url) as session:
        new = session.scalar(select(func.count()).select_from(Paper).where(Paper.first_post_date == day)) or 0
        failing = {
            s.name: n
            for s in settings.sources
            if s.enabled and (n := _consecutive_failures(session, s.name)) >= max_failures
        }
    alerts = []
    if day.weekday() < 5 and new == 0:
        alerts.append(f"no new papers for {day} ({day:%A}): is upstream stalled or is ingestion broken?")
    alerts += [f"source {name} failed {n} runs in a row" for name, n in failing.items()]
    return {"day": day.isoformat(), "new_papers": new, "failing_sources": failing, "alerts": alerts}
