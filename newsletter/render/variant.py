"""Render an assembled Issue into email variants (HTML + plain text) within the size budget, and the archive
page. Language modes, the budget, the one premailer call per variant and the placeholders: docs/architecture.md
("Render in detail").
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from newsletter.i18n import BILINGUAL, LANGUAGES, catalog
from newsletter.records import Highlight, Issue, IssuePaper, TopicSection, Venue
from newsletter.registry.topics import normalize_key, topic_names, topic_slug
from newsletter.render import transfer

log = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).resolve().parents[1] / "templates"
MODES = (*LANGUAGES, "bilingual")  # a language mode per UI catalog (newsletter/i18n), plus both at once

PH_GREETING = "%%GREETING%%"
PH_UNSUBSCRIBE_URL = "%%UNSUBSCRIBE_URL%%"
PH_PREFERENCES_URL = "%%PREFERENCES_URL%%"
PLACEHOLDERS: dict[str, str] = {
    "GREETING": PH_GREETING,
    "UNSUBSCRIBE_URL": PH_UNSUBSCRIBE_URL,
    "PREFERENCES_URL": PH_PREFERENCES_URL,
}

_LANG_ATTR = {lang: catalog(lang).html_lang for lang in LANGUAGES}
_ROOT_LANG = {**_LANG_ATTR, "bilingual": _LANG_ATTR["zh"]}  # mostly Chinese text: CJK line breaking and fonts


@dataclass(frozen=True)
class RenderOptions:
    max_authors: int = 6  # beyond this, the first max_authors then "et al." / "等"
    abstract_sentences: int = 3  # email abstracts are cut at a sentence boundary, with a "more" link
    abstract_max_chars: int = 700  # safety net for "sentences" without punctuation
    max_takeaways: int = 3  # per paper in the email; the archive page keeps them all
    html_budget_bytes: int = 90_000  # the HTML part as sent: base64 of UTF-8 with CRLF line breaks
    personalize_reserve_bytes: int = 400  # room for the per-subscriber values that replace the placeholders
    archive_url: str = ""  # used when issue.archive_url is empty; may contain {date} and {issue_id}
    site_name: str = "Paper Digest"
    site_name_zh: str = "论文速递"
    text_width: int = 76
    templates_dir: Path = TEMPLATES_DIR


@dataclass
class RenderedVariant:
    lang: str
    topics: frozenset[str] | None
    subject: str
    preheader: str
    html: str
    text: str
    html_encoded_size: int
    n_full: int  # papers in full, highlights included
    n_listed: int  # papers listed by linked title
    n_hidden: int = 0  # papers only counted in "N more" (the title list did not fit either)
    over_budget: bool = False  # even highlights + headings exceed the budget (logged)


# ---- premailer -------------------------------------------------------------------------------------------


def _inline_css(html: str) -> str:
    """Inline the skeleton's class rules. The ignore-marked <style> blocks pass through verbatim."""
    from premailer import Premailer  # imported lazily: importing pulls in cssutils and requests

    return Premailer(
        html,
        disable_link_rewrites=True,  # and no base_url: joining it would break the placeholder hrefs
        keep_style_tags=False,  # the inlinable block goes once inlined; ignore-blocks are kept regardless
        strip_important=False,
        remove_classes=False,  # the mobile and dark-mode rules select by class
        allow_network=False,
        allow_loading_external_files=False,
        cache_css_parsing=True,
        disable_validation=True,
        cssutils_logging_level=logging.CRITICAL,
    ).transform(pretty_print=False)


# ---- UI strings ------------------------------------------------------------------------------------------
# The strings themselves are in the catalogs (newsletter/i18n/<lang>.toml, table [email]).


def _langs(mode: str) -> tuple[str, ...]:
    """The UI languages a mode shows, in order."""
    return BILINGUAL if mode == "bilingual" else (mode,)


def _ui_lang(mode: str) -> str:
    """The one language of per-paper labels and the greeting: English in bilingual mode."""
    return BILINGUAL[0] if mode == "bilingual" else mode


def _site_name(opts: RenderOptions, lang: str) -> str:
    return opts.site_name_zh if lang == "zh" else opts.site_name


class _Tr:
    """UI strings for one mode: `t(key)` is Markup, both languages with lang spans in bilingual mode."""

    def __init__(self, mode: str, opts: RenderOptions) -> None:
        self.mode = mode
        self.sites = {lang: _site_name(opts, lang) for lang in LANGUAGES}

    def one(self, lang: str, key: str, **kw: Any) -> str:
        return _EMAIL_STRINGS[lang][key].format(site=self.sites[lang], **kw)

    def __call__(self, key: str, sep: str = " · ", **kw: Any) -> Markup:
        if self.mode != "bilingual":
            return escape(self.one(self.mode, key, **kw))
        (a, b) = BILINGUAL
        # Joined by hand: Markup.format escapes through a Formatter and costs ~5x more, once per paper.
        return Markup(
            f'<span lang="{_LANG_ESC[a]}">{escape(self.one(a, key, **kw))}</span>{escape(sep)}'
            f'<span lang="{_LANG_ESC[b]}">{escape(self.one(b, key, **kw))}</span>'
        )

    def text(self, key: str, sep: str = " / ", **kw: Any) -> str:
        return sep.join(self.one(lang, key, **kw) for lang in _langs(self.mode))


