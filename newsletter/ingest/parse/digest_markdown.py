"""Digest bodies written in Markdown: Hexo post sources, and Markdown that failed to render.

Upstream writes each paper as::

    ## Title
    **Authors:A, B**
    English abstract
    [PDF](http://arxiv.org/abs/2401.11831v1) arXiv comment
    **Summary**
    summary
    **Key Takeaways**
    - bullet
    **[ChatPaperFree](...)**
    ... LLM notes, then <details> with screenshot <img>s

When Hexo's renderer chokes, the same text sits inside the feed HTML as raw text with its line
breaks gone (``## Title**Authors:A, B**abstract [PDF](...) comment**Summary**...``). The block
logic here works on both forms: it keys on ``## `` + ``**Authors:`` and on ``**marker**`` runs,
never on line structure alone. The marker and bullet helpers are shared with the HTML parser.
"""

from __future__ import annotations

import html
import re
from bisect import bisect_left

from newsletter.ingest.parse.common import (
    DigestBody,
    heading_date,
    looks_like_llm_error,
    norm_ws,
    split_arxiv,
    title_fingerprint,
)
from newsletter.records import ParsedPaper

# A paper heading is a level-2 heading directly followed by an Authors line (other "## " headings are
# section titles written by the LLM). In raw text the two are glued: "## Title**Authors:...**".
PAPER_HEAD = re.compile(
    r"(?<![#\w])##[ \t]+(?P<title>[^\n]{1,500}?)\s*\*\*Authors?[ \t]*[:：][ \t]*(?P<authors>[^*]*?)\s*\*\*"
)
_H1 = re.compile(r"^#[ \t]+(?P<text>[^\n]*)$", re.MULTILINE)
_H2 = re.compile(r"^##[ \t]+(?P<text>[^\n]+?)[ \t#]*$", re.MULTILINE)
_PDF_LINK = re.compile(r"\[\s*PDF\s*\]\(\s*<?(?P<url>[^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
# **marker** runs; the text may be a Markdown link ("**[ChatPaperFree](https://...)**").
_BOLD = re.compile(r"\*\*(?P<text>[^*\n]{1,200}?)\*\*")
_MD_LINK = re.compile(r"!?\[(?P<text>[^\]]*)\]\([^)]*\)")
_DROP_BLOCKS = re.compile(r"<(script|style|noscript|template)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"</?[A-Za-z][^>]*>|<!--.*?-->", re.DOTALL)
_IMG_SRC = re.compile(r"""<img\b[^>]*?\bsrc\s*=\s*["']?(?P<url>[^"'\s>]+)""", re.IGNORECASE)
_MD_IMG = re.compile(r"!\[[^\]]*\]\(\s*<?(?P<url>[^)\s>]+)")
_FRONT_MATTER = re.compile(r"\A\s*---[ \t]*\n.*?\n---[ \t]*(?:\n|\Z)", re.DOTALL)
_AUTHORS_PREFIX = re.compile(r"^\s*Authors?\s*[:：]\s*", re.IGNORECASE)
_AUTHOR_SEP = re.compile(r"\s*[,，;；]\s*")
# Bullets: "- ", "* ", "• ", "1. ", "1、". Inline (line breaks lost) a bullet must follow a sentence end.
_BULLET = re.compile(r"^\s*(?:[-*+•·●▪]\s*|\d{1,2}(?:[.)）]\s+|、\s*))")
_INLINE_BULLET = re.compile(r"(?:^|(?<=[。！？；.!?;)）\]」”\"'：:]))\s*(?:[-*+•·●▪]|\d{1,2}[.)）、])\s+")
_CJK = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]")
_STANDALONE_MAX = 16  # an unknown bold line this short may still be a section marker (see _sections)
_LINE_REST = re.compile(r"[ \t:：]*(?:\n|\Z)")  # nothing but blanks (or a colon) to the end of the line

_MARKERS = {
    **dict.fromkeys(
        (
            "summary",
            "摘要",
            "总结",
            "概述",
            "概要",
            "简介",
            "摘要总结",
            "简要总结",
            "内容摘要",
            "中文摘要",
            "一句话总结",
            "tl;dr",
            "tldr",
        ),
        "summary",
    ),
    **dict.fromkeys(
        (
            "key takeaways",
            "key takeaway",
            "takeaways",
            "key points",
            "key insights",
            "highlights",
            "要点",
            "关键要点",
            "主要要点",
            "重要要点",
            "核心要点",
            "要点总结",
            "关键见解",
            "关键点",
            "关键信息",
            "关键发现",
            "主要结论",
            "关键结论",
            "主要观点",
            "核心观点",
        ),
        "takeaways",
    ),
    "论文及项目相关链接": "links",
    "相关链接": "links",
    "点此查看论文截图": "shots",
    "论文截图": "shots",
    "chatpaperfree": "chat",
}
_MARKER_MAX = 40


# ---- shared helpers (the HTML parser uses these too) --------------------------------------------------


def marker_kind(text: str) -> str | None:
    """'summary', 'takeaways', 'links', 'shots' or 'chat' when `text` is a section marker."""
    if "[" in text:
        text = _MD_LINK.sub(lambda m: m.group("text"), text)
    key = norm_ws(text).strip("*#>[]《》 ").rstrip(":：").strip().casefold()
    if not key or len(key) > _MARKER_MAX:
        return None
    return _MARKERS.get(key)


def split_authors(text: str) -> list[str]:
    """'Authors:A, B , C' -> ['A', 'B', 'C']."""
    text = _AUTHORS_PREFIX.sub("", norm_ws(text))
    return [a for a in _AUTHOR_SEP.split(text) if a]


def bullet_items(text: str, strict: bool = False) -> list[str]:
    """Bullet texts of a takeaways block; `strict`: [] unless at least one line is a bullet.

    Lines that are not bullets continue the bullet above (hard wraps). Without any line break
    (raw Markdown inside HTML) bullets are split at a marker that follows a sentence end.
    """
    lines = [line for line in text.split("\n") if line.strip()]
    if len(lines) == 1 and not strict:
        parts = [norm_ws(p) for p in _INLINE_BULLET.split(lines[0])]
        return [p for p in parts if p]
    items: list[str] = []
    bulleted = False
    for line in lines:
        m = _BULLET.match(line)
        if m:
            bulleted = True
            items.append(norm_ws(line[m.end() :]))
        elif items and bulleted:
            items[-1] = _join(items[-1], norm_ws(line))
        else:
            items.append(norm_ws(line))
    if strict and not bulleted:
        return []
    return [item for item in items if item]


def _join(left: str, right: str) -> str:
    """Glue a hard-wrapped line back on: Chinese takes no space at the wrap."""
    if left and right and (_CJK.match(left[-1]) or _CJK.match(right[0])):
        return left + right
    return f"{left} {right}".strip()


def http_url(url: str | None) -> str | None:
    """The URL when it is absolute http(s); anything else (javascript:, data:, relative) is dropped."""
    url = (url or "").strip()
    return url if url[:7].lower() == "http://" or url[:8].lower() == "https://" else None


def clean_summary(text: str, label: str, warnings: list[str]) -> str | None:
    """The summary text, or None when it is missing or is LLM/API failure text."""
    text = text.strip()
    if not text:
        return None
    if looks_like_llm_error(text):
        warnings.append(f"{label}: LLM error text instead of a summary")
        return None
    return text


def mark_repeats(body: DigestBody) -> None:
    """Flag the second copy of each paper (a whole digest pasted twice into one post).

    Rendered and unrendered copies are counted apart: a paper that failed to render in the first
    copy and rendered in the second is not a repeat of a rendered paper.
    """
    seen: set[tuple[bool, str]] = set()
    repeats = 0
    for paper in body.papers:
        key = (paper.unrendered, paper.arxiv_id or title_fingerprint(paper.title))
        if key[1] and key in seen:
            paper.dup_in_entry = True
            repeats += 1
        seen.add(key)
    if repeats:
        body.warnings.append(f"{repeats} paper(s) repeated inside the post (digest pasted twice)")


def md_text(text: str) -> str:
    """Markdown/HTML source to plain text: no script/style content, no tags, link texts kept.

    Entities are decoded first, so escaped markup cannot come back as markup afterwards.
    """
    text = html.unescape(text)
    text = _DROP_BLOCKS.sub(" ", text)
    text = _TAG.sub(" ", text)
    text = _MD_LINK.sub(lambda m: m.group("text"), text)
    return text.replace("**", "").replace("__", "")


# ---- Markdown bodies --------------------------------------------------------------------------------


def parse_digest_markdown(text: str) -> DigestBody:
    """Every paper of a Markdown digest body (front matter, if any, is ignored)."""
    text = _FRONT_MATTER.sub("", text.replace("\r\n", "\n").replace("\r", "\n"), count=1)
    body = DigestBody()
    heads = list(PAPER_HEAD.finditer(text))
    starts = {m.start() for m in heads}
    h1s = []
    for m in _H1.finditer(text):
        day = heading_date(m.group("text"))
        if day:
            h1s.append(m.start())
            body.heading_date = body.heading_date or day
    for m in _H2.finditer(text):
        if m.start() not in starts:
            body.skipped_headings.append(norm_ws(md_text(m.group("text"))))
    for i, m in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        nxt = bisect_left(h1s, m.end())  # the first date heading after the paper ends it (h1s are in order)
        end = min(end, h1s[nxt]) if nxt < len(h1s) else end
        paper, _ = paper_from_block(m, text[m.end() : end], unrendered=False, warnings=body.warnings)
        body.papers.append(paper)
    mark_repeats(body)
    return body


def parse_raw_markdown(text: str, warnings: list[str]) -> tuple[list[ParsedPaper], str]:
    """Papers in raw Markdown text found inside HTML, and the section the last one ended in.

    The section lets the HTML parser attach what follows the text (e.g. screenshot images) to the
    last of these papers.
    """
    heads = list(PAPER_HEAD.finditer(text))
    papers = []
    section = "abstract"
    for i, m in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        paper, section = paper_from_block(m, text[m.end() : end], unrendered=True, warnings=warnings)
        papers.append(paper)
    return papers, section


def paper_from_block(head: re.Match[str], block: str, unrendered: bool, warnings: list[str]) -> tuple[ParsedPaper, str]:
    """One paper from its heading match and the text after the Authors line.

    Returns the paper and the last section seen ('abstract', 'after_pdf', 'summary', 'takeaways',
    'chat', ...).
    """
    title = norm_ws(md_text(head.group("title")))
    paper = ParsedPaper(title=title, authors=split_authors(md_text(head.group("authors"))), unrendered=unrendered)
    label = repr(title[:80])
    markers = _markers(block)
    pdf = _PDF_LINK.search(block)
    first_marker = markers[0][0].start() if markers else len(block)
    abstract_end = min(pdf.start() if pdf else len(block), first_marker)
    paper.abstract, paper.abstract_zh = _abstract(block[:abstract_end])
    section = "abstract"
    if pdf:
        _take_pdf(paper, block, pdf)
        section = "after_pdf"
        markers = [(m, kind) for m, kind in markers if m.start() >= pdf.end()]
    else:
        warnings.append(f"{label}: no arXiv PDF link")
    summary, takeaways, section, chat_at = _sections(block, markers, section)
    paper.summary_zh = clean_summary(summary, label, warnings)
    paper.takeaways = takeaways
    paper.screenshots = _images(block[chat_at:] if chat_at is not None else block)
    return paper, section


def _markers(block: str) -> list[tuple[re.Match[str], str]]:
    """Known **markers** in order; a short unknown bold line standing alone is kept as 'other'."""
    found = []
    for m in _BOLD.finditer(block):
        kind = marker_kind(m.group("text"))
        if kind is None and _standalone(block, m):
            kind = "other"
        if kind:
            found.append((m, kind))
    return found


def _standalone(block: str, m: re.Match[str]) -> bool:
    """Alone on its line (a trailing colon allowed). Looks only at the blanks around the match: slicing the
    block before and after every bold run made a long post quadratic."""
    if len(norm_ws(m.group("text"))) > _STANDALONE_MAX:
        return False
    start = m.start()
    while start and block[start - 1] in " \t":
        start -= 1
    return (not start or block[start - 1] == "\n") and bool(_LINE_REST.match(block, m.end()))


def _abstract(text: str) -> tuple[str, str | None]:
    """English paragraphs, and the '> ' quoted translation (2025 layout) when present."""
    english: list[str] = []
    chinese: list[str] = []
    for para in re.split(r"\n\s*\n", text):
        quoted = [line for line in para.split("\n") if line.lstrip().startswith(">")]
        plain = norm_ws(md_text(para if not quoted else "\n".join(line.lstrip()[1:] for line in quoted)))
        if plain:
            (chinese if quoted else english).append(plain)
    return "\n\n".join(english), ("\n\n".join(chinese) or None)


def _take_pdf(paper: ParsedPaper, block: str, pdf: re.Match[str]) -> None:
    url = http_url(pdf.group("url"))
    if url:
        paper.pdf_url = url
        paper.arxiv_id, paper.arxiv_version = split_arxiv(url)
        if paper.arxiv_id:
            paper.abs_url = f"https://arxiv.org/abs/{paper.arxiv_id}"
    # The comment runs to the end of the line; with the line breaks lost, to the next **marker**.
    rest = block[pdf.end() :]
    line = rest.split("\n", 1)[0].split("**", 1)[0]
    paper.comment = norm_ws(md_text(line))


def _sections(
    block: str, markers: list[tuple[re.Match[str], str]], section: str
) -> tuple[str, list[str], str, int | None]:
    """Summary text, takeaway bullets, last section, and where the ChatPaperFree notes start."""
    summary = ""
    takeaways: list[str] = []
    seen: set[str] = set()
    chat_at = None
    for i, (m, kind) in enumerate(markers):
        if kind == "other":
            # Unknown standalone marker: the summary and takeaways slots are positional.
            kind = "summary" if "summary" not in seen else "takeaways" if "takeaways" not in seen else None
            if kind is None:
                continue
        if kind == "chat":
            chat_at = m.start()
            section = "chat"
            break
        end = markers[i + 1][0].start() if i + 1 < len(markers) else len(block)
        content = block[m.end() : end]
        if kind == "summary" and "summary" not in seen:
            summary = "\n\n".join(_paragraphs(content))
        elif kind == "takeaways" and "takeaways" not in seen:
            takeaways = bullet_items(md_text(content).lstrip(" \t:："))
        seen.add(kind)
        section = kind
    return summary, takeaways, section, chat_at


def _paragraphs(text: str) -> list[str]:
    text = md_text(text).lstrip(" \t:：")
    return [p for p in (norm_ws(p) for p in re.split(r"\n\s*\n", text)) if p]


def _images(text: str) -> list[str]:
    found = sorted((*_IMG_SRC.finditer(text), *_MD_IMG.finditer(text)), key=lambda m: m.start())
    urls: list[str] = []
    for m in found:
        url = http_url(html.unescape(m.group("url")))
        if url and url not in urls:
            urls.append(url)
    return urls
