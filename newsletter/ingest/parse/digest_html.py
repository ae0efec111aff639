"""Parser for one digest post's content HTML (the feed's ``<content>``), 2024 and 2025 layouts.

2024, per paper: ``<h2>`` title, ``<p><strong>Authors:...</strong></p>``, abstract ``<p>``,
``<p><a href=arxiv>PDF</a> comment</p>``, ``Summary``/``摘要`` + summary, ``Key Takeaways``/``要点`` +
``<ul>``, ``ChatPaperFree`` LLM notes, ``<details>`` with screenshots. 2025 adds the Chinese
translation in a ``<blockquote>`` after the abstract and a ``论文及项目相关链接`` marker before the PDF
link; the markers may also be headings.

Upstream HTML is broken in ways a tree does not survive: unclosed ``<ol>``/``<ul>``/``<summary>``
nest every later paper inside a list item. So the tree is never used for structure: the walk
flattens it into text segments in document order (a block element's own text, split where nested
blocks start) and a small state machine reads those. Only text and http(s) URLs leave this module.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from lxml import etree

from newsletter.ingest.parse.common import DigestBody, cjk_share, heading_date, norm_ws, split_arxiv
from newsletter.ingest.parse.digest_markdown import (
    PAPER_HEAD,
    bullet_items,
    clean_summary,
    http_url,
    mark_repeats,
    marker_kind,
    parse_raw_markdown,
    split_authors,
)
from newsletter.records import ParsedPaper

# fmt: off
_BLOCK = frozenset((
    "html", "body", "div", "p", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "dl", "dt", "dd",
    "blockquote", "details", "summary", "pre", "table", "thead", "tbody", "tfoot", "tr", "td", "th", "caption",
    "section", "article", "header", "footer", "nav", "aside", "main", "figure", "figcaption", "center",
    "address", "fieldset", "hr",
))
# Never text: dropped with their content before the walk (their tails stay).
_DROP = (
    "script", "style", "noscript", "template", "iframe", "object", "embed", "applet", "svg", "math",
    "head", "title", "meta", "link", "button", "select", "textarea", "input", "form",
)
# fmt: on
_HEADINGS = frozenset(("h1", "h2", "h3", "h4", "h5", "h6"))
# A plain etree parser: lxml.html's element classes cost a Python lookup per element touched.
# huge_tree: without it libxml2 stops at a 10 MB text node and returns the document cut there without a word
# (the papers after it silently lost); payloads are capped before parsing (`[fetch] max_payload_mb`).
_PARSER = etree.HTMLParser(remove_comments=True, remove_pis=True, huge_tree=True)
_AUTHORS_LINE = re.compile(r"^\s*Authors?\s*[:：]", re.IGNORECASE)
_RAW_AUTHORS = re.compile(r"^\s*\*\*Authors?\s*[:：]", re.IGNORECASE)
_ZH_SHARE = 0.3  # share of ideographs above which an abstract paragraph is the Chinese translation
_FALLBACK_MARKER_MAX = 16  # an unknown bold lead this short, alone on its line, may still be a marker


@dataclass(slots=True)
class _Seg:
    """A run of text of one block element, in document order."""

    tag: str
    el: etree._Element
    text: str
    first: bool  # starts at the element's start (so the element's first child leads it)
    quoted: bool  # inside a <blockquote>
    item: etree._Element | None  # innermost <li>


class _Frame:
    """An open block element while walking: its pending text and images."""

    __slots__ = ("el", "first", "images", "parts", "tag")

    def __init__(self, el: etree._Element, tag: str, text: str | None) -> None:
        self.el = el
        self.tag = tag
        self.parts: list[str] = [text] if text else []
        self.images: list[str] = []
        self.first = True  # nothing flushed yet: the next segment starts at the element's start


@dataclass
class _Draft:
    """A paper being read; `paper` may already be complete (an unrendered paper taking its images)."""

    paper: ParsedPaper
    abstract: list[str] = field(default_factory=list)
    abstract_zh: list[str] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)
    summary_seen: bool = False
    takeaways_seen: bool = False
    last_item: etree._Element | None = None


# ---- entry point ------------------------------------------------------------------------------------


def parse_digest_html(html: str) -> DigestBody:
    """Every paper of one post's content HTML; headings that are not papers go to skipped_headings."""
    root = _parse(html)
    reader = _Reader()
    if root is not None:
        _walk(root, reader.feed)
    return reader.close()


