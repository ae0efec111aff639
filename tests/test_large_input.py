"""Large and oversized input (#9, 1.1): an over-long comment is cut with a warning, a file over
`[fetch] max_payload_mb` is refused whole and nothing of it archived. Timing lives in bench/large_input.py."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from sqlalchemy import func, select

from newsletter.config import SAMPLE_DIR, load_settings
from newsletter.db import session_scope
from newsletter.db.models import FetchLog, Sighting
from newsletter.ingest.parse.digest_html import parse_digest_html
from newsletter.pipeline.ingest import ingest_file
from newsletter.registry.venues import extract_venue
from tests.cli_runner import invoke, run_console
from tests.httpserver import Server
from tests.test_fetch import gzip_of_zeros

SAMPLE_FEED = SAMPLE_DIR / "feed.xml"
COMMENT = "Accepted by CVPR 2027. 14 pages, 8 figures"
COMMENT_MAX_CHARS = 1_000  # venues.COMMENT_MAX_CHARS


def _feed_with_comment(tmp_path: Path, comment: str) -> Path:
    path = tmp_path / "long-comment.xml"
    path.write_text(SAMPLE_FEED.read_text(encoding="utf-8").replace(COMMENT, comment, 1), encoding="utf-8")
    return path


def _archived_files(settings) -> list[Path]:
    root = Path(settings.archive_dir)
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_over_long_comment_is_cut_with_a_warning_naming_the_paper(sqlite_settings, tmp_path):
    # Venue mentions all along: reading venues out of this whole used to grow with the square of its length.
    comment = ("Accepted by CVPR 2027. Oral at ICCV 2025; " * 600).strip()
    report = ingest_file(sqlite_settings, _feed_with_comment(tmp_path, comment), source="big")
    assert report.status == "ok", report.error
    [warning] = [w for w in report.stats.warnings if "cut to" in w]
    assert warning.startswith("big: 2026-11-25/3DGS: 'SplatFlow")
    assert f"comment of {len(comment):,} characters cut to {COMMENT_MAX_CHARS:,}" in warning
    with session_scope(sqlite_settings.database_url) as s:
        stored = s.scalars(select(Sighting.comment).where(Sighting.comment.like("Accepted by CVPR 2027. Oral%"))).all()
    assert stored and all(len(c) <= COMMENT_MAX_CHARS for c in stored)


def test_venue_is_read_from_the_start_of_a_long_comment():
    head = "Accepted by NeurIPS 2024. "
    assert extract_venue(head + "x" * 5_000_000).venue == "NeurIPS"
    # Past the cap nothing is read: no real comment is that long.
    assert not extract_venue("12 pages. " * 200 + "Accepted by CVPR 2024").accepted


def test_file_over_the_payload_cap_is_refused_and_nothing_archived(sqlite_settings, tmp_path):
    capped = replace(sqlite_settings, fetch=sqlite_settings.fetch.updated(max_payload_mb=0.005))
    big = tmp_path / "big.xml"
    big.write_bytes(SAMPLE_FEED.read_bytes())  # about 20 KB
    small = next((SAMPLE_DIR / "markdown").iterdir())  # 2 KB
    refused = ingest_file(capped, big)
    assert refused.failed and refused.error == f"{big}: payload over 0.005 MB"
    assert _archived_files(capped) == []
    with session_scope(capped.database_url) as s:
        assert s.scalar(select(func.count()).select_from(FetchLog)) == 0
    assert not ingest_file(capped, small).failed  # the cap refuses one payload, not the run


def test_cli_refuses_a_file_over_the_default_cap_and_ingests_the_others(sqlite_settings, tmp_path):
    huge = tmp_path / "huge.xml"
    with huge.open("wb") as fh:
        fh.truncate(21_000_000)  # sparse: 21 MB of zeros, over the 20 MB default
    result = invoke(
        "ingest",
        "--file",
        str(huge),
        str(SAMPLE_FEED),
        NEWSLETTER_DATABASE_URL=sqlite_settings.database_url,
        NEWSLETTER_ARCHIVE_DIR=sqlite_settings.archive_dir,
    )
    assert result.exit_code == 1
    assert f"source file failed: {huge}: payload over 20 MB" in " ".join(result.stderr.split())  # rich wraps
    assert "1 sources failed" in result.output
    with session_scope(sqlite_settings.database_url) as s:
        assert s.scalar(select(func.count()).select_from(Sighting)) > 0
        assert s.scalars(select(FetchLog.location)).all() == [str(SAMPLE_FEED.resolve())]


def test_text_node_over_10_mb_does_not_silently_cut_the_post():
    # libxml2's default limit stopped at a 10 MB text node and returned the document cut there.
    html = (
        "<h1>2026-11-25 更新</h1><h2>Before</h2><p><strong>Authors:A</strong></p><p>"
        + "an abstract that never ends " * 400_000
        + "</p><h2>After</h2><p><strong>Authors:B</strong></p><p>Short abstract.</p>"
    )
    assert [p.title for p in parse_digest_html(html).papers] == ["Before", "After"]


# The child's own peak: VmHWM belongs to its address space (ru_maxrss would carry over the RSS of the pytest
# process it was spawned from).
PEAK_RSS = """
import re, sys
from pathlib import Path
from newsletter.cli import main
try:
    main(sys.argv[1:])
