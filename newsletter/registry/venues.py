"""Venue acceptance read from an arXiv comment: "Accepted to CVPR 2024 (Oral)" -> CVPR, 2024, oral.

Comments are free text written by authors, so the reader works in passes over a normalised copy:

1. strip what must never count (URLs, arXiv ids, DOIs) and split the text into sentence-like segments;
2. find venue mentions from a registry of ~250 venues (aliases through one trie regex; full names through a
   trie of keywords that says which few full-name patterns are worth trying);
3. find cues: acceptance ("accepted", "to appear", "Proceedings of"...) and negation ("submitted",
   "under review", "extended version of", "challenge", "technical report"...);
4. give each mention the polarity of the nearest cue that governs it (a bare "CVPR 2024" counts as
   accepted, as is the arXiv custom) and keep the best accepted mention; an unknown venue named right after
   an acceptance phrase is read as written ("accepted in npj Precision Oncology").

The registry and the cue/track tables are data (data/venues.toml, data/venue_cues.toml), checked against the
models below when the module is imported; everything is compiled once then and answers are cached: this runs
for every paper sighting.
bench/venues.py scores it against a labelled JSONL set.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints, model_validator

from newsletter.records import Venue
from newsletter.registry.loader import load

# ---- the registry: data/venues.toml and data/venue_cues.toml, checked at load -----------------------------
# What each field means is written at the top of the data files; the models below are their schema.

_UPPER_ESCAPE = re.compile(r"\\[SWDBAZ]")


def _check_alias(alias: str) -> str:
    if alias != alias.strip() or not alias:
        raise ValueError(f"alias {alias!r} is empty or has spaces around it")
    if alias[0] in "!~":
        raise ValueError(f"alias {alias!r}: list it under aliases_cased / aliases_strict instead of a !/~ prefix")
    if not any(ch.isalnum() for ch in alias):
        raise ValueError(f"alias {alias!r} has no letter or digit")
    return alias


def _check_full_name(name: str, strict: bool) -> str:
    body = _full_name_pattern(name)
    try:
        _full_name_regex(body, strict)  # compiled once: _build_registry gets it from the cache
    except re.error as exc:
        raise ValueError(f"full name {name!r} is not a valid regular expression: {exc}") from None
    _mandatory_words(body)
    return name


def _check_cue(pattern: str) -> str:
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"pattern {pattern!r} is not a valid regular expression: {exc}") from None
    if compiled.groups:  # with groups the one-scan regex saves and restores them at every branch: 3-4x slower
        raise ValueError(f"pattern {pattern!r} has a capturing group; write (?:...) instead")
    return pattern


Alias = Annotated[str, AfterValidator(_check_alias)]
FullName = Annotated[str, AfterValidator(lambda name: _check_full_name(name, strict=False))]
StrictFullName = Annotated[str, AfterValidator(lambda name: _check_full_name(name, strict=True))]
CuePattern = Annotated[str, AfterValidator(_check_cue)]


class VenueSpec(BaseModel):
    """One [[venue]] of data/venues.toml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, StringConstraints(min_length=1, pattern=r"^\S(?:.*\S)?$")]
    kind: Literal["conference", "journal", "workshop"]
    aliases: list[Alias] = []
    aliases_cased: list[Alias] = []
    aliases_strict: list[Alias] = []
    full_names: list[FullName] = []
    full_names_strict: list[StrictFullName] = []

    @model_validator(mode="after")
    def _findable(self) -> VenueSpec:
        if not (self.aliases or self.aliases_cased or self.aliases_strict or self.full_names or self.full_names_strict):
            raise ValueError("a venue needs at least one alias or full name")
        return self


class VenueFile(BaseModel):
    """data/venues.toml: names are unique and an alias belongs to one venue."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    venue: list[VenueSpec]

    @model_validator(mode="after")
    def _unique(self) -> VenueFile:
        names: set[str] = set()
        owners: dict[tuple[bool, str], str] = {}
        for spec in self.venue:
            if spec.name in names:
                raise ValueError(f"venue {spec.name!r} is listed twice")
            names.add(spec.name)
            for alias, sensitive, _strict in _aliases(spec):
                owner = owners.setdefault((sensitive, _alias_key(alias, sensitive)), spec.name)
                if owner != spec.name:
                    raise ValueError(f"alias {alias!r} of venue {spec.name!r} belongs to {owner!r} already")
        return self


class CueTable(BaseModel):
    """[cues] of data/venue_cues.toml, in order of precedence."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    null: list[CuePattern]
    neg: list[CuePattern]
    pos: list[CuePattern]


class TrackSpec(BaseModel):
    """One [[track]] of data/venue_cues.toml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, StringConstraints(min_length=1)]
    pattern: CuePattern


class VenueRules(BaseModel):
    """data/venue_cues.toml: the cues and the tracks (in order of precedence, names unique)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cues: CueTable
    track: list[TrackSpec]

    @model_validator(mode="after")
    def _unique(self) -> VenueRules:
        names = [t.name for t in self.track]
        if len(set(names)) != len(names):
            raise ValueError(f"a track is listed twice: {names}")
        return self


@dataclass(frozen=True, slots=True)
class _Entry:
    canon: str
    kind: str  # "conference", "journal" or "workshop" (see data/venues.toml)