# The [email] table of each catalog ("et_al" -> "et al."), and each language's lang attribute, escaped.
_EMAIL_STRINGS = {
    lang: {k.removeprefix("email."): v for k, v in catalog(lang).strings.items() if k.startswith("email.")}
    for lang in LANGUAGES
}
_LANG_ESC = {lang: escape(attr) for lang, attr in _LANG_ATTR.items()}


# ---- text helpers ----------------------------------------------------------------------------------------

_WS = re.compile(r"\s+")
_ABBREV = {"e.g", "i.e", "al", "etc", "fig", "figs", "eq", "eqs", "vs", "cf", "approx", "resp", "sec", "no",
           "ref", "refs", "tab", "dr", "prof", "mr", "ms", "st", "inc", "ltd", "jr"}  # fmt: skip
_EN_STOP = re.compile(r"[.!?][\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")
_ZH_STOP = re.compile(r"(?:[。！？]|(?<=[\u4e00-\u9fff])[.!?])[”’」』）)]*")
_CJK_RANGE = "\u2e80-\u9fff\u3000-\u303f\uf900-\ufaff\uff00-\uffef"  # CJK, kana, full-width forms
_CJK = re.compile(f"[{_CJK_RANGE}]")


def _clean(text: str | None) -> str:
    """Single-spaced text; '%%' is broken up so content can never collide with a placeholder token."""
    return _WS.sub(" ", text or "").strip().replace("%%", "%\u200b%")


_LATIN = re.compile(r"[A-Za-z]")


def _is_cjk(text: str) -> bool:
    """Mostly Chinese? (decides the lang of an abstract block and how to split it into sentences)."""
    n_cjk = len(_CJK.findall(text))
    return n_cjk > 0 and n_cjk * 2 > n_cjk + len(_LATIN.findall(text))


def _sentences_en(text: str) -> list[str]:
    out, start = [], 0
    for m in _EN_STOP.finditer(text):
        word = text[start : m.start() + 1].rsplit(None, 1)[-1].lstrip("(").rstrip(".").casefold()
        if word in _ABBREV or (len(word) == 1 and word.isalpha()):  # "et al. 2023", initials "J. Smith"
            continue
        out.append(text[start : m.end()].strip())
        start = m.end()
    return [*out, text[start:].strip()] if text[start:].strip() else out


def _sentences_zh(text: str) -> list[str]:
    parts, start = [], 0
    for m in _ZH_STOP.finditer(text):
        parts.append(text[start : m.end()].strip())
        start = m.end()
    rest = text[start:].strip()
    return [p for p in [*parts, rest] if p]


def cut_sentences(text: str, n: int, max_chars: int = 700) -> tuple[str, bool]:
    """The first `n` sentences of `text` (English or Chinese) and whether anything was cut."""
    text = _clean(text)
    chinese = _is_cjk(text)
    sentences = _sentences_zh(text) if chinese else _sentences_en(text)
    cut = ("" if chinese else " ").join(sentences[:n])
    truncated = len(sentences) > n
    if len(cut) > max_chars:  # one run-on "sentence": cut at a word boundary
        head = cut[:max_chars]
        cut = (head.rsplit(" ", 1)[0] if " " in head[-40:] else head).rstrip(",;:，；") + "…"
        truncated = True
    return cut, truncated


def _char_width(ch: str) -> int:
    return 2 if unicodedata.east_asian_width(ch) in "WF" else 1


def _text_width(text: str) -> int:
    return sum(_char_width(c) for c in text)


# Units a line may break between: runs of ASCII spaces (no-break spaces hold), single CJK characters, and
# anything else up to a space or CJK character.
_UNITS = re.compile(rf"[ \t\r\n]+|[{_CJK_RANGE}]|[^ \t\r\n{_CJK_RANGE}]+")
_SPACES = re.compile(r"[ \t\r\n]+")
_NO_LINE_START = set("，。、；：！？）》」』”’,.;:!?)]}…·%")


def wrap_text(text: str, width: int = 76, indent: str = "", subsequent: str | None = None) -> str:
    """Wrap to `width` display columns (CJK counts double), breaking between words or between CJK
    characters, never before closing punctuation; words longer than a line (URLs) are not broken."""
    subsequent = indent if subsequent is None else subsequent
    paragraphs = [p for p in str(text).split("\n") if p.strip()] or [""]
    first, *rest = paragraphs
    out = [_wrap_line(first, width, indent, subsequent)]
    out += [_wrap_line(p, width, subsequent, subsequent) for p in rest]
    return "\n".join(out)


