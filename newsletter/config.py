"""One config file (newsletter.toml) plus NEWSLETTER_* environment overrides, validated into typed sections.

Lookup order for the file: the path given on the command line, $NEWSLETTER_CONFIG, ./newsletter.toml, else the
built-in defaults (the bundled sample as sources, SQLite under var/, the outbox instead of SMTP). The bundled
sample is used only when there is no file at all: a file without [[sources]] has no sources.

Every section is a pydantic model that forbids unknown keys, so a typo (`[delivry]`, `databse_url`) or a wrong
type stops the program with one line naming the file, the key and the problem (`ConfigError`). Relative paths
in the file are relative to the file's folder; in environment variables, to the working directory. Secrets
(SMTP password, token secret) never live in the file: they are read from the environment where they are used.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from dataclasses import dataclass, field
from datetime import time
from email.utils import getaddresses
from pathlib import Path
from typing import Annotated, Any, Literal, Self, get_args
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass as pydantic_dataclass
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from newsletter.records import SourceKind, TlsMode

PACKAGE_DIR = Path(__file__).resolve().parent
SAMPLE_DIR = PACKAGE_DIR / "sample"
DEFAULT_DATABASE_URL = "sqlite:///var/newsletter.db"
DEFAULT_ARCHIVE_DIR = "var/raw"
DEFAULT_TIMEZONE = "Asia/Shanghai"
# Variables that override a key of the file. Secrets are not here: they never have a place in the file.
ENV_OVERRIDES = {
    "NEWSLETTER_DATABASE_URL": ("newsletter", "database_url"),
    "NEWSLETTER_ARCHIVE_DIR": ("newsletter", "archive_dir"),
    "NEWSLETTER_TIMEZONE": ("newsletter", "timezone"),
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LIST_ID = re.compile(r"[^<>]*<[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)+>")
_SECRET_KEYS = {"database_url", "url"}  # never echoed in an error message: they may hold a password


class ConfigError(ValueError):
    """The configuration cannot be used; the message (one line) says where and why."""


# ---- value types: each validator raises ValueError with a message meant for the operator --------------------


def _base(info: ValidationInfo) -> Path | None:
    """The config file's folder while loading a file (validation context), else None: paths stay as given."""
    return (info.context or {}).get("base")


def _config_path(value: str, info: ValidationInfo) -> str:
    path = Path(value).expanduser()
    base = _base(info)
    return str((base / path).resolve()) if base else str(path)


def _database_url(value: str, info: ValidationInfo) -> str:
    try:
        make_url(value)
    except ArgumentError:
        raise ValueError("not a database URL (e.g. sqlite:///var/newsletter.db, postgresql://user@host/db)") from None
    base = _base(info)
    return _absolute_sqlite(value, base) if base else value


def _absolute_sqlite(url: str, base: Path) -> str:
    """sqlite:///var/x.db relative to `base`, so every command (and every Airflow worker) finds the same file
    whatever its working directory."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
        return prefix + str((base / url[len(prefix) :]).resolve())
    return url


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {value!r} (an IANA name such as Asia/Shanghai)") from None
    return value


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or _CONTROL.search(value):
        raise ValueError(f"not an http(s) URL: {value!r}")
    return value


def _address(value: str) -> str:
    """A bare address (user@example.org): syntax only, no DNS lookup (config must load offline)."""
    if _CONTROL.search(value):
        raise ValueError("contains a line break or control character")
    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid email address {value!r}: {exc}") from None
    return value


def _mailbox(value: str) -> str:
    """One address with an optional display name, as it goes into a header: "Paper Digest <digest@example.org>".
    A line break would let the value inject headers of its own."""
    if _CONTROL.search(value):
        raise ValueError("contains a line break or control character (it would inject mail headers)")
    pairs = getaddresses([value])
    addr = pairs[0][1] if len(pairs) == 1 else ""
    if "@" not in addr or addr not in value:
        raise ValueError('not one email address (e.g. "Paper Digest <digest@example.org>")')
    _address(addr)
    return value


def _list_id(value: str) -> str:
    if _CONTROL.search(value) or not _LIST_ID.fullmatch(value.strip()):
        raise ValueError(f'not a List-Id: {value!r} (e.g. "Paper Digest <digest.example.org>", RFC 2919)')
    return value.strip()


ConfigPath = Annotated[str, AfterValidator(_config_path)]
DatabaseUrl = Annotated[str, AfterValidator(_database_url)]
TimeZone = Annotated[str, AfterValidator(_timezone)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
Address = Annotated[str, AfterValidator(_address)]
Mailbox = Annotated[str, AfterValidator(_mailbox)]
ListId = Annotated[str, AfterValidator(_list_id)]
Port = Annotated[int, Field(ge=1, le=65535)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Share = Annotated[float, Field(ge=0, le=1)]
Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


# ---- sections -----------------------------------------------------------------------------------------------


class Section(BaseModel):
    """A table of the file: unknown keys refused, defaults validated too (so default paths are resolved)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_default=True, validate_by_name=True, validate_by_alias=True
    )

    def updated(self, **changes: Any) -> Self:
        """A copy with some values changed, validated like the file (paths are taken as given)."""
        return self.model_validate({**self.model_dump(), **changes})