@dataclass(slots=True)
class _Mention:
    start: int
    end: int  # end of the name itself
    entry: _Entry
    strict: bool
    full: bool = False  # matched a full name, not an acronym
    year: int | None = None  # a year written onto the name ("CVPR 2024", "ECCV'24", "(IROS) 2024")
    tail: int = 0  # end of the name plus its attached year
    status: str = "bare"  # "pos", "neg" or "bare"
    cue_start: int = -1  # start of the governing cue (or of the segment when bare)
    cue_end: int = -1


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_SEP = "\x00"  # trie token for "optional space, hyphen or slash" inside an alias


_KEY_DROP = str.maketrans("", "", " \t\n-_/.")


def _alias_key(text: str, case_sensitive: bool) -> str:
    key = text.translate(_KEY_DROP)
    return key if case_sensitive else key.lower()


def _trie_pattern(aliases: list[str]) -> str:
    """One regex (lower case) for many aliases: alternatives share prefixes, so matching is fast and
    longest-first."""
    trie: dict = {}
    for alias in aliases:
        node = trie
        prev_sep = False
        for ch in alias:
            is_sep = ch in " -/."
            if is_sep and prev_sep:
                continue
            node = node.setdefault(_SEP if is_sep else ch.lower(), {})
            prev_sep = is_sep
        node[""] = {}

    def emit(node: dict) -> str:
        alts = [
            (r"[\s\-/.]*" if key == _SEP else re.escape(key)) + emit(child)
            for key, child in sorted(node.items())
            if key
        ]
        if not alts:
            return ""
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        if "" in node:  # a shorter alias ends here: try the longer ones first, then stop
            return f"(?:{body})?"
        return body

    return emit(trie)


def _aliases(spec: VenueSpec) -> Iterator[tuple[str, bool, bool]]:
    """(alias, case-sensitive, strict) for each alias of a venue."""
    yield from ((alias, False, False) for alias in spec.aliases)
    yield from ((alias, True, False) for alias in spec.aliases_cased)
    yield from ((alias, True, True) for alias in spec.aliases_strict)


def _full_name_pattern(name: str) -> str:
    """The regex body of a full name as written in the data file."""
    # "Transactions on" is often shortened: "IEEE Trans. on Image Processing".
    body = name.replace("Transactions on ", r"Trans(?:actions|\.)? on ").replace(" ", r"\s+")
    # Optional leading words ("(?:IEEE )?Transactions on ...") are left out: they add nothing to what is
    # found, and a pattern that starts with a plain word is searched for much faster.
    body = re.sub(r"^(?:\(\?:[^()]*\)\?)+", "", body)
    if _UPPER_ESCAPE.search(body):
        raise ValueError(f"full names are matched lower-cased, so no upper-case escapes: {name}")
    return body


@cache
def _full_name_regex(body: str, strict: bool) -> re.Pattern[str]:
    """Generic phrases ("Pattern Recognition") keep their case and run on the original text; the others run
    lower-cased on the lower-cased text (IGNORECASE would cost the fast literal-prefix search)."""
    return re.compile(("(?:" + body if strict else "(?:" + body.lower()) + r")(?![A-Za-z])")


def _build_registry(specs: list[VenueSpec]):
    keys: dict[bool, dict[str, tuple[_Entry, bool]]] = {False: {}, True: {}}  # by case sensitivity
    raw: dict[bool, list[str]] = {False: [], True: []}
    full: list[tuple[str, _Entry, bool]] = []
    for spec in specs:
        entry = _Entry(spec.name, spec.kind)
        for alias, sensitive, strict in _aliases(spec):
            keys[sensitive][_alias_key(alias, sensitive)] = (entry, strict)
            raw[sensitive].append(alias)
        full += [(_full_name_pattern(name), entry, False) for name in spec.full_names]
        full += [(_full_name_pattern(name), entry, True) for name in spec.full_names_strict]
    # All aliases in one trie scanned over lower-cased text; case-sensitive ones are checked on the original
    # text afterwards (a scan per case mode would cost twice as much).
    alias_re = re.compile(r"(?<![a-z0-9])(?:" + _trie_pattern(raw[False] + raw[True]) + r")(?![a-z])")
    # One big alternation of ~200 full names is slow (no literal prefix to skip on), so each full name is
    # compiled alone and filed under a word it cannot match without; one trie scan for those words picks the
    # few full names worth trying.
    words = [_mandatory_words(pat) for pat, _e, _strict in full]
    frequency = Counter(w for ws in words for w in set(ws))
    by_keyword: dict[str, list[tuple[re.Pattern[str], _Entry, bool, bool]]] = {}
    for (pat, entry, strict), ws in zip(full, words, strict=True):
        compiled = _full_name_regex(pat, strict)
        # The keyword is the rarest word, so that few names share it; the first word when it is rare enough,
        # because then the name can only start where the keyword does (one anchored match, no search).
        keyword = min(ws, key=lambda w: (frequency[w], -len(w)))
        first = re.match(r"[A-Za-z]+", pat)
        anchored = bool(first) and first.group().lower() in ws and frequency[first.group().lower()] <= 3
        if anchored:
            keyword = first.group().lower()
        by_keyword.setdefault(keyword, []).append((compiled, entry, strict, anchored))
    keyword_re = re.compile(r"\b(?:" + _trie_pattern(list(by_keyword)) + ")")  # on lower-cased text
    return keys[False], keys[True], alias_re, keyword_re, by_keyword


