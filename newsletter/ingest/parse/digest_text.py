"""Parser for the 2025 digest layout, copied as plain text from the rendered page.

Per paper the copy reads: title line, ``Authors:`` line, English abstract, Chinese translation,
``论文及项目相关链接``, optional ``PDF <comment>`` (the link itself is lost, hence no arXiv id),
``Summary``/``摘要`` + summary, ``Key Takeaways``/``关键见解`` + ``- `` bullets, ``点此查看论文截图``.
Any section may be missing, so the parser is a small state machine keyed on those marker lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import PurePosixPath

from newsletter.ingest.parse.common import (
    HEADING_DATE,
    DigestBody,
    cjk_share,
    looks_like_llm_error,
    norm_ws,
)
from newsletter.ingest.parse.common import heading_date as find_heading_date
from newsletter.ingest.parse.digest_markdown import clean_summary
from newsletter.records import ParsedPaper, ParsedPost
from newsletter.registry.topics import canonical_topic, known_topics

_AUTHORS = re.compile(r"^Authors\s*[:：]\s*(.*)$")
_PDF = re.compile(r"^PDF(?:\s+(.*))?$")
_HEADING_LINE = re.compile(rf"^{HEADING_DATE.pattern}$")
_DISCLAIMER = re.compile(r"^(?:⚠|🔴|💗)")
_BULLET = re.compile(r"^(?:[-*•·●▪]\s*|\d{1,2}(?:[.)]\s+|、\s*))")
_AUTHOR_SEP = re.compile(r"\s*[,，;；]\s*")
_FILE_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2})[_\s-]*(.*)$")
# A line ending like this closes a paragraph; any other line break is a hard wrap inside one.
_SENTENCE_END = (".", "!", "?", ":", ";", "。", "！", "？", "：", "；", "…", ")", "）", "”", '"')
_CJK_CHAR = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]")
# Below this share of ideographs a paragraph is English (abstracts have ~0, translations >0.3).
_ZH_SHARE = 0.1

_MARKERS = {
    "论文及项目相关链接": "links",
    "summary": "summary",
    "摘要": "summary",
    "key takeaways": "takeaways",
    "关键见解": "takeaways",
    "点此查看论文截图": "screens",
}


def topic_from_slug(slug: str) -> str:
    """'vision-transformer' -> 'Vision Transformer', '元宇宙_虚拟人' -> '元宇宙/虚拟人'; unknown ones title-cased."""
    slug = norm_ws(slug)
    known = canonical_topic(slug)  # the registry matches ignoring case, spaces, "-", "_" and "/"
    if known in known_topics():
        return known
    # Upstream file names write "/" as "_"; "-" is a word separator in URL slugs.
    parts = (re.split(r"[-\s]+", part) for part in slug.split("_"))
    return "/".join(" ".join(w[:1].upper() + w[1:] for w in words if w) for words in parts)


# ---- post --------------------------------------------------------------------------------------------


def parse_text_post(text: str, filename: str) -> ParsedPost:
    """One plain-text digest file named like ``2025-05-28_vision-transformer.txt``."""
    body = parse_digest_text(text)
    stem = PurePosixPath(filename.replace("\\", "/")).stem
    m = _FILE_DATE.match(stem)
    warnings = list(body.warnings)
    file_date = _iso_date(m.group(1)) if m else None
    if m and file_date is None:
        warnings.append(f"{filename}: invalid date {m.group(1)!r} in the file name")
    slug = m.group(2) if m else stem
    post_date = file_date or body.heading_date
    if post_date is None:
        raise ValueError(f"{filename}: no date in the file name and no 'YYYY-MM-DD 更新' heading")
    if not norm_ws(slug):
        raise ValueError(f"{filename}: no topic in the file name (expected <date>_<topic>.txt)")
    if body.heading_date and body.heading_date != post_date:
        warnings.append(f"heading date {body.heading_date} differs from post date {post_date}")
    return ParsedPost(
        topic=topic_from_slug(slug),
        post_date=post_date,
        heading_date=body.heading_date,
        papers=body.papers,
        warnings=warnings,
        skipped_headings=body.skipped_headings,
    )


def _iso_date(text: str) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


# ---- body --------------------------------------------------------------------------------------------


def parse_digest_text(text: str) -> DigestBody:
    """Every paper of a plain-text digest body; the header disclaimers and ``更新`` line are not papers."""
    lines = _clean_lines(text)
    body = DigestBody(heading_date=_first_heading_date(lines, text))
    for title, authors, segment in _split_papers(lines):
        paper = _parse_paper(title, authors, segment, body.warnings)
        body.papers.append(paper)
    return body


def _clean_lines(text: str) -> list[str]:
    # splitlines() also takes care of \r\n and lone \r; the BOM and zero-width spaces come from copying.
    text = text.replace("\ufeff", "").replace("\u200b", "")
    return [line.rstrip() for line in text.splitlines()]


def _first_heading_date(lines: list[str], text: str) -> date | None:
    for line in lines:
        m = _HEADING_LINE.match(line.strip())
        if m:
            return _iso_date(m.group(1))
    return find_heading_date(text)


def _split_papers(lines: list[str]) -> list[tuple[str | None, str, list[str]]]:
    """(title line, authors text, lines after the Authors line) per paper.

    A title is the non-empty line right before an ``Authors:`` line, so a paper's lines run up to
    the next paper's title line.
    """
    starts = [i for i, line in enumerate(lines) if _AUTHORS.match(line.strip())]
    floors = [0, *(s + 1 for s in starts)][: len(starts)]  # a title never reaches back past the previous Authors
    titles = [_title_index(lines, i, floor) for i, floor in zip(starts, floors, strict=True)]
    papers = []
    for k, i in enumerate(starts):
        end = len(lines)
        if k + 1 < len(starts):
            end = titles[k + 1] if titles[k + 1] is not None else starts[k + 1]
        title = lines[titles[k]].strip() if titles[k] is not None else None
        authors = _AUTHORS.match(lines[i].strip()).group(1)
        papers.append((title, authors, lines[i + 1 : end]))
    return papers


def _title_index(lines: list[str], authors_at: int, floor: int) -> int | None:
    for j in range(authors_at - 1, floor - 1, -1):
        line = lines[j].strip()
        if not line:
            continue
        # The line above may be the previous paper's last marker or page chrome: then the title is missing.
        return None if _marker(line) or _is_chrome(line) else j
    return None


def _marker(line: str) -> str | None:
    key = line.strip().strip("*#> ").rstrip(":：").strip().casefold()
    return _MARKERS.get(key)


def _is_chrome(line: str) -> bool:
    """Page furniture that can sit anywhere in a copy: disclaimers and "YYYY-MM-DD 更新" headings."""
    line = line.strip()
    return bool(_DISCLAIMER.match(line) or _HEADING_LINE.match(line))


# ---- one paper ---------------------------------------------------------------------------------------


def _parse_paper(title: str | None, authors: str, segment: list[str], warnings: list[str]) -> ParsedPaper:
    sections = _Sections.read(segment)
    comment, extra = _links(sections)
    abstract, abstract_zh = _split_languages(_paragraphs(sections.body))
    label = norm_ws(title) or f"paper with authors {norm_ws(authors)[:60]!r}"
    if title is None:
        warnings.append(f"{label}: no title line before the Authors line")
    if not abstract:
        warnings.append(f"{label}: no English abstract")
    # Without a summary heading, prose left in the links block is the summary.
    summary = _summary(sections.summary if "summary" in sections.seen else extra, label, warnings)
    return ParsedPaper(
        title=norm_ws(title),
        authors=[a for a in _AUTHOR_SEP.split(norm_ws(authors)) if a],
        abstract=abstract,
        abstract_zh=abstract_zh,
        summary_zh=summary,
        takeaways=_takeaways(sections.takeaways),
        comment=comment,
    )


@dataclass
class _Sections:
    """A paper's lines grouped by the marker line they follow."""

    body: list[str] = field(default_factory=list)  # abstract + translation
    links: list[str] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)
    takeaways: list[str] = field(default_factory=list)
    screens: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)  # markers present

    @classmethod
    def read(cls, segment: list[str]) -> _Sections:
        sections = cls()
        state = "body"
        for line in segment:
            if _is_chrome(line):
                continue
            marker = _marker(line) if line.strip() else None
            if marker:
                state = marker
                sections.seen.add(marker)
                continue
            if state in ("links", "summary") and line.lstrip().startswith("- "):
                state = "takeaways"  # bullets right after the summary: the takeaways heading was lost
            getattr(sections, state).append(line)
        return sections