class NewsletterSettings(Section):
    database_url: DatabaseUrl = DEFAULT_DATABASE_URL
    archive_dir: ConfigPath = DEFAULT_ARCHIVE_DIR  # content-addressed raw archive of every payload
    timezone: TimeZone = DEFAULT_TIMEZONE  # an issue covers one local day in this zone


class FetchSettings(Section):
    timeout: PositiveFloat = 20.0  # seconds, per request
    retries: NonNegativeInt = 3  # attempts after the first, for transient failures only
    backoff: NonNegativeFloat = 1.0  # first retry delay in seconds; doubles each time
    # Largest payload read, decoded (after gzip), per HTTP answer or file; MB = 10**6 bytes. A few times the
    # largest real feed snapshot (2.6 MB): a bigger answer is refused whole, never held in memory.
    max_payload_mb: PositiveFloat = 20.0
    user_agent: Name = "paper-digest/0.1 (newsletter ingest; +https://github.com/paper-digest/paper-digest)"


@pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class Source:
    """One `[[sources]]` entry. A dataclass (not a model) so that code and tests can write Source("x", "feed",
    url=...)."""

    name: Name
    kind: SourceKind
    url: HttpUrl | None = None  # http(s) feed URL
    path: ConfigPath | None = None  # local file or directory
    enabled: bool = True

    @model_validator(mode="after")
    def _one_location(self) -> Self:
        if (self.url is None) == (self.path is None):
            raise ValueError("give exactly one of url or path")
        return self

    @property
    def location(self) -> str:
        return self.url or self.path or ""


class IssueSettings(Section):
    """What one issue features (`newsletter.issue.build`)."""

    lookback_days: NonNegativeInt = 7  # a paper posted late joins the next issue within this many days
    topic_order: tuple[Name, ...] = ()  # these topics first, then by size
    empty_ok: bool = True  # `newsletter build` exits 0 (true) or 3 (false) when a period has nothing to send
    # The weekly issue (README "Daily or weekly") covers Monday-Sunday local days and goes out on this morning of
    # the following week (the weekly_newsletter DAG's schedule, in NEWSLETTER_DAG_TZ).
    weekly_send_day: Weekday = "monday"
    weekly_send_time: time = time(8, 0)


class RenderSettings(Section):
    """The configurable part of `render.variant.RenderOptions` (same names, same defaults)."""

    max_authors: PositiveInt = 6
    abstract_sentences: PositiveInt = 3
    abstract_max_chars: PositiveInt = 700
    html_budget_bytes: PositiveInt = 90_000
    personalize_reserve_bytes: NonNegativeInt = 400
    site_name: Name = "Paper Digest"
    site_name_zh: Name = "论文速递"
    text_width: PositiveInt = 76
    foryou_top_k: NonNegativeInt = 5  # papers in a subscriber's "For you" pick (#11); 0 turns picks off


class WebSettings(Section):
    base_url: HttpUrl = "http://127.0.0.1:8000"  # public URL of `newsletter serve`, without the trailing slash
    archive_dir: ConfigPath = "var/archive"
    host: Name = "127.0.0.1"
    port: Port = 8000

    @field_validator("base_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")