def _mandatory_words(pattern: str) -> list[str]:
    """The words (4+ letters, lower case) that every match of a full-name pattern starts a word with."""

    # Optional or alternative parts go; inside a word they leave a "#" so that what follows them is not
    # taken for a word start ("Visuali[sz]ation" gives "visuali", never "ation").
    def gap(m: re.Match[str]) -> str:
        return "#" if m.start() and m.string[m.start() - 1].isalpha() else " "

    text = re.sub(r"\\s[?*+]?", " ", pattern)
    while True:  # innermost groups first
        stripped = re.sub(r"\([^()]*\)[?*+]?|\[[^\]]*\][?*+]?|\\.[?*+]?|[A-Za-z]\?", gap, text)
        if stripped == text:
            break
        text = stripped
    words = [w.lower() for w in re.findall(r"(?<![A-Za-z#])[A-Za-z]{4,}", text)]
    if not words:
        raise ValueError(f"full name without a fixed word of 4+ letters: {pattern}")
    return words


_VENUES = load(VenueFile, "venues.toml").venue
_RULES = load(VenueRules, "venue_cues.toml")
_CI_ALIASES, _CS_ALIASES, _ALIAS_RE, _KEYWORD_RE, _FULL_BY_KEYWORD = _build_registry(_VENUES)

# ---- text preparation ------------------------------------------------------------------------------------

# Typographic characters to their plain forms (smart quotes, dashes, no-break spaces, CJK punctuation).
# str.translate with a dict is slow on non-ASCII text, so each pair is replaced only when present.
_PLAIN = (
    *((quote, "'") for quote in "\u2018\u2019\u201a\u201b\u2032\u00b4`"),
    *((quote, '"') for quote in "\u201c\u201d\u201e"),
    *((dash, "-") for dash in "\u2010\u2011\u2012\u2013\u2014\u2015\u2212"),
    ("\u00a0", " "),
    ("\u3001", ","),
    ("\u3002", ". "),
    ("\uff1b", ";"),
)


# Links name the venue in their path (".../ICCV2023/...", "cvpr24.github.io") and must never count: each
# becomes a segment break, since a link usually ends what was being said.
_URL = re.compile(r"(?:https?://|ftp://|www\.)\S+|\\url\{[^}]*\}", re.IGNORECASE)
_DOMAIN = re.compile(
    r"\b[\w-]+(?:\.[\w-]+)*\.(?:github\.io|com|org|net|io|edu|ai|site|cc|me|page|dev|html?)\b(?:/\S*)?",
    re.IGNORECASE,
)
_TLD = re.compile(r"\.(?:github\.io|com|org|net|io|edu|ai|site|cc|me|page|dev|html?)\b", re.IGNORECASE)  # cheap
_IDS = re.compile(r"\barxiv\s*:?\s*\d{4}\.\d{4,5}(?:v\d+)?|\b\d{4}\.\d{4,5}(?:v\d+)?\b|\bdoi:?\s*10\.\S+", re.I)
# "Findings of the Association for Computational Linguistics: EMNLP 2024" is EMNLP, not ACL.
_FINDINGS_OF_ACL = re.compile(r"Findings\s+of\s+the\s+Association\s+for\s+Computational\s+Linguistics\s*:?\s*(?=[A-Z])")


def _plain(text: str) -> str:
    for fancy, plain in _PLAIN:
        if fancy in text:
            text = text.replace(fancy, plain)
    return text


def _has_digit_dot_digit(text: str) -> bool:
    i = text.find(".")
    while 0 <= i < len(text) - 1:
        if i and text[i - 1].isdigit() and text[i + 1].isdigit():
            return True
        i = text.find(".", i + 1)
    return False


def _normalise(comment: str) -> str:
    text = comment if comment.isascii() else _plain(unicodedata.normalize("NFKC", comment))
    # The cheap tests in front skip the costlier scans on the many comments that cannot need them.
    if "://" in text or "www." in text or "\\url" in text:
        text = _URL.sub(" ; ", text)
    if _TLD.search(text):
        text = _DOMAIN.sub(" ; ", text)
    if _has_digit_dot_digit(text):  # arXiv ids, DOIs
        text = _IDS.sub(" ", text)
    if "Findings" in text:
        text = _FINDINGS_OF_ACL.sub("Findings of ", text)
    return " ".join(text.split())


# A "." ends a segment unless it closes an abbreviation ("Proc. Annual Conference", "IEEE Robot. Autom.").
_BREAK = re.compile(r"[;|!?]|\s-{2,}\s|\.(?=\s|$)")
_ABBREV = _words(
    "proc conf int intl trans vol no pp al eg ie vs symp robot autom lett comput vis sci med eng mach intell "
    "anal appl graph process res syst inf assoc soc natl acad eur j am opt phys rev adv"
)
_WORD_BEFORE = re.compile(r"([A-Za-z.]+)$")


def _lower(text: str) -> str:
    """Lower case with every position kept (str.lower() may lengthen rare characters such as "İ")."""
    low = text.lower()
    if len(low) == len(text):
        return low
    return "".join(ch if len(ch.lower()) != 1 else ch.lower() for ch in text)