def _parse(html: str) -> etree._Element | None:
    if not html or not html.strip():
        return None
    try:
        doc = etree.fromstring(html, _PARSER)
    except ValueError:  # str input with an encoding declaration
        doc = etree.fromstring(html.encode("utf-8"), _PARSER)
    except etree.XMLSyntaxError:
        return None
    if doc is None:
        return None
    etree.strip_elements(doc, *_DROP, with_tail=False)
    return doc


# ---- flattening -------------------------------------------------------------------------------------


def _walk(root: etree._Element, sink: Callable[[_Seg | str], None]) -> None:
    """Feed `sink` the text segments and image URLs (str) in document order, whatever the nesting.

    A hot loop (every element of every post): plain locals, no generators.
    """
    frames: list[_Frame] = []
    items: list[etree._Element] = []
    quotes = 0
    for event, el in etree.iterwalk(root, events=("start", "end")):
        tag = el.tag
        if event == "start":
            if tag in _BLOCK:
                if frames:
                    top = frames[-1]
                    if top.parts or top.images:
                        _flush(top, quotes, items, sink)
                    top.first = False
                frames.append(_Frame(el, tag, el.text))
                if tag == "blockquote":
                    quotes += 1
                elif tag == "li":
                    items.append(el)
                continue
            if not frames or not isinstance(tag, str):
                continue
            top = frames[-1]
            if tag == "br":
                top.parts.append("\n")
            elif tag == "img":
                # Sent after the text around it: splitting the text would cut an inline line in two.
                src = http_url(el.get("src") or el.get("data-src"))
                if src:
                    top.images.append(src)
            text = el.text
            if text:
                top.parts.append(text)
        elif tag in _BLOCK:
            frame = frames.pop()
            if frame.parts or frame.images:
                _flush(frame, quotes, items, sink)
            if tag == "blockquote":
                quotes -= 1
            elif tag == "li":
                items.pop()
            tail = el.tail
            if tail and frames:
                frames[-1].parts.append(tail)
        else:
            tail = el.tail
            if tail and frames:
                frames[-1].parts.append(tail)


def _flush(frame: _Frame, quotes: int, items: list, sink: Callable[[_Seg | str], None]) -> None:
    if frame.parts:
        text = "".join(frame.parts)
        frame.parts.clear()
        if not text.isspace():
            sink(_Seg(frame.tag, frame.el, text, frame.first, quotes > 0, items[-1] if items else None))
    frame.first = False
    if frame.images:
        for src in frame.images:
            sink(src)
        frame.images.clear()


# ---- state machine ----------------------------------------------------------------------------------


