"""UI catalogs: complete and consistent, refused by name when broken, dates and plurals per locale (Babel)."""

from __future__ import annotations

import re
import tomllib
from datetime import date
from importlib.resources import files
from pathlib import Path

import pytest

from newsletter import i18n
from newsletter.i18n import BILINGUAL, LANGUAGES, CatalogError, catalog, parse_catalog
from newsletter.render import variant as render

TEMPLATES = Path(render.TEMPLATES_DIR)
EN_TEXT = (files("newsletter.i18n") / "en.toml").read_text("utf-8")
_CJK = re.compile(r"[\u3400-\u9fff\u3000-\u303f\uff00-\uffef]")


def test_catalogs_load_and_agree() -> None:
    assert LANGUAGES[0] == "en" and set(BILINGUAL) <= set(LANGUAGES)
    en = catalog("en")
    for lang in LANGUAGES:
        assert set(catalog(lang).strings) == set(en.strings), lang
    assert catalog("zh").html_lang == "zh-CN" and catalog("en").html_lang == "en"
    assert (*LANGUAGES, "bilingual") == render.MODES


def test_catalogs_are_package_data() -> None:
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text("utf-8"))
    globs = pyproject["tool"]["setuptools"]["package-data"]["newsletter"]
    assert "i18n/*.toml" in globs or "**/*.toml" in globs


def test_dates_per_locale() -> None:
    day = date(2024, 12, 5)
    assert catalog("en").date(day) == "Thursday, 5 December 2024"
    assert catalog("zh").date(day) == "2024年12月5日 星期四"
    assert render._date_title(date(2025, 1, 1), "en") == "Wednesday, 1 January 2025"


@pytest.mark.parametrize(
    ("lang", "n", "expected"),
    [
        ("en", 1, "1 paper"),
        ("en", 0, "0 papers"),
        ("en", 63, "63 papers"),
        ("zh", 1, "1 篇论文"),
        ("zh", 63, "63 篇论文"),
    ],
)
def test_plural_forms_follow_the_locale(lang: str, n: int, expected: str) -> None:
    assert catalog(lang).plural("email.count_papers", n) == expected


def test_subjects_and_greetings_come_from_the_catalogs() -> None:
    assert render._counts_phrase("en", 1, 0) == "1 paper"
    assert render._counts_phrase("zh", 3, 2) == "3 篇论文，2 篇录用"
    assert render.greeting("zh", "Ada") == "Ada，你好！"
    assert render.greeting("bilingual") == "Hello,"


def test_every_key_used_by_a_template_exists() -> None:
    """A template asking for a key no catalog has would fail at render time; find it here instead."""
    used: set[str] = set()
    for path in TEMPLATES.rglob("*.j2"):
        text = path.read_text("utf-8")
        prefix = "web." if path.parent.name == "web" else "email."
        for m in re.finditer(r"""\b(?:bi|pair|t(?:\.text)?)\(\s*"([a-z_]+)"(?=[,)])""", text):
            used.add(prefix + m.group(1))
    assert len(used) > 40
    assert used <= set(catalog("en").strings), sorted(used - set(catalog("en").strings))
    assert not [key for key in catalog("en").strings if key.startswith("web.") and key not in used and
                key != "web.site" and
                not key.startswith(("web.error_", "web.language_", "web.frequency_"))]  # fmt: skip


def test_no_ui_text_left_in_templates() -> None:
    """Chinese UI text lives in the catalogs now: none in the templates (comments aside)."""
    for path in TEMPLATES.rglob("*.j2"):
        text = re.sub(r"\{#.*?#\}", "", path.read_text("utf-8"), flags=re.S)
        assert not _CJK.search(text), f"{path.name}: {_CJK.search(text).group()!r}"


def test_a_new_language_is_a_file() -> None:
    """A copy of en.toml with its own [meta] is a complete catalog: Babel supplies the date names."""
    text = EN_TEXT.replace('locale = "en_GB"', 'locale = "fr_FR"').replace('html_lang = "en"', 'html_lang = "fr"')
    french = parse_catalog("fr", text.replace('greeting = "Hello,"', 'greeting = "Bonjour,"'), catalog("en"))
    assert french.date(date(2024, 12, 5)) == "jeudi 5 décembre 2024"
    assert french("email.greeting") == "Bonjour,"
    assert french.plural("email.count_papers", 0) == "0 paper"  # French: 0 and 1 take the singular


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (('greeting = "Hello,"\n', ""), "xx.toml: missing email.greeting"),
        (('greeting = "Hello,"', 'greting = "Hello,"'), "xx.toml: email.greting is not a key of en.toml"),
        (('greeting_name = "Hi {name},"', 'greeting_name = "Hi {nom},"'), "email.greeting_name: placeholder ['nom']"),
        (('greeting_name = "Hi {name},"', 'greeting_name = "Hi {name,"'), "email.greeting_name:"),
        (('one = "{n} paper", other', 'one = "{n} paper", others'), "email.count_papers: plural forms need"),
        (('locale = "en_GB"', 'locale = "xx_YY"'), "xx.toml: [meta] locale or date_title"),
        (('date_title = "full"', "date_title = 5"), "xx.toml: [meta] needs exactly"),
        (("[email]", "[email"), "xx.toml: not valid TOML"),
    ],
)
def test_a_broken_catalog_is_refused_by_name(change: tuple[str, str], expected: str) -> None:
    old, new = change
    assert old in EN_TEXT
    with pytest.raises(CatalogError) as err:
        parse_catalog("xx", EN_TEXT.replace(old, new, 1), catalog("en"))
    assert expected in str(err.value), str(err.value)


def test_catalog_values_are_formatted_not_trusted() -> None:
    """Placeholder values are data: braces in them are not re-read, and the email escapes them."""
    assert catalog("en")("email.greeting_name", name="{site}") == "Hi {site},"
    assert "&lt;b&gt;" in str(render._Tr("en", render.RenderOptions())("greeting_name", name="<b>"))
    assert i18n.catalog("en")("web.for_email", email="a@b") == "For a@b"
