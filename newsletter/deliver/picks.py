"""Per-subscriber "For you" picks at send time (#11): one Ranker per sender and issue, every subscriber of a
claimed batch ranked in one call, and the pick's markup joined from the variant's pre-rendered pieces.

A pick never blocks a send: whatever goes wrong here (a broken stored rendering, a ranking error) is logged and
the subscriber gets the plain variant, as a subscriber without interests does.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sqlalchemy.engine import Connection

from newsletter.issue import recommend
from newsletter.render.variant import ForYou

log = logging.getLogger(__name__)


def foryou_of(variant: Any) -> ForYou | None:
    """A variant's pick rendering: a RenderedVariant's `foryou`, or a stored IssueVariant's JSON."""
    value = getattr(variant, "foryou", None)
    if value is None or isinstance(value, ForYou):
        return value
    return ForYou.from_dict(value)


def interests_of(sub: Any) -> recommend.Interests:
    return recommend.Interests.of(getattr(sub, "keywords", None), getattr(sub, "seeds", None))


class Picker:
    """Ranks an issue's papers for subscribers; built lazily on the first subscriber with interests."""

    def __init__(self, issue_id: int) -> None:
        self.issue_id = issue_id
        self.ranker: recommend.Ranker | None = None
        self.masks: dict[str, np.ndarray] = {}

    def _ranker(self, conn: Connection) -> recommend.Ranker:
        if self.ranker is None:
            self.ranker = recommend.Ranker(recommend.stored_issue_docs(conn, self.issue_id))
        return self.ranker

    def _mask(self, key: str, foryou: ForYou) -> np.ndarray:
        mask = self.masks.get(key)
        if mask is None:
            ids = {int(k) for k in foryou.items}
            mask = self.masks[key] = np.array([p.paper_id in ids for p in self.ranker.papers], dtype=bool)
        return mask

    def picks(
        self, conn: Connection, wanted: Sequence[tuple[str, ForYou, recommend.Interests]]
    ) -> list[tuple[str, str]]:
        """The (html, text) pick of each (variant key, its ForYou, interests); ('', '') when nothing matched."""
        if not wanted:
            return []
        ranker = self._ranker(conn)
        unknown = {
            s.arxiv_id
            for _, _, i in wanted
            for s in i.seeds
            if s.arxiv_id and not s.text and s.arxiv_id not in ranker.index and s.arxiv_id not in ranker.seed_texts
        }
        if unknown:
            found = recommend.seed_texts(conn, unknown)
            ranker.seed_texts.update({k: found.get(k, "") for k in unknown})  # "" : asked once, not in the store
        top = max(f.top_k for _, f, _ in wanted)
        ranked = ranker.rank([i for _, _, i in wanted], top, [self._mask(k, f) for k, f, _ in wanted])
        return [f.pick([(p.paper_id, p.reason) for p in r]) for (_, f, _), r in zip(wanted, ranked, strict=True)]


def batch_picks(
    picker: Picker, conn: Connection, rows: Sequence[Any], subs: Mapping[int, Any], foryou: Mapping[str, ForYou | None]
) -> dict[int, tuple[str, str]]:
    """Delivery id -> (html, text) pick, for the rows whose subscriber has interests and whose variant has a pick
    rendering. Never raises: a failure is logged and those rows go out without a pick."""
    todo = []
    for row in rows:
        sub = subs.get(row.subscriber_id)
        f = foryou.get(row.variant)
        if sub is None or f is None:
            continue
        wanted = interests_of(sub)
        if wanted:
            todo.append((row.id, (row.variant, f, wanted)))
    if not todo:
        return {}
    try:
        found = picker.picks(conn, [w for _, w in todo])
    except Exception:  # a pick is a bonus: the issue goes out without it
        log.exception("issue %s: cannot rank the 'For you' picks of %d subscriber(s)", picker.issue_id, len(todo))
        return {}
    return {did: pick for (did, _), pick in zip(todo, found, strict=True) if pick[0]}
