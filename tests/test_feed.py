"""The archive as an Atom feed (#11, item 5): `feed.xml` written next to the archive pages by every archive write,
the same bytes at `GET /feed.xml` of the web app (real HTTP), valid Atom (RFC 4287) as feedparser reads it, and
announced by the archive index page. On SQLite and PostgreSQL."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from urllib.parse import urljoin

import feedparser
import httpx
import pytest

from newsletter.config import Settings
from newsletter.db import session_scope
from newsletter.pipeline import steps
from newsletter.render.feed import ATOM, render_feed
from newsletter.store.record import record_posts
from tests.cli_runner import invoke
from tests.test_deliver import DAY, make_issue
from tests.test_store import paper, post
from tests.test_webapp import LiveServer

NEXT = DAY + timedelta(days=1)
A = f"{{{ATOM}}}"


@pytest.fixture
def feed_settings(settings: Settings, tmp_path: Path, token_secret: str) -> Settings:
    web = settings.web.updated(archive_dir=str(tmp_path / "archive"), base_url="https://digest.example.org/news")
    return replace(settings, web=web)


def _two_issues(settings: Settings) -> None:
    """Issues of DAY (3 papers, 2 topics) and NEXT (1 paper), each with its archive page written."""
    make_issue(settings.database_url)
    with session_scope(settings.database_url) as s:
        record_posts(s, [post(NEXT.isoformat(), "3DGS", paper("2412.00009", "Splat Z"))], "test")
    for day in (DAY, NEXT):
        issue, _ = steps.build_step(settings, steps.period_for(settings, day))
        steps.write_archive(settings, issue)


def _check_atom(data: bytes) -> ET.Element:
    """RFC 4287's requirements, element by element (what feedparser is lenient about)."""
    root = ET.fromstring(data)
    assert root.tag == f"{A}feed"
    for tag in ("id", "title", "updated"):
        assert len(root.findall(f"{A}{tag}")) == 1, tag
    assert root.find(f"{A}author/{A}name").text
    assert [link.get("href") for link in root.findall(f"{A}link[@rel='self']")] == [
        "https://digest.example.org/news/feed.xml"
    ]
    ids = []
    for entry in root.findall(f"{A}entry"):
        for tag in ("id", "title", "updated", "summary"):
            assert len(entry.findall(f"{A}{tag}")) == 1, tag
        assert entry.find(f"{A}link[@rel='alternate']") is not None
        ids.append(entry.find(f"{A}id").text)
    assert len(ids) == len(set(ids))
    return root


def test_feed_is_written_next_to_the_archive_pages(feed_settings):
    _two_issues(feed_settings)
    folder = Path(feed_settings.web.archive_dir)
    assert sorted(p.name for p in folder.iterdir()) == ["2024-12-05.html", "2024-12-06.html", "feed.xml"]
    data = (folder / "feed.xml").read_bytes()
    _check_atom(data)
    parsed = feedparser.parse(data)
    assert parsed.bozo is False, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    assert parsed.feed.title == "Paper Digest: past issues · 论文速递：往期邮件"
    assert parsed.feed.id == "https://digest.example.org/news/archive/"
    newest, oldest = parsed.entries
    assert newest.link == "https://digest.example.org/news/archive/2024-12-06" == newest.id
    assert oldest.title == "Paper Digest 2024-12-05 · 论文速递 2024-12-05"
    assert oldest.summary == (
        "3 new papers in 2 topics, 0 newly accepted. 3 篇新论文，2 个方向，0 篇新录用。"
    )  # fmt: skip
    assert newest.summary.startswith("1 new paper in 1 topic, 0 newly accepted.")
    assert parsed.feed.updated_parsed == max(e.updated_parsed for e in parsed.entries)


def test_an_issue_without_an_archive_page_is_not_in_the_feed(feed_settings):
    _two_issues(feed_settings)
    folder = Path(feed_settings.web.archive_dir)
    (folder / "2024-12-05.html").unlink()
    steps.write_feed_file(feed_settings)
    parsed = feedparser.parse((folder / "feed.xml").read_bytes())
    assert [e.link.rsplit("/", 1)[1] for e in parsed.entries] == ["2024-12-06"]  # no dead link


def test_archive_command_writes_the_feed_too(feed_settings):
    make_issue(feed_settings.database_url)
    out = Path(feed_settings.web.archive_dir).parent / "elsewhere"
    result = invoke(
        "--config", feed_settings.config_path, "archive", "--date", DAY.isoformat(), "--out", str(out),
        NEWSLETTER_DATABASE_URL=feed_settings.database_url,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    parsed = feedparser.parse((out / "feed.xml").read_bytes())
    assert parsed.bozo is False and len(parsed.entries) == 1


def test_served_feed_is_the_written_file_and_the_index_links_it(feed_settings):
    _two_issues(feed_settings)
    written = (Path(feed_settings.web.archive_dir) / "feed.xml").read_bytes()
    with LiveServer(feed_settings) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        r = client.get("/feed.xml")
        assert r.status_code == 200 and r.content == written
        assert r.headers["content-type"] == "application/atom+xml; charset=utf-8"
        assert r.headers["x-content-type-options"] == "nosniff"
        index = client.get("/archive/")
        assert '<link rel="alternate" type="application/atom+xml" href="../feed.xml"' in index.text
        href = "../feed.xml"
        assert client.get(urljoin(f"{server.url}/archive/", href)).content == written
        assert client.head("/feed.xml").status_code == 200


def test_empty_feed_is_valid(feed_settings):
    with LiveServer(feed_settings) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        data = client.get("/feed.xml").content
    _check_atom(data)
    parsed = feedparser.parse(data)
    assert parsed.bozo is False and parsed.entries == []


def test_feed_text_is_escaped():
    from datetime import UTC, date, datetime

    from newsletter.render.feed import FeedEntry

    now = datetime(2024, 12, 5, tzinfo=UTC)
    data = render_feed([FeedEntry(date(2024, 12, 5), 1, 1, 0, now, now)], "https://x.example/a&b", "A <b>&</b>", "z")
    parsed = feedparser.parse(data)
    assert parsed.bozo is False and parsed.feed.author == "A <b>&</b>"
    assert parsed.entries[0].link == "https://x.example/a&b/archive/2024-12-05"