def _links(sections: _Sections) -> tuple[str | None, list[str]]:
    """The arXiv comment from the ``PDF`` line, and the other lines of the links block.

    Without a links heading, a PDF line closing the abstract block is taken (out of the body) instead.
    """
    if "links" in sections.seen:
        block = sections.links
    else:
        body = sections.body
        filled = [i for i, line in enumerate(body) if line.strip()]
        last = filled[-1] if filled else None
        block = body[last:] if last is not None and _PDF.match(body[last].strip()) else []
        del body[len(body) - len(block) :]
    comment: str | None = None
    extra: list[str] = []
    found = False
    for line in block:
        m = _PDF.match(line.strip())
        if m and not found:
            found = True
            comment = norm_ws(m.group(1)) or None
        else:
            extra.append(line)
    return comment, extra


def _paragraphs(lines: list[str]) -> list[str]:
    """Blank lines, sentence ends and a change of language separate paragraphs.

    Other line breaks are taken as hard wraps. The language test matters: an abstract often ends
    with a bare URL, and the translation on the next line must not be glued onto it.
    """
    paras: list[str] = []
    current = ""
    for raw in lines:
        line = norm_ws(raw)
        if not line or (current and _is_zh(current) != _is_zh(line)):
            current = _flush(paras, current)
        if not line:
            continue
        current = _join(current, line) if current else line
        if current.endswith(_SENTENCE_END):
            current = _flush(paras, current)
    _flush(paras, current)
    return paras


