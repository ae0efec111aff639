"""The archive as an Atom feed (RFC 4287): one entry per issue that has an archive page, newest first.

`GET /feed.xml` on `newsletter serve` and the `feed.xml` written next to the archive pages (by every archive
write) come from the same function over the same inputs, so they are the same bytes. Each entry: the issue date
as title, the counts (new papers, topics, newly accepted) as summary in English and Chinese, the archive page as
link and id (a permalink), the issue's last rebuild as `updated`. The feed's own `updated` is the newest entry's,
so the file only changes when an issue does.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.db.models import IssueItem, IssueRow
from newsletter.i18n import BILINGUAL, catalog

ATOM = "http://www.w3.org/2005/Atom"
MEDIA_TYPE = "application/atom+xml"
FEED_NAME = "feed.xml"
MAX_ENTRIES = 100  # feed readers poll the whole file: the newest issues are what they need
_ARCHIVE_NAME = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2})\.html")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def archive_days(folder: Path) -> list[date]:
    """Dates with an archive page (`YYYY-MM-DD.html`) in `folder`, newest first."""
    if not folder.is_dir():
        return []
    days = []
    for path in folder.iterdir():
        m = _ARCHIVE_NAME.fullmatch(path.name)
        if m and path.is_file():
            try:
                days.append(date.fromisoformat(m.group(1)))
            except ValueError:
                continue
    return sorted(days, reverse=True)


@dataclass(frozen=True)
class FeedEntry:
    issue_date: date
    n_papers: int
    n_topics: int
    n_highlights: int
    published: datetime
    updated: datetime


def feed_entries(session: Session, folder: Path, limit: int = MAX_ENTRIES) -> list[FeedEntry]:
    """The stored daily issues that have an archive page in `folder`, newest first (an issue without a page would
    be a dead link). Weekly issues repeat the week's daily papers and have pages of their own (week-<Monday>);
    a Sunday's weekly issue must not become a second entry pointing at that day's daily page."""
    days = archive_days(folder)[:limit]
    if not days:
        return []
    topics = (
        select(IssueItem.issue_id, func.count(func.distinct(IssueItem.topic)).label("n"))
        .where(IssueItem.role == "new")
        .group_by(IssueItem.issue_id)
        .subquery()
    )
    rows = session.execute(
        select(IssueRow, topics.c.n)
        .outerjoin(topics, topics.c.issue_id == IssueRow.id)
        .where(IssueRow.issue_date.in_(days), IssueRow.frequency == "daily")
        .order_by(IssueRow.issue_date.desc())
    )
    return [
        FeedEntry(row.issue_date, row.n_papers, n or 0, row.n_highlights, _utc(row.created_at), _utc(row.updated_at))
        for row, n in rows
    ]


def _utc(value: datetime | None) -> datetime:
    if value is None:
        return _EPOCH
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _stamp(value: datetime) -> str:
    """RFC 3339 in UTC, whole seconds: `2024-12-05T00:30:00Z`."""
    return value.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def _text(parent: ET.Element, tag: str, text: str, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, f"{{{ATOM}}}{tag}", attrs)
    el.text = text
    return el


def _link(parent: ET.Element, rel: str, href: str, type_: str) -> None:
    ET.SubElement(parent, f"{{{ATOM}}}link", {"rel": rel, "href": href, "type": type_})


def _both(key: str, sites: dict[str, str], sep: str = " · ", **values: object) -> str:
    return sep.join(catalog(lang)(key, site=sites[lang], **values) for lang in BILINGUAL)


def _summary(lang: str, e: FeedEntry) -> str:
    ui = catalog(lang)
    return ui(
        "feed.summary",
        papers=ui.plural("feed.papers", e.n_papers),
        topics=ui.plural("feed.topics", e.n_topics),
        accepted=ui("feed.accepted", n=e.n_highlights),
    )


def render_feed(entries: list[FeedEntry], base_url: str, site_name: str, site_name_zh: str) -> bytes:
    """The Atom document: UTF-8 with an XML declaration. `base_url`: the public URL of `newsletter serve`."""
    ET.register_namespace("", ATOM)
    sites = {"en": site_name, "zh": site_name_zh}
    base = base_url.rstrip("/")
    feed = ET.Element(f"{{{ATOM}}}feed", {"{http://www.w3.org/XML/1998/namespace}lang": "en"})
    _text(feed, "id", f"{base}/archive/")
    _text(feed, "title", _both("feed.title", sites))
    newest = max((e.updated for e in entries), default=_EPOCH)
    _text(feed, "updated", _stamp(newest))
    author = ET.SubElement(feed, f"{{{ATOM}}}author")
    _text(author, "name", site_name)
    _link(feed, "self", f"{base}/{FEED_NAME}", MEDIA_TYPE)
    _link(feed, "alternate", f"{base}/archive/", "text/html")
    for e in entries:
        day = e.issue_date.isoformat()
        url = f"{base}/archive/{day}"
        entry = ET.SubElement(feed, f"{{{ATOM}}}entry")
        _text(entry, "id", url)
        _text(entry, "title", _both("feed.entry_title", sites, date=day))
        _text(entry, "published", _stamp(e.published))
        _text(entry, "updated", _stamp(e.updated))
        _link(entry, "alternate", url, "text/html")
        _text(entry, "summary", " ".join(_summary(lang, e) for lang in BILINGUAL), type="text")
    ET.indent(feed)
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True) + b"\n"


def write_feed(session: Session, folder: Path, base_url: str, site_name: str, site_name_zh: str) -> Path:
    """`feed.xml` in the archive folder, replaced atomically (a reader never sees half a file)."""
    data = render_feed(feed_entries(session, folder), base_url, site_name, site_name_zh)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / FEED_NAME
    tmp = path.with_name(f".{FEED_NAME}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path
