"""Benchmark: does ingest time grow linearly with the size of one payload? (#9, 1.1)

Two shapes built from the bundled sample feed, each at a small and a large size (5 and 50 MB by default):
- comment: one paper whose arXiv comment is the whole payload, full of venue mentions (reading venues out of
  it used to grow with the square of its length: 200 KB took minutes);
- entries: the sample's digest entries repeated with fresh dates and ids until the size is reached (many
  posts and papers, the shape of a very large feed);
- markdown: the sample Markdown post with a bold word in every sentence of one abstract half the size, then
  its digest repeated under fresh ids (looking around each bold run, and for the next date heading per
  paper, used to be quadratic).
Each run is a whole `ingest_file` (archive + parse + dedupe + SQLite writes) in a fresh process, so its peak
RSS is its own; the payload cap is lifted for the run. Last line: large_input_scaling=<worst over shapes of
(time large / time small) / (large / small)>: 1.0 is linear, (large / small) would be quadratic.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SAMPLE = ROOT / "newsletter" / "sample" / "feed.xml"
SAMPLE_MD = next((ROOT / "newsletter" / "sample" / "markdown").glob("*.md"))
COMMENT = "Accepted by CVPR 2027. 14 pages, 8 figures"
SHAPES = ("comment", "entries", "markdown")


def comment_feed(size: int) -> bytes:
    unit = "Accepted by CVPR 2027, oral. Extended version of our ICCV 2025 workshop paper; 14 pages. "
    comment = (unit * (size // len(unit) + 1))[:size]
    return SAMPLE.read_text(encoding="utf-8").replace(COMMENT, comment, 1).encode()


def entries_feed(size: int) -> bytes:
    text = SAMPLE.read_text(encoding="utf-8")
    head, rest = text.split("<entry>", 1)
    entries = "<entry>" + rest.rsplit("</feed>", 1)[0]
    parts, total, i = [head], len(head.encode()), 0
    per_copy = len(entries.encode())
    while total < size:
        day = f"20{26 + i // 336:02d}-{1 + i % 12:02d}-{1 + (i // 12) % 28:02d}"
        copy = re.sub(r"\d{4}-\d{2}-\d{2}(?=/)", day, entries)
        copy = re.sub(r"(\d{4})\.(\d{5})", lambda m, i=i: f"{m.group(1)}.{(int(m.group(2)) + 7 * i) % 10**5:05d}", copy)
        parts.append(copy)
        total += per_copy
        i += 1
    parts.append("</feed>\n")
    return "".join(parts).encode()


def markdown_post(size: int) -> bytes:
    """Half the size in one paper's abstract (a bold word in every sentence), half in repeated digests."""
    front, body = SAMPLE_MD.read_text(encoding="utf-8").split("\n---\n", 1)
    unit = "We **generate** talking heads, and **more**: "
    body = body.replace("We generate", unit * (size // 2 // len(unit)) + "We generate", 1)
    parts, total, i = [front, "\n---\n", body], len(front) + len(body.encode()), 0
    while total < size:
        copy = re.sub(r"(\d{4})\.(\d{5})", lambda m, i=i: f"{m.group(1)}.{(int(m.group(2)) + 7 * i) % 10**5:05d}", body)
        copy = copy.replace("## ", f"## {i} ").replace(unit, "")  # distinct titles: not a repeated digest
        parts.append(copy)
        total += len(copy.encode())
        i += 1
    return "".join(parts).encode()


BUILDERS = {
    "comment": (comment_feed, "feed"),
    "entries": (entries_feed, "feed"),
    "markdown": (markdown_post, "markdown"),
}


def one_run(shape: str, megabytes: float) -> dict:
    """Build the payload, ingest it once into a fresh SQLite store; time and peak RSS of this process."""
    from newsletter.config import load_settings
    from newsletter.db import get_engine, migrate
    from newsletter.pipeline.ingest import ingest_file

    size = int(megabytes * 1_000_000)
    build, kind = BUILDERS[shape]
    data = build(size)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / (SAMPLE_MD.name if kind == "markdown" else f"{shape}.xml")
        path.write_bytes(data)
        del data
        base = load_settings(ROOT / "newsletter.toml")
        fetch = base.fetch.updated(max_payload_mb=megabytes * 2)
        url = f"sqlite:///{tmp}/bench.db"
        settings = replace(base, database_url=url, archive_dir=f"{tmp}/raw", fetch=fetch)
        migrate(get_engine(url))
        start = time.perf_counter()
        report = ingest_file(settings, path, kind=kind, source="bench")
        elapsed = time.perf_counter() - start
    if report.failed:
        raise SystemExit(f"{shape} {megabytes} MB: ingest failed: {report.error}")
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": elapsed, "rss_mb": rss_mb, "papers": report.stats.papers_new}


def measure(shape: str, megabytes: float) -> dict:
    cmd = [sys.executable, __file__, "--one", shape, str(megabytes)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=float, default=5.0, help="MB")
    parser.add_argument("--large", type=float, default=50.0, help="MB")
    parser.add_argument("--shapes", nargs="+", choices=SHAPES, default=list(SHAPES))
    parser.add_argument("--one", nargs=2, metavar=("SHAPE", "MB"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_run(args.one[0], float(args.one[1]))))
        return
    factor = args.large / args.small
    worst = 0.0
    for shape in args.shapes:
        small, large = measure(shape, args.small), measure(shape, args.large)
        scaling = (large["seconds"] / small["seconds"]) / factor
        worst = max(worst, scaling)
        for mb, run in ((args.small, small), (args.large, large)):
            print(
                f"{shape:8} {mb:5g} MB: {run['seconds']:7.2f} s, peak RSS {run['rss_mb']:5.0f} MB, "
                f"{run['papers']} papers"
            )
        print(f"{shape:8} time x{large['seconds'] / small['seconds']:.1f} for x{factor:g} the size: {scaling:.2f}")
    print(f"large_input_scaling={worst:.2f}")


if __name__ == "__main__":
    main()
