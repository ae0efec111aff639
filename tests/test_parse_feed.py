"""The Atom feed reader: which entries are digests, post identity (date folder, topic), skips."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from newsletter.ingest.parse.feed import FeedParse, parse_feed

FIXTURES = Path(__file__).parent / "fixtures" / "parse"


@pytest.fixture(scope="module")
def feed() -> FeedParse:
    return parse_feed((FIXTURES / "feed_small.xml").read_bytes(), "feed_small.xml")


def test_digest_posts_and_their_identity(feed):
    assert [p.key for p in feed.posts] == [
        "2024-12-09/Talking Head Generation",  # new-style URL (after 2024-12-10)
        "2024-08-13/3DGS",  # old-style URL: the date folder after /Paper/, not the /2024/08/14/ prefix
        "2024-08-13/元宇宙/虚拟人",  # topic from the tag, not the "_" in the URL
        "2024-01-24/LLM",  # no topic tag: the title
    ]
    first = feed.posts[0]
    assert first.url == "https://kedreamix.github.io/Paper/2024-12-09/Talking%20Head%20Generation/"
    assert first.published == "2024-12-09T14:50:33.000Z"
    (paper,) = first.papers
    assert paper.title == "Real-time Talking Heads"
    assert paper.comment == "Accepted to “ICASSP 2025”"
    assert (paper.arxiv_id, paper.arxiv_version) == ("2412.05001", "v2")
    assert paper.takeaways == ["一。", "二。"]


def test_heading_date_kept_apart_from_the_post_date(feed):
    post = feed.posts[1]
    assert post.post_date == date(2024, 8, 13)
    assert post.heading_date == date(2024, 8, 14)
    assert post.warnings == ["heading date 2024-08-14 differs from post date 2024-08-13"]


def test_empty_post_is_kept(feed):
    post = feed.posts[2]
    assert post.papers == [] and post.heading_date == date(2024, 8, 13)


def test_skipped_entries_have_reasons(feed):
    assert feed.skipped == [
        "Failed building wheel for PyAudio 解决方法 (https://kedreamix.github.io/2024/01/28/Note/pyaudio/): "
        "not category Paper (Note)",  # a *tag* "Paper" does not make a digest
        "超赞的数字人生成知识库 Awesome-Talking-Head-Synthesis "
        "(https://kedreamix.github.io/Paper/Awesome-Talking-Head-Synthesis/): Paper entry without paper h2",
    ]
    assert feed.bozo is None


def test_screenshots_of_a_feed_entry(feed):
    assert feed.posts[3].papers[0].screenshots == ["https://picx.zhimg.com/v2-c1.jpg"]


def test_broken_feed_is_reported_not_raised():
    payload = (FIXTURES / "feed_small.xml").read_bytes()
    cut = payload[: payload.index(b"<entry>", payload.index(b"<entry>") + 1) + 200]  # truncated mid-entry
    result = parse_feed(cut, "cut.xml")
    assert result.bozo
    [warning] = result.warnings  # the position in the message comes from the XML parser: not compared
    assert warning.startswith("cut.xml: feed is not well-formed (")
    assert result.posts and result.posts[0].key == "2024-12-09/Talking Head Generation"


def test_not_a_feed():
    result = parse_feed(b"not xml at all", "junk")
    assert result.posts == [] and result.bozo
