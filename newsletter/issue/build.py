"""Issue stage: choose what one newsletter issue features, order it, and store it.

Rules (README "What an issue contains" repeats them for readers):
- Period: local days in the configured timezone. The issue for date D covers posts dated D; the DAG's data
  interval [D 08:00, D+1 08:00) maps to the days it starts on, so the run on D+1 morning sends D's papers.
- New papers: first posted inside the period, or first posted within `lookback_days` before it and not yet
  featured by any issue (upstream posts late; nothing is silently dropped). A paper featured as new in one
  issue is never featured as new again.
- Highlights: every acceptance event dated inside the period (or in the look-back window and not yet
  highlighted), also for papers featured in earlier issues ("now accepted at ..."). A paper is shown once per
  issue: when it is both new and highlighted, it appears only as a highlight.
- Primary topic: the topic of the paper's earliest sighting (ties: configured topic order, then name); its
  other topics become "also in" tags.
- Order: highlights by prominence (main-conference tracks before workshops; oral, spotlight, highlight before
  the rest), then venue name, then title. Topics in the configured order, then by size (largest first), then
  name. Inside a topic: accepted papers first, then upstream order.
- Storage: one `issues` row per (frequency, issue date) with its items and a content hash. A rebuild for the same
  period gives the same issue; once delivery has started the issue is frozen and its membership never changes.
- Frequencies: a daily issue covers one local day; a weekly one Monday-Sunday (its issue date is the Sunday).
  Each frequency keeps its own memory of what was featured: "featured as new once" and "highlighted once" hold
  per frequency, so a weekly reader gets a paper once even though daily readers had it on Tuesday.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from newsletter.config import IssueSettings
from newsletter.db.models import AcceptanceEvent, IssueItem, IssueRow, Paper
from newsletter.records import Frequency, Highlight, Issue, IssuePaper, TopicSection, Venue
from newsletter.registry.topics import topic_names
from newsletter.store.query import ordered_sightings
from newsletter.translate.cache import lookup, source_hash

TRACK_RANK = {"oral": 0, "spotlight": 1, "highlight": 2, None: 3, "poster": 4, "findings": 5}


@dataclass(frozen=True)
class Period:
    """A span of local days [first, last] in one timezone, and the kind of issue it is for."""

    first: date
    last: date
    timezone: str = "Asia/Shanghai"
    frequency: str = Frequency.DAILY

    @classmethod
    def day(cls, day: date, timezone: str) -> Period:
        return cls(day, day, timezone)

    @classmethod
    def week(cls, day: date, timezone: str) -> Period:
        """The Monday-Sunday week (local days) that contains `day`: the period of a weekly issue."""
        monday = day - timedelta(days=day.weekday())
        return cls(monday, monday + timedelta(days=6), timezone, Frequency.WEEKLY)

    @classmethod
    def of(cls, day: date, timezone: str, frequency: str = Frequency.DAILY) -> Period:
        """The period of the `frequency` issue that covers `day`."""
        return cls.week(day, timezone) if frequency == Frequency.WEEKLY else cls.day(day, timezone)

    @classmethod
    def from_interval(cls, start: datetime, end: datetime, timezone: str) -> Period:
        """The local days an interval starts on: [D 08:00, D+1 08:00) -> D; an empty interval -> its day."""
        tz = ZoneInfo(timezone)
        first = start.astimezone(tz).date()
        last = (end - timedelta(microseconds=1)).astimezone(tz).date() if end > start else first
        if last > first and end.astimezone(tz).time() != time(0):
            last -= timedelta(days=1)  # a partial last day belongs to the next period
        return cls(first, max(first, last), timezone)

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first, time(0), ZoneInfo(self.timezone))

    @property
    def end(self) -> datetime:
        return datetime.combine(self.last + timedelta(days=1), time(0), ZoneInfo(self.timezone))


@dataclass
class _Selection:
    new: list[Paper] = field(default_factory=list)
    events: list[AcceptanceEvent] = field(default_factory=list)


def _featured_elsewhere(session: Session, period: Period, role: str) -> select:
    """Papers (role new) or events (role highlight) in another issue of the same frequency. A paper counts as
    featured whatever its role there: one that was new and accepted inside one period was shown as a highlight
    only, and must not come back as new in the next issue (likely in a weekly issue's seven days)."""
    query = select(IssueItem.paper_id if role == "new" else IssueItem.event_id).join(
        IssueRow, IssueRow.id == IssueItem.issue_id
    )
    query = query.where(IssueRow.frequency == period.frequency, IssueRow.issue_date != period.last)
    return query if role == "new" else query.where(IssueItem.role == role)


def _select(session: Session, period: Period, cfg: IssueSettings) -> _Selection:
    window_start = period.first - timedelta(days=cfg.lookback_days)
    new = session.scalars(
        select(Paper)
        .where(Paper.first_post_date >= window_start, Paper.first_post_date <= period.last)
        .where(Paper.id.not_in(_featured_elsewhere(session, period, "new")))
        .options(selectinload(Paper.sightings))
    ).all()
    events = session.scalars(
        select(AcceptanceEvent)
        .where(AcceptanceEvent.event_date >= window_start, AcceptanceEvent.event_date <= period.last)
        .where(AcceptanceEvent.id.not_in(_featured_elsewhere(session, period, "highlight")))
        .order_by(AcceptanceEvent.id)
    ).all()
    return _Selection(list(new), _latest_event_per_paper(events))


def _latest_event_per_paper(events: list[AcceptanceEvent]) -> list[AcceptanceEvent]:
    latest: dict[int, AcceptanceEvent] = {}
    for ev in events:
        latest[ev.paper_id] = ev
    return list(latest.values())


def _primary_topic(paper: Paper, cfg: IssueSettings) -> tuple[str, list[str]]:
    sightings = ordered_sightings(paper)
    first_date = sightings[0].post_date
    order = {t: i for i, t in enumerate(cfg.topic_order)}
    first_day = sorted({s.topic for s in sightings if s.post_date == first_date}, key=lambda t: (order.get(t, 1e9), t))
    primary = first_day[0]
    others = [t for t in dict.fromkeys(s.topic for s in sightings) if t != primary]
    return primary, others


def _issue_paper(paper: Paper, cfg: IssueSettings) -> IssuePaper:
    primary, others = _primary_topic(paper, cfg)
    return IssuePaper(
        paper_id=paper.id,
        title=paper.title,
        authors=list(paper.authors),
        arxiv_id=paper.arxiv_id,
        abs_url=paper.abs_url,
        pdf_url=paper.pdf_url,
        abstract=paper.abstract,
        abstract_zh=paper.abstract_zh,
        summary_zh=paper.summary_zh,
        takeaways=list(paper.takeaways),
        comment=paper.comment,
        venue=Venue(paper.accepted, paper.venue, paper.venue_year, paper.venue_track),
        primary_topic=primary,
        topics=[primary, *others],
        first_post_date=paper.first_post_date,
        code_url=paper.code_url,
        project_url=paper.project_url,
    )


def _highlight_key(h: Highlight):
    track = h.venue.track
    return (track == "workshop", TRACK_RANK.get(track, 6), (h.venue.venue or "~").casefold(), h.paper.title.casefold())


def _sections(papers: list[IssuePaper], upstream_rank: dict[int, int], cfg: IssueSettings) -> list[TopicSection]:
    groups: dict[str, list[IssuePaper]] = {}
    for p in papers:
        groups.setdefault(p.primary_topic, []).append(p)
    order = {t: i for i, t in enumerate(cfg.topic_order)}
    keys = sorted(groups, key=lambda t: (order.get(t, len(order)), -len(groups[t]), t.casefold()))
    sections = []
    for key in keys:
        members = sorted(groups[key], key=lambda p: (not p.venue.accepted, upstream_rank[p.paper_id]))
        en, zh = topic_names(key)
        sections.append(TopicSection(key, en, zh, members))
    return sections


def _previously_featured(session: Session, paper_ids: list[int], period: Period) -> set[int]:
    """Papers an earlier issue of the same frequency showed: its readers saw them ("featured on ...")."""
    if not paper_ids:
        return set()
    rows = session.scalars(
        select(IssueItem.paper_id)
        .join(IssueRow, IssueRow.id == IssueItem.issue_id)
        .where(
            IssueItem.paper_id.in_(paper_ids),
            IssueRow.frequency == period.frequency,
            IssueRow.issue_date < period.last,
        )
    )
    return set(rows)


def _assemble(session: Session, period: Period, cfg: IssueSettings, sel: _Selection) -> Issue:
    highlighted = {ev.paper_id for ev in sel.events}
    papers = {p.id: p for p in sel.new}
    for ev in sel.events:
        if ev.paper_id not in papers:
            papers[ev.paper_id] = session.get(Paper, ev.paper_id)
    earlier = _previously_featured(session, list(highlighted), period)
    highlights = sorted(
        (
            Highlight(
                _issue_paper(papers[ev.paper_id], cfg),
                Venue(True, ev.venue, ev.year, ev.track),
                ev.event_date,
                ev.paper_id in earlier,
            )
            for ev in sel.events
        ),
        key=_highlight_key,
    )
    rank = {p.id: min(s.id for s in p.sightings) for p in sel.new}
    new = [_issue_paper(p, cfg) for p in sel.new if p.id not in highlighted]
    return Issue(
        issue_id=None,
        issue_date=period.last,
        period_start=period.start.isoformat(),
        period_end=period.end.isoformat(),
        highlights=highlights,
        sections=_sections(new, rank, cfg),
        frequency=str(period.frequency),
    )


def _attach_translations(session: Session, issue: Issue, model: str) -> None:
    """Each paper's cached English translation by `model`, when it was made from the paper's current text."""
    papers = [h.paper for h in issue.highlights] + [p for s in issue.sections for p in s.papers]
    hashes = {p.paper_id: h for p in papers if (h := source_hash(p.summary_zh, p.takeaways))}
    found = lookup(session, hashes, model)
    for p in papers:
        row = found.get(p.paper_id)
        if row is not None:
            p.summary_en, p.takeaways_en = row.summary_en, list(row.takeaways_en or ())


_UNTRANSLATED = {"summary_en": None, "takeaways_en": []}


def _without_empty_translations(node):
    """asdict() output without the translation fields where they are empty: an issue nobody translated keeps
    the hash it had before translations existed (so its stored variants are not re-rendered for nothing)."""
    if isinstance(node, dict):
        return {k: _without_empty_translations(v) for k, v in node.items()
                if not (k in _UNTRANSLATED and v == _UNTRANSLATED[k])}  # fmt: skip
    if isinstance(node, list):
        return [_without_empty_translations(v) for v in node]
    return node


def content_hash(issue: Issue) -> str:
    body = {"highlights": [asdict(h) for h in issue.highlights], "sections": [asdict(s) for s in issue.sections]}
    body = _without_empty_translations(body)
    raw = json.dumps(body, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def _save(session: Session, issue: Issue, period: Period, events: list[AcceptanceEvent]) -> IssueRow:
    now = datetime.now(UTC)
    row = _row(session, period)
    if row is None:
        row = IssueRow(issue_date=issue.issue_date, frequency=str(period.frequency), created_at=now)
        session.add(row)
    row.period_start, row.period_end = period.start, period.end
    row.content_hash, row.updated_at = issue.content_hash, now
    row.n_papers = issue.n_papers + len(issue.highlights)
    row.n_highlights = len(issue.highlights)
    row.items.clear()
    session.flush()
    event_of = {ev.paper_id: ev.id for ev in events}
    position = 0
    for h in issue.highlights:
        row.items.append(
            IssueItem(
                paper_id=h.paper.paper_id,
                role="highlight",
                event_id=event_of[h.paper.paper_id],
                topic=h.paper.primary_topic,
                position=position,
            )
        )
        position += 1
    for section in issue.sections:
        for p in section.papers:
            row.items.append(IssueItem(paper_id=p.paper_id, role="new", topic=section.topic, position=position))
            position += 1
    session.flush()
    return row


def _frozen_selection(session: Session, row: IssueRow) -> _Selection:
    new_ids = [i.paper_id for i in row.items if i.role == "new"]
    event_ids = [i.event_id for i in row.items if i.role == "highlight"]
    new = session.scalars(select(Paper).where(Paper.id.in_(new_ids)).options(selectinload(Paper.sightings))).all()
    events = session.scalars(select(AcceptanceEvent).where(AcceptanceEvent.id.in_(event_ids))).all()
    return _Selection(list(new), list(events))


def _row(session: Session, period: Period) -> IssueRow | None:
    return session.scalar(
        select(IssueRow).where(IssueRow.issue_date == period.last, IssueRow.frequency == period.frequency)
    )


def build_issue(session: Session, period: Period, cfg: IssueSettings, translations: str | None = None) -> Issue | None:
    """Select, order and store the issue for `period` (its frequency included); None when it has nothing to say.
    `translations`: the model whose cached English translations the papers carry (None: none, as without
    [translate])."""
    row = _row(session, period)
    sel = _frozen_selection(session, row) if row is not None and row.frozen else _select(session, period, cfg)
    issue = _assemble(session, period, cfg, sel)
    if translations:
        _attach_translations(session, issue, translations)
    if not issue.highlights and not issue.n_papers:
        if row is not None and not row.frozen:
            session.delete(row)  # its papers moved to another issue: an empty issue must not linger
        return None
    issue.content_hash = content_hash(issue)
    saved = _save(session, issue, period, sel.events) if row is None or not row.frozen else row
    issue.issue_id = saved.id
    return issue


def archive_name(issue_date: date, frequency: str = Frequency.DAILY) -> str:
    """The archive page's name (file stem and URL path under /archive/): the day, or "week-<Monday>"."""
    if frequency == Frequency.WEEKLY:
        return f"week-{(issue_date - timedelta(days=issue_date.weekday())).isoformat()}"
    return issue_date.isoformat()


def issue_lock(issue_date: date, frequency: str = Frequency.DAILY) -> str:
    """The name under which building and freezing one issue take turns (`db.serialize`)."""
    return f"issue:{frequency}:{issue_date.isoformat()}"


def freeze_issue(session: Session, issue_id: int) -> None:
    """Called when delivery starts: from now on a rebuild keeps exactly these papers."""
    row = session.get(IssueRow, issue_id)
    if row is not None:
        row.frozen = True