class SmtpSettings(Section):
    """`[delivery.smtp]`: used when transport = "smtp" and NEWSLETTER_SMTP_URL is unset."""

    url: str | None = None  # smtp://host:587?tls=starttls, instead of the keys below
    host: Name | None = None
    port: Port | None = None  # default: by tls (25, 587, 465)
    tls: TlsMode = TlsMode.NONE
    username: str | None = None  # the password comes from NEWSLETTER_SMTP_PASSWORD
    timeout: PositiveFloat = 30.0

    @model_validator(mode="after")
    def _host_or_url(self) -> Self:
        if not (self.url or self.host):
            raise ValueError("needs host (or url)")
        return self


class DeliverySettings(Section):
    """`[delivery]`: the sender identity, the transport and the sender's tunables."""

    from_addr: Mailbox = Field("Paper Digest <digest@example.org>", alias="from")
    reply_to: Mailbox | None = None
    list_id: ListId | None = None  # default: "<From display name> <local.domain>" of From
    transport: Literal["outbox", "smtp"] = "outbox"  # NEWSLETTER_SMTP_URL selects smtp whatever this says
    outbox: ConfigPath = "var/outbox"
    batch_size: PositiveInt = 50  # messages per claimed batch (one SMTP connection each)
    rate_limit_per_s: NonNegativeFloat = 0.0  # 0: as fast as the server takes them
    max_error_rate: Share = 0.2  # circuit breaker over the last breaker_window attempts
    breaker_window: PositiveInt = 50
    breaker_min: NonNegativeInt = 20
    max_attempts: PositiveInt = 5
    retry_base_s: NonNegativeFloat = 60.0
    retry_max_s: NonNegativeFloat = 3600.0
    retry_wait_s: NonNegativeFloat = 600.0
    stale_after_s: NonNegativeFloat = 900.0
    reconnect_tries: NonNegativeInt = 3
    reconnect_delay_s: NonNegativeFloat = 1.0  # first pause before reconnecting; doubles
    workers: PositiveInt = 1
    durable_marks: bool = False  # flush every "sent" mark to disk (see deliver.sender)
    smtp: SmtpSettings | None = None

    def backoff(self, attempts: int) -> float:
        return min(self.retry_max_s, self.retry_base_s * 2 ** max(0, attempts - 1))


class TranslateSettings(Section):
    """`[translate]`: machine translation of the Chinese summary and takeaways into English through an
    OpenAI-compatible chat-completions endpoint (`newsletter.translate`). Off by default. The API key is never in
    the file: it is read from the environment variable named by `api_key_env` (none for a local server)."""

    enabled: bool = False
    base_url: HttpUrl = "http://127.0.0.1:8080/v1"  # POST {base_url}/chat/completions
    model: Name = "gpt-4o-mini"
    api_key_env: Name = "NEWSLETTER_TRANSLATE_API_KEY"
    timeout: PositiveFloat = 60.0  # seconds per request, retries included: a request never takes longer
    retries: NonNegativeInt = 2  # extra attempts within the timeout for a network error, 429 or 5xx
    backoff: NonNegativeFloat = 1.0  # first retry delay in seconds; doubles
    batch_size: PositiveInt = 8  # papers per request; 1 = one request per paper
    max_failures: PositiveInt = 3  # consecutive failed requests before the run stops asking (endpoint down)
    json_mode: bool = True  # send response_format = json_object (turn off for a server that refuses it)
    temperature: Annotated[float, Field(ge=0, le=2)] = 0.0

    @field_validator("base_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")


class SignupSettings(Section):
    """`[signup]`: the public sign-up form (double opt-in) of `newsletter serve` (deliver.signup)."""

    enabled: bool = True  # false: /subscribe answers 404
    confirm_ttl_hours: PositiveFloat = 48.0  # a confirmation link works this long
    purge_after_days: PositiveFloat = 7.0  # unconfirmed sign-ups (and old request rows) are deleted after this
    max_per_address: NonNegativeInt = 3  # confirmation emails to one address per address_window_hours
    address_window_hours: PositiveFloat = 24.0
    max_per_client: NonNegativeInt = 10  # confirmation emails requested by one client (IP) per client_window_hours
    client_window_hours: PositiveFloat = 1.0

    @model_validator(mode="after")
    def _purge_after_expiry(self) -> Self:
        if self.purge_after_days * 24 < self.confirm_ttl_hours:
            raise ValueError("purge_after_days must not be shorter than confirm_ttl_hours (links would break)")
        return self


