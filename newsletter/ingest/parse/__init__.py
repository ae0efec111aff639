"""Parsers: one per upstream layout, all producing ParsedPost / ParsedPaper records.

`parse_payload` is the stage's entry point: bytes of a known kind -> posts, with warnings that name the source
and the item.
"""

from __future__ import annotations

import html
import re
from datetime import date
from pathlib import Path

from newsletter.ingest.archive import Payload
from newsletter.ingest.parse.common import norm_ws
from newsletter.ingest.parse.detect import decode_text
from newsletter.ingest.parse.digest_html import parse_digest_html
from newsletter.ingest.parse.digest_text import parse_text_post, topic_from_slug
from newsletter.ingest.parse.feed import DIGEST_CATEGORY, parse_feed
from newsletter.ingest.parse.post_file import parse_markdown_post
from newsletter.records import ParsedPost
from newsletter.registry.venues import COMMENT_MAX_CHARS

_HTML_NAME = re.compile(r"(\d{4}-\d{2}-\d{2})[_ ](.+?)(\.html?)?$")
_HEAD_MAX = 65_536  # a page's <meta> tags sit at its start
_META = re.compile(r"<meta\b[^>]{0,2000}>", re.IGNORECASE)
_ATTR = re.compile(r"""([\w:-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')""")


def parse_payload(payload: Payload) -> tuple[list[ParsedPost], list[str]]:
    """Bytes -> posts, with warnings that name the source and the item."""
    posts, warnings = _parse(payload)
    for post in posts:
        warnings += [f"{payload.source}: {post.key}: {w}" for w in _bound_comments(post)]
    return posts, warnings


def _bound_comments(post: ParsedPost) -> list[str]:
    """Cut comments over COMMENT_MAX_CHARS (no arXiv comment is that long; venues reads no further), one
    warning per paper cut."""
    warnings = []
    for paper in post.papers:
        if paper.comment and len(paper.comment) > COMMENT_MAX_CHARS:
            warnings.append(
                f"{paper.title[:80]!r}: comment of {len(paper.comment):,} characters cut to {COMMENT_MAX_CHARS:,}"
            )
            paper.comment = paper.comment[:COMMENT_MAX_CHARS]
    return warnings


def _parse(payload: Payload) -> tuple[list[ParsedPost], list[str]]:
    name = Path(payload.location).name
    if payload.kind == "feed":
        result = parse_feed(payload.data, name)  # feed-level warnings name the file: "<source>: <file>: ..."
        warnings = [f"{payload.source}: {w}" for w in result.warnings]
        warnings += [f"{payload.source}: {post.key} ({post.url}): {w}" for post in result.posts for w in post.warnings]
        if result.bozo and not result.posts:
            raise ValueError(f"feed could not be parsed: {result.bozo}")
        if result.bozo:
            warnings.append(f"{payload.source}: {name}: feed is malformed ({result.bozo}); kept what could be read")
        return result.posts, warnings
    text, warning = decode_text(payload.data)
    warnings = [f"{payload.source}: {name}: {warning}"] if warning else []
    if payload.kind == "markdown":
        post = parse_markdown_post(text, name)
    elif payload.kind == "text":
        post = parse_text_post(text, name)
    elif payload.kind == "html":
        post = _html_post(text, name)
    else:
        raise ValueError(f"unknown payload kind {payload.kind!r}")
    warnings += [f"{payload.source}: {name}: {w}" for w in post.warnings]
    return [post], warnings


def _html_post(text: str, name: str) -> ParsedPost:
    """A saved post page: date and topic from the file name (`2024-12-05_3DGS.html`), as for Markdown, unless
    the page says otherwise: its own tags name the topic, and a page with digests of several dates is not
    one post (a saved feed or listing page) and is refused rather than merged into one."""
    body = parse_digest_html(text)
    if len(body.heading_dates) > 1:
        days = ", ".join(d.isoformat() for d in sorted(body.heading_dates))
        raise ValueError(f"digests of {len(body.heading_dates)} dates in one page ({days}): not one post")
    m = _HTML_NAME.match(name)
    if m:
        post_date, topic = date.fromisoformat(m.group(1)), topic_from_slug(m.group(2))
    elif body.heading_date:
        post_date, topic = body.heading_date, topic_from_slug(Path(name).stem)
    else:
        raise ValueError("no post date: name the file YYYY-MM-DD_<topic>.html")
    warnings = list(body.warnings)
    tags = _page_tags(text)
    if tags and topic not in tags:
        warnings.append(f"the file name says topic {topic!r}, the page's tags say {tags[0]!r}: {tags[0]!r} used")
        topic = tags[0]
    if body.heading_date and body.heading_date != post_date:
        warnings.append(f"heading date {body.heading_date} differs from post date {post_date}")
    return ParsedPost(
        topic=topic,
        post_date=post_date,
        heading_date=body.heading_date,
        papers=body.papers,
        warnings=warnings,
        skipped_headings=body.skipped_headings,
    )


def _page_tags(text: str) -> list[str]:
    """The topics a post page states itself (Hexo's `<meta property="article:tag">`), `Paper` left out."""
    tags = []
    for meta in _META.finditer(text, 0, _HEAD_MAX):
        attrs = {k.lower(): html.unescape(v1 if v1 is not None else v2) for k, v1, v2 in _ATTR.findall(meta.group())}
        tag = norm_ws(attrs.get("content"))
        if attrs.get("property", "").lower() == "article:tag" and tag and tag != DIGEST_CATEGORY and tag not in tags:
            tags.append(tag)
    return tags