def _segments(text: str) -> list[tuple[int, int]]:
    if not any(ch in text for ch in ";|!?.-"):
        return [(0, len(text))]
    spans, start = [], 0
    for m in _BREAK.finditer(text):
        if m.group() == ".":
            word = _WORD_BEFORE.search(text, max(0, m.start() - 12), m.start())
            if word and word.group(1).replace(".", "").lower() in _ABBREV:
                continue
        spans.append((start, m.start()))
        start = m.end()
    spans.append((start, len(text)))
    return [(a, b) for a, b in spans if text[a:b].strip()]


# ---- cues ----------------------------------------------------------------------------------------------
# (kind, pattern) from data/venue_cues.toml, on lower-cased text, each starting a word. At one position the
# first listed pattern that matches wins, so the "null" phrases (that look like cues but are not) and the
# negated forms come before the plain acceptance words.
_CUE_TABLE: tuple[tuple[str, str], ...] = tuple(
    (kind, pattern) for kind in ("null", "neg", "pos") for pattern in getattr(_RULES.cues, kind)
)


def _join(patterns: list[str]) -> str:
    """Alternation of patterns; each is wrapped only when it has a top-level "|", because the regex engine
    skips an alternative at a glance only when it starts with a plain character."""
    return "|".join(f"(?:{p})" if _top_level_bar(p) else p for p in patterns)


def _top_level_bar(pattern: str) -> bool:
    depth, escaped, in_class = 0, False, False
    for ch in pattern:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
        elif ch in "()":
            depth += 1 if ch == "(" else -1
        elif ch == "|" and depth == 0:
            return True
    return False


def _expand_leading_words(pattern: str) -> list[str]:
    """Split a leading group of words: "(?:after|once)\\s+x" -> "after\\s+x", "once\\s+x"."""
    m = re.match(r"\(\?:([a-z|]+)\)(\??)", pattern)
    if not m:
        return [pattern]
    rest = pattern[m.end() :]
    return [word + rest for word in m.group(1).split("|")] + ([rest] if m.group(2) else [])


def _factored(patterns: list[str]) -> str:
    """Alternation with the first letter factored out: "a(?:fter...|ccepted...)|b(?:...)".

    Python's regex engine tries alternatives one by one at every word start; with the first letter
    factored, one cheap comparison skips a whole family.
    """
    by_first: dict[str, list[str]] = {}
    other: list[str] = []
    for alt in (alt for pattern in patterns for alt in _expand_leading_words(pattern)):
        if alt[0].isalpha() and alt[1:2] not in ("?", "*", "+", "{"):
            by_first.setdefault(alt[0], []).append(alt[1:])
        else:
            other.append(alt)
    families = [f"{first}(?:{_join(rests)})" for first, rests in sorted(by_first.items())]
    return _join(families + other)


# One scan finds the cues; its alternatives have no capturing groups on purpose: with ~50 named groups the
# regex engine saves and restores them at every branch, which made the scan three to four times slower.
# The kind of each (rare) match is then found by matching its text against the kinds in table order.
_CUES = re.compile(r"\b(?:" + _factored([p for _kind, p in _CUE_TABLE]) + ")")
_CUE_KINDS = tuple(
    (kind, re.compile(_join([p for k, p in _CUE_TABLE if k == kind]))) for kind in ("null", "neg", "pos")
)


@lru_cache(maxsize=1024)  # cue texts repeat ("accepted", "submitted to")
def _cue_kind(cue: str) -> str:
    return next(kind for kind, pattern in _CUE_KINDS if pattern.fullmatch(cue))


# Cues that say "accepted" on their own, without naming a venue ("10 pages, In press").
_STANDALONE = re.compile(r"^(?:ac\w*pt\w*|published|in\s+press|to\s+appear|camera[\s-]*ready)$", re.IGNORECASE)
# "... version of our paper accepted at CVPR 2023": the participle belongs to the earlier paper.
_PARTICIPLE = re.compile(
    r"\b(?:paper|work|version|article|one|manuscript)\s+(?:that\s+|which\s+)?(?:was\s+|has\s+been\s+|had\s+been\s+"
    r"|is\s+|were\s+)?$",
    re.IGNORECASE,
)
_THESIS = re.compile(r"\b(?:thesis|dissertation)\b")  # on lower-cased text


@dataclass(slots=True)
class _Cue:
    start: int
    end: int
    pol: str  # "pos" or "neg"


def _cues(low: str) -> list[_Cue]:
    found = ((m, _cue_kind(m.group())) for m in _CUES.finditer(low))
    return [_Cue(m.start(), m.end(), kind) for m, kind in found if kind != "null"]


# ---- mentions --------------------------------------------------------------------------------------------
_YEAR4_AFTER = re.compile(r"\s*\)?\s*,?\s*(?:[-'@]\s*)?'?\s*((?:19|20)\d{2})(?!\d)")
_YEAR2_AFTER = re.compile(
    r"(?:\s*[-']\s*|\s?)('?)(\d{2})(?![\d'])(?!\s*(?:st|nd|rd|th|pages?|pp|figures?|figs?|tables?|%|x\b|k\b))",
    re.IGNORECASE,
)
_YEAR_ANY = re.compile(r"(?<![\d.])((?:19|20)\d{2})(?![\d.]\d)")


