"""What operators run by hand beside the scheduled steps: store queries, previews, subscriber management, the
schema upgrade and the whole job in one call. Each function takes Settings and owns its session, so the CLI
(`newsletter.cli`) stays a thin shell that parses options, calls one function here or in the other pipeline
modules, and prints the result.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from sqlalchemy import func, select

from newsletter.config import Settings
from newsletter.db import get_engine, migrate, session_scope
from newsletter.db.models import Post, Subscriber
from newsletter.deliver import signup
from newsletter.deliver import subscribers as subs
from newsletter.deliver.sender import SendReport
from newsletter.deliver.transport import outbox_dir, transport_kind
from newsletter.issue.build import archive_name
from newsletter.pipeline import ingest as ingesting
from newsletter.pipeline import steps
from newsletter.pipeline.ingest import Progress, SourceReport
from newsletter.pipeline.send import deliveries_for_date, send_date
from newsletter.records import Frequency, Issue, VariantSpec
from newsletter.store.query import PaperFilter, find_papers, paper_record


class NoIssue(LookupError):
    """The day has no issue (nothing new, no acceptance), or the store has no posts yet: nothing to show."""


# ---- the store --------------------------------------------------------------------------------------------


def upgrade_db(settings: Settings, revision: str = "head") -> str:
    """Migrate the schema to `revision`; returns the database URL (password hidden) for the operator."""
    engine = get_engine(settings.database_url)
    migrate(engine, revision)
    return engine.url.render_as_string(hide_password=True)


def ingest_files(
    settings: Settings,
    paths: Iterable[str | Path],
    kind: str | None = None,
    source: str = "file",
    progress: Progress | None = None,
) -> list[SourceReport]:
    """`ingest --file a.xml b.md`: one report per file; a file that cannot be read fails alone."""
    paths = list(paths)
    reports = []
    for i, path in enumerate(paths, 1):
        if progress:
            progress(f"file {i}/{len(paths)}: {path}")
        reports.append(ingesting.ingest_file(settings, path, kind=kind, source=source))
    return reports


def papers(settings: Settings, flt: PaperFilter, limit: int | None = None) -> list[dict]:
    """The papers matching `flt` as `papers --format jsonl` records (README lists the fields)."""
    with session_scope(settings.database_url) as session:
        return [paper_record(p) for p in find_papers(session, flt, limit)]


# ---- issues -----------------------------------------------------------------------------------------------


def newest_day(settings: Settings) -> date:
    """The newest post date with papers: what issue commands use without --date."""
    with session_scope(settings.database_url) as session:
        day = session.scalar(select(func.max(Post.post_date)).where(Post.n_papers > 0))
    if day is None:
        raise NoIssue("no posts in the store yet: run `newsletter ingest` first")
    return day


def issue_day(settings: Settings, day: date | None) -> date:
    return day or newest_day(settings)


def issue_for(settings: Settings, day: date | None, frequency: str = Frequency.DAILY) -> Issue:
    """Build (or rebuild identically) the issue of `day` (default: the newest post date); weekly: the issue of the
    Monday-Sunday week that contains it."""
    day = issue_day(settings, day)
    period = steps.period_for(settings, day, frequency)
    issue, _info = steps.build_step(settings, period)
    if issue is None:
        what = f"the week {period.first} – {period.last}" if frequency == Frequency.WEEKLY else str(day)
        raise NoIssue(f"no issue for {what}: no new papers or acceptances in that period (nothing to send)")
    return issue


def translate(settings: Settings, day: date | None) -> dict:
    """`newsletter translate`: English for the Chinese summary and takeaways of the day's issue (building it if
    needed); what is cached is not asked again. See `steps.translate_step`."""
    issue = issue_for(settings, day)
    return {"issue_date": issue.issue_date.isoformat(), **steps.translate_step(settings, issue.issue_id)}


def empty_issue_ok(settings: Settings) -> bool:
    """`[issue] empty_ok`: whether `build` of a day without an issue is a success (exit 0) or not (exit 3)."""
    return settings.issue.empty_ok


def write_archive(
    settings: Settings, day: date | None, out_dir: str | Path | None = None, frequency: str = Frequency.DAILY
) -> Path:
    """The archive page of the day's (or week's) issue, into `out_dir` (default: the folder `serve` publishes)."""
    return steps.write_archive(settings, issue_for(settings, day, frequency), out_dir)


@dataclass
class Preview:
    subject: str
    paths: dict[str, Path]  # html, text, eml
    html_encoded_size: int  # the HTML part as sent (base64)
    n_full: int
    n_listed: int


def write_preview(
    settings: Settings, day: date | None, spec: VariantSpec, folder: str | Path, frequency: str = Frequency.DAILY
) -> Preview:
    """The HTML part, text part and .eml of one variant exactly as sent, as files named after day and variant."""
    issue = issue_for(settings, day, frequency)
    variant, html, text, eml = steps.preview_step(settings, issue, spec)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{archive_name(issue.issue_date, issue.frequency)}_{spec.lang}"
    stem += f"_{'-'.join(sorted(spec.topics))}" if spec.topics else ""
    paths = {"html": folder / f"{stem}.html", "text": folder / f"{stem}.txt", "eml": folder / f"{stem}.eml"}
    paths["html"].write_text(html, encoding="utf-8")
    paths["text"].write_text(text, encoding="utf-8")
    paths["eml"].write_bytes(eml)
    return Preview(variant.subject, paths, variant.html_encoded_size, variant.n_full, variant.n_listed)


def deliveries(settings: Settings, day: date | None, frequency: str = Frequency.DAILY) -> dict:
    """The ledger report of the day's (or week's) issue (counts by status, failures with reasons)."""
    day = issue_day(settings, day)
    report = deliveries_for_date(settings, day, frequency)
    if report is None:
        raise NoIssue(f"no {'weekly ' if frequency == Frequency.WEEKLY else ''}issue for {day}")
    return report


# ---- subscribers -------------------------------------------------------------------------------------------


def import_subscribers(settings: Settings, path: str | Path, encoding: str | None = None) -> subs.ImportReport:
    """Upsert subscribers from a CSV file in any encoding (README: columns, what is kept out)."""
    with session_scope(settings.database_url) as session:
        return subs.import_file(session, Path(path), encoding)


def add_subscriber(
    settings: Settings, email: str, name: str, language: str, topics: str | None, frequency: str = "daily"
) -> Subscriber:
    with session_scope(settings.database_url) as session:
        return subs.add(session, email, name, language, topics, frequency)


def export_subscribers(settings: Settings) -> str:
    """Every subscriber as CSV (`subscribers export`), in the columns `subscribers import` reads."""
    with session_scope(settings.database_url) as session:
        return subs.export_csv(session)


def _existing(session, email: str) -> Subscriber:
    sub = subs.get(session, email)
    if sub is None:
        raise subs.SubscriberError(f"no subscriber {email}")
    return sub


def change_subscriber(
    settings: Settings,
    email: str,
    *,
    name: str | None = None,
    language: str | None = None,
    topics: str | None = None,
    all_topics: bool = False,
    status: str | None = None,
    frequency: str | None = None,
) -> Subscriber:
    """`subscribers set`: change what is given; a status set here is the operator's override (README)."""
    with session_scope(settings.database_url) as session:
        sub = _existing(session, email)
        subs.update(sub, name, language, topics, all_topics=all_topics, frequency=frequency)
        if status:
            subs.set_status(sub, status, "set by operator")
        return sub


