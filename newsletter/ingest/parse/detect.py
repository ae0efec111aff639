"""Which layout an input file is (feed, Markdown source, plain-text copy, post HTML), and its text.

The content decides; the file extension only breaks ties, because upstream files get saved under
whatever name the person downloading them picked.
"""

from __future__ import annotations

import codecs
import re
from pathlib import PurePosixPath

KINDS = ("feed", "markdown", "text", "html")

_SNIFF = 8192  # detection looks at the start of the file (and counts layout lines in the whole text)
_PROLOG = re.compile(r"\A(?:\s+|<\?[^>]*\?>|<!--.*?-->|<!DOCTYPE[^>]*>)*", re.DOTALL | re.IGNORECASE)
_FEED_ROOT = re.compile(r"<(?:[\w.-]+:)?(?:feed|rss|RDF)\b")
_HTML_DOC = re.compile(r"<!DOCTYPE\s+html|<html\b|<head\b|<body\b", re.IGNORECASE)
_HTML_TAG = re.compile(
    r"</?(?:p|div|span|h[1-6]|a|article|section|main|ul|ol|li|strong|em|br|blockquote|img|table)\b[^>]*>",
    re.IGNORECASE,
)
_FRONT_MATTER = re.compile(r"\A\s*---[ \t]*\n.*?\n---[ \t]*(?:\n|\Z)", re.DOTALL)
_MD_HEADING = re.compile(r"^#{1,6} \S", re.MULTILINE)
_MD_AUTHORS = re.compile(r"\*\*Authors?\s*[:：]")
_TEXT_AUTHORS = re.compile(r"^[ \t]*Authors\s*[:：]", re.MULTILINE)
_TEXT_MARKERS = re.compile(
    r"^[ \t]*(?:\d{4}-\d{2}-\d{2}\s*更新|论文及项目相关链接|点此查看论文截图|Key Takeaways|关键见解)[ \t]*$",
    re.MULTILINE,
)
_EXTENSIONS = {
    ".xml": "feed",
    ".atom": "feed",
    ".rss": "feed",
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".text": "text",
    ".html": "html",
    ".htm": "html",
}
_DECLARED = re.compile(rb"""(?:encoding|charset)\s*=\s*["']?([A-Za-z0-9._-]+)""", re.IGNORECASE)
_BOMS = (  # UTF-32 first: its little-endian BOM starts with the UTF-16 one
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


# ---- kind ------------------------------------------------------------------------------------------


def guess_kind(data: bytes, filename: str | None = None) -> str:
    """'feed', 'markdown', 'text' or 'html'; ValueError when the content is none of them."""
    text, _ = decode_text(data)
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    head = text[:_SNIFF]
    rest = head[_PROLOG.match(head).end() :]
    name = filename or "<input>"
    if _FEED_ROOT.match(rest):
        return "feed"
    if _FRONT_MATTER.match(text):
        return "markdown"  # Hexo source, whatever its body holds (even raw HTML)
    if _HTML_DOC.search(head) and rest.startswith("<"):
        return "html"
    if rest.startswith("<") and not _HTML_TAG.search(head) and not _HTML_DOC.search(head):
        raise ValueError(f"{name}: XML but not an Atom or RSS feed (root <{_root_name(rest)}>)")
    kind = _by_layout(text, rest, filename)
    if kind is None:
        raise ValueError(
            f"{name}: not a digest feed, Markdown post, plain-text digest or post HTML "
            f"(no feed root, no front matter, no 'Authors:' lines, no HTML markup)"
        )
    return kind


def _by_layout(text: str, rest: str, filename: str | None) -> str | None:
    """Score the body-only layouts on the lines that only they have."""
    scores = {
        "markdown": len(_MD_AUTHORS.findall(text)) + (len(_MD_HEADING.findall(text)) if "**" in text else 0),
        "text": len(_TEXT_AUTHORS.findall(text)) + len(_TEXT_MARKERS.findall(text)),
        # A fragment of a post page: it starts with markup and is mostly markup.
        "html": 3 * len(_HTML_TAG.findall(text)) if rest.startswith("<") else 0,
    }
    best = max(scores.values())
    if best == 0:
        return None
    leaders = [kind for kind, score in scores.items() if score == best]
    by_ext = _kind_from_extension(filename)
    return by_ext if by_ext in leaders else leaders[0]


def _kind_from_extension(filename: str | None) -> str | None:
    if not filename:
        return None
    return _EXTENSIONS.get(PurePosixPath(filename.replace("\\", "/")).suffix.lower())


def _root_name(rest: str) -> str:
    m = re.match(r"<([\w.:-]+)", rest)
    return m.group(1) if m else "?"


# ---- text ------------------------------------------------------------------------------------------


def decode_text(data: bytes) -> tuple[str, str | None]:
    """Bytes to text, never failing: (text, warning or None).

    Order: BOM (UTF-8/16/32), BOM-less UTF-16, UTF-8, an encoding the file declares (XML / HTML
    meta), then GB18030 (upstream is Chinese). Undecodable bytes become U+FFFD and
    the warning says so.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return _decode(data, encoding, f"{encoding} (BOM)")
    # Before UTF-8: UTF-16 text is mostly valid UTF-8 too (full of NULs).
    utf16 = _bomless_utf16(data)
    if utf16:
        return _decode(data, utf16, f"{utf16} without BOM")
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        pass
    declared = _declared_encoding(data)
    if declared:
        return _decode(data, declared, f"declared encoding {declared}")
    return _decode_unknown(data)


def _decode(data: bytes, encoding: str, label: str) -> tuple[str, str | None]:
    try:
        return data.decode(encoding), None
    except UnicodeDecodeError:
        text = data.decode(encoding, errors="replace")
        return text, f"{_bad_count(text)} undecodable byte sequence(s) replaced while decoding as {label}"


def _decode_unknown(data: bytes) -> tuple[str, str | None]:
    """Not UTF-8: damaged UTF-8 when only a few bytes are wrong, else GB18030."""
    utf8 = data.decode("utf-8", errors="replace")
    non_ascii = sum(1 for ch in utf8 if ord(ch) > 127)
    # A few bad bytes among many good multi-byte characters is damaged UTF-8, not another encoding
    # (GB18030 would happily turn UTF-8 Chinese into other, wrong, Chinese).
    if _bad_count(utf8) * 20 <= non_ascii:
        return utf8, f"{_bad_count(utf8)} invalid UTF-8 byte sequence(s) replaced"
    try:
        return data.decode("gb18030"), "not UTF-8: decoded as GB18030"
    except UnicodeDecodeError:
        gb = data.decode("gb18030", errors="replace")
    text = min((utf8, gb), key=_bad_count)
    return text, f"unknown encoding: {_bad_count(text)} undecodable byte sequence(s) replaced"


def _bad_count(text: str) -> int:
    return text.count("\ufffd")


def _declared_encoding(data: bytes) -> str | None:
    """``<?xml encoding="...">`` or ``<meta charset=...>`` near the start, when Python knows it."""
    m = _DECLARED.search(data[:2048])
    if not m:
        return None
    try:
        name = codecs.lookup(m.group(1).decode("ascii")).name
    except LookupError:
        return None
    if name.startswith("utf-8"):
        return None  # declared UTF-8 but it is not: fall through to the guesses
    # GB2312 and GBK files routinely hold characters only their superset GB18030 has.
    return "gb18030" if name in ("gb2312", "gbk") else name


def _bomless_utf16(data: bytes) -> str | None:
    """UTF-16 without BOM: mostly-ASCII text then has a NUL in every other byte."""
    sample = data[:4096]
    if len(sample) < 16:
        return None
    even, odd = sample[0::2].count(0), sample[1::2].count(0)
    half = len(sample) // 2
    if odd > 0.4 * half and even < 0.05 * half:
        return "utf-16-le"
    if even > 0.4 * half and odd < 0.05 * half:
        return "utf-16-be"
    return None
