"""Parsers: one per upstream layout, all producing ParsedPost / ParsedPaper records.

`parse_payload` is the stage's entry point: bytes of a known kind -> posts, with warnings that name the source
and the item.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

from newsletter.ingest.archive import Payload
from newsletter.ingest.parse.detect import decode_text
from newsletter.ingest.parse.digest_html import parse_digest_html
from newsletter.ingest.parse.digest_text import parse_text_post, topic_from_slug
from newsletter.ingest.parse.feed import parse_feed
from newsletter.ingest.parse.post_file import parse_markdown_post
from newsletter.records import ParsedPost
from newsletter.registry.venues import COMMENT_MAX_CHARS

_HTML_NAME = re.compile(r"(\d{4}-\d{2}-\d{2})[_ ](.+?)(\.html?)?$")


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
        result = parse_feed(payload.data, payload.source)
        warnings = [f"{payload.source}: {w}" for w in result.warnings]
        warnings += [f"{payload.source}: {post.key} ({post.url}): {w}" for post in result.posts for w in post.warnings]
        if result.bozo and not result.posts:
            raise ValueError(f"feed could not be parsed: {result.bozo}")
        if result.bozo:
            warnings.append(f"{payload.source}: feed is malformed ({result.bozo}); kept what could be read")
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
    """A saved post page: topic and date come from the file name (`2024-12-05_3DGS.html`), as for Markdown."""
    body = parse_digest_html(text)
    m = _HTML_NAME.match(name)
    if m:
        post_date, topic = date.fromisoformat(m.group(1)), topic_from_slug(m.group(2))
    elif body.heading_date:
        post_date, topic = body.heading_date, topic_from_slug(Path(name).stem)
    else:
        raise ValueError("no post date: name the file YYYY-MM-DD_<topic>.html")
    return ParsedPost(
        topic=topic,
        post_date=post_date,
        heading_date=body.heading_date,
        papers=body.papers,
        warnings=body.warnings,
        skipped_headings=body.skipped_headings,
    )
