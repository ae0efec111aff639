"""Real data: ingesting every corpus snapshot in time order gives exactly the truth's distinct papers."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from newsletter.db import session_scope
from newsletter.db.models import Paper, Post
from newsletter.pipeline.ingest import ingest_file
from newsletter.store.query import PaperFilter, find_papers, paper_record
from tests.conftest import corpus_or_skip

pytestmark = pytest.mark.corpus


def truth_papers(corpus) -> tuple[set[str], set[tuple], set[tuple[str, str]]]:
    """The reference's distinct paper ids, sightings (post date, topic, id, version) and posts (date, topic)."""
    ids, sightings, posts = set(), set(), set()
    for path in sorted((corpus / "truth").glob("*.json")):
        for entry in json.loads(path.read_text(encoding="utf-8"))["entries"]:
            posts.add((entry["path_date"], entry["topic"]))
            for p in entry["papers"] + entry["unrendered_papers"]:
                ids.add(p["arxiv_id"])
                sightings.add((entry["path_date"], entry["topic"], p["arxiv_id"], p["arxiv_version"]))
    return ids, sightings, posts


@pytest.fixture(scope="module")
def corpus_store(tmp_path_factory):
    corpus = corpus_or_skip()
    from dataclasses import replace

    from newsletter.config import load_settings
    from tests.conftest import ROOT

    tmp = tmp_path_factory.mktemp("corpus")
    settings = replace(
        load_settings(ROOT / "newsletter.toml"), database_url=f"sqlite:///{tmp}/c.db", archive_dir=str(tmp / "raw")
    )
    reports = [ingest_file(settings, p, source="corpus") for p in sorted((corpus / "feeds").glob("*.xml"))]
    return corpus, settings, reports


def test_snapshots_in_time_order_give_exactly_the_truth_papers(corpus_store):
    corpus, settings, reports = corpus_store
    assert not [r.error for r in reports if r.failed]
    ids, sightings, posts = truth_papers(corpus)
    with session_scope(settings.database_url) as s:
        records = [paper_record(p) for p in find_papers(s, PaperFilter())]
        stored_posts = {(d.isoformat(), t) for d, t in s.execute(select(Post.post_date, Post.topic))}
        n_posts = s.scalar(select(func.count()).select_from(Post))
    assert {r["arxiv_id"] for r in records} == ids
    assert len(records) == len(ids)  # one paper per id: no duplicates across snapshots, topics, versions
    stored = {(x["post_date"], x["topic"], r["arxiv_id"], x["version"]) for r in records for x in r["sightings"]}
    assert stored == sightings
    # One post per (date, topic) of the reference, however many snapshots and URLs it appeared under.
    assert stored_posts == posts and n_posts == len(posts)


def test_reingesting_a_snapshot_changes_nothing(corpus_store):
    corpus, settings, _ = corpus_store
    with session_scope(settings.database_url) as s:
        before = (
            s.scalar(select(func.count()).select_from(Paper)),
            [paper_record(p) for p in find_papers(s, PaperFilter())],
        )
    report = ingest_file(settings, sorted((corpus / "feeds").glob("*.xml"))[3], source="corpus")
    assert report.stats.papers_new == 0 and report.stats.papers_updated == 0 and report.stats.acceptances == 0
    with session_scope(settings.database_url) as s:
        after = (
            s.scalar(select(func.count()).select_from(Paper)),
            [paper_record(p) for p in find_papers(s, PaperFilter())],
        )
    assert after == before


def test_markdown_and_text_posts_merge_into_the_same_store(corpus_store):
    corpus, settings, _ = corpus_store
    for path in sorted((corpus / "markdown").glob("*.md")) + sorted((corpus / "text").glob("*.txt")):
        report = ingest_file(settings, path, source="corpus-files")
        assert report.status == "ok", report.error
    with session_scope(settings.database_url) as s:
        ids = [i for i in s.scalars(select(Paper.arxiv_id)) if i]
        fingerprints = s.scalars(select(Paper.fingerprint).where(Paper.arxiv_id.is_(None))).all()
    assert len(ids) == len(set(ids)) and len(fingerprints) == len(set(fingerprints))
