"""Benchmark: how good is the "For you" pick (#11)? precision@5 on the real corpus, against chance.

Every feed snapshot of ../shared/corpus is ingested (as `newsletter ingest --file` does) and the issue of every
post day is built in date order, as the schedule would. Then for each topic T and each issue day D: the seeds are
T's papers featured by the issues before D (the 20 most recent: a reader who liked that topic's papers), the pick
is the top 5 of D's issue ranked for those seeds (the function behind `newsletter recommend`), and precision@5 is
the share of picked papers posted under T. The baseline is what a random pick scores: T's share of D's papers.
Only (T, D) with at least 5 seeds and at least one paper of T on D count; figures are averaged over them.

Also printed, same protocol: keywords only (the topic's name as keywords) and seeds with the IDF fitted on a
background of earlier papers (not used by default: see the figures).
Last line: precision_at_5=<x> (seeds), with baseline_at_5=<x> on the line before.
"""

from __future__ import annotations

import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import select

from bench.common import CORPUS_FEEDS, corpus_settings
from newsletter.db import session_scope
from newsletter.db.models import Post
from newsletter.issue import recommend
from newsletter.pipeline import steps as pipeline
from newsletter.pipeline.ingest import ingest_file
from newsletter.registry.topics import topic_names

N_SEEDS = 20
TOP = 5


def build_issues(settings) -> list:
    for feed in sorted(CORPUS_FEEDS.glob("*.xml")):
        ingest_file(settings, feed, kind="feed", source="corpus")
    with session_scope(settings.database_url) as session:
        days = sorted(set(session.scalars(select(Post.post_date))))
    issues = [pipeline.build_step(settings, pipeline.period_for(settings, day))[0] for day in days]
    return [i for i in issues if i is not None]


def evaluate(issues, mode: str) -> tuple[float, float, int]:
    """(mean precision@5, mean baseline, number of (topic, day) cases) for one way of ranking."""
    history: dict[str, list] = defaultdict(list)  # topic -> its papers featured so far, in order
    background: list[str] = []
    precisions, baselines = [], []
    for issue in issues:
        papers = recommend.issue_papers(issue)
        if len(papers) >= 2 * TOP:
            for topic in sorted({t for p in papers for t in p.topics}):
                seeds = history[topic][-N_SEEDS:]
                if len(seeds) < TOP:
                    continue
                share = sum(topic in p.topics for p in papers) / len(papers)
                picks = _picks(papers, seeds, topic, mode, background)
                if not picks:
                    precisions.append(0.0)
                else:
                    by_id = {p.paper_id: p for p in papers}
                    precisions.append(sum(topic in by_id[x.paper_id].topics for x in picks) / TOP)
                baselines.append(share)
        for p in papers:
            history[p.primary_topic].append(p)
            background.append(recommend.paper_text(p.title, p.abstract))
    n = len(precisions)
    return sum(precisions) / n, sum(baselines) / n, n


def _picks(papers, seeds, topic, mode, background):
    if mode == "keywords":
        interests = recommend.Interests(keywords=topic_names(topic)[0])
        return recommend.Ranker(papers).rank([interests], TOP)[0]
    interests = recommend.Interests(seeds=tuple(recommend.Seed(title=s.title, abstract=s.abstract) for s in seeds))
    ranker = recommend.Ranker(papers, background=background[-2000:] if mode == "background" else ())
    return ranker.rank([interests], TOP)[0]


def main() -> None:
    if not CORPUS_FEEDS.is_dir():
        sys.exit("corpus not found beside the repository (../shared/corpus)")
    with tempfile.TemporaryDirectory() as tmp:
        issues = build_issues(corpus_settings(Path(tmp)))
    print(f"{len(issues)} issues, {sum(len(recommend.issue_papers(i)) for i in issues)} featured papers")
    results = {mode: evaluate(issues, mode) for mode in ("keywords", "background", "seeds")}
    for mode, (p, b, n) in results.items():
        print(f"{mode}: precision@5 {p:.3f} vs baseline {b:.3f} over {n} (topic, day) cases")
    p, b, _ = results["seeds"]
    print(f"baseline_at_5={b:.3f}")
    print(f"precision_at_5={p:.3f}")


if __name__ == "__main__":
    main()
