"""Store stage: record parsed posts as deduplicated papers with every sighting kept.

Dedupe rules: one paper per arXiv id without version; a paper with no id (the plain-text layout) is identified
by its title fingerprint and adopts the id when the same title later arrives with one. Each (paper, post date,
topic, version, comment) is one sighting, so ingesting the same payload again changes nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from newsletter.db.models import AcceptanceEvent, Paper, Post, Sighting
from newsletter.ingest.parse.common import norm_ws, plain_quotes, title_fingerprint
from newsletter.records import ParsedPaper, ParsedPost, Venue
from newsletter.registry.links import extract_links
from newsletter.registry.venues import extract_venue


@dataclass
class IngestStats:
    """Counts for one ingest run; `merge` adds another run's counts."""

    posts: int = 0
    posts_new: int = 0
    papers: int = 0  # paper occurrences read
    papers_new: int = 0
    papers_seen: int = 0  # known paper, nothing new
    papers_updated: int = 0  # known paper, new sighting (version, comment, topic or date)
    acceptances: int = 0
    warnings: list[str] = field(default_factory=list)

    def merge(self, other: IngestStats) -> None:
        for name in ("posts", "posts_new", "papers", "papers_new", "papers_seen", "papers_updated"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.acceptances += other.acceptances
        self.warnings.extend(other.warnings)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "warnings"} | {"warnings": len(self.warnings)}


def _now() -> datetime:
    return datetime.now(UTC)


def _sighting_key(identity: str, post: ParsedPost, paper: ParsedPaper) -> str:
    # Quotes and spacing differ between layouts of the same post (Markdown source vs rendered feed).
    comment = norm_ws(plain_quotes(paper.comment or ""))
    raw = "\x1f".join([identity, post.post_date.isoformat(), post.topic, paper.arxiv_version or "", comment])
    return hashlib.sha1(raw.encode("utf-8")).hexdigest()


def _identity(paper: ParsedPaper) -> str:
    return f"arxiv:{paper.arxiv_id}" if paper.arxiv_id else f"title:{title_fingerprint(paper.title)}"


def _version_num(version: str | None) -> int:
    return int(version[1:]) if version and version[1:].isdigit() else 0


class _PaperIndex:
    """The papers a payload touches, loaded in two queries instead of one per paper."""

    def __init__(self, session: Session, papers: Iterable[ParsedPaper]):
        papers = list(papers)
        ids = {p.arxiv_id for p in papers if p.arxiv_id}
        prints = {title_fingerprint(p.title) for p in papers}
        self.by_id: dict[str, Paper] = {}
        self.by_print: dict[str, Paper] = {}
        if ids:
            for row in session.scalars(select(Paper).where(Paper.arxiv_id.in_(ids))):
                self.by_id[row.arxiv_id] = row
        if prints:
            for row in session.scalars(select(Paper).where(Paper.fingerprint.in_(prints))):
                # Prefer a paper that already has an id when several share a fingerprint.
                if row.fingerprint not in self.by_print or row.arxiv_id:
                    self.by_print[row.fingerprint] = row

    def find(self, parsed: ParsedPaper, fingerprint: str) -> Paper | None:
        if parsed.arxiv_id:
            found = self.by_id.get(parsed.arxiv_id)
            if found:
                return found
            orphan = self.by_print.get(fingerprint)
            # An id-less paper with the same title is this paper, seen first in the plain-text layout.
            return orphan if orphan is not None and orphan.arxiv_id is None else None
        return self.by_print.get(fingerprint)

    def add(self, paper: Paper) -> None:
        if paper.arxiv_id:
            self.by_id[paper.arxiv_id] = paper
        self.by_print.setdefault(paper.fingerprint, paper)


def _upsert_posts(session: Session, posts: list[ParsedPost], source: str, now: datetime, stats: IngestStats):
    keys = {(p.post_date, p.topic) for p in posts}
    existing = {}
    if keys:
        rows = session.scalars(select(Post).where(tuple_(Post.post_date, Post.topic).in_(list(keys))))
        existing = {(r.post_date, r.topic): r for r in rows}
    result = {}
    for parsed in posts:
        key = (parsed.post_date, parsed.topic)
        row = existing.get(key)
        if row is None:
            row = Post(
                post_date=parsed.post_date,
                topic=parsed.topic,
                heading_date=parsed.heading_date,
                url=parsed.url,
                source=source,
                n_papers=len(parsed.papers),
                first_seen=now,
            )
            session.add(row)
            existing[key] = row
            stats.posts_new += 1
        else:
            row.url = parsed.url or row.url  # keep the newest URL: upstream moved posts once
            row.n_papers = max(row.n_papers, len(parsed.papers))
        result[key] = row
    session.flush()
    return result


def _new_paper(parsed: ParsedPaper, fingerprint: str, post: ParsedPost, now: datetime) -> Paper:
    return Paper(
        arxiv_id=parsed.arxiv_id,
        fingerprint=fingerprint,
        title=parsed.title,
        authors=list(parsed.authors),
        abstract=parsed.abstract,
        abstract_zh=parsed.abstract_zh,
        summary_zh=parsed.summary_zh,
        takeaways=list(parsed.takeaways),
        screenshots=list(parsed.screenshots),
        abs_url=parsed.abs_url,
        pdf_url=parsed.pdf_url,
        version=None,
        comment=None,
        accepted=False,
        latest_post_date=post.post_date,
        first_post_date=post.post_date,
        first_seen=now,
        updated_at=now,
    )


