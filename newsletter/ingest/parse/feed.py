"""The blog's Atom feed: which entries are digests, and each digest's posts and papers.

An entry is a digest when its categories include ``Paper``; its topic is the tag other than
``Paper`` (else the entry title). A post is identified by (date, topic): the date is the date
folder of the permalink (``.../Paper/2024-12-05/3DGS/``, also after the 2024-12-10 URL change),
else the ``YYYY-MM-DD 更新`` heading, which is kept apart because upstream sometimes dates it
differently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from urllib.parse import unquote, urlsplit

import feedparser

from newsletter.ingest.parse.common import norm_ws
from newsletter.ingest.parse.detect import PROLOG_MAX, decode_text, read_prolog, wide_encoding
from newsletter.ingest.parse.digest_html import parse_digest_html
from newsletter.records import ParsedPost

DIGEST_CATEGORY = "Paper"
_DATE_FOLDER = re.compile(r"(?:^|/)(\d{4}-\d{2}-\d{2})(?=/|$)")
ENTITY_VALUE_MAX = 8  # characters: an entity may expand to at most ~3 times the length of its reference
_ENTITY_DECL = re.compile(
    r"""<!ENTITY\s+(%\s+)?([^\s"'%>]+)\s+(?:"([^"]*)"|'([^']*)'|((?:SYSTEM|PUBLIC)\b[^>]*))[^>]*>"""
)
_CHAR_REF = re.compile(r"&#(?:[0-9]{1,7}|x[0-9A-Fa-f]{1,6});")
_PREDEFINED = frozenset(("lt", "gt", "amp", "quot", "apos"))
_OTHER_DECL = re.compile(r"<!(ELEMENT|ATTLIST|NOTATION)\b")
_DECL_ENCODING = re.compile(r"""(\A<\?xml[^>]*?encoding\s*=\s*["'])[^"']*(["'])""")


@dataclass
class FeedParse:
    posts: list[ParsedPost] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "<title> (<url>): <reason>"
    warnings: list[str] = field(default_factory=list)
    bozo: str | None = None  # feedparser's complaint about the XML, if any


def parse_feed(payload: bytes, source: str) -> FeedParse:
    """Every digest post of one feed snapshot; `source` names it in messages."""
    result = FeedParse()
    payload, result.warnings = safe_doctype(payload)
    # Upstream HTML is never passed on (only text is kept), so feedparser's sanitiser and URI
    # resolution would only cost time: about 1.3 s of 1.6 s on the largest snapshot.
    parsed = feedparser.parse(payload, sanitize_html=False, resolve_relative_uris=False)
    if parsed.get("bozo"):
        result.bozo = f"{type(parsed.get('bozo_exception')).__name__}: {parsed.get('bozo_exception')}"
        result.warnings.append(f"{source}: feed is not well-formed ({result.bozo})")
    for entry in parsed.get("entries", []):
        try:
            _read_entry(entry, source, result)
        except Exception as exc:  # one broken entry must not cost the others
            label = f"{norm_ws(entry.get('title')) or '(untitled)'} ({entry.get('link') or entry.get('id')})"
            result.warnings.append(f"entry {label} could not be parsed: {type(exc).__name__}: {exc}")
    return result


def safe_doctype(data: bytes) -> tuple[bytes, list[str]]:
    """The feed with its DOCTYPE replaced by one the XML parser can use without resolving anything.

    No external DTD or entity is ever loaded (XXE) and no entity expands into others (billion laughs): an
    entity survives only when its value is one character reference or a few characters of plain text
    (`<!ENTITY nbsp "&#160;">`); every other one is declared empty, so its references read as nothing
    instead of breaking the parse, and a warning names it. Other declarations are dropped.
    """
    if wide_encoding(data):
        data = _as_utf8(data)
    head = data[:PROLOG_MAX].decode("latin-1")  # byte for byte: offsets and bytes survive the round trip
    prolog = read_prolog(head)
    if prolog.doctype is None:
        if prolog.error and "DOCTYPE" in prolog.error:
            raise ValueError(f"malformed DOCTYPE: {prolog.error}")
        return data, []
    entities, warnings = _entities(prolog.subset)
    if prolog.external_id:
        warnings.append(f"DOCTYPE: external DTD not loaded ({_short(prolog.external_id)})")
    others = sorted(set(_OTHER_DECL.findall(prolog.subset)))
    if others:
        warnings.append(f"DOCTYPE: declarations ignored ({', '.join(others)})")
    doctype = ""
    if entities:  # one per line: feedparser re-reads the DOCTYPE line by line
        lines = "".join(f'<!ENTITY {name} "{value}">\n' for name, value in entities.items())
        doctype = f"<!DOCTYPE {prolog.doctype_name} [\n{lines}]>"
    start, end = prolog.doctype
    return data[:start] + doctype.encode("latin-1") + data[end:], warnings


def _entities(subset: str) -> tuple[dict[str, str], list[str]]:
    """General entities of an internal subset: {name: value kept, or "" when refused}, and the refusals."""
    entities: dict[str, str] = {}
    refused: dict[str, list[str]] = {}
    for m in _ENTITY_DECL.finditer(subset):
        parameter, name, value = m.group(1), m.group(2), m.group(3) if m.group(3) is not None else m.group(4)
        if parameter or name in _PREDEFINED or name in entities:
            continue  # parameter entities only matter inside the DTD, which is dropped; the first wins (XML)
        reason = _refusal(value, m.group(5))
        entities[name] = "" if reason else value
        if reason:
            refused.setdefault(reason, []).append(name)
    warnings = []
    for reason, names in refused.items():
        listed = ", ".join(repr(n) for n in names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        warnings.append(f"DOCTYPE: entity {listed} not expanded, read as empty ({reason})")
    return entities, warnings


def _refusal(value: str | None, external: str | None) -> str | None:
    """Why an entity's value is not used, or None when it is safe to let the parser expand it."""
    if external is not None:
        return f"external: {_short(external)}"
    if _CHAR_REF.fullmatch(value):
        return None
    if "&" in value or "%" in value:
        return "refers to other entities"
    if "<" in value or '"' in value:
        return "markup in its value"
    if len(value) > ENTITY_VALUE_MAX:
        return f"value over {ENTITY_VALUE_MAX} characters"
    return None


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 80 else text[:77] + "..."


def _as_utf8(data: bytes) -> bytes:
    """UTF-16/32 to UTF-8 (declaration included), so the prolog can be read byte-wise."""
    text, _ = decode_text(data)
    text = _DECL_ENCODING.sub(r"\1utf-8\2", text.lstrip("\ufeff"), count=1)
    return text.encode("utf-8")


def _read_entry(entry: dict, source: str, result: FeedParse) -> None:
    title = norm_ws(entry.get("title"))
    url = entry.get("link") or entry.get("id")
    label = f"{title or '(untitled)'} ({url})"
    categories, tags = _terms(entry)
    if DIGEST_CATEGORY not in categories:
        result.skipped.append(f"{label}: not category {DIGEST_CATEGORY} ({', '.join(categories) or 'none'})")
        return
    body = parse_digest_html(_content(entry))
    if not body.papers and body.heading_date is None:
        # A Paper page that is not a digest (e.g. an "Awesome" list); an empty digest has its heading.
        result.skipped.append(f"{label}: Paper entry without paper h2")
        return
    topic = next((t for t in tags if t != DIGEST_CATEGORY), None) or title
    if not topic:
        result.skipped.append(f"{label}: no topic (no tag and no title)")
        return
    warnings = list(body.warnings)
    post_date = _date_folder(url) or body.heading_date or _published_date(entry)
    if post_date is None:
        result.skipped.append(f"{label}: no date in the URL, no 'YYYY-MM-DD 更新' heading")
        return
    if _date_folder(url) is None:
        warnings.append(f"no date folder in the URL; dated {post_date} from the heading or publication")
    if body.heading_date and body.heading_date != post_date:
        warnings.append(f"heading date {body.heading_date} differs from post date {post_date}")
    result.posts.append(
        ParsedPost(
            topic=topic,
            post_date=post_date,
            heading_date=body.heading_date,
            url=url,
            published=entry.get("published") or entry.get("updated"),
            papers=body.papers,
            warnings=warnings,
            skipped_headings=body.skipped_headings,
        )
    )


def _terms(entry: dict) -> tuple[list[str], list[str]]:
    """(categories, tags). Hexo's Atom gives both as <category>, told apart by the scheme URL."""
    categories: list[str] = []
    tags: list[str] = []
    plain: list[str] = []
    for tag in entry.get("tags") or []:
        term = norm_ws(tag.get("term"))
        if not term:
            continue
        scheme = tag.get("scheme") or ""
        if "/categories/" in scheme:
            categories.append(term)
        elif "/tags/" in scheme:
            tags.append(term)
        else:
            plain.append(term)
    if not categories and not tags:  # no schemes to tell them apart: every term is both
        return plain, plain
    return categories + plain, tags + plain


def _content(entry: dict) -> str:
    contents = entry.get("content") or []
    html = max((c.get("value") or "" for c in contents), key=len, default="")
    return html or entry.get("summary") or ""


def _date_folder(url: str | None) -> date | None:
    if not url:
        return None
    for m in _DATE_FOLDER.finditer(unquote(urlsplit(url).path)):
        try:
            return date.fromisoformat(m.group(1))
        except ValueError:
            continue
    return None


def _published_date(entry: dict) -> date | None:
    for key in ("published", "updated"):
        m = re.match(r"\d{4}-\d{2}-\d{2}", entry.get(key) or "")
        if m:
            try:
                return date.fromisoformat(m.group(0))
            except ValueError:
                continue
    return None