class _Reader:
    """Reads segments into papers. Sections of the current paper:

    abstract -> (links) -> after_pdf -> summary -> takeaways -> post -> chat -> shots
    """

    def __init__(self) -> None:
        self.body = DigestBody()
        self.draft: _Draft | None = None
        self.section = ""
        self.pending: str | None = None  # an <h2> waiting to see whether an Authors line follows

    def close(self) -> DigestBody:
        self._resolve_pending()
        self._finish()
        mark_repeats(self.body)
        return self.body

    def feed(self, event: _Seg | str) -> None:
        if isinstance(event, str):
            if self.draft and self.section == "shots" and event not in self.draft.paper.screenshots:
                self.draft.paper.screenshots.append(event)
            return
        if event.tag in _HEADINGS:
            self._heading(event)
            return
        if self.pending is not None:
            if _AUTHORS_LINE.match(event.text) and (self.section != "chat" or _bold_authors(event)):
                self._start(self.pending, event.text)
                self.pending = None
                return
            if _RAW_AUTHORS.match(event.text):  # the heading rendered, the rest did not
                title, self.pending = self.pending, None
                self._raw_markdown(_Seg(event.tag, event.el, f"## {title}{event.text}", False, False, None))
                return
            self._resolve_pending()
        if "**Author" in event.text and PAPER_HEAD.search(event.text):
            self._raw_markdown(event)
        elif self.draft is not None:
            self._paper_text(event)

    # -- headings and paper boundaries --

    def _heading(self, seg: _Seg) -> None:
        self._resolve_pending()
        text = norm_ws(seg.text)
        if seg.tag == "h1":
            day = heading_date(text)
            if day:  # "YYYY-MM-DD 更新": a digest (or a repeated copy of it) starts
                self._finish()
                self.body.heading_date = self.body.heading_date or day
                self.body.heading_dates.add(day)
            return
        if seg.tag == "h2":
            self.pending = text
            return
        if self.draft is not None:
            self._paper_text(seg)  # "摘要" / "Summary" may be a heading in the 2025 layout

    def _resolve_pending(self) -> None:
        if self.pending is not None:
            self.body.skipped_headings.append(self.pending)
            self.pending = None

    def _start(self, title: str, authors: str) -> None:
        self._finish()
        self.draft = _Draft(ParsedPaper(title=title, authors=split_authors(authors)))
        self.section = "abstract"

    def _finish(self) -> None:
        draft, self.draft = self.draft, None
        self.section = ""
        if draft is None:
            return
        paper = draft.paper
        label = repr(paper.title[:80])
        if draft.abstract:
            paper.abstract = "\n\n".join(draft.abstract)
        if draft.abstract_zh:
            paper.abstract_zh = "\n\n".join(draft.abstract_zh)
        if draft.summary:
            paper.summary_zh = clean_summary("\n\n".join(draft.summary), label, self.body.warnings)
        if not paper.unrendered:
            if paper.pdf_url is None:
                self.body.warnings.append(f"{label}: no arXiv PDF link")
            self.body.papers.append(paper)

    def _raw_markdown(self, seg: _Seg) -> None:
        """Markdown that failed to render: its papers are unrendered; the last stays open for images."""
        start = PAPER_HEAD.search(seg.text).start()
        if start and self.draft is not None and seg.text[:start].strip():
            self._paper_text(_Seg(seg.tag, seg.el, seg.text[:start], False, seg.quoted, seg.item))
        self._finish()
        papers, section = parse_raw_markdown(seg.text[start:], self.body.warnings)
        self.body.papers.extend(papers)
        last = papers[-1]
        self.draft = _Draft(last, summary_seen=last.summary_zh is not None, takeaways_seen=bool(last.takeaways))
        self.section = section

    # -- inside a paper --

    def _paper_text(self, seg: _Seg) -> None:
        if self.section in ("chat", "shots"):
            # LLM notes (most of every post): only the screenshots marker matters there; their
            # "摘要"/"Authors" lines are not this paper's sections.
            text = seg.text
            if "截图" in text and len(text) <= 60 and marker_kind(text) == "shots":
                self.section = "shots"
            return
        kind, rest = _marker(seg)
        if kind is None and self.section in ("abstract", "links") and self._pdf(seg):
            self.section = "after_pdf"
            return
        if kind:
            self._enter(kind, rest)
            return
        self._content(seg)

    def _pdf(self, seg: _Seg) -> bool:
        """The ``<a>PDF</a> comment`` paragraph: arXiv link and comment.

        The link itself must be there: an abstract paragraph may well start with the word "PDF".
        """
        text = seg.text.lstrip()
        if not (seg.first and text[:3].upper() == "PDF"):
            return False
        link = next((a for a in seg.el.iter("a") if "".join(a.itertext()).strip().upper() == "PDF"), None)
        if link is None:
            return False
        paper = self.draft.paper
        url = http_url(link.get("href"))
        if url:
            paper.pdf_url = url
            paper.arxiv_id, paper.arxiv_version = split_arxiv(url)
            paper.abs_url = f"https://arxiv.org/abs/{paper.arxiv_id}" if paper.arxiv_id else None
        paper.comment = norm_ws(text[3:])
        return True

    def _enter(self, kind: str, rest: str) -> None:
        draft = self.draft
        if kind == "other":  # unknown marker: the summary and takeaways slots are positional
            if self.section == "after_pdf" and not draft.summary_seen:
                kind = "summary"
            elif self.section == "summary" and not draft.takeaways_seen:
                kind = "takeaways"
            else:
                return
        if kind == "summary":
            if draft.summary_seen:
                self.section = "post"
                return
            draft.summary_seen = True
            if rest.strip():
                draft.summary.append(norm_ws(rest))
        elif kind == "takeaways":
            draft.takeaways_seen = True
            if rest.strip():
                draft.paper.takeaways.extend(bullet_items(rest))
        self.section = kind

    def _content(self, seg: _Seg) -> None:
        draft = self.draft
        text = norm_ws(seg.text)
        if self.section == "abstract":
            # The translation is a <blockquote>; a plain Chinese paragraph after the English one is too.
            zh = seg.quoted or (draft.abstract and cjk_share(text) >= _ZH_SHARE)
            (draft.abstract_zh if zh else draft.abstract).append(text)
        elif self.section == "summary":
            draft.summary.append(text)
        elif self.section == "takeaways":
            self._takeaway(seg, text)

    def _takeaway(self, seg: _Seg, text: str) -> None:
        draft = self.draft
        takeaways = draft.paper.takeaways
        if seg.item is not None:
            if seg.item is draft.last_item and takeaways:
                takeaways[-1] = f"{takeaways[-1]} {text}"
            else:
                takeaways.append(text)
            draft.last_item = seg.item
            return
        items = bullet_items(seg.text, strict=True)
        if items:
            takeaways.extend(items)
        elif takeaways:
            self.section = "post"  # a closing remark ends the bullets (an opening one does not)


