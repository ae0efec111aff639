"""Benchmark: venue extraction per arXiv comment, uncached (every sighting of every paper goes through it).

Comments: our labelled cases (tests/fixtures/venue_cases.jsonl) and, when present, the corpus dev set
(../shared/corpus/venues_dev.jsonl). Each comment is timed alone, best of 5 (the machine may be busy), without
the cache that repeated comments hit in production; the figure is the median over comments.
Last line: venue_us_per_comment=<median microseconds>; target < 100.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from newsletter.registry import venues  # noqa: E402

FILES = (ROOT / "tests" / "fixtures" / "venue_cases.jsonl", ROOT.parent / "shared" / "corpus" / "venues_dev.jsonl")
TARGET_US = 100.0


def comments() -> list[str]:
    out = []
    for path in FILES:
        if path.is_file():
            out += [json.loads(line)["comment"] for line in path.read_text(encoding="utf-8").splitlines() if line]
    return out


def best_of(fn, arg, runs: int = 5) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        fn(arg)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    uncached = getattr(venues._extract_cached, "__wrapped__", venues.extract_venue)
    texts = comments()
    for text in texts[:50]:  # warm up: compiled patterns, lazily built tables
        uncached(text)
    timings = sorted(best_of(uncached, text) * 1e6 for text in texts)
    median = statistics.median(timings)
    print(f"{len(texts)} comments, uncached, best of 5 each")
    print(f"median {median:.1f} us, p90 {timings[int(len(timings) * 0.9)]:.1f} us, max {timings[-1]:.1f} us")
    print(f"target: median < {TARGET_US:.0f} us")
    print(f"venue_us_per_comment={median:.1f}")
    return 0 if median < TARGET_US else 1


if __name__ == "__main__":
    sys.exit(main())
