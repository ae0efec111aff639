"""A Hexo Markdown post source (``2024-12-07_元宇宙_虚拟人.md``): front matter + digest body.

The front matter is YAML (Hexo itself parses it with js-yaml, so every published post has valid YAML). It is
read with PyYAML's BaseLoader: safe (no tags, no objects), and every scalar stays the text the post has, where
the default schema would turn ``date: 2024-01-24 10:34:37`` into a datetime and ``title: No`` into False.
Broken front matter (invalid YAML, a list where text belongs, a tag that is not a topic) rejects the post with
a message naming the file, rather than storing papers under a topic like ``- NeRF`` or ``*i``.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import PurePosixPath
from typing import Any

import yaml

from newsletter.ingest.parse.common import norm_ws
from newsletter.ingest.parse.digest_markdown import parse_digest_markdown
from newsletter.records import ParsedPost

DIGEST_CATEGORY = "Paper"
_FRONT = re.compile(r"\A\s*---[ \t]*\n(?P<yaml>(?:.*?\n)?)---[ \t]*(?:\n|\Z)", re.DOTALL)
_FILE = re.compile(r"^(?P<date>\d{4}-\d{2}-\d{2})[_\s-]*(?P<topic>.*)$")
_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
# File names write "/" as "_". Only this upstream topic is known to contain a "/": elsewhere "_"
# may be part of the name, so it is not translated blindly.
_FILE_TOPICS = {"元宇宙_虚拟人": "元宇宙/虚拟人"}
# A topic as upstream writes one ("3DGS", "元宇宙/虚拟人", "Talking Head Generation"): a letter or digit first, one
# line, no markup or YAML syntax (what broken front matter leaves: "- NeRF", "*i", "[GAN"), at most 80 characters.
_TOPIC_SHAPE = re.compile(r"[^\W_][^\x00-\x1f\x7f*\[\]{}<>|#`!%@\\]{0,79}")
_TEXT_KEYS = ("title", "date")  # one value each
_LIST_KEYS = ("tags", "categories")  # a value or a list of values


def parse_markdown_post(text: str, filename: str) -> ParsedPost:
    """One Markdown post; topic from tags (else title, else file name), date from the file name.
    Raises ValueError naming the file when the front matter is broken."""
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    stem = PurePosixPath(filename.replace("\\", "/")).stem
    m = _FILE.match(stem)
    try:
        meta, body_text = read_front_matter(text)
        topic = _topic(meta, m.group("topic") if m else stem)
    except ValueError as exc:
        raise ValueError(f"{filename}: {exc}") from exc
    body = parse_digest_markdown(body_text)
    warnings = list(body.warnings)
    categories = _as_list(meta.get("categories"))
    if categories and DIGEST_CATEGORY not in categories:
        warnings.append(f"{filename}: categories {categories} do not include {DIGEST_CATEGORY}")
    if not topic:
        raise ValueError(f"{filename}: no topic (no tags, no title, nothing after the date in the file name)")
    post_date = (_day(m.group("date")) if m else None) or _day(meta.get("date")) or body.heading_date
    if post_date is None:
        raise ValueError(f"{filename}: no date in the file name, the front matter or a 'YYYY-MM-DD 更新' heading")
    if body.heading_date and body.heading_date != post_date:
        warnings.append(f"heading date {body.heading_date} differs from post date {post_date}")
    return ParsedPost(
        topic=topic,
        post_date=post_date,
        heading_date=body.heading_date,
        published=meta.get("date") or None,
        papers=body.papers,
        warnings=warnings,
        skipped_headings=body.skipped_headings,
    )


def read_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """(front matter, body). Values are text, or lists of text for ``- item`` blocks and ``[a, b]``.
    Raises ValueError when the front matter is not valid YAML, or a key this parser uses has the wrong shape."""
    m = _FRONT.match(text)
    if not m:
        return {}, text
    try:
        meta = yaml.load(m.group("yaml"), Loader=yaml.BaseLoader)  # safe: BaseLoader builds text, lists, dicts
    except yaml.YAMLError as exc:
        first_line = text.count("\n", 0, m.start("yaml")) + 1
        raise ValueError(f"front matter is not valid YAML: {_yaml_problem(exc, first_line)}") from exc
    if meta is None:  # an empty block
        meta = {}
    if not isinstance(meta, dict):
        raise ValueError("front matter must be `key: value` lines")
    for key in _TEXT_KEYS:
        if not isinstance(meta.get(key, ""), str):
            raise ValueError(f"front matter `{key}` must be text, not {_kind(meta[key])}")
    for key in _LIST_KEYS:
        value = meta.get(key, "")
        if not isinstance(value, str) and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise ValueError(f"front matter `{key}` must be text or a list of text, not {_kind(value)}")
    for tag in _as_list(meta.get("tags")):
        if not _TOPIC_SHAPE.fullmatch(tag):
            raise ValueError(f"front matter tag {tag!r} is not a topic")
    return meta, text[m.end() :]


def _yaml_problem(exc: yaml.YAMLError, first_line: int) -> str:
    """The problem and its line in the file, e.g. "found undefined alias 'i' (line 4)"."""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    mark = getattr(exc, "problem_mark", None)
    return f"{problem} (line {first_line + mark.line})" if mark else problem


def _kind(value: Any) -> str:
    return {list: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)


def _as_list(value: str | list[str] | None) -> list[str]:
    if isinstance(value, list):
        return [norm_ws(v) for v in value if norm_ws(v)]
    return [norm_ws(value)] if value and norm_ws(value) else []


def _topic(meta: dict[str, Any], file_topic: str) -> str:
    tags = [t for t in _as_list(meta.get("tags")) if t != DIGEST_CATEGORY]
    if tags:
        return tags[0]
    title = norm_ws(meta.get("title"))
    if title:
        if not _TOPIC_SHAPE.fullmatch(title):
            raise ValueError(f"front matter title {title!r} is not a topic (and there are no tags)")
        return title
    file_topic = norm_ws(file_topic)
    return _FILE_TOPICS.get(file_topic, file_topic)


def _day(text: str | None) -> date | None:
    m = _ISO_DAY.search(text or "")
    if not m:
        return None
    try:
        return date.fromisoformat(m.group(0))
    except ValueError:
        return None