def _valid_year(year: int) -> bool:
    return 1990 <= year <= 2039


def _attached_year(text: str, pos: int, short_ok: bool) -> tuple[int | None, int]:
    """The year written onto a venue name that ends at pos ("CVPR 2024", "AAAI-24", "(CVPR), 2024").

    Two-digit years count only after an acronym: after a full name they are volumes or ordinals ("AAAI
    Conference on Artificial Intelligence 38").
    """
    m = _YEAR4_AFTER.match(text, pos)
    if m and _valid_year(int(m.group(1))):
        return int(m.group(1)), m.end()
    m = _YEAR2_AFTER.match(text, pos) if short_ok else None
    if m:
        two = int(m.group(2))
        if two >= 10 or m.group(1):
            year = 2000 + two if two < 40 else 1900 + two
            if _valid_year(year):
                return year, m.end()
    return None, pos


def _raw_mentions(text: str, low: str) -> list[_Mention]:
    found: list[_Mention] = []
    for m in _ALIAS_RE.finditer(low):
        start, end = m.span()
        hit = _CS_ALIASES.get(_alias_key(text[start:end], True)) or _CI_ALIASES.get(_alias_key(m.group(), False))
        if hit:
            found.append(_Mention(start, end, hit[0], hit[1]))
    seen: set[tuple[int, int, str]] = set()
    for k in _KEYWORD_RE.finditer(low):
        # A full name holds its keyword, so it is looked for only around it (names are < 120 characters).
        window = (max(0, k.start() - 120), min(len(text), k.end() + 120))
        for pattern, entry, strict, anchored in _FULL_BY_KEYWORD[k.group()]:
            target = text if strict else low
            hits = [pattern.match(target, k.start())] if anchored else pattern.finditer(target, *window)
            for m in filter(None, hits):
                if m.start() and text[m.start() - 1].isalpha():
                    continue  # inside a word
                if m.start() <= k.start() < m.end() and (m.start(), m.end(), entry.canon) not in seen:
                    seen.add((m.start(), m.end(), entry.canon))
                    found.append(_Mention(m.start(), m.end(), entry, strict, full=True))
    # Overlaps: the earlier, then the longer one wins ("ACM SIGGRAPH MIG" over "SIGGRAPH").
    found.sort(key=lambda x: (x.start, -(x.end - x.start)))
    kept: list[_Mention] = []
    for mention in found:
        if kept and mention.start < kept[-1].end:
            continue
        mention.year, mention.tail = _attached_year(text, mention.end, not mention.full)
        kept.append(mention)
    return kept


# ---- deciding --------------------------------------------------------------------------------------------
# Words that may stand beside a venue in a comma-separated item without making it a sentence about something
# else ("9 pages, ICRA", "Machine Vision and Applications", "IEEE CVPR Workshops").
_ITEM_FILLER = re.compile(
    r"^(?:\s|the|ieee|acm|cvf|rsj|siam|springer|elsevier|mdpi|journal|conference|proceedings|proc|paper|papers"
    r"|annual|international|advances|sigkdd|sigir|dagm"
    r"|main|track|version|final|full|short|long|in|at|of|and|edition|workshops?|oral|spotlight|poster|highlight"
    r"|findings|demo|accepted|\d+(?:st|nd|rd|th)|[/&:'\"()\[\]-])*$",
    re.IGNORECASE,
)
_ITEM_EDGE = re.compile(r"[,;()\[\]]")
# A bare venue after one of these is compared with, not published at ("better than CVPR 2023 methods").
_NOT_VENUE_BEFORE = re.compile(r"\b(?:from|than|against|over|using|beyond|vs\.?|versus|like|with)\s+(?:the\s+)?$", re.I)
# What may stand between an acceptance phrase and a word-like journal name ("accepted for publication in").
_CUE_TO_NAME = re.compile(
    r"\s*(?:for\s+publication\s+)?(?:(?:in|to|by|at|for|into|on|@)\s+)?(?:the\s+)?(?:journal\s+(?:of\s+)?)?"
    r"(?:(?:IEEE|ACM|MDPI|Elsevier|Springer|SPIE|AAPM|RSNA)\s+)?",
    re.IGNORECASE,
)


def _item(text: str, seg: tuple[int, int], m: _Mention) -> tuple[int, int]:
    """The comma-separated item around a mention."""
    left = max([seg[0]] + [x.end() for x in _ITEM_EDGE.finditer(text, seg[0], m.start)])
    right_hit = _ITEM_EDGE.search(text, m.tail, seg[1])
    return left, right_hit.start() if right_hit else seg[1]


def _whole_item(text: str, seg: tuple[int, int], m: _Mention) -> bool:
    left, right = _item(text, seg, m)
    return bool(_ITEM_FILLER.match(text[left : m.start] + " " + text[m.tail : right]))