def _wrap_line(text: str, width: int, indent: str, subsequent: str) -> str:
    lines: list[str] = []
    prefix, units = indent, []  # the current line: prefix + units, `used` columns wide
    used = _text_width(prefix)
    for unit in _UNITS.findall(_SPACES.sub(" ", text).strip()):
        if unit == " ":
            if units:
                units.append(unit)
                used += 1
            continue
        w = _text_width(unit)
        if units and used + w > width:
            # Closing punctuation may not start a line: take the character before it along.
            carry = [units.pop()] if unit[0] in _NO_LINE_START and len(units) > 1 and units[-1] != " " else []
            lines.append(prefix + "".join(units).rstrip())
            prefix, units = subsequent, carry
            used = _text_width(prefix) + sum(_text_width(u) for u in carry)
        units.append(unit)
        used += w
    lines.append(prefix + "".join(units).rstrip())
    return "\n".join(lines)


def encoded_size(n_bytes: int, line_len: int = 76) -> int:
    """Size of `n_bytes` as a base64 MIME body: 4 chars per 3 bytes, CRLF after every line."""
    return transfer.base64_size(n_bytes, line_len)


def html_encoded_size(html: str) -> int:
    """The HTML part's size as sent, in the transfer encoding the message stage will choose for it."""
    return transfer.encoded_size(transfer.canonical(html))


# ---- view models -----------------------------------------------------------------------------------------


@dataclass
class PaperView:
    """What one paper block shows; None / empty means the block is left out in this mode."""

    title: str
    abs_url: str | None
    pdf_url: str | None
    authors: str
    badge: str | None = None
    note: str | None = None  # "now accepted at ..." for previously featured highlights
    summary: str | None = None
    takeaways: list[str] = field(default_factory=list)
    zh_lang: str = "zh-CN"
    summary_en: str | None = None  # machine-translated ([translate]): en without an English abstract; archive
    takeaways_en: list[str] = field(default_factory=list)  # machine-translated: en, bilingual, archive
    summary_mt_label: str = ""
    takeaways_mt_label: str = ""
    abstract: str | None = None
    abstract_lang: str = "en"
    more_label: str | None = None  # set when the abstract was cut
    abstract_zh: str | None = None  # archive only: the full Chinese translation
    tags: list[str] = field(default_factory=list)
    tags_label: str = ""
    label_colon: str = ": "  # between tags_label and the tags
    list_separator: str = ", "  # between tags
    links_lang: str = "en"
    pdf_label: str = "PDF"
    code_url: str | None = None
    code_label: str = "Code"
    project_url: str | None = None
    project_label: str = "Project"
    anchor: str | None = None  # archive only


def _safe_url(url: str | None) -> str | None:
    """Only http(s) links make it into an href."""
    url = (url or "").strip()
    return url if re.match(r"https?://", url, re.IGNORECASE) else None


def _links(p: IssuePaper) -> tuple[str | None, str | None]:
    """(abs page, PDF). Upstream's [PDF] link actually points at the abs page, so the id wins."""
    if p.arxiv_id and re.fullmatch(r"\d{4}\.\d{4,5}", p.arxiv_id):
        return f"https://arxiv.org/abs/{p.arxiv_id}", f"https://arxiv.org/pdf/{p.arxiv_id}"
    abs_url = _safe_url(p.abs_url) or _safe_url(p.pdf_url)
    pdf = _safe_url(p.pdf_url)
    return abs_url, (pdf if pdf != abs_url else None)


def _authors(names: list[str], max_authors: int, et_al: str) -> str:
    names = [_clean(n) for n in names if _clean(n)]
    if len(names) <= max_authors:
        return ", ".join(names)
    return ", ".join(names[:max_authors]) + "\u00a0" + et_al.replace(" ", "\u00a0")  # never wrap "et al."


_SMALL_WORDS = {"and", "of", "the", "for", "in", "on"}


def _track(track: str) -> str:
    words = _clean(track).split()
    return " ".join(w if (i and w in _SMALL_WORDS) or not w.islower() else w.capitalize() for i, w in enumerate(words))


def venue_badge(venue: Venue, accepted_label: str | None = None) -> str | None:
    """'NeurIPS 2024 · Oral'; 'Accepted' (or `accepted_label`) when the venue is unknown; None when not accepted."""
    if not venue.accepted:
        return None
    head = " ".join(x for x in (_clean(venue.venue), str(venue.year or "")) if x)
    head = head or accepted_label or catalog("en")("email.accepted_badge")
    return f"{head} · {_track(venue.track)}" if venue.track else head


def _tags(p: IssuePaper, context_topic: str | None, lang: str) -> list[str]:
    seen, out = {normalize_key(context_topic)} if context_topic else set(), []
    for key in p.topics:
        if normalize_key(key) in seen:
            continue
        seen.add(normalize_key(key))
        en, zh = topic_names(key)
        out.append(_clean(zh if lang == "zh" else en))
    return out


_NUMBER = re.compile(r"\d")


