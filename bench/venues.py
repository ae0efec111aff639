"""Scoring harness for the venue reader: precision/recall of "accepted", venue/year/track accuracy, the misses.

`python -m bench.venues LABELLED.jsonl ...` prints the scores of each file (e.g. ../shared/corpus/venues_dev.jsonl,
tests/fixtures/venue_cases.jsonl); tests/test_venues.py holds the reader to its targets with the same `score()`.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from newsletter.registry.venues import extract_venue


def _venue_key(venue: str | None) -> str | None:
    return None if venue is None else re.sub(r"\s+", "", venue).casefold()


def venue_matches(got: str | None, gold: str | None, aliases: list[str] | None = None) -> bool:
    """Venues compare ignoring case and spaces; any of the gold aliases is also right."""
    if gold is None:
        return got is None
    return _venue_key(got) in {_venue_key(v) for v in [gold, *(aliases or [])]}


def score(examples: list[dict]) -> dict:
    """Precision/recall of `accepted`, and venue/year accuracy over the gold-accepted examples."""
    tp = fp = fn = venue_ok = year_ok = track_ok = n_accepted = 0
    misses: list[dict] = []
    for ex in examples:
        got = extract_venue(ex.get("comment"))
        gold = bool(ex.get("accepted"))
        tp += got.accepted and gold
        fp += got.accepted and not gold
        fn += gold and not got.accepted
        wrong = got.accepted != gold
        if gold:
            n_accepted += 1
            v_ok = venue_matches(got.venue, ex.get("venue"), ex.get("venue_aliases"))
            y_ok = got.year == ex.get("year")
            t_ok = got.track == ex.get("track")
            venue_ok += v_ok
            year_ok += y_ok
            track_ok += t_ok
            wrong = wrong or not (v_ok and y_ok and t_ok)
        if wrong:
            misses.append({"comment": ex.get("comment"), "got": got.as_dict()})
    return {
        "precision": tp / (tp + fp) if tp + fp else 1.0,
        "recall": tp / (tp + fn) if tp + fn else 1.0,
        "venue_accuracy": venue_ok / n_accepted if n_accepted else 1.0,
        "year_accuracy": year_ok / n_accepted if n_accepted else 1.0,
        "track_accuracy": track_ok / n_accepted if n_accepted else 1.0,
        "n": len(examples),
        "n_accepted": n_accepted,
        "misses": misses,
    }


def load_examples(path: str | Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.venues FILE.jsonl ...`: print the scores and the misses of each file."""
    paths = argv if argv is not None else sys.argv[1:]
    if not paths:
        print("usage: python -m bench.venues LABELLED.jsonl ...", file=sys.stderr)
        return 2
    for path in paths:
        result = score(load_examples(path))
        misses = result.pop("misses")
        print(path, json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}))
        for miss in misses:
            print("  MISS", json.dumps(miss, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