def _is_zh(text: str) -> bool:
    return cjk_share(text) >= _ZH_SHARE


def _flush(paras: list[str], current: str) -> str:
    if current:
        paras.append(current)
    return ""


def _join(left: str, right: str) -> str:
    # Chinese is written without spaces (also next to English terms): a wrap at an ideograph adds none;
    # neither does a wrap after the hyphen of a compound ("mask-" + "based").
    cjk_edge = _CJK_CHAR.match(left[-1]) or _CJK_CHAR.match(right[0])
    hyphen = len(left) > 1 and left[-1] == "-" and left[-2].isalnum()
    return left + right if cjk_edge or hyphen else f"{left} {right}"


def _split_languages(paras: list[str]) -> tuple[str, str | None]:
    """English abstract first, Chinese translation after: split at the first mostly-CJK paragraph.

    Splitting once (instead of judging each paragraph) keeps an English-only line inside the
    translation, such as a code URL, with the translation.
    """
    first_zh = next((i for i, p in enumerate(paras) if _is_zh(p)), len(paras))
    english, chinese = paras[:first_zh], paras[first_zh:]
    return "\n\n".join(english), ("\n\n".join(chinese) or None)


def _summary(lines: list[str], label: str, warnings: list[str]) -> str | None:
    return clean_summary("\n\n".join(_paragraphs(lines)), label, warnings)


def _takeaways(lines: list[str]) -> list[str]:
    """``- `` bullets; a non-bullet line continues the bullet above it (wrapped text)."""
    items: list[str] = []
    for raw in lines:
        line = norm_ws(raw)
        if not line:
            continue
        m = _BULLET.match(line)
        if m or not items:
            items.append(line[m.end() :] if m else line)
        else:
            items[-1] = _join(items[-1], line)
    return [item for item in items if item and not looks_like_llm_error(item)]
