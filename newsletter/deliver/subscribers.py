"""Subscribers: validated, normalised addresses with a language mode, a topic selection and a frequency.

Imports never resubscribe someone who unsubscribed, bounced or complained: that person's choice (or their
mailbox's answer) wins over an old spreadsheet. Use `newsletter subscribers set --status active` to override.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import charset_normalizer
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.db.models import Subscriber
from newsletter.records import Frequency, Language, SubscriberStatus
from newsletter.registry.topics import canonical_topic

LANGUAGES = tuple(Language)
STATUSES = tuple(SubscriberStatus)
FREQUENCIES = tuple(Frequency)
REQUIRED_COLUMNS = ("email", "name", "language", "topics")
EXPORT_COLUMNS = (*REQUIRED_COLUMNS, "frequency", "status")  # what `subscribers export` writes (import reads it)
NAME_MAX_CHARS = 100  # a name is a greeting and a To: display name, and a header line has 998 octets at most


class SubscriberError(ValueError):
    pass


def normalise_email(raw: str) -> str:
    """Syntax-checked, lower-cased address (no DNS lookups: imports must work offline)."""
    try:
        info = validate_email((raw or "").strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise SubscriberError(f"invalid email {raw!r}: {exc}") from exc
    return info.normalized.lower()


def check_name(raw: str | None) -> str:
    """A name as typed by an operator: refused (with the reason) when longer than NAME_MAX_CHARS."""
    name = (raw or "").strip()
    if len(name) > NAME_MAX_CHARS:
        raise SubscriberError(f"name is {len(name):,} characters long (at most {NAME_MAX_CHARS})")
    return name


def parse_language(raw: str | None) -> str:
    value = (raw or "").strip().lower() or "bilingual"
    if value not in LANGUAGES:
        raise SubscriberError(f"language must be one of {', '.join(LANGUAGES)}, got {raw!r}")
    return value


def parse_frequency(raw: str | None) -> str:
    """daily (also when empty) or weekly."""
    value = (raw or "").strip().lower() or Frequency.DAILY
    if value not in FREQUENCIES:
        raise SubscriberError(f"frequency must be one of {', '.join(FREQUENCIES)}, got {raw!r}")
    return str(value)


def parse_topics(raw: str | list[str] | None) -> list[str] | None:
    """';'-separated topics (or a list); empty means every topic (None)."""
    items = raw.split(";") if isinstance(raw, str) else list(raw or [])
    topics = [canonical_topic(t.strip()) for t in items if t and t.strip()]
    return sorted(dict.fromkeys(topics)) or None


def _now() -> datetime:
    return datetime.now(UTC)


def get(session: Session, email: str) -> Subscriber | None:
    return session.scalar(select(Subscriber).where(Subscriber.email == normalise_email(email)))


def add(
    session: Session, email: str, name: str = "", language: str = "bilingual", topics=None, frequency: str = "daily"
) -> Subscriber:
    email = normalise_email(email)
    if session.scalar(select(Subscriber).where(Subscriber.email == email)):
        raise SubscriberError(f"{email} is already subscribed (use `subscribers set` to change it)")
    now = _now()
    sub = Subscriber(
        email=email,
        name=check_name(name),
        language=parse_language(language),
        topics=parse_topics(topics),
        frequency=parse_frequency(frequency),
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


def update(sub: Subscriber, name=None, language=None, topics=None, all_topics: bool = False, frequency=None) -> bool:
    before = (sub.name, sub.language, sub.topics, sub.frequency)
    if name is not None:
        sub.name = check_name(name)
    if language is not None:
        sub.language = parse_language(language)
    if all_topics:
        sub.topics = None
    elif topics is not None:
        sub.topics = parse_topics(topics)
    if frequency is not None:
        sub.frequency = parse_frequency(frequency)
    changed = before != (sub.name, sub.language, sub.topics, sub.frequency)
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
    notes: list[str] = field(default_factory=list)  # "row N: what was changed on the way in"
    encoding: str = "utf-8"  # how the file was read, e.g. "gb18030 (detected)"


# ---- reading a CSV file ----------------------------------------------------------------------------------

_BOMS = (  # UTF-32 first: its little-endian BOM starts with the UTF-16 one
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# A short file fits several code pages about equally well (a few Chinese names read as Korean too), so what
# Excel writes on Chinese Windows (GB18030) and on Western Windows (cp1252) is preferred when it fits; the report
# says which encoding was used, and `--encoding` overrides it.
_NEAR_TIE = 0.03  # charset-normalizer "chaos" (share of implausible characters) within which cp1252 wins
_BINARY = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


def decode_csv(data: bytes, encoding: str | None = None) -> tuple[str, str]:
    """(text, how it was read) of a subscriber file: the given encoding, else a byte-order mark, else UTF-8,
    else what charset-normalizer finds. Anything that is not text is refused with one reason."""
    if data.startswith(b"PK\x03\x04"):
        raise SubscriberError("a ZIP archive (an .xlsx workbook?), not a CSV: save it as CSV")
    if encoding:
        return _text(data, encoding), encoding
    for bom, name in _BOMS:
        if data.startswith(bom):
            return _text(data, name), f"{name.removesuffix('-sig')} (byte-order mark)"
    try:
        return _text(data, "utf-8"), "utf-8"
    except SubscriberError:
        pass
    results = charset_normalizer.from_bytes(data)
    best = results.best()
    if best is None:
        raise SubscriberError("not a text file (no encoding fits): a CSV is expected")
    if _common_chinese(data):
        return _text(data, "gb18030"), "gb18030 (detected)"
    chosen = next((m for m in results if m.encoding == "cp1252" and m.chaos <= best.chaos + _NEAR_TIE), best)
    return _text(data, chosen.encoding), f"{chosen.encoding} (detected)"


def _common_chinese(data: bytes) -> bool:
    """GB18030 that reads as common Chinese: nearly all of its characters in GB2312, most in its first level
    (the 3,755 commonest, where names are). Latin-1 or cp1251 text often decodes as GB18030 too ("ü" + "l" is a
    valid pair), but into rare characters: its lower-case letters are bytes past the first level."""
    try:
        text = data.decode("gb18030")
    except UnicodeDecodeError:
        return False
    levels = [_gb2312_level(ch) for ch in set(text) if ord(ch) > 127]
    if not levels:
        return False
    return sum(level > 0 for level in levels) >= 0.9 * len(levels) and levels.count(1) >= 0.5 * len(levels)


def _gb2312_level(ch: str) -> int:
    """1: a first-level (common) hanzi, 2: anything else in GB2312, 0: not in GB2312."""
    try:
        lead = ch.encode("gb2312")[0]
    except UnicodeEncodeError:
        return 0
    return 1 if 0xB0 <= lead <= 0xD7 else 2


def _text(data: bytes, encoding: str) -> str:
    try:
        text = data.decode(encoding)
    except LookupError as exc:
        raise SubscriberError(f"unknown encoding {encoding!r}") from exc
    except UnicodeDecodeError as exc:
        raise SubscriberError(f"not {encoding}: {exc.reason} at byte {exc.start}") from exc
    if _BINARY.search(text):
        raise SubscriberError("not a text file (control characters): a CSV is expected")
    return text


def import_file(session: Session, path: Path, encoding: str | None = None) -> ImportReport:
    """`import_csv` of a file in whatever encoding a spreadsheet saved it (see `decode_csv`)."""
    try:
        text, used = decode_csv(path.read_bytes(), encoding)
    except SubscriberError as exc:
        raise SubscriberError(f"{path}: {exc}") from exc
    report = import_csv(session, text)
    report.encoding = used
    return report


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
            _import_row(session, row, seen, report, lineno)
        except SubscriberError as exc:
            report.rejected.append(f"row {lineno}: {exc}")
    session.flush()
    return report


def _import_row(session: Session, row: dict, seen: set[str], report: ImportReport, lineno: int) -> None:
    email = normalise_email(row.get("email") or "")
    if email in seen:
        raise SubscriberError(f"{email} appears twice in the file")
    seen.add(email)
    language, topics = parse_language(row.get("language")), parse_topics(row.get("topics"))
    # No frequency column: new rows are daily and existing ones keep theirs; an empty cell is daily.
    frequency = parse_frequency(row["frequency"]) if "frequency" in row else None
    name = (row.get("name") or "").strip()
    if len(name) > NAME_MAX_CHARS:  # a spreadsheet cell gone wrong: keep the subscriber, cut the name
        report.notes.append(f"row {lineno}: {email}: name cut from {len(name):,} to {NAME_MAX_CHARS} characters")
        name = name[:NAME_MAX_CHARS].rstrip()
    sub = session.scalar(select(Subscriber).where(Subscriber.email == email))
    if sub is None:
        add(session, email, name, language, topics, frequency or Frequency.DAILY)
        report.added += 1
    elif sub.status != "active":
        report.kept_out.append(f"{email}: {sub.status}, not resubscribed by an import")
    elif update(sub, name=name, language=language, topics=topics or [], all_topics=topics is None, frequency=frequency):
        report.updated += 1
    else:
        report.unchanged += 1


def active(session: Session) -> list[Subscriber]:
    return list(session.scalars(select(Subscriber).where(Subscriber.status == "active").order_by(Subscriber.id)))


def export_csv(session: Session) -> str:
    """Every subscriber as CSV (EXPORT_COLUMNS, by address): what `import_csv` reads back unchanged."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    for sub in session.scalars(select(Subscriber).order_by(Subscriber.email)):
        writer.writerow([sub.email, sub.name, sub.language, ";".join(sub.topics or []), sub.frequency, sub.status])
    return buffer.getvalue()
