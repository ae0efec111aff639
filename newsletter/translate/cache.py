"""The translation cache: one `translations` row per (paper, hash of the Chinese text, model).

A paper is never translated twice for the same text and model; when upstream rewrites its summary or
takeaways the hash changes, the old row no longer matches and the paper is translated again.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from newsletter.db.models import Translation

_WS = re.compile(r"\s+")


def _norm(text: str | None) -> str:
    return _WS.sub(" ", text or "").strip()


def source_text(summary: str | None, takeaways: list[str] | None) -> tuple[str | None, list[str]]:
    """What is translated: the whitespace-normalised summary (None when empty) and the non-empty takeaways."""
    return _norm(summary) or None, [t for t in (_norm(x) for x in takeaways or ()) if t]


def source_hash(summary: str | None, takeaways: list[str] | None) -> str | None:
    """sha256 of the text to translate; None when there is nothing to translate."""
    summary, items = source_text(summary, takeaways)
    if not summary and not items:
        return None
    raw = json.dumps({"summary": summary, "takeaways": items}, ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


@dataclass
class Item:
    """One paper to translate."""

    paper_id: int
    name: str  # for log lines: the arXiv id, else the start of the title
    summary: str | None
    takeaways: list[str]
    source_hash: str


@dataclass
class Done:
    """A validated translation of one item."""

    item: Item
    summary_en: str | None
    takeaways_en: list[str] = field(default_factory=list)


def lookup(session: Session, wanted: dict[int, str], model: str) -> dict[int, Translation]:
    """The cached translations of papers {paper_id: current source hash} by `model`, for the current text only."""
    if not wanted:
        return {}
    rows = session.scalars(
        select(Translation).where(Translation.paper_id.in_(list(wanted)), Translation.model == model)
    )
    return {r.paper_id: r for r in rows if wanted.get(r.paper_id) == r.source_hash}


def save(session: Session, done: list[Done], model: str) -> int:
    """Store translations; one already stored (a concurrent run) is kept as it is. Returns rows written."""
    if not done:
        return 0
    now = datetime.now(UTC)
    values = [
        {
            "paper_id": d.item.paper_id,
            "source_hash": d.item.source_hash,
            "model": model,
            "summary_en": d.summary_en,
            "takeaways_en": list(d.takeaways_en),
            "created_at": now,
        }
        for d in done
    ]
    dialect = session.get_bind().dialect.name
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect]
    stmt = insert(Translation).values(values).on_conflict_do_nothing().returning(Translation.id)
    return len(session.execute(stmt).all())
