"""Ingest end to end on the bundled sample and on bad input: archive, fetch log, replay, failures."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import func, select

from newsletter.cli.store import print_reports
from newsletter.config import SAMPLE_DIR, Source
from newsletter.db import session_scope
from newsletter.db.models import AcceptanceEvent, FetchLog, Paper, Sighting
from newsletter.pipeline.ingest import ingest, ingest_file, replay
from newsletter.store.query import PaperFilter, find_papers, paper_record
from tests.cli_runner import invoke
from tests.conftest import ROOT
from tests.httpserver import Server, slow

SAMPLE_FEED = SAMPLE_DIR / "feed.xml"
SAMPLE_PAPERS = 9  # distinct papers in newsletter/sample (feed + Markdown + text, with overlaps)


def store_snapshot(url: str) -> list[dict]:
    with session_scope(url) as s:
        return [paper_record(p) for p in find_papers(s, PaperFilter())]


def n_rows(url: str, model) -> int:
    with session_scope(url) as s:
        return s.scalar(select(func.count()).select_from(model))


def test_sample_ingest_dedupes_across_layouts_and_is_idempotent(settings):
    reports = ingest(settings)
    assert [r.status for r in reports] == ["ok", "ok", "ok"], [r.error for r in reports]
    papers = store_snapshot(settings.database_url)
    assert len(papers) == SAMPLE_PAPERS
    by_title = {p["title"]: p for p in papers}
    # The plain-text copy (no arXiv id) merged with the feed's copy (with id).
    sparse = by_title["Diffusion Priors for Sparse-View 3D Reconstruction"]
    assert sparse["arxiv_id"] == "2611.12345"
    assert set(sparse["topics"]) == {"3DGS", "Diffusion Models", "Vision Transformer"}
    # Under review on 11-24, accepted with v2 on 11-25: one acceptance event dated 11-25.
    flow = next(p for p in papers if p["arxiv_id"] == "2611.10421")
    assert flow["venue"] == {"accepted": True, "venue": "CVPR", "year": 2027, "track": None}
    assert [s["version"] for s in flow["sightings"]] == ["v1", "v2"]
    assert n_rows(settings.database_url, AcceptanceEvent) == 1
    # A second run: every local source is unchanged, nothing new is stored.
    before = n_rows(settings.database_url, Sighting)
    again = ingest(settings)
    assert [r.status for r in again] == ["not modified"] * 3
    assert n_rows(settings.database_url, Sighting) == before and store_snapshot(settings.database_url) == papers


def test_http_source_conditional_get_archive_and_replay(settings, tmp_path):
    body = SAMPLE_FEED.read_bytes()

    def route(handler):
        if handler.headers.get("If-None-Match") == '"s1"':
            return 304, {"ETag": '"s1"'}, b""
        return 200, {"ETag": '"s1"', "Content-Type": "application/atom+xml"}, body

    with Server() as srv:
        srv.routes["/atom.xml"] = route
        live = replace(settings, sources=(Source("blog", "feed", url=srv.base + "/atom.xml"),))
        [first] = ingest(live)
        [second] = ingest(live)
    assert first.status == "ok" and first.stats.papers_new > 0
    assert second.status == "not modified"
    with session_scope(settings.database_url) as s:
        logs = s.scalars(select(FetchLog).order_by(FetchLog.id)).all()
        assert [log.http_status for log in logs] == [200, 304]
        sha = logs[0].sha256
    assert (Path(settings.archive_dir) / sha[:2] / sha).read_bytes() == body
    # Replay into an empty database rebuilds the same papers without the network.
    fresh = replace(settings, database_url=f"sqlite:///{tmp_path}/replayed.db")
    with session_scope(fresh.database_url) as s:
        columns = [c.key for c in FetchLog.__table__.columns]
        s.add_all([FetchLog(**{c: getattr(log, c) for c in columns}) for log in logs])
    [report] = replay(fresh)
    assert report.payloads == 1

    def without_times(records):
        return [{k: v for k, v in r.items() if k != "first_seen_at"} for r in records]

    assert without_times(store_snapshot(fresh.database_url)) == without_times(store_snapshot(settings.database_url))


@pytest.mark.parametrize(
    ("route", "expected"),
    [((404, {}, b"gone"), "404"), ((500, {}, b"boom"), "500"), (slow(1.0), "timeout")],
    ids=["404", "500", "timeout"],
)
def test_unreachable_source_fails_alone(sqlite_settings, route, expected, capsys):
    fast = sqlite_settings.fetch.updated(timeout=0.3, retries=1, backoff=0.01)
    with Server() as srv:
        srv.routes["/atom.xml"] = route
        sources = (Source("broken", "feed", url=srv.base + "/atom.xml"), *sqlite_settings.sources)
        reports = ingest(replace(sqlite_settings, sources=sources, fetch=fast))
        assert reports[0].failed and expected in reports[0].error and reports[0].source == "broken"
        assert all(r.status == "ok" for r in reports[1:])
        failed = print_reports(reports)
    assert failed is True
    assert "source broken failed" in capsys.readouterr().err
    assert len(store_snapshot(sqlite_settings.database_url)) == SAMPLE_PAPERS


def test_truncated_feed_keeps_what_it_can_and_loses_nothing(sqlite_settings, tmp_path):
    ingest_file(sqlite_settings, SAMPLE_FEED)
    before = store_snapshot(sqlite_settings.database_url)
    data = SAMPLE_FEED.read_bytes()
    cut = tmp_path / "truncated.xml"
    cut.write_bytes(data[: int(len(data) * 0.45)])
    report = ingest_file(sqlite_settings, cut)
    # Both warnings name the source and the file (the parser's position in the message is not compared).
    not_well_formed, kept = report.stats.warnings
    assert not_well_formed.startswith("file: truncated.xml: feed is not well-formed (SAXParseException: ")
    assert kept.startswith("file: truncated.xml: feed is malformed (") and kept.endswith("; kept what could be read")
    assert store_snapshot(sqlite_settings.database_url) == before


def test_garbage_file_fails_with_a_clear_message(sqlite_settings, tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01\x02 not a digest at all")
    report = ingest_file(sqlite_settings, junk)
    assert report.failed and "junk.bin" in report.error


def test_wrong_encoding_is_read_with_a_warning(sqlite_settings, tmp_path):
    md = next((SAMPLE_DIR / "markdown").iterdir())
    wrong = tmp_path / md.name
    wrong.write_bytes(md.read_text(encoding="utf-8").encode("gb18030"))
    report = ingest_file(sqlite_settings, wrong)
    assert report.status == "ok" and report.stats.papers_new == 2
    titles = {p["title"] for p in store_snapshot(sqlite_settings.database_url)}
    assert "LipSync-Zero: Zero-Shot Talking Heads with Audio-Visual Tokens" in titles


def test_broken_front_matter_rejects_the_post_with_the_file_named(sqlite_settings, tmp_path):
    """A sample post with a broken tag list (a hand-written reader stored it under "- Talking Head Generation")."""
    md = next((SAMPLE_DIR / "markdown").iterdir())
    text = md.read_text(encoding="utf-8")
    broken = tmp_path / md.name
    broken.write_text(text.replace("    - Talking", "    - - Talking", 1), encoding="utf-8")
    assert broken.read_text(encoding="utf-8") != text
    report = ingest_file(sqlite_settings, broken, source="posts")
    assert report.failed and f"posts: {md.name}: could not be ingested: {md.name}: front matter" in report.error
    assert store_snapshot(sqlite_settings.database_url) == []


def test_feed_declaring_wrong_encoding_still_ingests(sqlite_settings, tmp_path):
    data = SAMPLE_FEED.read_bytes().replace(b'encoding="utf-8"', b'encoding="iso-8859-1"', 1)
    bad = tmp_path / "latin1.xml"
    bad.write_bytes(data)
    report = ingest_file(sqlite_settings, bad)
    assert report.stats.papers_new > 0


def test_cli_papers_jsonl_and_venues(sqlite_settings):
    ingest(sqlite_settings)
    env = {"NEWSLETTER_CONFIG": str(ROOT / "newsletter.toml"), "NEWSLETTER_DATABASE_URL": sqlite_settings.database_url}
    result = invoke("papers", "--format", "jsonl", **env)
    assert result.exit_code == 0
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == SAMPLE_PAPERS
    assert {"arxiv_id", "title", "authors", "topics", "first_seen", "venue", "sightings"} <= set(lines[0])
    result = invoke("papers", "--format", "jsonl", "--venue", "cvpr", **env)
    assert result.exit_code == 0
    cvpr = [json.loads(line) for line in result.stdout.splitlines()]
    # The main conference and a workshop hosted by it (venue = host conference, track = workshop).
    assert {(p["arxiv_id"], p["venue"]["track"]) for p in cvpr} == {("2611.10421", None), ("2611.13013", "workshop")}
    result = invoke("venues", input="Accepted by NeurIPS 2024\nSubmitted to CVPR 2025\n")
    assert result.exit_code == 0
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert out[0]["accepted"] and out[0]["venue"] == "NeurIPS" and not out[1]["accepted"]


def test_papers_stored_are_text_not_markup(sqlite_settings):
    ingest(sqlite_settings)
    with session_scope(sqlite_settings.database_url) as s:
        for paper in s.scalars(select(Paper)):
            for text in (paper.title, paper.abstract, paper.summary_zh or "", *paper.takeaways):
                assert "<" not in text and "&lt;" not in text, text


BAD_PAPER_FEED = Path(__file__).parent / "fixtures" / "ingest" / "bad_paper_feed.xml"


def test_paper_without_link_is_reported_by_source_entry_and_title(sqlite_settings):
    report = ingest_file(sqlite_settings, BAD_PAPER_FEED, source="fixture")
    assert report.status == "ok"
    [warning] = [w for w in report.stats.warnings if "Lost" in w]
    assert warning.startswith("fixture: 2026-11-20/NeRF") and "A Paper Whose Link Was Lost" in warning
    ids = {p["arxiv_id"] for p in store_snapshot(sqlite_settings.database_url)}
    assert {"2611.09001", "2611.09002"} <= ids


def test_entry_that_crashes_the_parser_is_reported_and_others_still_ingested(sqlite_settings, monkeypatch):
    from newsletter.ingest.parse import feed

    real = feed.parse_digest_html

    def explode_on_nerf(html: str):
        if "Radiance" in html:
            raise RuntimeError("parser bug")
        return real(html)

    monkeypatch.setattr(feed, "parse_digest_html", explode_on_nerf)
    report = ingest_file(sqlite_settings, BAD_PAPER_FEED, source="fixture")
    assert report.status == "ok"
    assert report.stats.warnings == [
        "fixture: entry NeRF (https://digest.example.org/Paper/2026-11-20/NeRF/) could not be parsed: "
        "RuntimeError: parser bug"
    ]
    assert {p["arxiv_id"] for p in store_snapshot(sqlite_settings.database_url)} == {"2611.09002"}


def test_hostile_feed_content_never_reaches_the_store(sqlite_settings, tmp_path):
    """Scripts, styles, event handlers and javascript: links in feed HTML: none of it is stored, anywhere."""
    hostile = (Path(__file__).parent / "fixtures" / "parse" / "hostile.html").read_text(encoding="utf-8")
    feed = (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>'
        "<id>x</id><updated>2024-12-05T00:00:00Z</updated><entry><title>3DGS</title>"
        '<link href="https://digest.example.org/Paper/2024-12-05/3DGS/"/><id>e</id>'
        f'<updated>2024-12-05T00:00:00Z</updated><content type="html"><![CDATA[{hostile}]]></content>'
        '<category term="Paper" scheme="https://digest.example.org/categories/Paper/"/>'
        '<category term="3DGS" scheme="https://digest.example.org/tags/3DGS/"/></entry></feed>'
    )
    path = tmp_path / "hostile.xml"
    path.write_text(feed, encoding="utf-8")
    report = ingest_file(sqlite_settings, path, source="hostile")
    assert report.stats.papers_new == 2
    import sqlite3

    conn = sqlite3.connect(sqlite_settings.database_url.removeprefix("sqlite:///"))
    dump = "\n".join(conn.iterdump())
    conn.close()
    for needle in (
        "<script",
        "alert(",
        "javascript:",
        "onclick",
        "onerror",
        "onload",
        "<style",
        "display:none",
        "color:red",
        "document.write",
        "<iframe",
        "evil.example",
        "data:image",
    ):
        assert needle not in dump, needle
    assert "Safe Title" in dump and "https://picx.zhimg.com/v2-ok.jpg" in dump


def test_payload_not_stored_is_fetched_again_not_skipped_as_304(settings, monkeypatch):
    """A payload archived but not stored (here: the store fails once) must not be 'not modified' next time."""
    body = SAMPLE_FEED.read_bytes()

    def route(handler):
        if handler.headers.get("If-None-Match") == '"s1"':
            return 304, {"ETag": '"s1"'}, b""
        return 200, {"ETag": '"s1"'}, body

    import newsletter.pipeline.ingest as ingest_module

    real = ingest_module.record_posts
    calls = {"n": 0}

    def fail_once(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("database went away")
        return real(*args, **kwargs)

    monkeypatch.setattr(ingest_module, "record_posts", fail_once)
    with Server() as srv:
        srv.routes["/atom.xml"] = route
        live = replace(settings, sources=(Source("blog", "feed", url=srv.base + "/atom.xml"),))
        [first] = ingest(live)
        [second] = ingest(live)
        [third] = ingest(live)
        conditional = ["If-None-Match" in headers for _path, headers in srv.requests]
    assert first.failed and first.stats.warnings == ["blog: atom.xml: could not be ingested: database went away"]
    assert second.status == "ok" and second.stats.papers_new == 7
    assert third.status == "not modified"
    assert conditional == [False, False, True]


@pytest.mark.parametrize(("races", "stored"), [(2, True), (3, False)])
def test_a_unique_key_race_is_retried_then_reported(settings, monkeypatch, races, stored):
    """An IntegrityError (another ingest inserted the same paper first) rolls back and is retried, at most 3
    tries in all; when every try loses, the payload is reported with the database's reason."""
    from sqlalchemy.exc import IntegrityError

    import newsletter.pipeline.ingest as ingest_module

    real, calls = ingest_module.record_posts, []

    def racing(*args, **kwargs):
        calls.append(1)
        stats = real(*args, **kwargs)  # written, then rolled back by the error below
        if len(calls) <= races:
            raise IntegrityError("INSERT INTO papers", {}, Exception("UNIQUE constraint failed: papers.arxiv_id"))
        return stats

    monkeypatch.setattr(ingest_module, "record_posts", racing)
    report = ingest_file(settings, SAMPLE_FEED, kind="feed")
    assert len(calls) == min(races + 1, 3)
    if stored:
        assert report.status == "ok" and report.stats.papers_new == 7
        assert len(store_snapshot(settings.database_url)) == 7
    else:
        assert report.failed and "UNIQUE constraint failed" in report.error
        assert store_snapshot(settings.database_url) == []


