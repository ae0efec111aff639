"""The ingest step: read each source, archive and parse its payloads, record their posts in the store.

Parsing and recording happen per payload in one transaction: a payload that fails leaves everything stored
before untouched and is reported with its source and item, and the other payloads still go through.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy.exc import IntegrityError

from newsletter import retry
from newsletter.config import Settings, Source
from newsletter.db import session_scope
from newsletter.ingest.archive import Payload, archived, iter_archived, mark_stored
from newsletter.ingest.parse import parse_payload
from newsletter.ingest.sources import SourceFailed, read_file, source_payloads
from newsletter.records import ParsedPost
from newsletter.store.record import IngestStats, record_posts

Progress = Callable[[str], None]
# Concurrent ingests (two DAGs, mapped tasks) may race to insert the same new paper: 3 tries, 50 ms then 100 ms.
RECORD_BACKOFF = retry.Backoff(attempts=3, first_delay=0.05)


@dataclass
class SourceReport:
    source: str
    status: str = "ok"  # ok | not modified | failed
    payloads: int = 0
    stats: IngestStats = field(default_factory=IngestStats)
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.status == "failed"


def _record(settings: Settings, payload: Payload, report: SourceReport) -> bool:
    """Parse and store one payload; a failure is reported and leaves the store as it was."""
    name = Path(payload.location).name or payload.location
    try:
        posts, warnings = parse_payload(payload)
        stats = _store_with_retry(settings, payload, posts)
    except Exception as exc:  # one bad payload must not stop the others
        report.stats.warnings.append(f"{payload.source}: {name}: could not be ingested: {exc}")
        return False
    stats.warnings = warnings + stats.warnings
    report.stats.merge(stats)
    report.payloads += 1
    return True


def _store_with_retry(settings: Settings, payload: Payload, posts: list[ParsedPost]) -> IngestStats:
    """Record the posts and mark the payload stored in ONE transaction. A unique-key race with another
    ingest rolls back and retries: the retry sees the other side's rows and merges into them."""

    def store() -> IngestStats:
        with session_scope(settings.database_url) as session:
            stats = record_posts(session, posts, payload.source)
            mark_stored(session, payload)
        return stats

    return retry.call(store, RECORD_BACKOFF, transient=IntegrityError)


def ingest_source(settings: Settings, src: Source, progress: Progress | None = None) -> SourceReport:
    report = SourceReport(src.name)
    tried = 0
    try:
        for payload in source_payloads(settings, src):
            tried += 1
            if progress:
                progress(f"{src.name}: {Path(payload.location).name}")
            _record(settings, payload, report)
    except (SourceFailed, OSError) as exc:
        report.status, report.error = "failed", str(exc)
        return report
    if tried and not report.payloads:
        report.status, report.error = "failed", "no payload of this source could be parsed"
    elif not tried:
        report.status = "not modified"
    return report


def ingest(settings: Settings, names: list[str] | None = None, progress: Progress | None = None):
    """Ingest every enabled source (or the named ones); one report per source."""
    sources = [settings.source(n) for n in names] if names else settings.enabled_sources()
    return [ingest_source(settings, src, progress) for src in sources]


def ingest_file(settings: Settings, path: str | Path, kind: str | None = None, source: str = "file") -> SourceReport:
    """Ingest one local file (an old feed snapshot, a Markdown post...), its kind guessed from the content."""
    path = Path(path)
    report = SourceReport(source)
    try:
        payload = read_file(settings, path, kind, source)
    except (OSError, ValueError) as exc:
        report.status, report.error = "failed", f"{path}: {exc}"
        return report
    if not _record(settings, payload, report):
        report.status, report.error = "failed", report.stats.warnings[-1]
    return report


def replay(
    settings: Settings,
    since: datetime | None = None,
    until: datetime | None = None,
    source: str | None = None,
    progress: Progress | None = None,
) -> list[SourceReport]:
    """Re-parse archived payloads fetched in [since, until) in fetch order, without the network."""
    rows = archived(settings.database_url, since, until, source)
    reports: dict[str, SourceReport] = {}
    for row, (payload, error) in zip(rows, iter_archived(settings.archive_dir, rows), strict=True):
        name, location, fetched_at = row[0], row[2], row[4]
        report = reports.setdefault(name, SourceReport(name))
        if progress:
            progress(f"replay {name}: {Path(location).name} ({fetched_at:%Y-%m-%d %H:%M})")
        if payload is None:
            report.stats.warnings.append(error or "")
            continue
        _record(settings, payload, report)
    return list(reports.values())
