"""Subscribers: validated, normalised addresses with a language mode and a topic selection.

Imports never resubscribe someone who unsubscribed, bounced or complained: that person's choice (or their
mailbox's answer) wins over an old spreadsheet. Use `newsletter subscribers set --status active` to override.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import UTC, datetime

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.db.models import Subscriber
from newsletter.records import Language, SubscriberStatus
from newsletter.registry.topics import canonical_topic

LANGUAGES = tuple(Language)
STATUSES = tuple(SubscriberStatus)
REQUIRED_COLUMNS = ("email", "name", "language", "topics")


class SubscriberError(ValueError):
    pass


def normalise_email(raw: str) -> str:
    """Syntax-checked, lower-cased address (no DNS lookups: imports must work offline)."""
    try:
        info = validate_email((raw or "").strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise SubscriberError(f"invalid email {raw!r}: {exc}") from exc
    return info.normalized.lower()


def parse_language(raw: str | None) -> str:
    value = (raw or "").strip().lower() or "bilingual"
    if value not in LANGUAGES:
        raise SubscriberError(f"language must be one of {', '.join(LANGUAGES)}, got {raw!r}")
    return value


def parse_topics(raw: str | list[str] | None) -> list[str] | None:
    """';'-separated topics (or a list); empty means every topic (None)."""
    items = raw.split(";") if isinstance(raw, str) else list(raw or [])
    topics = [canonical_topic(t.strip()) for t in items if t and t.strip()]
    return sorted(dict.fromkeys(topics)) or None


def _now() -> datetime:
    return datetime.now(UTC)


def get(session: Session, email: str) -> Subscriber | None:
    return session.scalar(select(Subscriber).where(Subscriber.email == normalise_email(email)))


def add(session: Session, email: str, name: str = "", language: str = "bilingual", topics=None) -> Subscriber:
    email = normalise_email(email)
    if session.scalar(select(Subscriber).where(Subscriber.email == email)):
        raise SubscriberError(f"{email} is already subscribed (use `subscribers set` to change it)")
    now = _now()
    sub = Subscriber(
        email=email,
        name=(name or "").strip(),
        language=parse_language(language),
        topics=parse_topics(topics),
        status="active",
        created_at=now,
        updated_at=now,
    )
    session.add(sub)
    session.flush()
    return sub


def set_status(sub: Subscriber, status: str, reason: str | None = None) -> bool:
    """Change status; False when it already was (one-click unsubscribe is idempotent)."""
    if status not in STATUSES:
        raise SubscriberError(f"status must be one of {', '.join(STATUSES)}")
    if sub.status == status:
        return False
    now = _now()
    sub.status, sub.status_reason, sub.status_changed_at, sub.updated_at = status, reason, now, now
    return True


def update(sub: Subscriber, name=None, language=None, topics=None, all_topics: bool = False) -> bool:
    before = (sub.name, sub.language, sub.topics)
    if name is not None:
        sub.name = name.strip()
    if language is not None:
        sub.language = parse_language(language)
    if all_topics:
        sub.topics = None
    elif topics is not None:
        sub.topics = parse_topics(topics)
    changed = before != (sub.name, sub.language, sub.topics)
    if changed:
        sub.updated_at = _now()
    return changed


@dataclass
class ImportReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    kept_out: list[str] = field(default_factory=list)  # unsubscribed/bounced people the file lists
    rejected: list[str] = field(default_factory=list)  # "row N: reason"


def import_csv(session: Session, text: str) -> ImportReport:
    """Upsert subscribers from CSV (header with at least email,name,language,topics); bad rows are reported."""
    report = ImportReport()
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip().lower() for h in reader.fieldnames or []]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise SubscriberError(f"CSV header lacks column(s) {', '.join(missing)} (need {','.join(REQUIRED_COLUMNS)})")
    reader.fieldnames = header
    seen: set[str] = set()
    for lineno, row in enumerate(reader, start=2):
        try:
            _import_row(session, row, seen, report)
        except SubscriberError as exc:
            report.rejected.append(f"row {lineno}: {exc}")
    session.flush()
    return report


def _import_row(session: Session, row: dict, seen: set[str], report: ImportReport) -> None:
    email = normalise_email(row.get("email") or "")
    if email in seen:
        raise SubscriberError(f"{email} appears twice in the file")
    seen.add(email)
    language, topics = parse_language(row.get("language")), parse_topics(row.get("topics"))
    name = (row.get("name") or "").strip()
    sub = session.scalar(select(Subscriber).where(Subscriber.email == email))
    if sub is None:
        add(session, email, name, language, topics)
        report.added += 1
    elif sub.status != "active":
        report.kept_out.append(f"{email}: {sub.status}, not resubscribed by an import")
    elif update(sub, name=name, language=language, topics=topics or [], all_topics=topics is None):
        report.updated += 1
    else:
        report.unchanged += 1


def active(session: Session) -> list[Subscriber]:
    return list(session.scalars(select(Subscriber).where(Subscriber.status == "active").order_by(Subscriber.id)))