def remove_subscriber(settings: Settings, email: str, purge: bool = False) -> Subscriber:
    """Unsubscribe (the row stays, so an import never re-adds them), or delete the row with `purge`."""
    with session_scope(settings.database_url) as session:
        sub = _existing(session, email)
        if purge:
            session.delete(sub)
        else:
            subs.set_status(sub, "unsubscribed", "removed by operator")
        return sub


def purge_pending(settings: Settings) -> dict[str, int]:
    """`subscribers purge-pending`: web sign-ups left unconfirmed for `[signup] purge_after_days`, and old
    sign-up request rows, deleted (deliver/signup.py)."""
    with session_scope(settings.database_url) as session:
        return signup.purge_pending(session, settings.signup).as_dict()


def list_subscribers(settings: Settings, status: str | None = None) -> list[Subscriber]:
    query = select(Subscriber).order_by(Subscriber.email)
    if status:
        query = query.where(Subscriber.status == status)
    with session_scope(settings.database_url) as session:
        return list(session.scalars(query))


# ---- the main job ------------------------------------------------------------------------------------------


@dataclass
class JobReport:
    """What `newsletter run` did, step by step; a step that did not run stays None."""

    ingest: list[SourceReport] = field(default_factory=list)
    no_issue: str | None = None  # why nothing was built or sent
    issue: Issue | None = None
    translate: dict | None = None  # when [translate] is enabled
    archive: Path | None = None
    send: SendReport | None = None
    outbox: Path | None = None  # where the mail went when no SMTP is configured


def run_job(
    settings: Settings,
    day: date | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
    frequency: str = Frequency.DAILY,
) -> JobReport:
    """The scheduled job by hand: ingest every enabled source, build the issue of `day` (default: the newest post
    date; weekly: its Monday-Sunday week), translate it ([translate], when enabled), write its archive page, send
    it to the subscribers of that frequency (exactly once, through the ledger)."""
    report = JobReport(ingest=ingesting.ingest(settings, progress=progress))
    try:
        report.issue = issue_for(settings, day, frequency)
    except NoIssue as exc:
        report.no_issue = str(exc)
        return report
    if settings.translate.enabled:
        report.translate = steps.translate_step(settings, report.issue.issue_id)
        report.issue = issue_for(settings, report.issue.issue_date)  # now with the translations
    report.archive = steps.write_archive(settings, report.issue)
    report.send = send_date(settings, report.issue.issue_date, dry_run=dry_run, progress=progress, frequency=frequency)
    if transport_kind(settings) == "outbox":
        report.outbox = outbox_dir(settings)
    return report
