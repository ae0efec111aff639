"""Which layout an input file is (feed, Markdown source, plain-text copy, post HTML), and its text.

The content decides; the file extension only breaks ties, because upstream files get saved under
whatever name the person downloading them picked.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

KINDS = ("feed", "markdown", "text", "html")  # what guess_kind answers; `ingest --file --kind` offers them

_SNIFF = 8192  # detection looks at the start of the file (and counts layout lines in the whole text)
FEED_ROOTS = ("feed", "rss", "RDF")  # Atom, RSS 2.0, RSS 1.0 (rdf:RDF)
PROLOG_MAX = 65_536  # characters before the root element; a real prolog is a few hundred
_NAME = re.compile(r"[^\W\d][\w.:-]*")
_QUOTED = r"""("[^"]*"|'[^']*')"""
_DOCTYPE_ID = re.compile(rf"\s*(?:(SYSTEM)\s*{_QUOTED}|(PUBLIC)\s*{_QUOTED}\s*{_QUOTED}?)?\s*")
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
_SUFFIX = {"feed": ".xml", "markdown": ".md", "text": ".txt", "html": ".html"}
_DECLARED = re.compile(rb"""(?:encoding|charset)\s*=\s*["']?([A-Za-z0-9._-]+)""", re.IGNORECASE)
_BOMS = (  # UTF-32 first: its little-endian BOM starts with the UTF-16 one
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


# ---- kind ------------------------------------------------------------------------------------------


@dataclass
class Prolog:
    """What comes before the root element of a markup document (XML declaration, comments, PIs, DOCTYPE)."""

    root: str | None = None  # the root element's name as written ("feed", "rdf:RDF"); None: no element found
    root_at: int = 0  # where the prolog ends (the root element, or the first thing that is not prolog)
    doctype: tuple[int, int] | None = None  # span of the whole <!DOCTYPE ...> declaration
    doctype_name: str | None = None
    external_id: str | None = None  # 'SYSTEM "uri"' or 'PUBLIC "id" "uri"': an external DTD, never loaded
    subset: str = ""  # the internal subset, between [ and ]
    error: str | None = None  # the prolog is malformed or longer than PROLOG_MAX

    @property
    def local_root(self) -> str | None:
        return self.root.rpartition(":")[2] if self.root else None


def read_prolog(text: str) -> Prolog:
    """Skip the prolog without interpreting it (nothing is resolved or fetched) and name the root element.

    A DOCTYPE's internal subset is skipped as a whole, quoted strings, comments and nested declarations
    included: `<!DOCTYPE feed [<!ENTITY nbsp "&#160;">]>` ends at its last `>`, not its first.
    """
    prolog, i, end = Prolog(), 0, min(len(text), PROLOG_MAX)
    while i < end:
        ch = text[i]
        if ch.isspace() or ch == "\ufeff":
            i += 1
        elif text.startswith("<?", i) or text.startswith("<!--", i):
            close = text.find("?>" if text[i + 1] == "?" else "-->", i)
            if close < 0:
                prolog.error = "unterminated comment or processing instruction before the root element"
                break
            i = close + (2 if text[i + 1] == "?" else 3)
        elif text[i : i + 9].upper() == "<!DOCTYPE" and prolog.doctype is None:  # HTML writes <!doctype
            i = _read_doctype(text, i, prolog)
            if prolog.error:
                break
        else:
            name = _NAME.match(text, i + 1) if ch == "<" else None
            prolog.root = name.group() if name else None
            break
    else:
        if end < len(text):
            prolog.error = f"no root element in the first {PROLOG_MAX:,} characters"
    prolog.root_at = i
    return prolog


def _read_doctype(text: str, start: int, prolog: Prolog) -> int:
    """Read `<!DOCTYPE name ExternalID? [subset]? >` at `start`; return where it ends (`start` if malformed)."""
    pos = start + 9
    while pos < len(text) and text[pos].isspace():
        pos += 1
    name = _NAME.match(text, pos)
    if not name:
        prolog.error = "DOCTYPE without a name"
        return start
    prolog.doctype_name = name.group()
    ident = _DOCTYPE_ID.match(text, name.end())
    if ident.group(1) or ident.group(3):
        prolog.external_id = " ".join(g for g in ident.groups() if g)
    pos = ident.end()
    if pos < len(text) and text[pos] == "[":
        close = _subset_end(text, pos + 1)
        if close < 0:
            prolog.error = "DOCTYPE internal subset never closed"
            return start
        prolog.subset = text[pos + 1 : close]
        pos = close + 1
        while pos < len(text) and text[pos].isspace():
            pos += 1
    if pos >= len(text) or text[pos] != ">":
        prolog.error = "DOCTYPE not closed by '>'"
        return start
    prolog.doctype = (start, pos + 1)
    return pos + 1


def _subset_end(text: str, pos: int) -> int:
    """Index of the `]` closing an internal subset that starts at `pos`; -1 when there is none."""
    limit = min(len(text), PROLOG_MAX)
    while pos < limit:
        ch = text[pos]
        if ch == "]":
            return pos
        if ch in "\"'":
            close = text.find(ch, pos + 1)
        elif text.startswith("<!--", pos):
            close = text.find("-->", pos + 4) + 2
        elif text.startswith("<?", pos):
            close = text.find("?>", pos + 2) + 1
        else:
            pos += 1
            continue
        if close < pos:
            return -1
        pos = close + 1
    return -1


def guess_kind(data: bytes, filename: str | None = None) -> str:
    """'feed', 'markdown', 'text' or 'html'; ValueError when the content is none of them.

    Markup is told by its root element, after the prolog: a feed with a DOCTYPE is still a feed.
    """
    text, _ = decode_text(data)
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    head = text[:_SNIFF]
    prolog = read_prolog(text)
    rest = text[prolog.root_at : prolog.root_at + _SNIFF]
    name = filename or "<input>"
    if prolog.local_root in FEED_ROOTS:
        return "feed"
    if prolog.error and prolog.doctype is None and rest[:9].upper() == "<!DOCTYPE":
        raise ValueError(f"{name}: markup with a malformed DOCTYPE: {prolog.error}")
    if _FRONT_MATTER.match(text):
        return "markdown"  # Hexo source, whatever its body holds (even raw HTML)
    if _HTML_DOC.search(head) and rest.startswith("<"):
        return "html"
    if rest.startswith("<") and not _HTML_TAG.search(head) and not _HTML_DOC.search(head):
        raise ValueError(f"{name}: XML but not an Atom or RSS feed (root <{prolog.root or '?'}>)")
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
    if by_ext in leaders:
        return by_ext
    if len(leaders) > 1:  # a coin toss would be a silently wrong post
        raise ValueError(
            f"{filename or '<input>'}: ambiguous: as much {' as '.join(leaders)} layout; "
            f"name it {' or '.join(_SUFFIX[k] for k in leaders)}, or pass --kind"
        )
    return leaders[0]


def _kind_from_extension(filename: str | None) -> str | None:
    if not filename:
        return None
    return _EXTENSIONS.get(PurePosixPath(filename.replace("\\", "/")).suffix.lower())


# ---- text ------------------------------------------------------------------------------------------


def wide_encoding(data: bytes) -> str | None:
    """UTF-16 or UTF-32 (by BOM, or UTF-16 by its NULs): the encodings in which markup is not ASCII bytes."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return None if encoding == "utf-8-sig" else encoding
    return _bomless_utf16(data)


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
