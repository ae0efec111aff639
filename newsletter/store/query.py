"""Read-side queries over the paper store, shared by the CLI and the issue stage."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from newsletter.db.models import Paper, Sighting


@dataclass(frozen=True)
class PaperFilter:
    since: date | None = None  # post date, inclusive
    until: date | None = None  # post date, inclusive
    topic: str | None = None
    venue: str | None = None  # accepted at this venue (case-insensitive)
    accepted: bool = False


def find_papers(session: Session, flt: PaperFilter, limit: int | None = None) -> list[Paper]:
    """Papers with at least one sighting matching the date/topic filter, in first-post order."""
    sub = select(Sighting.paper_id)
    if flt.since:
        sub = sub.where(Sighting.post_date >= flt.since)
    if flt.until:
        sub = sub.where(Sighting.post_date <= flt.until)
    if flt.topic:
        sub = sub.where(func.lower(Sighting.topic) == flt.topic.lower())
    query = select(Paper).where(Paper.id.in_(sub)).options(selectinload(Paper.sightings))
    if flt.accepted or flt.venue:
        query = query.where(Paper.accepted.is_(True))
    if flt.venue:
        query = query.where(func.lower(Paper.venue) == flt.venue.lower())
    query = query.order_by(Paper.first_post_date, Paper.id)
    if limit:
        query = query.limit(limit)
    return list(session.scalars(query))


def ordered_sightings(paper: Paper) -> list[Sighting]:
    return sorted(paper.sightings, key=lambda s: (s.post_date, s.seen_at, s.id))


def paper_topics(paper: Paper) -> list[str]:
    """Topics in the order the paper was first posted under them."""
    seen: dict[str, None] = {}
    for s in ordered_sightings(paper):
        seen.setdefault(s.topic, None)
    return list(seen)


def paper_record(paper: Paper) -> dict:
    """The stable JSON shape of `newsletter papers --format jsonl`."""
    sightings: list[dict] = []
    distinct: set[tuple] = set()
    for s in ordered_sightings(paper):
        key = (s.post_date, s.topic, s.version, s.comment)
        if key not in distinct:
            distinct.add(key)
            sightings.append(
                {"post_date": s.post_date.isoformat(), "topic": s.topic, "version": s.version, "comment": s.comment}
            )
    return {
        "arxiv_id": paper.arxiv_id,
        "title": paper.title,
        "authors": list(paper.authors),
        "topics": paper_topics(paper),
        "first_seen": paper.first_post_date.isoformat(),
        "first_seen_at": paper.first_seen.isoformat(),
        "version": paper.version,
        "venue": {
            "accepted": paper.accepted,
            "venue": paper.venue,
            "year": paper.venue_year,
            "track": paper.venue_track,
        },
        "abs_url": paper.abs_url,
        "pdf_url": paper.pdf_url,
        "code_url": paper.code_url,
        "project_url": paper.project_url,
        "sightings": sightings,
    }
