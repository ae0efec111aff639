"""Feeds with a DOCTYPE and misdetected input (#9, 1.2): a feed is told by its root element, entities are never
resolved (no XXE, no billion laughs), and a page that is not one post is refused, never merged into one."""

from __future__ import annotations

import codecs
from pathlib import Path

import feedparser
import pytest
from sqlalchemy import select

from newsletter.config import SAMPLE_DIR
from newsletter.db import session_scope
from newsletter.db.models import Post, Sighting
from newsletter.ingest.parse.detect import guess_kind, read_prolog
from newsletter.ingest.parse.feed import parse_feed, safe_doctype
from newsletter.pipeline.ingest import ingest_file
from newsletter.store.query import PaperFilter, find_papers, paper_record

SAMPLE = (SAMPLE_DIR / "feed.xml").read_text(encoding="utf-8")
DECL, BODY = SAMPLE.split("\n", 1)
SECRET = "TOP-SECRET-3f9a"
SAMPLE_POSTS = {
    ("2026-11-24", "3DGS"),
    ("2026-11-25", "3DGS"),
    ("2026-11-25", "Diffusion Models"),
    ("2026-11-24", "NeRF"),
}


def with_doctype(doctype: str, body: str = BODY) -> bytes:
    return f"{DECL}\n{doctype}\n{body}".encode()


def laughs(depth: int = 9) -> str:
    lol = "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, depth + 1))
    return f'<!DOCTYPE feed [<!ENTITY lol0 "lol">{lol}]>'


def posts_in_store(url: str) -> set[tuple[str, str]]:
    with session_scope(url) as s:
        return {(p.post_date.isoformat(), p.topic) for p in s.scalars(select(Post))}


def store_text(url: str) -> str:
    with session_scope(url) as s:
        papers = [str(paper_record(p)) for p in find_papers(s, PaperFilter())]
        comments = [c or "" for c in s.scalars(select(Sighting.comment))]
    return "\n".join(papers + comments)


# ---- detection --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "doctype",
    [
        '<!DOCTYPE feed [<!ENTITY nbsp "&#160;">]>',
        '<!DOCTYPE feed [\n  <!ENTITY nbsp "&#160;">\n  <!ENTITY copy "(c)">\n]>',
        '<!-- saved by hand --><?xml-stylesheet href="a.xsl"?><!DOCTYPE feed [<!ENTITY a "x>y"><!ENTITY b "z">]>',
        '<!DOCTYPE feed [<!ENTITY nbsp "&#160;"><!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
        '<!DOCTYPE feed SYSTEM "http://example.org/atom.dtd">',
        laughs(),
    ],
    ids=["nbsp", "multi-line", "comment-pi-quoted-gt", "external-entity", "external-dtd", "billion-laughs"],
)
def test_feed_with_a_doctype_is_a_feed(doctype: str):
    assert guess_kind(with_doctype(doctype), "old-atom.xml") == "feed"


def test_prolog_names_the_root_and_keeps_the_subset_unread():
    prolog = read_prolog('<?xml version="1.0"?>\n<!-- x --><!DOCTYPE rss [<!ENTITY e "]>">]><rdf:RDF>')
    assert prolog.root == "rdf:RDF" and prolog.local_root == "RDF"
    assert prolog.doctype_name == "rss" and prolog.subset == '<!ENTITY e "]>">'


def test_rss_and_utf16_feed_with_doctype():
    rss = '<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY mdash "&#8212;">]><rss version="2.0"><channel/></rss>'
    assert guess_kind(rss.encode(), "x.txt") == "feed"
    wide = codecs.BOM_UTF16_LE + with_doctype('<!DOCTYPE feed [<!ENTITY nbsp "&#160;">]>').decode().replace(
        "utf-8", "utf-16"
    ).encode("utf-16-le")
    assert guess_kind(wide) == "feed"
    result = parse_feed(wide, "wide")
    assert result.bozo is None and len(result.posts) == len(SAMPLE_POSTS)


def test_malformed_doctype_is_one_clear_error():
    with pytest.raises(ValueError, match=r"x\.xml: markup with a malformed DOCTYPE: DOCTYPE not closed by '>'"):
        guess_kind(with_doctype('<!DOCTYPE feed [<!ENTITY a "b">'), "x.xml")


# ---- entities are never resolved ------------------------------------------------------------------------


def test_feed_with_internal_entity_ingests_like_the_plain_feed(sqlite_settings, tmp_path):
    body = BODY.replace("<title>Paper Digest sample</title>", "<title>Paper&nbsp;Digest</title>", 1)
    path = tmp_path / "old-atom.xml"
    path.write_bytes(with_doctype('<!DOCTYPE feed [<!ENTITY nbsp "&#160;">]>', body))
    report = ingest_file(sqlite_settings, path)
    assert report.status == "ok", report.error
    assert report.stats.warnings == [] and report.stats.papers_new > 0
    assert posts_in_store(sqlite_settings.database_url) == SAMPLE_POSTS
    data, warnings = safe_doctype(path.read_bytes())
    assert feedparser.parse(data).feed.title == "Paper\xa0Digest" and warnings == []


