"""UI strings of the email and the web pages: one TOML catalog per language in this folder, loaded once.

`catalog("zh")("email.n_more", n=3)` gives "另有 3 篇 — 在线阅读完整一期": keys are dotted paths into the
catalog's tables and values are format strings. Plural forms (`Catalog.plural`) and dates (`Catalog.date`)
follow the catalog's locale through Babel. Every catalog must have the keys of en.toml and use only the
placeholders the English string uses, so a missing or mistyped key fails at import, naming the file and key.
How to add a language is written at the top of en.toml.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from importlib.resources import files
from string import Formatter
from typing import Any

from babel import Locale, UnknownLocaleError
from babel.dates import format_date

REFERENCE = "en"  # the catalog every other one is checked against
BILINGUAL = ("en", "zh")  # the two languages of the bilingual email and of the web pages, in order
PLURAL_CATEGORIES = frozenset({"zero", "one", "two", "few", "many", "other"})
_META_KEYS = frozenset({"name", "html_lang", "locale", "date_title"})
_SAMPLE_DAY = date(2024, 12, 5)


class CatalogError(ValueError):
    """A catalog file is malformed, incomplete, or uses a placeholder the code does not provide."""


@dataclass(frozen=True)
class Catalog:
    """One language's strings; call it with a key (and the placeholder values) to get the text."""

    code: str  # file name without .toml: what subscribers choose ("en", "zh")
    name: str  # the language's own name ("中文")
    html_lang: str  # the lang attribute of text in this language ("zh-CN")
    locale: Locale
    date_title: str  # CLDR format name or pattern for the issue date
    strings: dict[str, str | dict[str, str]] = field(repr=False)

    def __call__(self, key: str, **values: Any) -> str:
        text = self.strings[key]
        if not isinstance(text, str):
            raise KeyError(f"{key} has plural forms: use Catalog.plural")
        return text.format(**values)

    def plural(self, key: str, n: int, **values: Any) -> str:
        """The form of `key` for the number n under the locale's plural rules ("1 paper", "2 papers")."""
        forms = self.strings[key]
        if isinstance(forms, str):
            return forms.format(n=n, **values)
        return forms.get(self.locale.plural_form(n), forms["other"]).format(n=n, **values)

    def date(self, day: date) -> str:
        """The issue date as headings show it ("Thursday, 5 December 2024", "2024年12月5日 星期四")."""
        return _format_date(day, self.date_title, self.locale)


@lru_cache(maxsize=256)  # a handful of dates per run, each rendered for every variant
def _format_date(day: date, pattern: str, locale: Locale) -> str:
    return format_date(day, pattern, locale=locale)


# ---- loading ---------------------------------------------------------------------------------------------


def _flatten(table: dict[str, Any], prefix: str = "") -> dict[str, str | dict[str, str]]:
    """{"email": {"papers": ..}} -> {"email.papers": ..}; a table with plural categories stays one value."""
    out: dict[str, str | dict[str, str]] = {}
    for key, value in table.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and set(value) & PLURAL_CATEGORIES:
            out[path] = value
        elif isinstance(value, dict):
            out.update(_flatten(value, f"{path}."))
        else:
            out[path] = value
    return out


def _placeholders(value: str | dict[str, str]) -> set[str]:
    texts = [value] if isinstance(value, str) else list(value.values())
    return {
        name.split(".")[0].split("[")[0] for text in texts for _lit, name, _f, _c in Formatter().parse(text) if name
    }


def _check_strings(where: str, strings: dict[str, Any], reference: dict[str, Any] | None) -> None:
    for key, value in strings.items():
        forms = value if isinstance(value, dict) else {"": value}
        if not all(isinstance(text, str) for text in forms.values()):
            raise CatalogError(f"{where}: {key}: expected text or a table of plural forms")
        if isinstance(value, dict) and (set(value) - PLURAL_CATEGORIES or "other" not in value):
            raise CatalogError(f"{where}: {key}: plural forms need an 'other' form and only CLDR categories as keys")
        try:
            used = _placeholders(value)
        except ValueError as exc:
            raise CatalogError(f"{where}: {key}: {exc} (write {{{{ }}}} for a literal brace)") from None
        if reference is None:
            continue
        if key not in reference:
            raise CatalogError(f"{where}: {key} is not a key of {REFERENCE}.toml (a typo?)")
        unknown = used - _placeholders(reference[key])
        if unknown:
            raise CatalogError(f"{where}: {key}: placeholder {sorted(unknown)} is not in {REFERENCE}.toml")
    missing = sorted(set(reference or ()) - set(strings))
    if missing:
        raise CatalogError(f"{where}: missing {', '.join(missing)} (see {REFERENCE}.toml)")


def parse_catalog(code: str, text: str, reference: Catalog | None = None) -> Catalog:
    """A catalog from TOML text, checked (against `reference` unless it is the reference itself)."""
    where = f"{code}.toml"
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"{where}: not valid TOML: {exc}") from None
    meta = raw.pop("meta", None)
    if not isinstance(meta, dict) or set(meta) != _META_KEYS or not all(isinstance(v, str) for v in meta.values()):
        raise CatalogError(f"{where}: [meta] needs exactly {', '.join(sorted(_META_KEYS))}, as text")
    try:
        locale = Locale.parse(meta["locale"])
        format_date(_SAMPLE_DAY, meta["date_title"], locale=locale)
    except (UnknownLocaleError, ValueError, KeyError) as exc:
        raise CatalogError(f"{where}: [meta] locale or date_title: {exc}") from None
    strings = _flatten(raw)
    _check_strings(where, strings, reference.strings if reference else None)
    return Catalog(code, meta["name"], meta["html_lang"], locale, meta["date_title"], strings)


def _load_all() -> dict[str, Catalog]:
    texts = {p.name.removesuffix(".toml"): p.read_text("utf-8") for p in files(__package__).iterdir()
             if p.name.endswith(".toml")}  # fmt: skip
    reference = parse_catalog(REFERENCE, texts.pop(REFERENCE))
    others = {code: parse_catalog(code, text, reference) for code, text in sorted(texts.items())}
    return {REFERENCE: reference, **others}


_CATALOGS = _load_all()
LANGUAGES: tuple[str, ...] = tuple(_CATALOGS)  # "en" first, then the others by code
if not set(BILINGUAL) <= set(LANGUAGES):
    raise CatalogError(f"the bilingual pair {BILINGUAL} needs a catalog for each language")


def catalog(lang: str) -> Catalog:
    """The catalog of a language code from LANGUAGES."""
    return _CATALOGS[lang]
