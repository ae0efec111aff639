"""SQLAlchemy 2 models: the paper store. Schema changes go through Alembic (newsletter/migrations)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class FetchLog(Base):
    """One row per payload fetched or read: what the raw archive holds and why."""

    __tablename__ = "fetch_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(200), index=True)
    location: Mapped[str] = mapped_column(Text)  # URL or file path
    fetched_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    http_status: Mapped[int | None] = mapped_column(Integer)  # None for local files
    n_bytes: Mapped[int] = mapped_column(Integer, default=0)
    sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    etag: Mapped[str | None] = mapped_column(Text)
    last_modified: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)


class Post(Base):
    """One digest post. Identity is (post_date, topic): upstream URLs changed once."""

    __tablename__ = "posts"
    __table_args__ = (UniqueConstraint("post_date", "topic", name="uq_post_date_topic"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    post_date: Mapped[date] = mapped_column(Date, index=True)
    topic: Mapped[str] = mapped_column(String(200))
    heading_date: Mapped[date | None] = mapped_column(Date)
    url: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(200))
    n_papers: Mapped[int] = mapped_column(Integer, default=0)
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Paper(Base):
    """One paper: one arXiv id without version, or a title fingerprint when the layout has no id."""

    __tablename__ = "papers"

    id: Mapped[int] = mapped_column(primary_key=True)
    arxiv_id: Mapped[str | None] = mapped_column(String(32), unique=True)
    fingerprint: Mapped[str] = mapped_column(String(400), index=True)
    title: Mapped[str] = mapped_column(Text)
    authors: Mapped[list] = mapped_column(JSON, default=list)
    abstract: Mapped[str] = mapped_column(Text, default="")
    abstract_zh: Mapped[str | None] = mapped_column(Text)
    summary_zh: Mapped[str | None] = mapped_column(Text)
    takeaways: Mapped[list] = mapped_column(JSON, default=list)
    screenshots: Mapped[list] = mapped_column(JSON, default=list)
    abs_url: Mapped[str | None] = mapped_column(Text)
    pdf_url: Mapped[str | None] = mapped_column(Text)
    # State of the latest sighting (by post date, then version): what the newsletter shows.
    version: Mapped[str | None] = mapped_column(String(8))
    comment: Mapped[str | None] = mapped_column(Text)
    accepted: Mapped[bool] = mapped_column(Boolean, default=False)
    venue: Mapped[str | None] = mapped_column(String(100))
    venue_year: Mapped[int | None] = mapped_column(Integer)
    venue_track: Mapped[str | None] = mapped_column(String(50))
    latest_post_date: Mapped[date] = mapped_column(Date)
    first_post_date: Mapped[date] = mapped_column(Date, index=True)
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    sightings: Mapped[list[Sighting]] = relationship(back_populates="paper", order_by="Sighting.id")


class Sighting(Base):
    """A paper seen in one post, with the version and comment that post showed. Never deleted."""

    __tablename__ = "sightings"
    __table_args__ = (UniqueConstraint("sighting_key", name="uq_sighting_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    paper_id: Mapped[int] = mapped_column(ForeignKey("papers.id"), index=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id"), index=True)
    post_date: Mapped[date] = mapped_column(Date)
    topic: Mapped[str] = mapped_column(String(200))
    version: Mapped[str | None] = mapped_column(String(8))
    comment: Mapped[str | None] = mapped_column(Text)
    # sha1 of (paper, post date, topic, version, comment): makes re-ingesting a payload a no-op.
    sighting_key: Mapped[str] = mapped_column(String(40))
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    source: Mapped[str] = mapped_column(String(200))

    paper: Mapped[Paper] = relationship(back_populates="sightings")


class AcceptanceEvent(Base):
    """A sighting whose comment states an acceptance the paper's previous sighting did not."""

    __tablename__ = "acceptance_events"
    __table_args__ = (
        UniqueConstraint("paper_id", "venue_key", name="uq_acceptance_paper_venue"),
        Index("ix_acceptance_event_date", "event_date"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    paper_id: Mapped[int] = mapped_column(ForeignKey("papers.id"), index=True)
    sighting_id: Mapped[int] = mapped_column(ForeignKey("sightings.id"))
    venue: Mapped[str | None] = mapped_column(String(100))
    year: Mapped[int | None] = mapped_column(Integer)
    track: Mapped[str | None] = mapped_column(String(50))
    venue_key: Mapped[str] = mapped_column(String(200))  # venue|year, for idempotence
    event_date: Mapped[date] = mapped_column(Date)  # post date of the sighting that announced it
    previous_comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
