"""Benchmark: our whole ingest of the largest corpus snapshot vs feedparser's default parse of the same bytes.

Ours = archive + fetch log + parse + dedupe + SQLite writes into a fresh database (migrations excluded: they run
once per database, not per ingest). Baseline = `feedparser.parse(data)` with default options, the parse most
feed readers do. Medians of N runs each, interleaved so machine noise hits both alike.
Last line: ingest_vs_feedparser=<ours/baseline>; target <= 1.0.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import feedparser

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from newsletter.config import load_settings  # noqa: E402
from newsletter.db import get_engine, migrate  # noqa: E402
from newsletter.pipeline.ingest import ingest_file  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus" / "feeds"


def largest_snapshot() -> Path:
    feeds = sorted(CORPUS.glob("*.xml"), key=lambda p: p.stat().st_size)
    if not feeds:
        sys.exit(f"corpus not found at {CORPUS}")
    return feeds[-1]


def time_ours(path: Path, workdir: Path, run: int) -> tuple[float, int]:
    url = f"sqlite:///{workdir}/bench{run}.db"
    settings = replace(
        load_settings(ROOT / "newsletter.toml"), database_url=url, archive_dir=str(workdir / f"raw{run}")
    )
    migrate(get_engine(url))  # schema creation is a one-time cost, not part of an ingest
    start = time.perf_counter()
    report = ingest_file(settings, path, kind="feed", source="bench")
    elapsed = time.perf_counter() - start
    if report.failed:
        sys.exit(f"ingest failed: {report.error}")
    return elapsed, report.stats.papers_new


def time_feedparser(data: bytes) -> float:
    start = time.perf_counter()
    feedparser.parse(data)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    path = largest_snapshot()
    data = path.read_bytes()
    ours, theirs, papers = [], [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(max(args.runs, 5)):
            theirs.append(time_feedparser(data))
            elapsed, papers = time_ours(path, Path(tmp), run)
            ours.append(elapsed)
    med_ours, med_theirs = statistics.median(ours), statistics.median(theirs)
    print(f"snapshot: {path.name} ({len(data) / 1e6:.1f} MB), {papers} distinct papers stored")
    print(f"ours (archive+parse+store, fresh SQLite): median {med_ours * 1000:.0f} ms of {len(ours)} runs")
    print(f"feedparser.parse() default options:      median {med_theirs * 1000:.0f} ms of {len(theirs)} runs")
    print(f"ingest_vs_feedparser={med_ours / med_theirs:.3f}")


if __name__ == "__main__":
    main()