def _govern(text: str, seg: tuple[int, int], m: _Mention, cues: list[_Cue], mentions: list[_Mention]) -> None:
    """Set m.status from the nearest cue before it in its segment, else a cue right after it."""
    before = [c for c in cues if c.start >= seg[0] and c.end <= m.start]
    if before:
        cue = before[-1]
        pol = cue.pol
        if pol == "pos" and len(before) > 1 and before[-2].pol == "neg" and _PARTICIPLE.search(text, 0, cue.start):
            pol = "neg"
        m.status, m.cue_start, m.cue_end = pol, cue.start, cue.end
        return
    m.cue_start = seg[0]
    after = next((c for c in cues if m.tail <= c.start <= min(m.tail + 30, seg[1]) and c.end <= seg[1]), None)
    if after and not any(m.start < o.start < after.start for o in mentions if o is not m):
        m.status = after.pol  # "NeurIPS 2024 Accepted", "IROS 2024 submission", "ECCV 2024 DD Challenge"
        return
    m.status = "bare"


_CAPITALISED_NEXT = re.compile(r"\s+(?:of\s+|and\s+|&\s+)?(?!Journal\b)[A-Z][a-z]")


def _follows_cue(text: str, m: _Mention) -> bool:
    return m.cue_end >= 0 and bool(_CUE_TO_NAME.fullmatch(text, m.cue_end, m.start))


def _valid(text: str, seg: tuple[int, int], m: _Mention) -> bool:
    """Is this mention really a venue citation (as opposed to a word or a comparison)?"""
    if m.strict and _CAPITALISED_NEXT.match(text, m.end):
        return False  # "Nature Photonics", "Remote Sensing of Environment": another journal, read as written
    if m.strict and m.year is None:
        direct = m.status != "bare" and _follows_cue(text, m)
        if not direct and not _whole_item(text, seg, m):
            return False
    if m.status != "bare":
        return True
    if _NOT_VENUE_BEFORE.search(text, max(seg[0], m.start - 20), m.start):
        return False
    if m.year is not None or _whole_item(text, seg, m):
        return True
    # "ICRA, 2024", "EARTHVISION 2024 IEEE/CVF CVPR Workshop"
    left, _right = _item(text, seg, m)
    nearby = [_YEAR_ANY.search(text, left, m.start), _YEAR_ANY.search(text, m.tail, min(seg[1], m.tail + 20))]
    return any(y and _valid_year(int(y.group(1))) for y in nearby)


def _segment_of(segs: list[tuple[int, int]], pos: int) -> tuple[int, int]:
    for seg in segs:
        if seg[0] <= pos < seg[1]:
            return seg
    return segs[-1]


def _span_start(seg: tuple[int, int], pos: int, cues: list[_Cue]) -> int:
    """Context reaches back to the segment start or the last negation ("as an oral presentation at")."""
    return max([seg[0]] + [c.end for c in cues if c.pol == "neg" and seg[0] <= c.start and c.end <= pos])


def _span_end(seg: tuple[int, int], m: _Mention, cues: list[_Cue]) -> int:
    """A mention's context stops where a negation starts ("Accepted to IJCV, extension of ICCV 2023")."""
    nxt = next((c.start for c in cues if c.pol == "neg" and m.tail <= c.start < seg[1]), None)
    return nxt if nxt is not None else seg[1]


def _year(text: str, m: _Mention, same: list[_Mention], span: tuple[int, int]) -> int | None:
    if m.year is not None:
        return m.year
    for other in same:  # "CVPR 2024. Proceedings of the IEEE/CVF Conference on Computer Vision ..."
        if other.year is not None:
            return other.year
    best: tuple[int, int] | None = None
    for y in _YEAR_ANY.finditer(text, span[0], span[1]):
        year = int(y.group(1))
        if not _valid_year(year):
            continue
        dist = m.start - y.end() if y.end() <= m.start else y.start() - m.end
        if best is None or dist < best[0]:
            best = (dist, year)
    return best[1] if best else None


# ---- tracks ----------------------------------------------------------------------------------------------
# Tracks from data/venue_cues.toml in order of precedence (a workshop paper presented as an oral is a
# workshop paper), as patterns on lower-cased text. As for cues, one scan without capturing groups finds
# them, then each hit is classified.
_TRACK_TABLE: tuple[tuple[str, str], ...] = tuple((t.name, t.pattern) for t in _RULES.track)
_TRACKS = re.compile(r"\b(?:" + _join([p for _name, p in _TRACK_TABLE]) + ")")
_TRACK_KINDS = tuple((rank, name, re.compile(p)) for rank, (name, p) in enumerate(_TRACK_TABLE))


def _track_rank(hit: str) -> tuple[int, str]:
    return next((rank, name) for rank, name, pattern in _TRACK_KINDS if pattern.fullmatch(hit))


# "Deep Breath @ MICCAI 2024": a named event hosted at the venue, i.e. a workshop.
_AT_HOST = re.compile(r"[A-Z][\w&+-]*(?:\s+[A-Z0-9][\w&+-]*){0,5}\s*@\s*$")
_DEMO_SUFFIX = re.compile(r"\s*demos?\b", re.IGNORECASE)


def _track(text: str, regions: list[tuple[int, int]], m: _Mention | None) -> str | None:
    found = [_track_rank(t.group()) for a, b in regions for t in _TRACKS.finditer(text[a:b].lower())]
    if found:
        return min(found)[1]
    if m is None:
        return None
    if m.entry.kind == "workshop":
        return "workshop"
    if _DEMO_SUFFIX.match(text, m.tail):
        return "demo"
    before = max(0, m.start - 60)
    if "@" not in text[before : m.start]:
        return None
    if _AT_HOST.search(text, before, m.start) and not _CUES.search(text[before : m.start].lower()):
        return "workshop"
    return None


