"""Reading the registries' data files: TOML under newsletter/registry/data/, checked against a pydantic model.

A file that does not parse or does not fit its schema raises RegistryError with one message per problem,
naming the file and the entry ("venues.toml: venue #12 (name = 'CVPR'): full_names[0]: ..."), so a bad
data change fails at import with a pointer to the line to fix rather than with a stack of regex internals.
"""

from __future__ import annotations

import tomllib
from importlib.resources import files
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

DATA = files(__package__) / "data"
_ENTRY_NAMES = ("name", "key")  # the field that names an entry in error messages
M = TypeVar("M", bound=BaseModel)


class RegistryError(ValueError):
    """A registry data file is malformed or breaks its schema."""


def load(model: type[M], name: str, path: Path | None = None) -> M:
    """The data file `name` (or `path`) validated as `model`."""
    source = path or DATA / name
    return parse(model, source.read_text(encoding="utf-8"), name if path is None else str(path))


def parse(model: type[M], text: str, where: str) -> M:
    """TOML text validated as `model`; `where` names the file in error messages."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(f"{where}: not valid TOML: {exc}") from None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = [
            f"{where}: {_location(raw, err['loc'])}{err['msg'].removeprefix('Value error, ')}" for err in exc.errors()
        ]
        raise RegistryError("\n".join(problems)) from None


def _location(raw: dict[str, Any], loc: tuple[int | str, ...]) -> str:
    """'venue #3 (name = "ECCV"): aliases[1]: ' for loc ('venue', 2, 'aliases', 1)."""
    parts: list[str] = []
    node: Any = raw
    for i, step in enumerate(loc):
        node = _child(node, step)
        if isinstance(step, int) and i == 1 and isinstance(node, dict):
            label = next((f"{f} = {node[f]!r}" for f in _ENTRY_NAMES if isinstance(node.get(f), str)), None)
            parts[-1] += f" #{step + 1}" + (f" ({label})" if label else "")
        elif isinstance(step, int):
            parts[-1] += f"[{step}]"
        else:
            parts.append(str(step))
    return ": ".join(parts) + ": " if parts else ""


def _child(node: Any, step: int | str) -> Any:
    try:
        return node[step]
    except (KeyError, IndexError, TypeError):
        return None
