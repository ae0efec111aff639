"""The typed records that flow between stages (parse -> store -> issue -> render)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

# ---- vocabularies shared by every stage: the values are what the database stores and JSON output shows ------


class Language(StrEnum):
    """A subscriber's language mode, and the language of a rendered variant."""

    EN = "en"
    ZH = "zh"
    BILINGUAL = "bilingual"


class Frequency(StrEnum):
    """How often a subscriber gets an issue, and which kind an issue is (README "Daily or weekly")."""

    DAILY = "daily"
    WEEKLY = "weekly"


class SourceKind(StrEnum):
    """How a configured source is read (see README "Configure")."""

    FEED = "feed"  # an Atom/RSS feed, by URL or file
    MARKDOWN = "markdown"  # a folder of Hexo Markdown posts
    TEXT = "text"  # plain-text digest copies


class SubscriberStatus(StrEnum):
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    PENDING = "pending"  # signed up on the web, not confirmed yet: gets nothing but the confirmation email


class DeliveryStatus(StrEnum):
    """A ledger row's state (docs/architecture.md, "Delivery")."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    BOUNCED = "bounced"
    SKIPPED = "skipped"


class TlsMode(StrEnum):
    """How an SMTP connection is secured: none, STARTTLS after connecting, or TLS from the start."""

    NONE = "none"
    STARTTLS = "starttls"
    SSL = "ssl"


@dataclass(frozen=True)
class Venue:
    """Where a paper was accepted, as read from its arXiv comment."""

    accepted: bool = False
    venue: str | None = None
    year: int | None = None
    track: str | None = None

    def as_dict(self) -> dict:
        return {"accepted": self.accepted, "venue": self.venue, "year": self.year, "track": self.track}


@dataclass
class ParsedPaper:
    """One paper as one digest post shows it. Text only: never upstream markup."""

    title: str
    authors: list[str] = field(default_factory=list)
    abstract: str = ""  # English abstract
    abstract_zh: str | None = None  # Chinese translation (2025 layout only)
    summary_zh: str | None = None  # None when missing or LLM error text
    takeaways: list[str] = field(default_factory=list)
    arxiv_id: str | None = None  # without version, e.g. "2412.03493"
    arxiv_version: str | None = None  # e.g. "v1"
    abs_url: str | None = None
    pdf_url: str | None = None  # the [PDF](...) link as upstream wrote it
    comment: str | None = None  # arXiv comment, whitespace-normalised
    screenshots: list[str] = field(default_factory=list)
    unrendered: bool = False  # found in raw Markdown left inside the HTML
    dup_in_entry: bool = False  # second copy of a digest repeated in one post


@dataclass
class ParsedPost:
    """One digest post: one topic on one day. Identity is (post_date, topic)."""

    topic: str
    post_date: date  # date folder of the permalink / file name, else heading date
    heading_date: date | None = None  # first "YYYY-MM-DD 更新" heading
    url: str | None = None
    published: str | None = None
    papers: list[ParsedPaper] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    skipped_headings: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.post_date.isoformat()}/{self.topic}"


# ---- issue stage -> render stage -------------------------------------------------------------------------


@dataclass
class IssuePaper:
    """A paper as an issue presents it (built from the store; text only)."""

    paper_id: int
    title: str
    authors: list[str]
    arxiv_id: str | None
    abs_url: str | None
    pdf_url: str | None
    abstract: str
    abstract_zh: str | None
    summary_zh: str | None
    takeaways: list[str]
    comment: str | None
    venue: Venue
    primary_topic: str  # upstream topic key, e.g. "3DGS"
    topics: list[str]  # every topic it was posted under, primary first
    first_post_date: date
    code_url: str | None = None  # registry.links: a repository or model
    project_url: str | None = None  # a project page
    # Machine translation of summary_zh / takeaways ([translate]); empty when off or not translated yet.
    summary_en: str | None = None
    takeaways_en: list[str] = field(default_factory=list)  # one per takeaway, same order


@dataclass
class Highlight:
    """An acceptance event inside the issue's period."""

    paper: IssuePaper
    venue: Venue
    event_date: date
    previously_featured: bool  # featured as new in an earlier issue: "now accepted at ..."


@dataclass
class TopicSection:
    topic: str  # upstream key
    name_en: str
    name_zh: str
    papers: list[IssuePaper]


@dataclass
class Issue:
    issue_id: int | None
    issue_date: date  # the newsletter date (end of the period, local time)
    period_start: str  # ISO datetimes with offset
    period_end: str
    highlights: list[Highlight]
    sections: list[TopicSection]
    content_hash: str = ""
    archive_url: str = ""
    frequency: str = Frequency.DAILY  # weekly: period_start..period_end is a Monday-Sunday week

    @property
    def n_papers(self) -> int:
        return sum(len(s.papers) for s in self.sections)


@dataclass(frozen=True)
class VariantSpec:
    """One rendering of an issue: a language mode and a topic selection. Its key names stored variants and
    ledger rows alike: "<lang>|<topic;topic>" with topics sorted, "<lang>|" for every topic."""

    lang: str
    topics: frozenset[str] | None  # None: every topic

    @property
    def key(self) -> str:
        return f"{self.lang}|{';'.join(sorted(self.topics or ()))}"

    @classmethod
    def parse(cls, key: str) -> VariantSpec:
        lang, _, topics = key.partition("|")
        return cls(lang, frozenset(topics.split(";")) if topics else None)
