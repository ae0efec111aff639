"""The parsers against the real upstream data in ../shared/corpus and its reference parses. (Speed against
feedparser is a benchmark, bench/ingest.py, not a test: a timing assert fails on a busy machine.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from newsletter.ingest.parse.feed import parse_feed
from newsletter.ingest.parse.post_file import parse_markdown_post

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
if not CORPUS.is_dir():
    pytest.skip(f"real-data corpus not found at {CORPUS} (it sits beside the repository)", allow_module_level=True)

pytestmark = pytest.mark.corpus
FEEDS = sorted((CORPUS / "feeds").glob("*.xml"))
MARKDOWN = sorted((CORPUS / "markdown").glob("*.md"))
MD_NAMES = {p.name for p in MARKDOWN}


def truth_for(feed: Path) -> dict:
    return json.loads((CORPUS / "truth" / f"{feed.stem}.json").read_text(encoding="utf-8"))


_parsed: dict[Path, object] = {}


def parsed(feed: Path):
    if feed not in _parsed:
        _parsed[feed] = parse_feed(feed.read_bytes(), feed.name)
    return _parsed[feed]


@pytest.mark.parametrize("feed", FEEDS, ids=lambda p: p.stem)
def test_papers_match_truth(feed):
    """(entry, id, version, comment) over all papers, unrendered included, equals the reference."""
    truth = truth_for(feed)
    got = {(p.key, x.arxiv_id, x.arxiv_version, x.comment) for p in parsed(feed).posts for x in p.papers}
    expected = {
        (e["entry_key"], x["arxiv_id"], x["arxiv_version"], x["comment"])
        for e in truth["entries"]
        for x in e["papers"] + e["unrendered_papers"]
    }
    assert sorted(got - expected) == [] and sorted(expected - got) == []


@pytest.mark.parametrize("feed", FEEDS, ids=lambda p: p.stem)
def test_entries_counts_and_flags_match_truth(feed):
    truth = truth_for(feed)
    posts = {p.key: p for p in parsed(feed).posts}
    assert sorted(posts) == sorted(e["entry_key"] for e in truth["entries"])
    for entry in truth["entries"]:
        post = posts[entry["entry_key"]]
        rendered = [x for x in post.papers if not x.unrendered]
        unrendered = [x for x in post.papers if x.unrendered]
        # n_papers counts rendered papers, second copies of a repeated digest included.
        assert len(rendered) == entry["n_papers"] == len(entry["papers"]), entry["entry_key"]
        assert len(unrendered) == len(entry["unrendered_papers"]), entry["entry_key"]
        assert [x.arxiv_id for x in rendered] == [x["arxiv_id"] for x in entry["papers"]]
        assert [x.dup_in_entry for x in rendered] == [x["dup_in_entry"] for x in entry["papers"]]
        assert [x.arxiv_id for x in unrendered] == [x["arxiv_id"] for x in entry["unrendered_papers"]]
        assert str(post.heading_date) == entry["date"]
        assert post.post_date.isoformat() == entry["path_date"]
        assert post.url == entry["url"] and post.published == entry["published"]
        assert [x.title for x in rendered] == [x["title"] for x in entry["papers"]]
        assert [x.authors for x in rendered] == [x["authors"] for x in entry["papers"]]
        assert [x.pdf_url for x in rendered] == [x["pdf_url"] for x in entry["papers"]]


@pytest.mark.parametrize("feed", FEEDS, ids=lambda p: p.stem)
def test_skips_match_truth(feed):
    truth = truth_for(feed)
    result = parsed(feed)
    got = sorted(re.sub(r"^.* \((.*)\): (.*)$", r"\1 | \2", s) for s in result.skipped)
    assert got == sorted(f"{s['url']} | {s['reason']}" for s in truth["skipped_entries"])
    headings = sorted((p.url, h) for p in result.posts for h in p.skipped_headings)
    digest_urls = {p.url for p in result.posts}
    assert headings == sorted((h["entry_url"], h["h2"]) for h in truth["skipped_h2"] if h["entry_url"] in digest_urls)


def test_summary_and_takeaways_agreement():
    """has_summary and n_takeaways of rendered papers (the reference is exact for those)."""
    total = summary_ok = takeaways_ok = 0
    misses = []
    for feed in FEEDS:
        posts = {p.key: p for p in parsed(feed).posts}
        for entry in truth_for(feed)["entries"]:
            rendered = [x for x in posts[entry["entry_key"]].papers if not x.unrendered]
            for got, exp in zip(rendered, entry["papers"], strict=True):
                total += 1
                summary_ok += (got.summary_zh is not None) == exp["has_summary"]
                takeaways_ok += len(got.takeaways) == exp["n_takeaways"]
                if len(got.takeaways) != exp["n_takeaways"]:
                    misses.append((feed.stem, got.arxiv_id, len(got.takeaways), exp["n_takeaways"]))
    assert total == sum(len(e["papers"]) for feed in FEEDS for e in truth_for(feed)["entries"]) > 1500
    assert summary_ok == total, f"has_summary agreement {summary_ok}/{total}"
    assert takeaways_ok == total, f"n_takeaways agreement {takeaways_ok}/{total}: {misses[:10]}"


def test_unrendered_titles_and_authors():
    """Titles of unrendered papers are approximate in the reference: compare them loosely."""
    for feed in FEEDS:
        posts = {p.key: p for p in parsed(feed).posts}
        for entry in truth_for(feed)["entries"]:
            unrendered = [x for x in posts[entry["entry_key"]].papers if x.unrendered]
            for got, exp in zip(unrendered, entry["unrendered_papers"], strict=True):
                assert re.sub(r"\W", "", got.title.lower()) == re.sub(r"\W", "", exp["title"].lower())
                assert got.authors == exp["authors"]
                assert (got.summary_zh is not None) == exp["has_summary"]


@pytest.mark.parametrize("md", MARKDOWN, ids=lambda p: p.stem)
def test_markdown_posts_parse_completely(md):
    text = md.read_text(encoding="utf-8")
    post = parse_markdown_post(text, md.name)
    headings = re.findall(r"^## (.+?)\s*\n\s*\*\*Authors", text, re.MULTILINE)
    assert len(post.papers) == len(headings)
    assert all(p.arxiv_id and p.arxiv_version and p.title and p.authors for p in post.papers)
    assert post.key.startswith(md.name[:10])
    if not headings:
        assert post.papers == [] and post.heading_date is not None  # the empty post


def test_markdown_posts_agree_with_the_feeds():
    """A post seen both as Markdown source and in a feed gives the same papers (quotes aside:
    the site's renderer turns straight quotes into smart ones)."""
    truth = {e["entry_key"]: e for feed in FEEDS for e in truth_for(feed)["entries"]}
    # Which Markdown files have a feed entry, by the corpus's file naming (`<date>_<topic, / as _>.md`).
    expected = {key for key, e in truth.items() if f"{e['path_date']}_{e['topic'].replace('/', '_')}.md" in MD_NAMES}
    compared = set()
    for md in MARKDOWN:
        post = parse_markdown_post(md.read_text(encoding="utf-8"), md.name)
        entry = truth.get(post.key)
        if entry is None:
            continue
        compared.add(post.key)
        want = {
            (x["arxiv_id"], x["arxiv_version"], _plain(x["comment"]), x["n_takeaways"])
            for x in entry["papers"] + entry["unrendered_papers"]
        }
        got = {(x.arxiv_id, x.arxiv_version, _plain(x.comment), len(x.takeaways)) for x in post.papers}
        assert got == want, post.key
    assert compared == expected and compared  # every such post compared, and there are some


def _plain(text: str | None) -> str:
    return (text or "").replace("“", '"').replace("”", '"').replace("‘", "'").replace("’", "'")