# ---- unknown venues, read as written ---------------------------------------------------------------------
_LEAD = re.compile(
    r"""[\s:,\-]*
    (?:(?:paper|work|article)\s+)?
    (?:(?:as|for)\s+(?:an?\s+)?(?:publication|presentation|(?:\w+\s+){0,2}(?:paper|presentation|poster|talk
        |contribution|article))\s+)?
    (?:(?:at|to|by|in|on|into|for|during|with|@)\s+)?
    (?:the\s+)?(?:proceedings\s+(?:of\s+)?(?:the\s+)?)?
    (?:(?:19|20)\d{2}\s+)?(?:\d+\s*(?:st|nd|rd|th)\s+)?
    """,
    re.IGNORECASE | re.VERBOSE,
)
_NAME = re.compile(r"(?:[A-Z0-9][\w&+'-]*|npj)(?:[ ](?:[A-Z0-9][\w&+'-]*|of|on|for|and|in|the|&|de|du|-)){0,11}")
_NAME_TRAILER = re.compile(r"(?:\s+(?:of|on|for|and|in|the|&|de|du|-|(?:19|20)?\d{2}))+$")
_PAREN_ACRONYM = re.compile(r"\s*\(\s*([A-Z][A-Za-z0-9&-]{1,15}?)(?:[\s'-]*\d{2,4})?\s*\)")
_NOT_A_NAME = _words(
    "project code page github ieee acm the this our we it main track round oral poster spotlight highlight "
    "conference journal paper version workshop arxiv preprint proceedings in press see"
)


def _name_after(text: str, start: int, stop: int) -> str | None:
    """The venue named right after an acceptance phrase, as written, or None."""
    lead = _LEAD.match(text, start, stop)
    pos = lead.end() if lead else start
    m = _NAME.match(text, pos, stop)
    if not m:
        return None
    name = _NAME_TRAILER.sub("", m.group()).strip(" -")
    words = name.split()
    if not words or all(w.lower() in _NOT_A_NAME or w.isdigit() for w in words):
        return None
    if len(words) > 1 and words[0].isupper() and words[1] in {"in", "at"}:
        name = words[0]  # "37th IEPC in Cambridge, MA"
    acronym = _PAREN_ACRONYM.match(text, m.end(), stop)
    if acronym and len(words) > 1:
        return acronym.group(1)  # "Frontiers of Computer Science (FCS)"
    return name


_BARE_NAME = re.compile(
    r"(?:The\s+)?(?:(?:19|20)\d{2}\s+)?(?:\d+\s*(?:st|nd|rd|th)\s+)?"
    r"(?:[A-Z][\w&-]*\s+){0,4}(?:Conference|Symposium|Workshop)\s+(?:on|of|for)\s+[A-Z][\w&-]*(?:\s+[A-Z&][\w&-]*"
    r"|\s+(?:of|on|for|and|in|the))*"
)


_NAME_YEAR = re.compile(
    r"(?:The\s+)?([A-Z][\w&'-]*(?:\s+(?:[A-Z0-9][\w&'-]*|of|and|for|on|in|the|&)){0,7}),?\s+((?:19|20)\d{2})"
)
_NOT_A_VENUE_START = _words(
    "preprint version copyright draft updated update revised report technical tech released project code work "
    "paper manuscript appendix supplementary dataset data arxiv techrxiv biorxiv medrxiv ssrn openreview zenodo "
    "github v1 v2 v3 january february march april may june "
    "july august september october november december jan feb mar apr jun jul aug sep sept oct nov dec"
)


def _bare_name(text: str, seg: tuple[int, int]) -> tuple[str, int] | None:
    """An unknown conference cited bare: "The 5th International Conference on Foo Bar (FB 2024)"."""
    m = _BARE_NAME.search(text, seg[0], seg[1])
    if not m:
        return None
    acronym = _PAREN_ACRONYM.match(text, m.end(), seg[1])
    name = acronym.group(1) if acronym else _NAME_TRAILER.sub("", m.group()).removeprefix("The ").strip()
    return name, m.start()


# ---- the entry point -------------------------------------------------------------------------------------


# What an unknown venue cited bare needs (see _bare_name and _NAME_YEAR).
_MAYBE_UNKNOWN_VENUE = re.compile(r"conference|symposium|workshop|(?<!\d)(?:19|20)\d\d(?!\d)")


# An arXiv comment is a line or two (the longest in the real corpus: 360 characters); reading one costs the
# square of its venue mentions, so only its start is read (ingest cuts longer ones with a warning).
COMMENT_MAX_CHARS = 1_000


def extract_venue(comment: str | None) -> Venue:
    """Where the comment says the paper was accepted, or Venue() when it does not say so."""
    if not comment or not comment.strip():
        return _NO_VENUE
    return _extract_cached(comment[:COMMENT_MAX_CHARS])


_NO_VENUE = Venue()


