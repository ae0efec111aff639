"""One config file (newsletter.toml) plus NEWSLETTER_* environment overrides.

Lookup order for the file: the path given on the command line, $NEWSLETTER_CONFIG, ./newsletter.toml, then the
built-in defaults below (bundled sample input, SQLite under var/, outbox instead of SMTP). Secrets never live in
the file: they come from the environment (or Airflow connections, in the DAGs).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
SAMPLE_DIR = PACKAGE_DIR / "sample"
SOURCE_KINDS = ("feed", "markdown", "text")


class ConfigError(ValueError):
    """The configuration cannot be used; the message says which key and why."""


@dataclass(frozen=True)
class Source:
    name: str
    kind: str  # feed | markdown | text
    url: str | None = None  # http(s) feed URL
    path: str | None = None  # local file or directory
    enabled: bool = True

    @property
    def location(self) -> str:
        return self.url or self.path or ""


@dataclass(frozen=True)
class FetchSettings:
    timeout: float = 20.0  # seconds, per request
    retries: int = 3  # attempts after the first, for transient failures only
    backoff: float = 1.0  # first retry delay in seconds; doubles each time
    user_agent: str = "paper-digest/0.1 (newsletter ingest; +https://github.com/paper-digest/paper-digest)"


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///var/newsletter.db"
    archive_dir: str = "var/raw"
    timezone: str = "Asia/Shanghai"
    sources: tuple[Source, ...] = ()
    fetch: FetchSettings = field(default_factory=FetchSettings)
    config_path: str | None = None
    extra: dict = field(default_factory=dict)  # sections owned by later stages (render, delivery, ...)

    def source(self, name: str) -> Source:
        for src in self.sources:
            if src.name == name:
                return src
        known = ", ".join(s.name for s in self.sources) or "none"
        raise ConfigError(f"no source named {name!r} in the config (known: {known})")

    def section(self, name: str) -> dict:
        return dict(self.extra.get(name, {}))

    def path(self, raw: str | os.PathLike) -> Path:
        """A configured path, relative to the config file's folder (else the working directory)."""
        base = Path(self.config_path).parent if self.config_path else Path.cwd()
        return (base / raw).resolve()


DEFAULT_SOURCES = (
    Source("sample-feed", "feed", path=str(SAMPLE_DIR / "feed.xml")),
    Source("sample-markdown", "markdown", path=str(SAMPLE_DIR / "markdown")),
    Source("sample-text", "text", path=str(SAMPLE_DIR / "text")),
)


def _parse_source(raw: dict, base: Path) -> Source:
    name = raw.get("name")
    kind = raw.get("kind")
    if not name:
        raise ConfigError(f"a [[sources]] entry has no name: {raw}")
    if kind not in SOURCE_KINDS:
        raise ConfigError(f"source {name!r}: kind must be one of {', '.join(SOURCE_KINDS)}, got {kind!r}")
    url, path = raw.get("url"), raw.get("path")
    if bool(url) == bool(path):
        raise ConfigError(f"source {name!r}: give exactly one of url or path")
    if path and not Path(path).is_absolute():
        path = str((base / path).resolve())  # relative to the config file, not the cwd
    return Source(name, kind, url=url, path=path, enabled=bool(raw.get("enabled", True)))


def _env_overrides(values: dict) -> dict:
    env = os.environ
    if env.get("NEWSLETTER_DATABASE_URL"):
        values["database_url"] = env["NEWSLETTER_DATABASE_URL"]
    if env.get("NEWSLETTER_ARCHIVE_DIR"):
        values["archive_dir"] = env["NEWSLETTER_ARCHIVE_DIR"]
    if env.get("NEWSLETTER_TIMEZONE"):
        values["timezone"] = env["NEWSLETTER_TIMEZONE"]
    return values


def _find_config(path: str | os.PathLike | None) -> Path | None:
    explicit = path or os.environ.get("NEWSLETTER_CONFIG")
    if explicit:
        if not Path(explicit).is_file():
            raise ConfigError(f"config file not found: {explicit}")
        return Path(explicit).resolve()
    default = Path("newsletter.toml")
    return default.resolve() if default.is_file() else None


def load_settings(path: str | os.PathLike | None = None) -> Settings:
    """Read the config file (if any) and apply environment overrides."""
    cfg_path = _find_config(path)
    raw: dict = {}
    if cfg_path:
        try:
            raw = tomllib.loads(cfg_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{cfg_path}: invalid TOML: {exc}") from exc
    base = cfg_path.parent if cfg_path else Path.cwd()
    values: dict = {}
    for key in ("database_url", "archive_dir", "timezone"):
        if key in raw.get("newsletter", {}):
            values[key] = raw["newsletter"][key]
    if "sources" in raw:
        values["sources"] = tuple(_parse_source(s, base) for s in raw["sources"])
    else:
        values["sources"] = DEFAULT_SOURCES
    fetch_keys = {f.name for f in fields(FetchSettings)}
    values["fetch"] = FetchSettings(**{k: v for k, v in raw.get("fetch", {}).items() if k in fetch_keys})
    values["archive_dir"] = str((base / values.get("archive_dir", Settings.archive_dir)).resolve())
    values = _env_overrides(values)
    values["database_url"] = _absolute_sqlite(values.get("database_url", Settings.database_url), base)
    known = {"newsletter", "sources", "fetch"}
    extra = {k: v for k, v in raw.items() if k not in known}
    return Settings(config_path=str(cfg_path) if cfg_path else None, extra=extra, **values)


def _absolute_sqlite(url: str, base: Path) -> str:
    """sqlite:///var/x.db is relative to the config file's folder, so every command finds the same file."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
        return prefix + str((base / url[len(prefix) :]).resolve())
    return url
