"""Sources: read a configured source (an HTTP feed with conditional GET, or local files) into archived payloads.

Each payload is archived and logged before it is handed on (see `newsletter.ingest.archive`); unchanged input
(a 304, or a local file whose bytes were already stored) yields nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from newsletter.config import Settings, Source
from newsletter.db import session_scope
from newsletter.ingest.archive import (
    Payload,
    already_stored,
    archive,
    last_validators,
    log_fetch,
    now,
    sha256_hex,
)
from newsletter.ingest.fetch import fetch, over_limit_message, payload_limit
from newsletter.ingest.parse.detect import guess_kind

FILE_SUFFIXES = {"markdown": (".md", ".markdown"), "text": (".txt",)}


class SourceFailed(Exception):
    """The source as a whole could not be read (unreachable, HTTP error, no such path)."""


class PayloadTooLarge(ValueError):
    """A payload over `[fetch] max_payload_mb`: refused whole, nothing of it archived."""

    def __init__(self, limit_mb: float) -> None:
        super().__init__(over_limit_message(limit_mb))


def read_bounded(path: Path, settings: Settings) -> bytes:
    """The file's bytes, read no further than the cap (a FIFO or /dev/zero has no honest size)."""
    limit, limit_mb = payload_limit(settings.fetch)
    with path.open("rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(limit_mb)
    return data


def fetch_source(settings: Settings, src: Source) -> Iterator[Payload]:
    """The feed at `src.url`, unless the server says it has not changed since the last stored fetch."""
    etag, modified = last_validators(settings.database_url, src.name)
    result = fetch(src.url or "", settings.fetch, etag=etag, last_modified=modified)
    empty = Payload(src.name, src.kind, src.location, b"", now())
    if not result.ok:
        with session_scope(settings.database_url) as session:
            log_fetch(session, empty, result.status, None, error=result.error)
        if result.status == 200:  # answered, but the body was refused (over the cap, undecodable)
            raise SourceFailed(f"{result.error} ({src.url})")
        raise SourceFailed(f"{src.url}: {result.error} (after {result.attempts} attempts)")
    if result.not_modified:
        with session_scope(settings.database_url) as session:
            log_fetch(
                session, empty, 304, None, etag=result.etag or etag, last_modified=result.last_modified or modified
            )
        return
    payload = Payload(src.name, src.kind, src.location, result.body, now())
    archive(
        settings.database_url, settings.archive_dir, payload, 200, etag=result.etag, last_modified=result.last_modified
    )
    yield payload


def _files(src: Source) -> list[Path]:
    root = Path(src.path or "")
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise SourceFailed(f"{root}: no such file or directory")
    suffixes = FILE_SUFFIXES.get(src.kind, (".xml", ".atom", ".rss"))
    return sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in suffixes)


def read_source(settings: Settings, src: Source) -> Iterator[Payload]:
    """The files at `src.path` whose bytes were not stored before (the local equivalent of a 304)."""
    for path in _files(src):
        try:
            data = read_bounded(path, settings)
        except PayloadTooLarge as exc:
            raise SourceFailed(f"{path}: {exc}") from None
        if already_stored(settings.database_url, src.name, str(path), sha256_hex(data)):
            continue
        payload = Payload(src.name, src.kind, str(path), data, now())
        archive(settings.database_url, settings.archive_dir, payload)
        yield payload


def source_payloads(settings: Settings, src: Source) -> Iterator[Payload]:
    return fetch_source(settings, src) if src.url else read_source(settings, src)


def read_file(settings: Settings, path: Path, kind: str | None, source: str) -> Payload:
    """One local file (an old feed snapshot, a Markdown post...), archived; its kind guessed from the content.
    Raises OSError or ValueError (PayloadTooLarge over the cap) when it cannot be read or recognised."""
    data = read_bounded(path, settings)
    kind = kind or guess_kind(data, path.name)
    payload = Payload(source, kind, str(path.resolve()), data, now())
    archive(settings.database_url, settings.archive_dir, payload)
    return payload