def _fill_missing(paper: Paper, parsed: ParsedPaper) -> None:
    """Later sightings complete what earlier ones lacked (e.g. a summary that was LLM error text)."""
    if parsed.arxiv_id and not paper.arxiv_id:
        paper.arxiv_id = parsed.arxiv_id
    for name in ("abstract", "abstract_zh", "summary_zh", "abs_url", "pdf_url"):
        if not getattr(paper, name) and getattr(parsed, name):
            setattr(paper, name, getattr(parsed, name))
    for name in ("authors", "takeaways", "screenshots"):
        if not getattr(paper, name) and getattr(parsed, name):
            setattr(paper, name, list(getattr(parsed, name)))


def _set_links(paper: Paper, parsed: ParsedPaper) -> None:
    """Code / project links from the abstract and this sighting's comment; a link once found is kept."""
    links = extract_links(paper.abstract or parsed.abstract, parsed.comment)
    paper.code_url = links.code_url or paper.code_url
    paper.project_url = links.project_url or paper.project_url


def _is_newer(paper: Paper, post: ParsedPost, parsed: ParsedPaper) -> bool:
    return (post.post_date, _version_num(parsed.arxiv_version)) >= (
        paper.latest_post_date,
        _version_num(paper.version),
    )


def _venue_key(venue: Venue) -> str:
    """Venue and year: a restated or re-tracked acceptance ("oral" added later) is not news again."""
    return f"{(venue.venue or '').casefold()}|{venue.year or ''}"


def _apply_latest(paper: Paper, parsed: ParsedPaper, post: ParsedPost, venue: Venue, now: datetime) -> bool:
    """Make this sighting the paper's current state; True when it newly states an acceptance."""
    was = Venue(paper.accepted, paper.venue, paper.venue_year, paper.venue_track)
    paper.version = parsed.arxiv_version or paper.version
    paper.comment = parsed.comment
    paper.pdf_url = parsed.pdf_url or paper.pdf_url
    _set_links(paper, parsed)
    paper.latest_post_date = max(paper.latest_post_date, post.post_date)
    paper.accepted, paper.venue, paper.venue_year, paper.venue_track = (
        venue.accepted,
        venue.venue,
        venue.year,
        venue.track,
    )
    paper.updated_at = now
    return venue.accepted and (not was.accepted or _venue_key(was) != _venue_key(venue))


_VERDICT_RANK = {"seen": 0, "updated": 1, "new": 2}


def record_posts(session: Session, posts: list[ParsedPost], source: str, now: datetime | None = None) -> IngestStats:
    """Store a payload's posts; idempotent. Caller owns the transaction."""
    now = now or _now()
    stats = IngestStats(posts=len(posts))
    post_rows = _upsert_posts(session, posts, source, now, stats)
    # Oldest post first: feeds list newest first, but "under review" on day 1 then "accepted" on day 2 is news.
    pairs = [(post, paper) for post in sorted(posts, key=lambda p: p.post_date) for paper in post.papers]
    index = _PaperIndex(session, (p for _, p in pairs))
    keys = {_sighting_key(_identity(p), post, p) for post, p in pairs}
    known_keys = set()
    if keys:
        known_keys = set(session.scalars(select(Sighting.sighting_key).where(Sighting.sighting_key.in_(keys))))
    touched: dict[int, str] = {}  # id(Paper) -> the strongest verdict over its occurrences in this payload
    for post, parsed in pairs:
        stats.papers += 1
        paper, verdict = _record_one(session, index, post_rows, known_keys, post, parsed, source, now, stats)
        touched[id(paper)] = max(verdict, touched.get(id(paper), "seen"), key=_VERDICT_RANK.__getitem__)
    for verdict in touched.values():
        setattr(stats, f"papers_{verdict}", getattr(stats, f"papers_{verdict}") + 1)
    session.flush()
    return stats


def _record_one(session, index, post_rows, known_keys, post, parsed, source, now, stats):
    fingerprint = title_fingerprint(parsed.title)
    key = _sighting_key(_identity(parsed), post, parsed)
    paper = index.find(parsed, fingerprint)
    if paper is not None and key in known_keys:
        return paper, "seen"
    verdict = "updated"
    if paper is None:
        paper = _new_paper(parsed, fingerprint, post, now)
        session.add(paper)
        index.add(paper)
        verdict = "new"
    else:
        _fill_missing(paper, parsed)
        index.add(paper)
        paper.first_post_date = min(paper.first_post_date, post.post_date)
    venue = extract_venue(parsed.comment)
    newly_accepted = False
    if verdict == "new":
        _apply_latest(paper, parsed, post, venue, now)  # accepted on first sight: a badge, not an event
    elif _is_newer(paper, post, parsed):
        newly_accepted = _apply_latest(paper, parsed, post, venue, now)
    sighting = Sighting(
        paper=paper,
        post_id=post_rows[(post.post_date, post.topic)].id,
        post_date=post.post_date,
        topic=post.topic,
        version=parsed.arxiv_version,
        comment=parsed.comment,
        sighting_key=key,
        seen_at=now,
        source=source,
    )
    session.add(sighting)
    known_keys.add(key)
    if newly_accepted:
        _record_acceptance(session, paper, sighting, venue, post.post_date, now, stats)
    return paper, verdict


def _record_acceptance(session, paper, sighting, venue: Venue, when: date, now, stats) -> None:
    session.flush()  # ids for the event row
    vkey = _venue_key(venue)
    exists = session.scalar(
        select(AcceptanceEvent.id).where(AcceptanceEvent.paper_id == paper.id, AcceptanceEvent.venue_key == vkey)
    )
    if exists:
        return
    previous = [s.comment for s in paper.sightings if s is not sighting]
    session.add(
        AcceptanceEvent(
            paper_id=paper.id,
            sighting_id=sighting.id,
            venue=venue.venue,
            year=venue.year,
            track=venue.track,
            venue_key=vkey,
            event_date=when,
            previous_comment=previous[-1] if previous else None,
            created_at=now,
        )
    )
    stats.acceptances += 1
