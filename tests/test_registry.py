"""Registry data files: they load, the schema refuses bad entries by name, and every entry has a test case.

Adding a venue or a topic is a data change (newsletter/registry/data/*.toml) plus a line in
tests/fixtures/registry_venues.jsonl or registry_topics.jsonl: the coverage tests below fail until it is there.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from newsletter.registry import loader, venues
from newsletter.registry.loader import RegistryError
from newsletter.registry.topics import TopicFile, canonical_topic, known_topics, topic_names, topic_slug
from newsletter.registry.venues import VenueFile, VenueRules, extract_venue, known_venues

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _jsonl(name: str) -> list[dict]:
    with (FIXTURES / name).open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


VENUE_CASES = _jsonl("registry_venues.jsonl")
TOPIC_CASES = _jsonl("registry_topics.jsonl")


# ---- the shipped data --------------------------------------------------------------------------------------


def test_data_files_are_package_data() -> None:
    names = {p.name for p in loader.DATA.iterdir()}
    assert {"venues.toml", "venue_cues.toml", "topics.toml"} <= names
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text("utf-8"))
    globs = pyproject["tool"]["setuptools"]["package-data"]["newsletter"]
    assert "registry/data/*.toml" in globs or "**/*.toml" in globs


def test_venue_data_loads() -> None:
    specs = loader.load(VenueFile, "venues.toml").venue
    assert len(specs) >= 250
    assert known_venues() == sorted(s.name for s in specs)
    rules = loader.load(VenueRules, "venue_cues.toml")
    assert [t.name for t in rules.track][:1] == ["workshop"]  # precedence: workshop first
    assert rules.cues.null and rules.cues.neg and rules.cues.pos


def test_topic_data_loads() -> None:
    specs = loader.load(TopicFile, "topics.toml").topic
    assert list(known_topics()) == [s.key for s in specs]
    assert len({topic_slug(s.key) for s in specs}) == len(specs)


# ---- parametrised cases: one or more per entry -------------------------------------------------------------


@pytest.mark.parametrize("case", VENUE_CASES, ids=[c["comment"][:60] for c in VENUE_CASES])
def test_venue_case(case: dict) -> None:
    got = extract_venue(case["comment"])
    assert got.as_dict() == {k: case[k] for k in ("accepted", "venue", "year", "track")}


@pytest.mark.parametrize("case", TOPIC_CASES, ids=[c["key"] for c in TOPIC_CASES])
def test_topic_case(case: dict) -> None:
    assert topic_names(case["key"]) == (case["en"], case["zh"])
    assert topic_slug(case["key"]) == case["slug"]
    assert canonical_topic(case["key"]) == case["canonical"]


def test_every_venue_has_a_case() -> None:
    covered = {c["venue"] for c in VENUE_CASES if c["accepted"]}
    missing = sorted(set(known_venues()) - covered)
    assert not missing, f"add a case to tests/fixtures/registry_venues.jsonl for: {missing}"


def test_every_topic_has_a_case() -> None:
    covered = {c["canonical"] for c in TOPIC_CASES}
    missing = sorted(set(known_topics()) - covered)
    assert not missing, f"add a case to tests/fixtures/registry_topics.jsonl for: {missing}"


# ---- the schema refuses bad entries, naming them -----------------------------------------------------------

_GOOD_VENUE = '[[venue]]\nname = "GOOD"\nkind = "conference"\naliases = ["GOOD"]\n\n'


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ('name = "X"\nkind = "conference"\nalias = ["X"]', ["venue #2 (name = 'X')", "alias", "Extra inputs"]),
        ('name = "X"\nkind = "symposium"\naliases = ["X"]', ["venue #2 (name = 'X')", "kind"]),
        ('name = "X"\nkind = "journal"\nfull_names = [\'Journal of (Things\']', ["name = 'X'", "not a valid regular"]),
        ('name = "X"\nkind = "journal"\nfull_names = [\'Foo Bar\']', ["name = 'X'", "fixed word of 4+ letters"]),
        ('name = "X"\nkind = "journal"\nfull_names = [\'Journal\\S+Things\']', ["name = 'X'", "upper-case escapes"]),
        ('name = "X"\nkind = "journal"\naliases = ["!X"]', ["name = 'X'", "aliases_cased"]),
        ('name = "X"\nkind = "journal"\naliases = [" X"]', ["name = 'X'", "spaces around"]),
        ('name = "X"\nkind = "journal"\naliases = [""]', ["name = 'X'", "alias '' is empty or has spaces around it"]),
        ('name = "X"\nkind = "journal"\naliases = ["~X"]', ["alias '~X': list it under aliases_cased"]),
        ('name = "X"\nkind = "journal"\naliases_strict = ["-/-"]', ["alias '-/-' has no letter or digit"]),
        (
            'name = "X"\nkind = "journal"\nfull_names_strict = [\'Journal of (Things\']',
            ["full name 'Journal of (Things' is not a valid regular expression"],
        ),
        ('name = "X"\nkind = "journal"', ["name = 'X'", "at least one alias or full name"]),
        ('name = "GOOD"\nkind = "journal"\naliases = ["GOOD2"]', ["'GOOD' is listed twice"]),
        ('name = "X"\nkind = "journal"\naliases = ["g-o-o-d"]', ["'g-o-o-d' of venue 'X' belongs to 'GOOD' already"]),
        ('kind = "journal"\naliases = ["X"]', ["venue #2", "name", "Field required"]),
    ],
)
def test_venue_schema_refuses(entry: str, expected: list[str]) -> None:
    with pytest.raises(RegistryError) as err:
        loader.parse(VenueFile, _GOOD_VENUE + "[[venue]]\n" + entry + "\n", "venues.toml")
    message = str(err.value)
    assert message.startswith("venues.toml: ")
    for part in expected:
        assert part in message, message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[cues]\nnull = []\nneg = ['(sub)mitted']\npos = []\ntrack = []",
            ["cues: neg[0]", "pattern '(sub)mitted' has a capturing group; write (?:...) instead"],
        ),
        (
            "[cues]\nnull = []\nneg = []\npos = ['accept(']\ntrack = []",
            ["cues: pos[0]", "pattern 'accept(' is not a valid regular expression"],
        ),
        (
            "track = [{name = 'oral', pattern = 'oral'}, {name = 'oral', pattern = 'orals'}]\n"
            "[cues]\nnull = []\nneg = []\npos = []",
            ["a track is listed twice"],
        ),
    ],
)
def test_cue_schema_refuses(text: str, expected: list[str]) -> None:
    with pytest.raises(RegistryError) as err:
        loader.parse(VenueRules, text, "venue_cues.toml")
    for part in expected:
        assert part in str(err.value), str(err.value)


_GOOD_TOPIC = '[[topic]]\nkey = "3DGS"\nen = "3D Gaussian Splatting"\nzh = "3D高斯泼溅"\n\n'


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ('key = "NeRF"\nen = "NeRF"', ["topic #2 (key = 'NeRF')", "zh", "Field required"]),
        ('key = "NeRF"\nen = "NeRF"\nzh = "神经辐射场"\nalias = ["nerfs"]', ["key = 'NeRF'", "Extra inputs"]),
        ('key = "3dgs"\nen = "Splats"\nzh = "泼溅"', ["'3dgs' already names topic '3DGS'"]),
        ('key = "Splats"\nen = "Splats"\nzh = "泼溅"\naliases = ["3D_Gaussian_Splatting"]', ["already names topic"]),
        ('key = "GS"\nen = "3D Gaussian-Splatting!"\nzh = "泼溅"', ["anchor #t-3d-gaussian-splatting"]),
        ('key = "--"\nen = "X"\nzh = "X"', ["nothing but separators"]),
    ],
)
def test_topic_schema_refuses(entry: str, expected: list[str]) -> None:
    with pytest.raises(RegistryError) as err:
        loader.parse(TopicFile, _GOOD_TOPIC + "[[topic]]\n" + entry + "\n", "topics.toml")
    for part in expected:
        assert part in str(err.value), str(err.value)


def test_malformed_toml_is_one_line_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "venues.toml"
    bad.write_text('[[venue]]\nname = "X\n', encoding="utf-8")
    with pytest.raises(RegistryError, match=r"venues\.toml: not valid TOML"):
        loader.load(VenueFile, "venues.toml", bad)


def test_a_new_venue_is_a_data_change(tmp_path: Path) -> None:
    """A venue added to a copy of the data file is found by a registry built from it, with no code change."""
    text = (loader.DATA / "venues.toml").read_text("utf-8")
    text += '\n[[venue]]\nname = "ZZCV"\nkind = "workshop"\naliases = ["ZZCV"]\n'
    text += "full_names = ['Zebra Vision Meeting']\n"
    (tmp_path / "venues.toml").write_text(text, encoding="utf-8")
    specs = loader.load(VenueFile, "venues.toml", tmp_path / "venues.toml").venue
    ci, _cs, alias_re, keyword_re, _full = venues._build_registry(specs)
    assert alias_re.search("accepted to zzcv 2024") and ci["zzcv"][0] == venues._Entry("ZZCV", "workshop")
    assert keyword_re.search("the zebra vision meeting")
    assert "ZZCV" not in known_venues()  # the shipped registry is untouched
