"""A Hexo Markdown post source (``2024-12-07_元宇宙_虚拟人.md``): front matter + digest body.

The front matter is read by a tiny hand-written reader (``key: value`` lines and ``- item`` lists,
which is all Hexo writes here) so the project needs no YAML dependency.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import PurePosixPath

from newsletter.ingest.parse.common import norm_ws
from newsletter.ingest.parse.digest_markdown import parse_digest_markdown
from newsletter.records import ParsedPost

DIGEST_CATEGORY = "Paper"
_FRONT = re.compile(r"\A\s*---[ \t]*\n(?P<yaml>(?:.*?\n)?)---[ \t]*(?:\n|\Z)", re.DOTALL)
_KEY = re.compile(r"^(?P<key>[A-Za-z_][\w-]*)[ \t]*:(?:[ \t]+(?P<value>.*?))?[ \t]*$")
_ITEM = re.compile(r"^[ \t]*-[ \t]+(?P<value>.*?)[ \t]*$")
_FILE = re.compile(r"^(?P<date>\d{4}-\d{2}-\d{2})[_\s-]*(?P<topic>.*)$")
_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
# File names write "/" as "_". Only this upstream topic is known to contain a "/": elsewhere "_"
# may be part of the name, so it is not translated blindly.
_FILE_TOPICS = {"元宇宙_虚拟人": "元宇宙/虚拟人"}


def parse_markdown_post(text: str, filename: str) -> ParsedPost:
    """One Markdown post; topic from tags (else title, else file name), date from the file name."""
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    meta, body_text = read_front_matter(text)
    body = parse_digest_markdown(body_text)
    stem = PurePosixPath(filename.replace("\\", "/")).stem
    m = _FILE.match(stem)
    warnings = list(body.warnings)
    categories = _as_list(meta.get("categories"))
    if categories and DIGEST_CATEGORY not in categories:
        warnings.append(f"{filename}: categories {categories} do not include {DIGEST_CATEGORY}")
    topic = _topic(meta, m.group("topic") if m else stem)
    if not topic:
        raise ValueError(f"{filename}: no topic (no tags, no title, nothing after the date in the file name)")
    post_date = (_day(m.group("date")) if m else None) or _day(_scalar(meta.get("date"))) or body.heading_date
    if post_date is None:
        raise ValueError(f"{filename}: no date in the file name, the front matter or a 'YYYY-MM-DD 更新' heading")
    if body.heading_date and body.heading_date != post_date:
        warnings.append(f"heading date {body.heading_date} differs from post date {post_date}")
    return ParsedPost(
        topic=topic,
        post_date=post_date,
        heading_date=body.heading_date,
        published=_scalar(meta.get("date")) or None,
        papers=body.papers,
        warnings=warnings,
        skipped_headings=body.skipped_headings,
    )


def read_front_matter(text: str) -> tuple[dict[str, str | list[str]], str]:
    """(front matter, body). Values are strings, or lists for ``- item`` blocks and ``[a, b]``."""
    m = _FRONT.match(text)
    if not m:
        return {}, text
    meta: dict[str, str | list[str]] = {}
    key = None
    for line in m.group("yaml").split("\n"):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        item = _ITEM.match(line)
        if item and key is not None:
            current = meta.get(key)
            meta[key] = [*(current if isinstance(current, list) else []), _unquote(item.group("value"))]
            continue
        kv = _KEY.match(line)
        if not kv:
            continue  # continuation lines of multi-line values are not used here
        key = kv.group("key")
        meta[key] = _value(kv.group("value") or "")
    return meta, text[m.end() :]


def _value(raw: str) -> str | list[str]:
    raw = raw.strip()
    if raw.startswith("[") and raw.endswith("]"):
        return [_unquote(v) for v in raw[1:-1].split(",") if v.strip()]
    return _unquote(raw)


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    return value.strip()


def _as_list(value: str | list[str] | None) -> list[str]:
    if isinstance(value, list):
        return [norm_ws(v) for v in value if norm_ws(v)]
    return [norm_ws(value)] if value and norm_ws(value) else []


def _scalar(value: str | list[str] | None) -> str:
    if isinstance(value, list):
        return value[0] if value else ""
    return value or ""


def _topic(meta: dict[str, str | list[str]], file_topic: str) -> str:
    tags = [t for t in _as_list(meta.get("tags")) if t != DIGEST_CATEGORY]
    if tags:
        return tags[0]
    title = norm_ws(_scalar(meta.get("title")))
    if title:
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
