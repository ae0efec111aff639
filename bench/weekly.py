"""Measure: the weekly issue of the busiest real week in the corpus, against the HTML size budget (#11 item 2).

Every corpus snapshot (feeds, Markdown posts, the plain-text digest) is ingested with `newsletter ingest --file`
into a fresh SQLite store, the weekly issues are built week by week in date order (as the weekly DAG would),
and the one with the most papers is rendered in each language mode for a reader of every topic. Printed per
mode: the HTML part as sent (encoded bytes) against `[render] html_budget_bytes`, papers in full, listed by title
and only counted in "N more"; last line: weekly_papers_in_full_busiest_week=<min over modes>.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import corpus_settings  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus"


def corpus_files() -> list[Path]:
    return [*sorted((CORPUS / "feeds").glob("*.xml")), *sorted((CORPUS / "markdown").glob("*.md")),
            *sorted((CORPUS / "text").glob("*.txt"))]  # fmt: skip


def ingest(settings, files: list[Path], workdir: Path) -> None:
    """`newsletter ingest --file ...`, the operator's way to import snapshots, on this checkout's code."""
    env = {**os.environ, "NEWSLETTER_DATABASE_URL": settings.database_url, "PYTHONPATH": str(ROOT),
           "NEWSLETTER_ARCHIVE_DIR": settings.archive_dir}  # fmt: skip
    cmd = [sys.executable, "-m", "newsletter", "--config", str(ROOT / "newsletter.toml"), "ingest", "--file"]
    proc = subprocess.run([*cmd, *map(str, files)], env=env, cwd=workdir, capture_output=True, text=True)
    if proc.returncode not in (0, 1):  # 1: a snapshot without digest entries counts as a failed source
        sys.exit(f"ingest failed ({proc.returncode}): {proc.stderr[-2000:]}")


def busiest_week(settings):
    """Build every week's weekly issue in order; the issue with the most papers (new + highlights)."""
    from sqlalchemy import func, select

    from newsletter.db import session_scope
    from newsletter.db.models import Post
    from newsletter.pipeline import steps

    with session_scope(settings.database_url) as session:
        first, last = session.execute(select(func.min(Post.post_date), func.max(Post.post_date))).one()
    monday, issues = first - timedelta(days=first.weekday()), []
    while monday <= last:
        issue, _ = steps.build_step(settings, steps.period_for(settings, monday, "weekly"))
        if issue is not None:
            issues.append(issue)
        monday += timedelta(days=7)
    issues.sort(key=lambda i: i.n_papers + len(i.highlights), reverse=True)
    for i in issues[:3]:
        print(f"  week ending {i.issue_date}: {i.n_papers} new papers, {len(i.highlights)} highlights")
    return issues[0], len(issues)


def main() -> None:
    files = corpus_files()
    if not files:
        sys.exit(f"corpus not found at {CORPUS}")
    from newsletter.pipeline import steps
    from newsletter.render.variant import render_variant

    with tempfile.TemporaryDirectory() as tmp:
        settings = corpus_settings(Path(tmp))
        t0 = time.perf_counter()
        ingest(settings, files, Path(tmp))
        issue, n_weeks = busiest_week(settings)
        opts = steps.render_options(settings)
        print(f"{len(files)} corpus files ingested, {n_weeks} weekly issues built in {time.perf_counter() - t0:.1f} s")
        print(
            f"busiest week {issue.issue_date - timedelta(days=6)} .. {issue.issue_date}: {issue.n_papers} new papers, "
            f"{len(issue.highlights)} acceptance highlights, {len(issue.sections)} topics"
        )
        full = {}
        for lang in ("en", "zh", "bilingual"):
            v = render_variant(issue, lang, None, opts)
            full[lang] = v.n_full
            print(
                f"  {lang}: HTML part as sent {v.html_encoded_size:,} bytes of {opts.html_budget_bytes:,} "
                f"({'within' if not v.over_budget else 'OVER'} budget); papers in full {v.n_full} (highlights "
                f"included), listed by title {v.n_listed}, only counted in 'N more' {v.n_hidden}"
            )
    print(f"weekly_papers_in_full_busiest_week={min(full.values())}")


if __name__ == "__main__":
    main()