def pick_takeaways(takeaways: list[str], limit: int) -> list[str]:
    """At most `limit` takeaways, in their original order. Those stating a figure (a result: "+2.1 dB",
    "10x faster") come first, then the shortest: a short concrete claim reads faster than a long general one,
    and upstream's long bullets mostly restate the summary."""
    keep = _picked(takeaways, limit)
    return [t for i, t in enumerate(takeaways) if i in keep]


def _picked(takeaways: list[str], limit: int) -> set[int]:
    """The indices `pick_takeaways` keeps."""
    if len(takeaways) <= limit:
        return set(range(len(takeaways)))
    ranked = sorted(range(len(takeaways)), key=lambda i: (not _NUMBER.search(takeaways[i]), len(takeaways[i]), i))
    return set(ranked[:limit])


def _translated(view: PaperView, p: IssuePaper, mode: str, opts: RenderOptions, archive: bool, tr: _Tr) -> None:
    """The machine-translated English summary and takeaways ([translate]), where the mode shows them: `en` and
    `bilingual` get the takeaways (the same ones as the Chinese list when both are shown), the English summary
    only stands in for a missing English abstract in `en`; the archive page shows everything."""
    takeaways = [_clean(t) for t in p.takeaways_en if _clean(t)]
    summary = _clean(p.summary_en) or None
    if mode == "zh" and not archive:
        return
    if not archive:
        chinese = [_clean(t) for t in p.takeaways if _clean(t)]
        if len(chinese) == len(takeaways):  # the English of the Chinese ones shown (bilingual shows both)
            keep = _picked(chinese, opts.max_takeaways)
            takeaways = [t for i, t in enumerate(takeaways) if i in keep]
        else:
            takeaways = pick_takeaways(takeaways, opts.max_takeaways)
        summary = summary if mode != "bilingual" and not _clean(p.abstract) else None
    ui = _ui_lang(mode)
    view.summary_en, view.takeaways_en = summary, takeaways
    view.summary_mt_label, view.takeaways_mt_label = tr.one(ui, "summary_mt"), tr.one(ui, "takeaways_mt")


def paper_view(
    p: IssuePaper,
    mode: str,
    opts: RenderOptions,
    *,
    context_topic: str | None,
    venue: Venue | None = None,
    note: str | None = None,
    archive: bool = False,
) -> PaperView:
    """The per-mode content of one paper (see the module docstring). `archive` shows everything, uncut."""
    tr = _Tr(mode, opts)
    ui = _ui_lang(mode)  # per-paper labels: English in bilingual mode
    abs_url, pdf_url = _links(p)
    view = PaperView(
        title=_clean(p.title) or tr.one(ui, "untitled"),
        abs_url=abs_url,
        pdf_url=pdf_url,
        authors=_authors(p.authors, opts.max_authors, tr.one(ui, "et_al")),
        badge=venue_badge(venue or p.venue, tr.one(ui, "accepted_badge")),
        note=note,
        links_lang=_LANG_ATTR[ui],
        tags=_tags(p, context_topic, ui),
        tags_label=tr.one(ui, "also_in" if context_topic else "topics_in"),
        label_colon=tr.one(ui, "label_colon"),
        list_separator=tr.one(ui, "list_separator"),
        pdf_label=tr.one(ui, "pdf"),
        code_url=_safe_url(p.code_url),
        code_label=tr.one(ui, "code"),
        project_url=_safe_url(p.project_url),
        project_label=tr.one(ui, "project"),
    )
    summary, takeaways = _clean(p.summary_zh) or None, [_clean(t) for t in p.takeaways if _clean(t)]
    english = _clean(p.abstract)
    _translated(view, p, mode, opts, archive, tr)
    has_en = bool(view.summary_en or view.takeaways_en)
    # Upstream writes these only in Chinese: `en` shows them only for a paper with no English at all.
    show_zh = mode in ("zh", "bilingual") or archive or not (english or has_en)
    if show_zh:
        view.summary = summary
        view.takeaways = takeaways if archive else pick_takeaways(takeaways, opts.max_takeaways)
    translated = _clean(p.abstract_zh)
    source = (translated or english) if mode == "zh" else (english or translated)
    if archive:
        view.abstract, view.abstract_zh = english or None, translated or None
    elif source:
        # Bilingual with a Chinese summary says it twice already: one sentence fewer of the abstract (#12).
        sentences = opts.abstract_sentences - (mode == "bilingual" and bool(view.summary))
        view.abstract, cut = cut_sentences(source, max(sentences, 1), opts.abstract_max_chars)
        view.more_label = tr.one("zh" if _is_cjk(source) else "en", "more") if cut and abs_url else None
    view.abstract_lang = "zh-CN" if view.abstract and _is_cjk(view.abstract) else "en"
    return view


# ---- templates -------------------------------------------------------------------------------------------