# The same comment comes back with every sighting of a paper (consecutive feeds share most entries), and
# Venue is frozen, so answers are cached.
@lru_cache(maxsize=8192)
def _extract_cached(comment: str) -> Venue:
    text = _normalise(comment)
    low = _lower(text)
    if not text or _THESIS.search(low):
        return Venue()  # a thesis is not a venue acceptance, whatever else the comment says
    cues = _cues(low)
    mentions = _raw_mentions(text, low)
    if not cues and not mentions and not _MAYBE_UNKNOWN_VENUE.search(low):
        return Venue()  # most comments: "12 pages, 5 figures", "Project page: ..."
    segs = _segments(text)
    for m in mentions:
        _govern(text, _segment_of(segs, m.start), m, cues, mentions)
    mentions = [m for m in mentions if _valid(text, _segment_of(segs, m.start), m)]
    chosen = next((m for m in mentions if m.status == "pos"), None)
    chosen = chosen or next((m for m in mentions if m.status == "bare"), None)
    if chosen:
        return _venue_from_mention(text, segs, cues, mentions, chosen)
    return _venue_without_registry(text, segs, cues, mentions)


def _neutral_regions(text: str, segs: list[tuple[int, int]], cues: list[_Cue], mentions: list[_Mention]):
    """Short segments that mention no venue and negate nothing: "Oral presentation." may be one of them (a
    sentence such as "We highlight ..." is not)."""
    for seg in segs:
        if text.count(" ", seg[0], seg[1]) > 5:
            continue
        if any(seg[0] <= m.start < seg[1] for m in mentions):
            continue
        if any(seg[0] <= c.start < seg[1] and c.pol == "neg" for c in cues):
            continue
        yield seg


def _venue_from_mention(text, segs, cues, mentions, chosen: _Mention) -> Venue:
    seg = _segment_of(segs, chosen.start)
    span = (_span_start(seg, min(chosen.cue_start, chosen.start), cues), _span_end(seg, chosen, cues))
    same = [m for m in mentions if m.entry == chosen.entry and m.status != "neg" and m is not chosen]
    regions = [span]
    for other in same:
        other_seg = _segment_of(segs, other.start)
        start = _span_start(other_seg, min(other.cue_start, other.start), cues)
        regions.append((start, _span_end(other_seg, other, cues)))
    regions.extend(_neutral_regions(text, segs, cues, mentions))
    year = _year(text, chosen, same, span)
    return Venue(True, chosen.entry.canon, year, _track(text, regions, chosen))


def _venue_without_registry(text, segs, cues, mentions) -> Venue:
    # Unknown venue named after an acceptance phrase: "accept for publication in npj Precision Oncology".
    pos_cues = [c for c in cues if c.pol == "pos"]
    for cue in pos_cues:
        seg = _segment_of(segs, cue.start)
        if any(c.pol == "neg" and seg[0] <= c.start < cue.start for c in cues) and not _preceded_by_pos(cue, cues):
            continue
        nxt = next((c.start for c in cues if c.start >= cue.end), seg[1])
        name = _name_after(text, cue.end, min(nxt, seg[1]))
        if name is None:
            continue
        at = _Mention(cue.end, cue.end, _Entry(name, "conference"), False, tail=cue.end)
        span = (_span_start(seg, cue.start, cues), _span_end(seg, at, cues))
        regions = [span, *_neutral_regions(text, segs, cues, mentions)]
        return Venue(True, name, _year(text, at, [], span), _track(text, regions, None))
    # Unknown conference cited bare, in a segment that negates nothing.
    for seg in segs:
        if any(seg[0] <= c.start < seg[1] and c.pol == "neg" for c in cues):
            continue
        hit = _bare_name(text, seg)
        if hit:
            fake = _Mention(hit[1], hit[1], _Entry(hit[0], "conference"), False, tail=hit[1])
            return Venue(True, hit[0], _year(text, fake, [], seg), _track(text, [seg], None))
    # A segment that is nothing but a title-case name and a year: "Cancer Heterogeneity and Plasticity, 2024".
    for seg in segs:
        hit = _NAME_YEAR.fullmatch(text[seg[0] : seg[1]].strip())
        if (
            hit
            and hit.group(1).split()[0].lower() not in _NOT_A_VENUE_START
            and not any(seg[0] <= c.start < seg[1] for c in cues)
        ):
            return Venue(True, hit.group(1), int(hit.group(2)), None)
    # An acceptance phrase that names no venue: "10 pages, 7 figures, In press".
    for cue in pos_cues:
        seg = _segment_of(segs, cue.start)
        negated = any(c.pol == "neg" and seg[0] <= c.start < seg[1] for c in cues)
        if not negated and _STANDALONE.match(text[cue.start : cue.end]):
            return Venue(True, None, None, _track(text, [seg], None))
    return Venue()


def _preceded_by_pos(cue: _Cue, cues: list[_Cue]) -> bool:
    before = [c for c in cues if c.end <= cue.start]
    return bool(before) and before[-1].pol == "pos"


def known_venues() -> list[str]:
    """The canonical names of the registry, sorted."""
    entries = [e for e, _strict in (*_CI_ALIASES.values(), *_CS_ALIASES.values())]
    entries += [e for patterns in _FULL_BY_KEYWORD.values() for _p, e, _s, _a in patterns]
    return sorted({e.canon for e in entries})
