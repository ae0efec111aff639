"""Shared by the benchmarks (and the tests): the issue of the largest real day in the corpus, a premailer counter."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS_FEEDS = ROOT.parent / "shared" / "corpus" / "feeds"


def largest_snapshot() -> Path | None:
    feeds = sorted(CORPUS_FEEDS.glob("*.xml"), key=lambda p: p.stat().st_size)
    return feeds[-1] if feeds else None


def corpus_settings(workdir: Path):
    from newsletter.config import load_settings

    base = load_settings(ROOT / "newsletter.toml")
    return replace(base, database_url=f"sqlite:///{workdir}/corpus.db", archive_dir=str(workdir / "raw"))


def largest_day_issue(workdir: Path):
    """Ingest the largest snapshot, build its issues day by day (as the schedule would) and return
    (settings, the issue with the most papers). None when the corpus is absent."""
    from sqlalchemy import select

    from newsletter.db import session_scope
    from newsletter.db.models import Post
    from newsletter.pipeline import steps as pipeline
    from newsletter.pipeline.ingest import ingest_file

    snapshot = largest_snapshot()
    if snapshot is None:
        return None
    settings = corpus_settings(workdir)
    ingest_file(settings, snapshot, kind="feed", source="corpus")
    with session_scope(settings.database_url) as session:
        days = sorted(set(session.scalars(select(Post.post_date))))
    issues = [pipeline.build_step(settings, pipeline.period_for(settings, day))[0] for day in days]
    best = max((i for i in issues if i is not None), key=lambda i: i.n_papers + len(i.highlights))
    return settings, best


@dataclass
class CallCount:
    n: int = 0


@contextmanager
def counting_premailer() -> Iterator[CallCount]:
    """Count premailer runs (`Premailer.transform` calls, from any thread) while the block runs: the render stage
    promises one per variant."""
    from premailer import Premailer

    count, lock, transform = CallCount(), threading.Lock(), Premailer.transform

    def counted(self, *args, **kwargs):
        with lock:
            count.n += 1
        return transform(self, *args, **kwargs)

    Premailer.transform = counted
    try:
        yield count
    finally:
        Premailer.transform = transform