@cache
def _env(templates_dir: Path, text: bool) -> Environment:
    """Autoescape on for HTML templates; the text environment renders plain text (no escaping)."""
    env = Environment(
        loader=FileSystemLoader(str(templates_dir)),
        autoescape=select_autoescape(enabled_extensions=(), default=not text, default_for_string=not text),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=["jinja2.ext.do"],
    )
    env.filters["wrap"] = wrap_text
    return env


_BETWEEN_TAGS = re.compile(r">\s*\n\s*<")
_NEWLINE_INDENT = re.compile(r"\s*\n\s*")


def _squeeze(html: str) -> str:
    """Drop template indentation: line breaks in templates only ever sit between tags or inside text where
    a single space is meant (content itself is single-spaced before rendering)."""
    return _NEWLINE_INDENT.sub(" ", _BETWEEN_TAGS.sub("><", html)).strip()


def _render(opts: RenderOptions, name: str, **ctx: Any) -> str:
    return _env(opts.templates_dir, False).get_template(name).render(**ctx)


def _render_text(opts: RenderOptions, name: str, **ctx: Any) -> str:
    return _env(opts.templates_dir, True).get_template(name).render(**ctx)


# ---- issue -> what a variant shows -----------------------------------------------------------------------


@dataclass
class _Entry:
    """One paper of a topic section, with both of its renderings (full block, title line)."""

    paper: IssuePaper
    order: int
    rank: tuple[int, int, int]
    view: PaperView | None = None  # reused by the text part
    full: str = ""
    listed: str = ""


@dataclass
class _Section:
    section: TopicSection
    name_en: str
    name_zh: str
    slug: str
    entries: list[_Entry]


@dataclass
class _Plan:
    """Everything one variant shows: highlights, sections, counts."""

    highlights: list[Highlight]
    sections: list[_Section]
    n_papers: int
    n_accepted: int


def _wanted(topics: frozenset[str] | None) -> set[str] | None:
    return None if topics is None else {normalize_key(t) for t in topics}


def _rank(p: IssuePaper, order: int) -> tuple[int, int, int]:
    """Lower is better: accepted, then with summary+takeaways, then upstream order."""
    return (0 if p.venue.accepted else 1, 0 if (_clean(p.summary_zh) and p.takeaways) else 1, order)


def _plan(issue: Issue, topics: frozenset[str] | None) -> _Plan:
    wanted = _wanted(topics)
    selected = [s for s in issue.sections if wanted is None or normalize_key(s.topic) in wanted]
    highlights: list[Highlight] = []
    seen: set[int] = set()
    for h in issue.highlights:  # two acceptance events of one paper in a period: show the first
        if h.paper.paper_id not in seen and (wanted is None or any(normalize_key(t) in wanted for t in h.paper.topics)):
            highlights.append(h)
            seen.add(h.paper.paper_id)
    new_ids: set[int] = set()
    sections = []
    for sec in selected:
        new_ids.update(p.paper_id for p in sec.papers)
        papers = [p for p in sec.papers if p.paper_id not in seen]
        seen.update(p.paper_id for p in papers)
        if not papers:
            continue
        en, zh = topic_names(sec.topic)
        entries = [_Entry(p, i, _rank(p, i)) for i, p in enumerate(papers)]
        sections.append(
            _Section(sec, _clean(sec.name_en) or en, _clean(sec.name_zh) or zh, topic_slug(sec.topic), entries)
        )
    accepted = {h.paper.paper_id for h in highlights if h.venue.accepted or h.paper.venue.accepted}
    accepted |= {e.paper.paper_id for s in sections for e in s.entries if e.paper.venue.accepted}
    return _Plan(highlights, sections, len(new_ids), len(accepted))


def _priority(sections: list[_Section]) -> list[_Entry]:
    """Full-slot order: each topic's best, then each topic's second best, ... (round-robin)."""
    ranked = [sorted(s.entries, key=lambda e: e.rank) for s in sections]
    out = []
    for depth in range(max((len(r) for r in ranked), default=0)):
        out.extend(r[depth] for r in ranked if depth < len(r))
    return out


def _archive_url(issue: Issue, opts: RenderOptions) -> str:
    url = issue.archive_url or opts.archive_url.format(date=issue.issue_date.isoformat(), issue_id=issue.issue_id or "")
    return _safe_url(url) or ""


# ---- header / subject ------------------------------------------------------------------------------------


def _date_title(d: date, lang: str) -> str:
    """The issue date in headings, formatted by Babel for the language's locale."""
    return catalog(lang).date(d)


def _week(issue: Issue) -> tuple[str, str] | None:
    """(Monday, Sunday) as ISO dates for a weekly issue, None for a daily one."""
    if issue.frequency != "weekly":
        return None
    return (issue.issue_date - timedelta(days=6)).isoformat(), issue.issue_date.isoformat()


def _issue_title(issue: Issue, lang: str) -> str:
    """The header's date line: the day, or the week of a weekly issue."""
    week = _week(issue)
    if week is None:
        return _date_title(issue.issue_date, lang)
    return catalog(lang)("email.week_title", first=week[0], last=week[1])


