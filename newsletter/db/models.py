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
from sqlalchemy import false as sa_false
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
    # True once the payload's posts are in the store. A payload archived but not stored (parse error, a lost
    # race) must be fetched and read again: its validators are not used for conditional GET.
    stored: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())


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
    code_url: Mapped[str | None] = mapped_column(Text)  # registry.links: first code link in abstract / comment
    project_url: Mapped[str | None] = mapped_column(Text)
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


class IssueRow(Base):
    """One newsletter issue: a period and the papers it features. Rebuilt identically for the same period."""

    __tablename__ = "issues"
    __table_args__ = (UniqueConstraint("frequency", "issue_date", name="uq_issue_frequency_date"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    issue_date: Mapped[date] = mapped_column(Date)  # the period's last local day (a weekly issue: its Sunday)
    # daily | weekly: each frequency has its own issues, and a paper is featured as new once per frequency.
    frequency: Mapped[str] = mapped_column(String(8), default="daily", server_default="daily")
    period_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    period_end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    content_hash: Mapped[str] = mapped_column(String(64))
    n_papers: Mapped[int] = mapped_column(Integer, default=0)
    n_highlights: Mapped[int] = mapped_column(Integer, default=0)
    frozen: Mapped[bool] = mapped_column(Boolean, default=False)  # delivery started: membership never changes
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    items: Mapped[list[IssueItem]] = relationship(
        back_populates="issue", order_by="IssueItem.position", cascade="all, delete-orphan"
    )


class IssueItem(Base):
    """A paper featured in an issue: as new (role 'new') or as an acceptance highlight (role 'highlight')."""

    __tablename__ = "issue_items"
    __table_args__ = (UniqueConstraint("issue_id", "paper_id", name="uq_issue_paper"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    issue_id: Mapped[int] = mapped_column(ForeignKey("issues.id", ondelete="CASCADE"), index=True)
    paper_id: Mapped[int] = mapped_column(ForeignKey("papers.id"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    event_id: Mapped[int | None] = mapped_column(ForeignKey("acceptance_events.id"))
    topic: Mapped[str] = mapped_column(String(200))  # primary topic at build time
    position: Mapped[int] = mapped_column(Integer)

    issue: Mapped[IssueRow] = relationship(back_populates="items")


class Subscriber(Base):
    """A recipient with their language mode and topic selection (None = all topics)."""

    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)  # normalised: see subscribers.normalise_email
    name: Mapped[str] = mapped_column(String(200), default="")
    language: Mapped[str] = mapped_column(String(16), default="bilingual")  # en | zh | bilingual
    topics: Mapped[list | None] = mapped_column(JSON)  # None: every topic
    frequency: Mapped[str] = mapped_column(String(8), default="daily", server_default="daily")  # daily | weekly
    status: Mapped[str] = mapped_column(String(16), default="active", index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status_changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status_reason: Mapped[str | None] = mapped_column(Text)


class SignupRequest(Base):
    """One sign-up email to send: a confirmation request (with the choices made on the form, applied when it is
    confirmed) or the welcome after confirming. Created before anything is sent and claimed (pending -> sending)
    by exactly one sender, so each request gets at most one email; the rows also count for the rate limits."""

    __tablename__ = "signup_requests"
    __table_args__ = (Index("ix_signup_requests_email_created", "email", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # confirm | welcome
    email: Mapped[str] = mapped_column(String(320))  # the address the email goes to
    client: Mapped[str | None] = mapped_column(String(64), index=True)  # keyed hash of the client address
    name: Mapped[str] = mapped_column(String(200), default="")
    language: Mapped[str] = mapped_column(String(16), default="bilingual")
    topics: Mapped[list | None] = mapped_column(JSON)  # None: every topic
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|sending|sent|failed
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # of the confirmation link
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Delivery(Base):
    """The ledger: one row per (issue, subscriber). Its state machine is what makes sending exactly-once."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("issue_id", "subscriber_id", name="uq_delivery_issue_subscriber"),
        Index("ix_deliveries_issue_status", "issue_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    issue_id: Mapped[int] = mapped_column(ForeignKey("issues.id"))
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|sending|sent|failed|bounced
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str] = mapped_column(String(300))
    variant: Mapped[str | None] = mapped_column(String(300))
    worker: Mapped[str | None] = mapped_column(String(200))
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class IssueVariant(Base):
    """A rendered, CSS-inlined variant (language x topic selection) of an issue, shared by every sender."""

    __tablename__ = "issue_variants"
    __table_args__ = (UniqueConstraint("issue_id", "variant_key", name="uq_issue_variant"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    issue_id: Mapped[int] = mapped_column(ForeignKey("issues.id", ondelete="CASCADE"), index=True)
    variant_key: Mapped[str] = mapped_column(String(300))  # "<lang>|<topic;topic>" ("" = all topics)
    subject: Mapped[str] = mapped_column(Text)
    preheader: Mapped[str] = mapped_column(Text, default="")
    html: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    html_encoded_size: Mapped[int] = mapped_column(Integer)
    n_full: Mapped[int] = mapped_column(Integer, default=0)
    n_listed: Mapped[int] = mapped_column(Integer, default=0)
    content_hash: Mapped[str] = mapped_column(String(64))  # the issue's hash when rendered
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class OpenAlert(Base):
    """An outage that has been alerted on and has not ended yet (e.g. weekdays without new papers). The row
    exists from the check that first found the condition until the first check that finds it cleared: the
    alert emails once per outage, when its row is created."""

    __tablename__ = "open_alerts"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)  # what is wrong, e.g. "no-new-papers"
    since: Mapped[date] = mapped_column(Date)  # the day the outage was first seen
    last_seen: Mapped[date] = mapped_column(Date)  # the latest day that still showed it
    opened_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Translation(Base):
    """A machine translation of one paper's Chinese summary and takeaways into English (`newsletter.translate`).
    Keyed by what was translated (`source_hash` of the Chinese text) and by whom (`model`): a paper is never
    translated twice, and a changed source text is a new key, so it is translated again."""

    __tablename__ = "translations"
    __table_args__ = (UniqueConstraint("paper_id", "source_hash", "model", name="uq_translation_source_model"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    paper_id: Mapped[int] = mapped_column(ForeignKey("papers.id", ondelete="CASCADE"), index=True)
    source_hash: Mapped[str] = mapped_column(String(64))  # sha256 of the summary and takeaways translated
    model: Mapped[str] = mapped_column(String(200))
    summary_en: Mapped[str | None] = mapped_column(Text)
    takeaways_en: Mapped[list] = mapped_column(JSON, default=list)  # one per Chinese takeaway, same order
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