def test_concurrent_ingests_of_overlapping_payloads_lose_nothing(settings):
    """Two ingests racing to insert the same new papers (two DAGs, mapped tasks) both end up stored."""
    import threading

    errors: list[BaseException] = []
    reports = []

    def run(name: str) -> None:
        try:
            reports.append(ingest_file(settings, SAMPLE_FEED, kind="feed", source=name))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f"racer-{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and all(r.status == "ok" for r in reports), [r.stats.warnings for r in reports]
    assert len(store_snapshot(settings.database_url)) == 7
    with session_scope(settings.database_url) as s:
        assert all(s.scalars(select(FetchLog.stored)).all())


def test_replay_step_rereads_the_archive_of_a_window_without_the_network(sqlite_settings):
    from datetime import UTC, datetime, timedelta

    from newsletter.pipeline.steps import replay_step

    ingest(sqlite_settings)  # archives and logs the three sample payloads now
    now = datetime.now(UTC)
    out = replay_step(sqlite_settings, "sample-feed", now - timedelta(hours=1), now + timedelta(hours=1))
    assert out["status"] == "ok" and out["papers_new"] == 0 and out["papers_seen"] == 7
    empty = replay_step(sqlite_settings, "sample-feed", now - timedelta(days=30), now - timedelta(days=29))
    assert empty["status"] == "not modified" and empty["posts"] == 0
