"""The raw archive: every fetched or read payload, stored content-addressed and logged in `fetch_log`.

A payload is archived and logged in its own committed transaction *before* it is parsed, so a parser bug never
loses a fetch (fix the parser, then `newsletter ingest --replay`). Its log row is marked `stored` only once its
posts are in the store, in the same transaction as the posts: until then it can be replayed, and a server's
304 never hides it.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from newsletter.db import session_scope
from newsletter.db.models import FetchLog


@dataclass
class Payload:
    """Bytes read from one source, with where they came from."""

    source: str
    kind: str
    location: str
    data: bytes
    fetched_at: datetime
    log_id: int | None = None  # the fetch_log row to mark stored once its posts are in the store


def now() -> datetime:
    return datetime.now(UTC)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def archive_path(root: str | Path, digest: str) -> Path:
    return Path(root) / digest[:2] / digest


def store_payload(root: str | Path, data: bytes) -> str:
    """Write `data` under its sha256 (once: same bytes, same file) and return the digest."""
    digest = sha256_hex(data)
    path = archive_path(root, digest)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}.{uuid.uuid4().hex}")  # unique per writer, threads included
        tmp.write_bytes(data)
        os.replace(tmp, path)  # atomic: a crash never leaves a half-written payload under its hash
    return digest


def load_payload(root: str | Path, digest: str) -> bytes:
    data = archive_path(root, digest).read_bytes()
    if sha256_hex(data) != digest:
        raise ValueError(f"raw archive is corrupt: {digest} does not match its content")
    return data


def log_fetch(session: Session, payload: Payload, status: int | None, sha: str | None, **extra) -> FetchLog:
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


def archive(database_url: str, archive_dir: str | Path, payload: Payload, status: int | None = None, **extra) -> str:
    """Archive and log a payload in its own committed transaction, before anything can fail on it."""
    sha = store_payload(archive_dir, payload.data)
    with session_scope(database_url) as session:
        payload.log_id = log_fetch(session, payload, status, sha, **extra).id
    return sha


def mark_stored(session: Session, payload: Payload) -> None:
    """Call inside the transaction that records the payload's posts."""
    if payload.log_id is not None:
        session.execute(update(FetchLog).where(FetchLog.id == payload.log_id).values(stored=True))


def last_validators(database_url: str, source: str) -> tuple[str | None, str | None]:
    """ETag and Last-Modified of the source's last stored 200, for a conditional GET."""
    with session_scope(database_url) as session:
        row = session.scalars(
            select(FetchLog)
            # Only a payload that made it into the store may make the server answer 304 next time.
            .where(FetchLog.source == source, FetchLog.http_status == 200, FetchLog.stored.is_(True))
            .order_by(FetchLog.fetched_at.desc(), FetchLog.id.desc())
            .limit(1)
        ).first()
        return (row.etag, row.last_modified) if row else (None, None)


def already_stored(database_url: str, source: str, location: str, sha: str) -> bool:
    with session_scope(database_url) as session:
        found = session.scalar(
            select(FetchLog.id)
            .where(FetchLog.source == source, FetchLog.location == location, FetchLog.sha256 == sha)
            .where(FetchLog.stored.is_(True))
            .limit(1)
        )
    return found is not None


def archived(
    database_url: str,
    since: datetime | None = None,
    until: datetime | None = None,
    source: str | None = None,
) -> list[tuple[str, str, str, str, datetime, int]]:
    """(source, kind, location, sha256, fetched_at, log id) of archived payloads in [since, until), in fetch order."""
    query = select(FetchLog).where(FetchLog.sha256.is_not(None)).order_by(FetchLog.fetched_at, FetchLog.id)
    if since:
        query = query.where(FetchLog.fetched_at >= since)
    if until:
        query = query.where(FetchLog.fetched_at < until)
    if source:
        query = query.where(FetchLog.source == source)
    with session_scope(database_url) as session:
        return [(r.source, r.kind, r.location, r.sha256, r.fetched_at, r.id) for r in session.scalars(query)]


def iter_archived(archive_dir: str | Path, rows) -> Iterator[tuple[Payload | None, str | None]]:
    """Payloads for `archived()` rows; (None, reason) for one whose bytes are unreadable."""
    for name, kind, location, sha, fetched_at, log_id in rows:
        try:
            yield Payload(name, kind, location, load_payload(archive_dir, sha), fetched_at, log_id), None
        except (OSError, ValueError) as exc:
            yield None, f"{name}: archived payload {sha[:12]} unreadable: {exc}"