class ConfigFile(Section):
    """The whole file. `sources` is None when the file has no [[sources]] (then there are none)."""

    newsletter: NewsletterSettings
    fetch: FetchSettings
    sources: tuple[Source, ...] | None = None
    issue: IssueSettings
    render: RenderSettings
    web: WebSettings
    delivery: DeliverySettings
    translate: TranslateSettings
    signup: SignupSettings

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, sources: tuple[Source, ...] | None) -> tuple[Source, ...] | None:
        names = [s.name for s in sources or ()]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate source name {', '.join(map(repr, duplicates))}")
        return sources


SECTIONS = ("newsletter", "fetch", "issue", "render", "web", "delivery", "signup", "translate")  # may be omitted


# ---- the settings every stage reads --------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """Validated configuration. [newsletter] keys sit at the top (tests and callers `dataclasses.replace` them);
    every other section is its model."""

    database_url: str = DEFAULT_DATABASE_URL
    archive_dir: str = DEFAULT_ARCHIVE_DIR
    timezone: str = DEFAULT_TIMEZONE
    sources: tuple[Source, ...] = ()
    fetch: FetchSettings = field(default_factory=FetchSettings)
    issue: IssueSettings = field(default_factory=IssueSettings)
    render: RenderSettings = field(default_factory=RenderSettings)
    web: WebSettings = field(default_factory=WebSettings)
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    translate: TranslateSettings = field(default_factory=TranslateSettings)
    signup: SignupSettings = field(default_factory=SignupSettings)
    config_path: str | None = None

    def source(self, name: str) -> Source:
        for src in self.sources:
            if src.name == name:
                return src
        known = ", ".join(s.name for s in self.sources) or "none"
        raise ConfigError(f"no source named {name!r} in the config (known: {known})")

    def enabled_sources(self) -> list[Source]:
        """Every enabled source; a config without any source is an error, not a silent no-op."""
        if not self.sources:
            where = self.config_path or "the configuration"
            raise ConfigError(f"no sources configured in {where}: add [[sources]]")
        return [s for s in self.sources if s.enabled]


DEFAULT_SOURCES = (
    Source("sample-feed", SourceKind.FEED, path=str(SAMPLE_DIR / "feed.xml")),
    Source("sample-markdown", SourceKind.MARKDOWN, path=str(SAMPLE_DIR / "markdown")),
    Source("sample-text", SourceKind.TEXT, path=str(SAMPLE_DIR / "text")),
)


def _find_config(path: str | os.PathLike | None) -> Path | None:
    explicit = path or os.environ.get("NEWSLETTER_CONFIG")
    if explicit:
        if not Path(explicit).is_file():
            raise ConfigError(f"config file not found: {explicit}")
        return Path(explicit).resolve()
    default = Path("newsletter.toml")
    return default.resolve() if default.is_file() else None


def _read(cfg_path: Path) -> dict:
    try:
        return tomllib.loads(cfg_path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{cfg_path}: invalid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{cfg_path}: cannot read: {exc}") from None


def _apply_env(raw: dict) -> dict[tuple[str, str], str]:
    """Put the NEWSLETTER_* overrides into the raw tables; returns where each came from (for error messages).
    A relative path in a variable is relative to the working directory, so it is made absolute here."""
    origins = {}
    for var, (section, key) in ENV_OVERRIDES.items():
        value = os.environ.get(var, "").strip()
        if not value:
            continue
        if key == "archive_dir":
            value = str(Path(value).expanduser().resolve())
        elif key == "database_url":
            value = _absolute_sqlite(value, Path.cwd())
        table = raw.setdefault(section, {})
        if isinstance(table, dict):
            table[key] = value
            origins[(section, key)] = var
    return origins


def load_settings(path: str | os.PathLike | None = None) -> Settings:
    """Read the config file (if any), apply environment overrides and validate; ConfigError says what is wrong."""
    cfg_path = _find_config(path)
    raw = _read(cfg_path) if cfg_path else {}
    origin = str(cfg_path) if cfg_path else "built-in defaults"
    base = cfg_path.parent if cfg_path else Path.cwd()
    env_origins = _apply_env(raw)
    for name in SECTIONS:
        raw.setdefault(name, {})
    try:
        cfg = ConfigFile.model_validate(raw, context={"base": base})
    except ValidationError as exc:
        raise ConfigError(describe_error(exc, raw, origin, env_origins)) from None
    # The bundled sample only when there is no file at all: a file without [[sources]] has none.
    sources = DEFAULT_SOURCES if cfg_path is None else cfg.sources or ()
    return Settings(
        database_url=cfg.newsletter.database_url,
        archive_dir=cfg.newsletter.archive_dir,
        timezone=cfg.newsletter.timezone,
        sources=sources,
        fetch=cfg.fetch,
        issue=cfg.issue,
        render=cfg.render,
        web=cfg.web,
        delivery=cfg.delivery,
        translate=cfg.translate,
        signup=cfg.signup,
        config_path=str(cfg_path) if cfg_path else None,
    )


# ---- one-line error messages ----------------------------------------------------------------------------------


def describe_error(exc: ValidationError, raw: dict, origin: str, env_origins: dict | None = None) -> str:
    """`<file>: [section] key: problem (got 'value')` for the first error, `(+N more)` for the others."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = tuple(first["loc"])
    var = (env_origins or {}).get(loc[:2]) if len(loc) >= 2 else None
    where = var or f"{origin}: {_where(loc, raw)}"
    if first["type"] in ("extra_forbidden", "unexpected_keyword_argument"):  # models / the Source dataclass
        problem = _unknown(loc, raw)
        if len(loc) == 1 and not _is_table(raw.get(loc[0])):
            where = f"{origin}: {loc[0]}"
    else:
        problem = first["msg"].removeprefix("Value error, ")
        problem = re.sub(r"a valid dictionary( or instance of \w+)?", "a table", problem)
        value = first.get("input")
        if isinstance(value, str | int | float) and loc and loc[-1] not in _SECRET_KEYS and repr(value) not in problem:
            problem += f" (got {value!r})"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return " ".join(f"{where}: {problem}{more}".split())