def _bold_lead(seg: _Seg) -> etree._Element | None:
    """The <strong>/<b> that opens the segment's element, if any."""
    el = seg.el
    if seg.first and len(el) and not (el.text or "").strip() and el[0].tag in ("strong", "b"):
        return el[0]
    return None


def _bold_authors(seg: _Seg) -> bool:
    """``<strong>Authors:A, B</strong>``, names inside the bold, as upstream writes a paper's line.

    Inside the LLM notes an ``<h2>`` may be followed by the LLM's own "**Authors**: ..." line: that
    one is not a paper.
    """
    lead = _bold_lead(seg)
    if lead is None:
        return False
    m = _AUTHORS_LINE.match(text := "".join(lead.itertext()))
    return bool(m and text[m.end() :].strip())


def _marker(seg: _Seg) -> tuple[str | None, str]:
    """(marker kind, text after the marker) for a marker line; (None, '') otherwise.

    A marker is a whole short segment ("Summary", "关键见解") or a bold lead ("<strong>Summary</strong>
    <br>text"). An unknown short bold lead alone on its line is 'other' (positional fallback).
    """
    text = seg.text.strip()
    if len(text) <= 60:
        kind = marker_kind(text)
        if kind:
            return kind, ""
    lead = _bold_lead(seg)
    if lead is None:
        return None, ""
    lead_text = "".join(lead.itertext()).strip()
    rest = text[len(lead_text) :] if text.startswith(lead_text) else ""
    kind = marker_kind(lead_text)
    if kind:
        return kind, rest.lstrip(" \t:：")
    alone = not rest.strip() or (lead.getnext() is not None and lead.getnext().tag == "br")
    if alone and 0 < len(lead_text) <= _FALLBACK_MARKER_MAX and seg.tag in ("p", "div"):
        return "other", rest
    return None, ""
