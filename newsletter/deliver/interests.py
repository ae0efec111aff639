"""A subscriber's interests for the "For you" pick (#11): keywords and seed papers, as typed on the command line,
in a CSV cell, on the preferences page, or exported from a reference manager (BibTeX, Zotero's BibTeX export).

Seeds are stored as a list of {"arxiv_id", "title", "abstract"}: the id when there is one (its text then comes
from the store), title and abstract when the export has them (so a seed the store never saw still counts).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import bibtexparser

from newsletter.issue.recommend import arxiv_id

MAX_KEYWORDS_CHARS = 500
MAX_SEEDS = 200  # a whole Zotero library is not a profile; the most recent entries of an export are kept
MAX_SEED_TEXT = 3000
_LATEX_CMD = re.compile(r"\\[a-zA-Z]+\*?\s*|\\.")
_BRACES = re.compile(r"[{}]")
_WS = re.compile(r"\s+")
_SPLIT = re.compile(r"[\s;,]+")


class InterestsError(ValueError):
    pass


@dataclass
class SeedReport:
    seeds: list[dict[str, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "<source>: entry <key>: reason"


def parse_keywords(raw: str | None) -> str | None:
    """Single-spaced keywords (any separators), None when empty; refused when longer than MAX_KEYWORDS_CHARS."""
    text = _WS.sub(" ", raw or "").strip()
    if len(text) > MAX_KEYWORDS_CHARS:
        raise InterestsError(f"keywords are {len(text)} characters long (at most {MAX_KEYWORDS_CHARS})")
    return text or None


def _latex_text(value: str) -> str:
    """BibTeX field text without LaTeX commands and grouping braces ("{Gaussian} \\emph{Avatars}" -> "Gaussian
    Avatars"): the ranking only needs the words."""
    return _WS.sub(" ", _BRACES.sub("", _LATEX_CMD.sub(" ", value))).strip()[:MAX_SEED_TEXT]


def read_bibtex(text: str, source: str = "bibtex") -> SeedReport:
    """Seeds from a BibTeX / BibLaTeX file (Zotero's and Better BibTeX's exports included): the arXiv id from
    `eprint`, `url`, `doi` (10.48550/arXiv.…) or `arxivid`, and title + abstract. An entry with neither an id nor
    a title is skipped with the reason; a block the parser cannot read is reported, the rest is kept."""
    report = SeedReport()
    library = bibtexparser.parse_string(text)
    for block in library.failed_blocks:
        report.skipped.append(f"{source}: line {block.start_line + 1}: unreadable BibTeX block")
    for entry in library.entries:
        fields = {k.lower(): str(f.value) for k, f in entry.fields_dict.items()}
        ident = None
        for name in ("eprint", "arxivid", "url", "doi", "journal", "note"):
            ident = arxiv_id(fields[name]) if _names_arxiv(name, fields) else None
            if ident:
                break
        title, abstract = _latex_text(fields.get("title", "")), _latex_text(fields.get("abstract", ""))
        if not ident and not title:
            report.skipped.append(f"{source}: entry {entry.key}: no arXiv id and no title")
            continue
        report.seeds.append({k: v for k, v in (("arxiv_id", ident), ("title", title), ("abstract", abstract)) if v})
    return report


def _names_arxiv(name: str, fields: dict[str, str]) -> bool:
    """Whether field `name` holds an arXiv id: `eprint` unless another archive is named; a URL, DOI, journal or
    note only when it says arXiv (a DOI like 10.1109/CVPR.2023.01234 looks like an id too)."""
    value = fields.get(name, "")
    if not value:
        return False
    if name == "eprint":
        return "arxiv" in fields.get("archiveprefix", fields.get("eprinttype", "arxiv")).lower()
    return name == "arxivid" or "arxiv" in value.lower()


def parse_seeds(items: Iterable[str] | str | None, files: bool = True) -> SeedReport:
    """Seeds from arXiv ids / abs or PDF URLs (separated by spaces, ';' or ','), or paths of .bib files (only
    with `files`: not from a CSV cell or a web form). Anything else is refused with one line naming it.
    Duplicates are dropped (first wins)."""
    if isinstance(items, str):
        items = [items]
    report = SeedReport()
    for item in items or ():
        item = item.strip()
        if not item:
            continue
        path = Path(item).expanduser()
        if files and (item.lower().endswith((".bib", ".bibtex", ".biblatex")) or path.is_file()):
            try:
                text = path.read_text(encoding="utf-8-sig", errors="replace")
            except OSError as exc:
                raise InterestsError(f"cannot read seed file {item}: {exc.strerror or exc}") from exc
            found = read_bibtex(text, source=str(path))
            report.seeds += found.seeds
            report.skipped += found.skipped
            continue
        for token in _SPLIT.split(item):
            if not token:
                continue
            ident = arxiv_id(token)
            if ident is None:
                raise InterestsError(f"seed {token!r} is not an arXiv id (e.g. 2401.01234) nor a .bib file")
            report.seeds.append({"arxiv_id": ident})
    report.seeds = _dedupe(report.seeds)[-MAX_SEEDS:]
    return report


def _dedupe(seeds: list[dict[str, str]]) -> list[dict[str, str]]:
    seen: set[str] = set()
    out = []
    for s in seeds:
        key = s.get("arxiv_id") or _WS.sub(" ", s.get("title", "")).casefold()
        if key not in seen:
            seen.add(key)
            out.append(s)
    return out


def seeds_label(seeds: list[dict[str, str]] | None) -> str:
    """How seeds show in a list or a form field: ids, then quoted titles of seeds without one."""
    return " ".join(s.get("arxiv_id") or f'"{s.get("title", "")[:60]}"' for s in seeds or ())