def _where(loc: tuple, raw: dict) -> str:
    """('delivery', 'smtp', 'port') -> "[delivery.smtp] port"; ('sources', 2, 'kind') -> "[[sources]] 'x' kind"."""
    tables: list[str] = []
    entry, keys, array = "", "", False
    node: Any = raw
    for i, part in enumerate(loc):
        child = _child(node, part)
        if keys or (i and isinstance(part, str) and not _is_table(child)):
            keys += f"[{part}]" if isinstance(part, int) else f"{'.' if keys else ''}{part}"
        elif isinstance(part, int):
            name = child.get("name") if isinstance(child, dict) else None
            entry = repr(name) if isinstance(name, str) else f"#{part + 1}"
        else:
            tables.append(str(part))
            array = isinstance(child, list)
        node = child
    header = ".".join(tables)
    header = f"[[{header}]]" if array else f"[{header}]" if header else ""
    return " ".join(x for x in (header, entry, keys) if x) or "(top level)"


def _child(node: Any, part: Any) -> Any:
    if isinstance(node, dict):
        return node.get(part)
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return node[part]
    return None


def _is_table(value: Any) -> bool:
    """A TOML table or array of tables (not an array of values such as topic_order)."""
    return isinstance(value, dict) or (isinstance(value, list) and bool(value) and isinstance(value[0], dict))


def _unknown(loc: tuple, raw: dict) -> str:
    """An unknown section or key, with the closest known name when there is one."""
    if len(loc) == 1 and not _is_table(raw.get(loc[0])):
        owners = [name for name in SECTIONS if loc[0] in _known_keys((name,))]
        hint = f"; did you mean [{owners[0]}] {loc[0]}?" if owners else ""
        return f"unknown top-level key: keys go in a [section]{hint}"
    if len(loc) == 1:
        known = [*SECTIONS, "sources"]
        kind = "section"
    else:
        known = _known_keys(loc[:-1])
        kind = "key"
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(known)}" if known else ""
    return f"unknown {kind} {loc[-1]!r}{hint}"


def _known_keys(loc: tuple) -> list[str]:
    """The keys the model at `loc` accepts (by their names in the file)."""
    model: Any = ConfigFile
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(model, "__pydantic_fields__", {})
        info = fields.get(part)
        if info is None:
            return []
        model = _model_of(info.annotation)
    fields = getattr(model, "__pydantic_fields__", {})
    return [info.alias or name for name, info in fields.items()]


def _model_of(annotation: Any) -> Any:
    """The model or dataclass inside `X | None` or `tuple[X, ...]`."""
    if hasattr(annotation, "__pydantic_fields__"):
        return annotation
    for arg in get_args(annotation):
        model = _model_of(arg)
        if model is not None:
            return model
    return None