def test_external_entity_is_never_read_and_is_named_in_a_warning(sqlite_settings, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)
    body = BODY.replace('term="NeRF"', 'term="NeRF&xxe;"').replace("<title>Paper Digest", "<title>&xxe;Paper")
    path = tmp_path / "old-atom.xml"
    path.write_bytes(
        with_doctype(f'<!DOCTYPE feed [<!ENTITY nbsp "&#160;"><!ENTITY xxe SYSTEM "{secret.as_uri()}">]>', body)
    )
    report = ingest_file(sqlite_settings, path, source="snap")
    assert report.status == "ok", report.error
    [warning] = report.stats.warnings
    assert warning.startswith("snap: DOCTYPE: entity 'xxe' not expanded, read as empty (external: SYSTEM")
    # One post per entry with each entry's own date and topic: not one post named after the file.
    assert posts_in_store(sqlite_settings.database_url) == SAMPLE_POSTS
    assert SECRET not in store_text(sqlite_settings.database_url)
    assert SECRET not in str(feedparser.parse(safe_doctype(path.read_bytes())[0]))


def test_billion_laughs_is_not_expanded(sqlite_settings, tmp_path):
    body = BODY.replace("<title>Paper Digest sample</title>", "<title>&lol9;</title>", 1)
    body = body.replace('term="NeRF"', 'term="NeRF&lol9;"')
    path = tmp_path / "laughs.xml"
    path.write_bytes(with_doctype(laughs(), body))
    report = ingest_file(sqlite_settings, path, source="lol")
    assert report.status == "ok", report.error
    [warning] = report.stats.warnings
    assert "entity 'lol1', 'lol2'" in warning and "(refers to other entities)" in warning
    assert posts_in_store(sqlite_settings.database_url) == SAMPLE_POSTS
    data, _ = safe_doctype(path.read_bytes())
    assert b"&lol0;" not in data.split(b"<feed", 1)[0]  # the nesting is gone from what the parser sees


@pytest.mark.parametrize(
    ("entity", "reason"),
    [
        ('<!ENTITY big "0123456789">', "value over 8 characters"),
        ('<!ENTITY tag "<b>x</b>">', "markup in its value"),
        ('<!ENTITY pub PUBLIC "-//X//EN" "http://example.org/x">', "external: PUBLIC"),
    ],
)
def test_unsafe_entity_values_are_read_as_empty(entity: str, reason: str):
    name = entity.split()[1]
    body = BODY.replace("<title>Paper Digest sample</title>", f"<title>a&{name};b</title>", 1)
    data, warnings = safe_doctype(with_doctype(f"<!DOCTYPE feed [{entity}]>", body))
    assert feedparser.parse(data).feed.title == "ab"
    assert len(warnings) == 1 and f"'{name}'" in warnings[0] and reason in warnings[0]


# ---- a page that is not one post ------------------------------------------------------------------------


def _page(*days: str, tags: tuple[str, ...] = ()) -> str:
    metas = "".join(f'<meta property="article:tag" content="{t}">' for t in tags)
    digests = "".join(
        f"<h1>{day} 更新</h1><h2>Paper of {day}</h2><p><strong>Authors:A</strong></p><p>Abstract.</p>"
        f'<p><a href="http://arxiv.org/abs/2611.0{i}001v1">PDF</a> 8 pages</p>'
        for i, day in enumerate(days, 1)
    )
    return f'<!DOCTYPE html><html><head><meta charset="utf-8">{metas}</head><body>{digests}</body></html>'


def test_page_with_digests_of_several_dates_is_refused_not_merged(sqlite_settings, tmp_path):
    path = tmp_path / "saved.html"
    path.write_text(_page("2026-11-24", "2026-11-25"), encoding="utf-8")
    report = ingest_file(sqlite_settings, path, source="page")
    assert report.failed
    assert "page: saved.html: could not be ingested: digests of 2 dates in one page (2026-11-24, 2026-11-25)" in (
        report.error
    )
    assert posts_in_store(sqlite_settings.database_url) == set()


def test_page_tags_beat_the_file_name(sqlite_settings, tmp_path):
    path = tmp_path / "2026-11-25_download.html"
    path.write_text(_page("2026-11-25", tags=("Paper", "NeRF")), encoding="utf-8")
    report = ingest_file(sqlite_settings, path, source="page")
    assert report.status == "ok", report.error
    assert posts_in_store(sqlite_settings.database_url) == {("2026-11-25", "NeRF")}
    assert report.stats.warnings == [
        "page: 2026-11-25_download.html: the file name says topic 'Download', the page's tags say 'NeRF': 'NeRF' used"
    ]


def test_bundled_sample_feed_is_unchanged_by_the_doctype_guard():
    data = (SAMPLE_DIR / "feed.xml").read_bytes()
    assert safe_doctype(data) == (data, [])
    assert Path(SAMPLE_DIR / "feed.xml").exists()


def test_a_tie_between_layouts_is_refused_not_guessed():
    tied = b"**Authors:A**\nAuthors:B\n"
    with pytest.raises(ValueError, match=r"notes: ambiguous: as much markdown as text layout; name it \.md or \.txt"):
        guess_kind(tied, "notes")
    assert guess_kind(tied, "notes.md") == "markdown"  # the extension still breaks a tie