except SystemExit as done:
    code = done.code
peak_kb = int(re.search(r"VmHWM:\\s+(\\d+)", Path("/proc/self/status").read_text()).group(1))
print(f"peak_rss_mb={peak_kb // 1024}", file=sys.stderr)
sys.exit(code)
"""


def test_remote_gzip_bomb_fails_its_source_alone_within_bounded_memory(tmp_path):
    # ~300 KB of gzip that inflates to 300 MB: read whole, it took 1.2 GB and archived 286 MB.
    bomb = gzip_of_zeros(300)
    assert len(bomb) < 400_000
    config = tmp_path / "newsletter.toml"
    with Server() as server:
        server.routes["/bomb.xml"] = (200, {"Content-Encoding": "gzip"}, bomb)
        server.routes["/atom.xml"] = (200, {"Content-Type": "application/atom+xml"}, SAMPLE_FEED.read_bytes())
        config.write_text(
            f'[newsletter]\ndatabase_url = "sqlite:///{tmp_path}/store.db"\narchive_dir = "{tmp_path}/raw"\n'
            f'[[sources]]\nname = "bomb"\nkind = "feed"\nurl = "{server.base}/bomb.xml"\n'
            f'[[sources]]\nname = "good"\nkind = "feed"\nurl = "{server.base}/atom.xml"\n'
        )
        done = run_console(tmp_path, "ingest", "--config", str(config), code=PEAK_RSS)
    assert done.returncode == 1, done.stderr
    stderr = " ".join(done.stderr.split())
    assert f"source bomb failed: payload over 20 MB ({server.base}/bomb.xml)" in stderr
    assert "Traceback" not in done.stderr
    peak = int(stderr.rsplit("peak_rss_mb=", 1)[1].split()[0])
    assert peak < 300, f"peak RSS {peak} MB: the body was held in memory"  # the import alone is ~100 MB
    settings = replace(load_settings(config))
    with session_scope(settings.database_url) as s:
        logged = s.execute(select(FetchLog.source, FetchLog.sha256, FetchLog.error)).all()
        assert s.scalar(select(func.count()).select_from(Sighting)) > 0  # the good source was ingested
    assert sorted(logged) == [("bomb", None, "payload over 20 MB"), ("good", logged[1][1], None)]
    archived = _archived_files(settings)
    assert len(archived) == 1 and archived[0].stat().st_size == SAMPLE_FEED.stat().st_size


def test_a_file_of_a_path_source_over_the_cap_fails_that_source_and_archives_nothing(sqlite_settings, tmp_path):
    from newsletter.config import Source
    from newsletter.pipeline.ingest import ingest_source

    folder = tmp_path / "feeds"
    folder.mkdir()
    (folder / "big.xml").write_bytes(SAMPLE_FEED.read_bytes())  # about 20 KB
    capped = replace(sqlite_settings, fetch=sqlite_settings.fetch.updated(max_payload_mb=0.005))
    report = ingest_source(capped, Source("local", "feed", path=str(folder)))
    assert report.failed and report.error == f"{folder / 'big.xml'}: payload over 0.005 MB"
    assert _archived_files(capped) == []
