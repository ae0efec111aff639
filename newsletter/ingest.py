"""Ingest stage: fetch or read each source, archive every payload, parse it and record it in the store.

Every payload is archived and logged in its own transaction *before* parsing, so a parser bug never loses a
fetch (fix the parser, then `newsletter ingest --replay`). Parsing and recording happen per payload in a second
transaction: a payload that fails leaves everything stored before untouched.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from newsletter.archive import load_payload, sha256_hex, store_payload
from newsletter.config import Settings, Source
from newsletter.db import session_scope
from newsletter.fetch import fetch
from newsletter.models import FetchLog
from newsletter.parse.detect import decode_text, guess_kind
from newsletter.records import ParsedPost
from newsletter.store import IngestStats, record_posts

FILE_SUFFIXES = {"markdown": (".md", ".markdown"), "text": (".txt",)}


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


@dataclass
class Payload:
    source: str
    kind: str
    location: str
    data: bytes
    fetched_at: datetime
    log_id: int | None = None  # the fetch_log row to mark stored once its posts are in the store


Progress = Callable[[str], None]


def _now() -> datetime:
    return datetime.now(UTC)


def parse_payload(payload: Payload) -> tuple[list[ParsedPost], list[str]]:
    """Bytes -> posts, with warnings that name the source and the item."""
    from newsletter.parse.digest_html import parse_digest_html
    from newsletter.parse.digest_text import parse_text_post
    from newsletter.parse.feed import parse_feed
    from newsletter.parse.post_file import parse_markdown_post

    name = Path(payload.location).name
    if payload.kind == "feed":
        result = parse_feed(payload.data, payload.source)
        warnings = [f"{payload.source}: {w}" for w in result.warnings]
        warnings += [f"{payload.source}: {post.key} ({post.url}): {w}" for post in result.posts for w in post.warnings]
        if result.bozo and not result.posts:
            raise ValueError(f"feed could not be parsed: {result.bozo}")
        if result.bozo:
            warnings.append(f"{payload.source}: feed is malformed ({result.bozo}); kept what could be read")
        return result.posts, warnings
    text, warning = decode_text(payload.data)
    warnings = [f"{payload.source}: {name}: {warning}"] if warning else []
    if payload.kind == "markdown":
        post = parse_markdown_post(text, name)
    elif payload.kind == "text":
        post = parse_text_post(text, name)
    elif payload.kind == "html":
        post = _html_post(parse_digest_html, text, name)
    else:
        raise ValueError(f"unknown payload kind {payload.kind!r}")
    warnings += [f"{payload.source}: {name}: {w}" for w in post.warnings]
    return [post], warnings


def _html_post(parse_digest_html, text: str, name: str) -> ParsedPost:
    """A saved post page: topic and date come from the file name (`2024-12-05_3DGS.html`), as for Markdown."""
    import re

    from newsletter.parse.digest_text import topic_from_slug

    body = parse_digest_html(text)
    m = re.match(r"(\d{4}-\d{2}-\d{2})[_ ](.+?)(\.html?)?$", name)
    if m:
        post_date, topic = date.fromisoformat(m.group(1)), topic_from_slug(m.group(2))
    elif body.heading_date:
        post_date, topic = body.heading_date, topic_from_slug(Path(name).stem)
    else:
        raise ValueError("no post date: name the file YYYY-MM-DD_<topic>.html")
    return ParsedPost(
        topic=topic,
        post_date=post_date,
        heading_date=body.heading_date,
        papers=body.papers,
        warnings=body.warnings,
        skipped_headings=body.skipped_headings,
    )


class SourceFailed(Exception):
    """The source as a whole could not be read (unreachable, HTTP error, no such path)."""


def _log(session: Session, payload: Payload, status: int | None, sha: str | None, **extra) -> FetchLog:
    row = FetchLog(
        source=payload.source,
        location=payload.location,
        fetched_at=payload.fetched_at,
        http_status=status,
        n_bytes=len(payload.data),
        sha256=sha,
        kind=payload.kind,
        **extra,
    )
    session.add(row)
    session.flush()
    return row


def _archive(settings: Settings, payload: Payload, status: int | None = None, **extra) -> str:
    """Archive and log a payload in its own committed transaction, before anything can fail on it."""
    sha = store_payload(settings.archive_dir, payload.data)
    with session_scope(settings.database_url) as session:
        payload.log_id = _log(session, payload, status, sha, **extra).id
    return sha


RECORD_ATTEMPTS = 3  # concurrent ingests (two DAGs, mapped tasks) may race to insert the same new paper


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
    for attempt in range(1, RECORD_ATTEMPTS + 1):
        try:
            with session_scope(settings.database_url) as session:
                stats = record_posts(session, posts, payload.source)
                if payload.log_id is not None:
                    session.execute(update(FetchLog).where(FetchLog.id == payload.log_id).values(stored=True))
            return stats
        except IntegrityError:
            if attempt == RECORD_ATTEMPTS:
                raise
            time.sleep(0.05 * attempt)
    raise AssertionError("unreachable")


def _last_validators(settings: Settings, source: str) -> tuple[str | None, str | None]:
    with session_scope(settings.database_url) as session:
        row = session.scalars(
            select(FetchLog)
            # Only a payload that made it into the store may make the server answer 304 next time.
            .where(FetchLog.source == source, FetchLog.http_status == 200, FetchLog.stored.is_(True))
            .order_by(FetchLog.fetched_at.desc(), FetchLog.id.desc())
            .limit(1)
        ).first()
        return (row.etag, row.last_modified) if row else (None, None)


def _fetch_source(settings: Settings, src: Source) -> Iterator[Payload]:
    etag, modified = _last_validators(settings, src.name)
    result = fetch(src.url or "", settings.fetch, etag=etag, last_modified=modified)
    empty = Payload(src.name, src.kind, src.location, b"", _now())
    if not result.ok:
        with session_scope(settings.database_url) as session:
            _log(session, empty, result.status, None, error=result.error)
        raise SourceFailed(f"{src.url}: {result.error} (after {result.attempts} attempts)")
    if result.not_modified:
        with session_scope(settings.database_url) as session:
            _log(
                session,
                empty,
                304,
                None,
                etag=result.etag or etag,
                last_modified=result.last_modified or modified,
            )
        return
    payload = Payload(src.name, src.kind, src.location, result.body, _now())
    _archive(settings, payload, 200, etag=result.etag, last_modified=result.last_modified)
    yield payload


def _files(src: Source) -> list[Path]:
    root = Path(src.path or "")
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise SourceFailed(f"{root}: no such file or directory")
    suffixes = FILE_SUFFIXES.get(src.kind, (".xml", ".atom", ".rss"))
    return sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in suffixes)


def _already_read(settings: Settings, source: str, location: str, sha: str) -> bool:
    with session_scope(settings.database_url) as session:
        found = session.scalar(
            select(FetchLog.id)
            .where(FetchLog.source == source, FetchLog.location == location, FetchLog.sha256 == sha)
            .where(FetchLog.stored.is_(True))
            .limit(1)
        )
    return found is not None


def _read_source(settings: Settings, src: Source) -> Iterator[Payload]:
    for path in _files(src):
        data = path.read_bytes()
        if _already_read(settings, src.name, str(path), sha256_hex(data)):
            continue  # unchanged since the last run: the local-file equivalent of a 304
        payload = Payload(src.name, src.kind, str(path), data, _now())
        _archive(settings, payload)
        yield payload


def ingest_source(settings: Settings, src: Source, progress: Progress | None = None) -> SourceReport:
    report = SourceReport(src.name)
    tried = 0
    try:
        payloads = _fetch_source(settings, src) if src.url else _read_source(settings, src)
        for payload in payloads:
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
    sources = [settings.source(n) for n in names] if names else [s for s in settings.sources if s.enabled]
    return [ingest_source(settings, src, progress) for src in sources]


def ingest_file(settings: Settings, path: str | Path, kind: str | None = None, source: str = "file") -> SourceReport:
    """Ingest one local file (an old feed snapshot, a Markdown post...), its kind guessed from the content."""
    path = Path(path)
    report = SourceReport(source)
    try:
        data = path.read_bytes()
        kind = kind or guess_kind(data, path.name)
    except (OSError, ValueError) as exc:
        report.status, report.error = "failed", f"{path}: {exc}"
        return report
    payload = Payload(source, kind, str(path.resolve()), data, _now())
    _archive(settings, payload)
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
    query = select(FetchLog).where(FetchLog.sha256.is_not(None)).order_by(FetchLog.fetched_at, FetchLog.id)
    if since:
        query = query.where(FetchLog.fetched_at >= since)
    if until:
        query = query.where(FetchLog.fetched_at < until)
    if source:
        query = query.where(FetchLog.source == source)
    with session_scope(settings.database_url) as session:
        rows = [(r.source, r.kind, r.location, r.sha256, r.fetched_at, r.id) for r in session.scalars(query)]
    reports: dict[str, SourceReport] = {}
    for name, kind, location, sha, fetched_at, log_id in rows:
        report = reports.setdefault(name, SourceReport(name))
        if progress:
            progress(f"replay {name}: {Path(location).name} ({fetched_at:%Y-%m-%d %H:%M})")
        try:
            payload = Payload(name, kind, location, load_payload(settings.archive_dir, sha), fetched_at, log_id)
        except (OSError, ValueError) as exc:
            report.stats.warnings.append(f"{name}: archived payload {sha[:12]} unreadable: {exc}")
            continue
        _record(settings, payload, report)
    return list(reports.values())