def _period(start: str, end: str) -> str:
    """'12-04 08:00 – 12-05 08:00 UTC+8' (the year is in the heading); the raw strings if they do not parse."""
    try:
        a, b = datetime.fromisoformat(start), datetime.fromisoformat(end)
    except ValueError:
        return f"{start} – {end}"
    fmt = "%m-%d %H:%M" if a.year == b.year else "%Y-%m-%d %H:%M"
    text = f"{a.strftime(fmt)} – {b.strftime(fmt)}"
    offset = a.utcoffset()
    if offset is None or offset != b.utcoffset():
        return text if offset is None else f"{a.isoformat(' ', 'minutes')} – {b.isoformat(' ', 'minutes')}"
    hours, rest = divmod(int(offset.total_seconds()) // 60, 60)
    return f"{text} UTC{hours:+d}" + (f":{rest:02d}" if rest else "")


def _counts_phrase(lang: str, n_papers: int, n_accepted: int) -> str:
    ui = catalog(lang)
    return ui.plural("email.count_papers", n_papers) + (ui("email.count_accepted", n=n_accepted) if n_accepted else "")


def make_subject(issue: Issue, mode: str, opts: RenderOptions, n_papers: int, n_accepted: int) -> str:
    first, *rest = _langs(mode)
    counts = _counts_phrase(first, n_papers, n_accepted)
    week = _week(issue)
    if week:  # "Paper Digest weekly 2024-11-25 – 2024-12-01 · 412 papers, 9 accepted"
        subject = catalog(first)(
            "email.subject_weekly", site=_site_name(opts, first), first=week[0], last=week[1], counts=counts
        )
    else:
        subject = catalog(first)(
            "email.subject", site=_site_name(opts, first), date=issue.issue_date.isoformat(), counts=counts
        )
    for lang in rest:  # bilingual: "... | 论文速递 · 63 篇论文，4 篇录用"
        counts = _counts_phrase(lang, n_papers, n_accepted)
        subject += " | " + catalog(lang)("email.subject_second", site=_site_name(opts, lang), counts=counts)
    return subject


def _preheader(plan: _Plan, mode: str) -> str:
    """Inbox preview line: the counts, then the first acceptances."""
    n_topics = len(plan.sections)
    parts = [
        catalog(lang)("email.preheader_counts", n_papers=plan.n_papers, n_topics=n_topics) for lang in _langs(mode)
    ]
    ui = catalog(_ui_lang(mode))
    for h in plan.highlights[:2]:
        badge = venue_badge(h.venue) or ""
        title = _clean(h.paper.title)
        title = title if len(title) <= 70 else title[:68].rstrip() + "…"
        parts.append(ui("email.preheader_accepted", title=title, badge=badge))
    return " ".join(parts)


# ---- rendering -------------------------------------------------------------------------------------------


def _check_mode(lang: str) -> str:
    mode = {"zh-cn": "zh", "zh_cn": "zh", "cn": "zh"}.get(lang.casefold(), lang.casefold())
    if mode not in MODES:
        raise ValueError(f"unknown language mode {lang!r}; expected one of {MODES}")
    return mode


def _highlight_note(h: Highlight, mode: str) -> str | None:
    if not h.previously_featured:
        return None
    ui = catalog(_ui_lang(mode))
    venue = venue_badge(h.venue, ui("email.accepted_badge")) or ui("email.accepted_badge")
    return ui("email.featured_now", date=h.paper.first_post_date.isoformat(), venue=venue)


def _highlight_views(plan: _Plan, mode: str, opts: RenderOptions, archive: bool) -> list[PaperView]:
    return [
        paper_view(h.paper, mode, opts, context_topic=None, venue=h.venue, note=_highlight_note(h, mode),
                   archive=archive)
        for h in plan.highlights
    ]  # fmt: skip


def _section_heading(sec: _Section) -> dict[str, Any]:
    return {"en": sec.name_en, "zh": sec.name_zh, "slug": sec.slug, "count": len(sec.entries)}


def _common_ctx(issue: Issue, plan: _Plan, mode: str, opts: RenderOptions) -> dict[str, Any]:
    return {
        "mode": mode,
        "t": _Tr(mode, opts),
        "root_lang": _ROOT_LANG[mode],
        "ui_lang": _LANG_ATTR.get(mode),  # None in bilingual mode: its UI strings carry their own spans
        "lang_attr": _LANG_ATTR,
        # Site name and date in each language of the mode, for the header.
        "heads": [
            {"lang": _LANG_ATTR[lang], "site": _site_name(opts, lang), "date": _issue_title(issue, lang)}
            for lang in _langs(mode)
        ],
        "date_iso": issue.issue_date.isoformat(),
        "period": _period(issue.period_start, issue.period_end),
        "n_papers": plan.n_papers,
        "n_topics": len(plan.sections),
        "n_accepted": plan.n_accepted,
        "archive_url": _archive_url(issue, opts),
        "PH": PLACEHOLDERS,
    }


def _fragment(opts: RenderOptions, name: str, **ctx: Any) -> str:
    return _squeeze(_render(opts, name, **ctx))


def _render_fragments(plan: _Plan, mode: str, opts: RenderOptions) -> None:
    """Each section paper rendered both ways once; the size search only adds up their byte counts."""
    for sec in plan.sections:
        for e in sec.entries:
            e.view = paper_view(e.paper, mode, opts, context_topic=sec.section.topic)
            e.full = _fragment(opts, "_paper.html.j2", p=e.view, mode=mode)
            e.listed = _fragment(opts, "_listed.html.j2", p=e.view, mode=mode)


def _overflow_box(opts: RenderOptions, ctx: dict[str, Any], sec: _Section, n_more: int, items: list[str]) -> str:
    return _fragment(opts, "_overflow.html.j2", n_more=n_more, items=Markup("".join(items)), slug=sec.slug, **ctx)


def _section_slot(opts: RenderOptions, ctx: dict[str, Any], sec: _Section, full: set[int], listed: set[int]) -> str:
    entries = sec.entries
    html = "".join(e.full for e in entries if id(e) in full)
    rest = [e for e in entries if id(e) not in full]
    if rest:
        items = [e.listed for e in rest if id(e) in listed]
        html += _overflow_box(opts, ctx, sec, len(rest), items)
    return html


_SLOT = re.compile(r"<!--slot:(\d+)-->")


def _fill(skeleton: str, slots: list[str]) -> str:
    return _SLOT.sub(lambda m: slots[int(m.group(1))], skeleton)


def _split_budget(
    plan: _Plan, opts: RenderOptions, ctx: dict[str, Any], skeleton: str, fixed: list[str]
) -> tuple[str, set[int], set[int]]:
    """Choose how many papers go in full (then how many titles stay listed) so the encoded HTML fits.
    Every probe is exact (string assembly, no premailer): premailer never sees the fragments."""
    priority = _priority(plan.sections)

    def build(n_full: int, n_listed: int) -> str:
        full = {id(e) for e in priority[:n_full]}
        listed = {id(e) for e in priority[n_full:n_listed]}
        slots = fixed + [_section_slot(opts, ctx, s, full, listed) for s in plan.sections]
        return _fill(skeleton, slots)

    def fits(html: str) -> bool:
        return _fits(html, opts)

    n = len(priority)
    if fits(html := build(n, n)):
        return html, {id(e) for e in priority}, set()
    if fits(build(0, n)):
        k = _largest(lambda k: fits(build(k, n)), 0, n)
        return build(k, n), {id(e) for e in priority[:k]}, {id(e) for e in priority[k:]}
    k = _largest(lambda k: fits(build(0, k)), 0, n) if fits(build(0, 0)) else 0
    return build(0, k), set(), {id(e) for e in priority[:k]}


def _fits(html: str, opts: RenderOptions) -> bool:
    """Within budget once personalised: the placeholders are replaced by URLs and a name afterwards."""
    data = transfer.canonical(html)
    cte = transfer.choose(data)
    # The reserve as encoded: a non-ASCII value in quoted-printable takes 3 characters a byte, base64 4 per 3.
    reserve = 3 * opts.personalize_reserve_bytes if cte == transfer.QP else -(-4 * opts.personalize_reserve_bytes // 3)
    return transfer.encoded_size(data, cte) + reserve <= opts.html_budget_bytes


def _largest(ok: Callable[[int], bool], lo: int, hi: int) -> int:
    """Largest k in [lo, hi] with ok(k), given ok(lo) (binary search; sizes grow with k)."""
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid - 1)
    return lo


def render_variant(
    issue: Issue, lang: str, topics: frozenset[str] | None = None, opts: RenderOptions | None = None
) -> RenderedVariant:
    """One email variant (language mode x topic selection), rendered and inlined once, with placeholders."""
    opts = opts or RenderOptions()
    mode = _check_mode(lang)
    plan = _plan(issue, topics)
    ctx = _common_ctx(issue, plan, mode, opts)
    subject = make_subject(issue, mode, opts, plan.n_papers, plan.n_accepted)
    preheader = _preheader(plan, mode)

    _render_fragments(plan, mode, opts)
    hl_views = _highlight_views(plan, mode, opts, False)
    highlights = [_fragment(opts, "_paper.html.j2", p=v, mode=mode) for v in hl_views]
    fixed = [
        _fragment(opts, "_preheader.html.j2", text=preheader, **ctx),
        "".join(highlights),
    ]
    sections = [_section_heading(s) for s in plan.sections]
    page = _render(opts, "email.html.j2", subject=subject, sections=sections, has_highlights=bool(highlights), **ctx)
    skeleton = _inline_css(page)  # the only premailer call of the variant
    _check_slots(skeleton, len(fixed) + len(sections))
    html, full, listed = _split_budget(plan, opts, ctx, skeleton, fixed)
    size = html_encoded_size(html)
    if not _fits(html, opts):
        log.warning("%s variant is %d bytes encoded, over the %d budget", mode, size, opts.html_budget_bytes)

    n_total = sum(len(s.entries) for s in plan.sections)
    text = _text_part(plan, opts, ctx, subject, hl_views, full, listed)
    return RenderedVariant(
        lang=mode,
        topics=topics,
        subject=subject,
        preheader=preheader,
        html=html,
        text=text,
        html_encoded_size=size,
        n_full=len(plan.highlights) + len(full),
        n_listed=len(listed),
        n_hidden=n_total - len(full) - len(listed),
        over_budget=not _fits(html, opts),
    )


def _check_slots(skeleton: str, n: int) -> None:
    found = sorted(int(m) for m in _SLOT.findall(skeleton))
    if found != list(range(n)):
        raise RuntimeError(f"slot markers lost in inlining: expected {n}, found {found}")


# ---- plain-text part -------------------------------------------------------------------------------------


class _Refs:
    """Numbered link references for the text part: `ref(url)` -> 1, 2, ... (same URL, same number)."""

    def __init__(self) -> None:
        self.urls: dict[str, int] = {}

    def __call__(self, url: str) -> int:
        return self.urls.setdefault(url, len(self.urls) + 1)

    def items(self) -> list[tuple[int, str]]:
        return [(n, url) for url, n in self.urls.items()]


def _text_part(
    plan: _Plan,
    opts: RenderOptions,
    ctx: dict[str, Any],
    subject: str,
    highlights: list[PaperView],
    full: set[int],
    listed: set[int],
) -> str:
    """The plain-text part, showing the same papers in full / by title as the HTML part."""
    sections = [
        {
            **_section_heading(sec),
            "full": [e.view for e in sec.entries if id(e) in full],
            "listed": [e.view for e in sec.entries if id(e) in listed],
            "n_more": sum(1 for e in sec.entries if id(e) not in full),
        }
        for sec in plan.sections
    ]
    text = _render_text(
        opts,
        "email.txt.j2",
        subject=subject,
        highlights=highlights,
        sections=sections,
        ref=_Refs(),
        width=opts.text_width,
        **ctx,
    )
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


# ---- archive ---------------------------------------------------------------------------------------------


def render_archive(issue: Issue, opts: RenderOptions | None = None) -> str:
    """The web archive page: every paper in full (never cut), bilingual, same partials as the email."""
    opts = opts or RenderOptions()
    mode = "bilingual"
    plan = _plan(issue, None)
    ctx = _common_ctx(issue, plan, mode, opts)
    highlights = []
    for h, v in zip(plan.highlights, _highlight_views(plan, mode, opts, True), strict=True):
        v.anchor = f"p{h.paper.paper_id}"
        highlights.append(Markup(_fragment(opts, "_paper.html.j2", p=v, mode=mode)))
    sections = []
    for sec in plan.sections:
        papers = []
        for e in sec.entries:
            v = paper_view(e.paper, mode, opts, context_topic=sec.section.topic, archive=True)
            v.anchor = f"p{e.paper.paper_id}"
            papers.append(Markup(_fragment(opts, "_paper.html.j2", p=v, mode=mode)))
        sections.append({**_section_heading(sec), "papers": papers})
    subject = make_subject(issue, mode, opts, plan.n_papers, plan.n_accepted)
    return _render(opts, "archive.html.j2", subject=subject, highlights=highlights, sections=sections, **ctx)


# ---- per-subscriber values -------------------------------------------------------------------------------


def greeting(lang: str, name: str | None = None) -> str:
    """'Hi Ada,' / 'Ada，你好！'; the generic form without a name. Bilingual mode greets in English."""
    ui = _EMAIL_STRINGS[_ui_lang(_check_mode(lang))]  # per subscriber: plain dict lookups
    name = _clean(name)
    return ui["greeting_name"].format(name=name) if name else ui["greeting"]


def personalize(variant: RenderedVariant, values: dict[str, str]) -> tuple[str, str]:
    """(html, text) with the placeholders replaced: keys are placeholder names ("UNSUBSCRIBE_URL") or the
    tokens themselves; "NAME" builds the greeting when "GREETING" is not given. URLs are required."""
    resolved: dict[str, str] = {}
    for key, value in values.items():
        name = key.strip("%").upper()
        if name not in (*PLACEHOLDERS, "NAME"):
            raise KeyError(f"unknown placeholder {key!r}")
        resolved[name] = value
    resolved.setdefault("GREETING", greeting(variant.lang, resolved.get("NAME")))
    missing = [n for n in ("UNSUBSCRIBE_URL", "PREFERENCES_URL") if not resolved.get(n)]
    if missing:
        raise ValueError(f"missing per-subscriber values: {missing}")
    html, text = variant.html, variant.text
    for name, token in PLACEHOLDERS.items():
        html = html.replace(token, str(escape(resolved[name])))
        text = text.replace(token, resolved[name])
    return html, text
