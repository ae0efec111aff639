"""Topic registry: upstream topic key -> (English name, Chinese name), read from data/topics.toml.

Upstream keys are whatever the digest blog uses as a post title / tag: some English ("3DGS", "Talking Head
Generation"), some Chinese ("医学图像", "元宇宙/虚拟人"), some mixed ("医学影像/Breast Ultrasound"). File names
and URLs mangle them ("元宇宙_虚拟人", "vision-transformer"), so lookups ignore case, spaces, "_", "-" and "/".
The data file is checked against `TopicFile` at import: a bad entry fails with a message naming it.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints, model_validator

from newsletter.registry.loader import load

# Separators that file names and URL slugs substitute for each other ("元宇宙/虚拟人" -> "元宇宙_虚拟人").
_SEPARATORS = re.compile(r"[\s_\-/]+")
_SLUG = re.compile(r"^[a-z0-9]+(?:[-_][a-z0-9]+)+$")


def normalize_key(key: str) -> str:
    """Lookup form of a key: NFKC (full-width letters), casefolded, separators removed."""
    return _SEPARATORS.sub("", unicodedata.normalize("NFKC", key).casefold())


def _slug(english: str, key: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", english).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.casefold()).strip("-")
    return slug or f"topic-{zlib.crc32(normalize_key(key).encode()):08x}"


# A name: something that survives normalisation, written without spaces around it.
_Name = Annotated[str, StringConstraints(min_length=1, pattern=r"^\S(?:.*\S)?$")]


class TopicSpec(BaseModel):
    """One [[topic]] of data/topics.toml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: _Name
    en: _Name
    zh: _Name
    aliases: list[_Name] = []

    def spellings(self) -> list[str]:
        """Every way the topic is written, key first: what lookups accept."""
        return [self.key, self.en, self.zh, *self.aliases]


class TopicFile(BaseModel):
    """data/topics.toml: no spelling or anchor shared by two topics."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    topic: list[TopicSpec]

    @model_validator(mode="after")
    def _distinct(self) -> TopicFile:
        owners: dict[str, str] = {}
        slugs: dict[str, str] = {}
        for spec in self.topic:
            for name in spec.spellings():
                if not normalize_key(name):
                    raise ValueError(f"topic {spec.key!r}: {name!r} is nothing but separators")
                owner = owners.setdefault(normalize_key(name), spec.key)
                if owner != spec.key:
                    raise ValueError(f"topic {spec.key!r}: {name!r} already names topic {owner!r}")
            slug = _slug(spec.en, spec.key)
            if slugs.setdefault(slug, spec.key) != spec.key:
                raise ValueError(f"topic {spec.key!r}: anchor #t-{slug} is already topic {slugs[slug]!r}'s")
        return self


_SPECS = load(TopicFile, "topics.toml").topic
_TOPICS: dict[str, tuple[str, str]] = {spec.key: (spec.en, spec.zh) for spec in _SPECS}
# Any spelling of a topic (key, names, aliases) -> its key.
_KEY_BY_NAME: dict[str, str] = {normalize_key(name): spec.key for spec in _SPECS for name in spec.spellings()}
_INDEX: dict[str, tuple[str, str]] = {
    normalize_key(name): (spec.en, spec.zh) for spec in _SPECS for name in (spec.key, *spec.aliases)
}


def _fallback(key: str) -> str:
    """Readable name for an unknown key: slugs are title-cased ("point-cloud" -> "Point Cloud")."""
    text = " ".join(key.split())
    if _SLUG.match(text):
        return " ".join(part.capitalize() for part in re.split(r"[-_]", text))
    return text


def topic_names(key: str) -> tuple[str, str]:
    """(English name, Chinese name) for an upstream topic key; unknown keys fall back to the key itself."""
    found = _INDEX.get(normalize_key(key))
    if found:
        return found
    name = _fallback(key)
    return (name, name)


def topic_slug(key: str) -> str:
    """Stable ASCII anchor id for a topic, from its English name ("元宇宙/虚拟人" -> "metaverse-virtual-humans");
    a key with no ASCII name gets a checksum ("topic-1a2b3c4d") so email links and archive anchors agree."""
    return _slug(topic_names(key)[0], key)


def known_topics() -> dict[str, tuple[str, str]]:
    """A copy of the registry (for documentation and preference pages)."""
    return dict(_TOPICS)


def canonical_topic(name: str) -> str:
    """The upstream key for a topic written any known way ("3d gaussian splatting", "3dgs" -> "3DGS")."""
    return _KEY_BY_NAME.get(normalize_key(name), " ".join(name.split()))
