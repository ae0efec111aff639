"""Pieces shared by every layout parser."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date

from newsletter.records import ParsedPaper

_WS = re.compile(r"\s+")
# arXiv new-style ids (2412.03493, optional version); old-style ids (hep-th/9901001) are not used upstream.
ARXIV_URL = re.compile(r"arxiv\.org/(?:abs|pdf)/(\d{4}\.\d{4,5})(v\d+)?", re.IGNORECASE)
HEADING_DATE = re.compile(r"(\d{4}-\d{2}-\d{2})\s*更新")
_SMART = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u00a0": " "})


@dataclass
class DigestBody:
    """What a layout parser reads out of one post body."""

    papers: list[ParsedPaper] = field(default_factory=list)
    heading_date: date | None = None
    heading_dates: set[date] = field(default_factory=set)  # every "YYYY-MM-DD 更新" heading: one post has one
    warnings: list[str] = field(default_factory=list)
    skipped_headings: list[str] = field(default_factory=list)


def norm_ws(text: str | None) -> str:
    """Collapse runs of whitespace (titles upstream carry runs of spaces)."""
    return _WS.sub(" ", text or "").strip()


def plain_quotes(text: str) -> str:
    """Smart quotes and no-break spaces to their plain forms (comments are matched by rules)."""
    return text.translate(_SMART)


def split_arxiv(url: str | None) -> tuple[str | None, str | None]:
    """'http://arxiv.org/abs/2412.03493v2' -> ('2412.03493', 'v2')."""
    m = ARXIV_URL.search(url or "")
    return (m.group(1), m.group(2)) if m else (None, None)


def title_fingerprint(title: str) -> str:
    """Identity of a paper with no arXiv id: case-, accent-, punctuation- and space-insensitive title."""
    text = unicodedata.normalize("NFKD", title).casefold()
    return "".join(ch for ch in text if ch.isalnum())


def heading_date(text: str) -> date | None:
    m = HEADING_DATE.search(text)
    return date.fromisoformat(m.group(1)) if m else None


# ---- plain-text layout helpers (also usable by the other layouts) ---------------------------------------

# CJK ideographs (basic + extension A + compatibility); kana/hangul are not expected upstream.
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")
# LLM failures that upstream pasted where a summary should be. Anchored ones must open the text; the others
# are specific enough to trust anywhere near the start.
_LLM_ERROR_START = re.compile(
    r"^\W*(error\b|exception\b|traceback\b|some error\b|sorry\b|i'?m sorry|i cannot|i can't|as an ai\b"
    r"|抱歉|对不起|很抱歉|错误[:：]|出错)",
    re.IGNORECASE,
)
_LLM_ERROR_ANY = re.compile(
    r"error code\b|\{['\"]error['\"]|traceback \(most recent call last\)|list index out of range"
    r"|rate[_ ]limit(?:ed|[_ ]exceeded|[_ ]reached)|ratelimiterror|too many requests"
    r"|internal server error|service unavailable|bad gateway|request timed out"
    r"|maximum context length|insufficient_quota|api[_ ]?key"
    r"|请稍后再试|请求失败|负载已饱和|服务器繁忙|接口调用失败",
    re.IGNORECASE,
)


def cjk_share(text: str) -> float:
    """Share of CJK ideographs among letters: tells a Chinese paragraph from an English one.

    One ideograph counts as much as one Latin letter, so Chinese text full of English terms
    ("CDPDNet结合CNN和DINOv2") still scores well above any English abstract (about 0).
    """
    cjk = len(_CJK.findall(text))
    latin = len(_LATIN.findall(text))
    return cjk / (cjk + latin) if cjk + latin else 0.0


def looks_like_llm_error(text: str | None) -> bool:
    """True when a summary slot holds an LLM/API failure message instead of a summary."""
    head = norm_ws(text)[:300]
    return bool(head) and bool(_LLM_ERROR_START.search(head) or _LLM_ERROR_ANY.search(head))
