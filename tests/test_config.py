"""The config file: typed sections, one-line errors, environment overrides, paths, sources, secrets, addresses."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from dataclasses import fields
from pathlib import Path

import pytest
from pydantic import ValidationError

from newsletter.config import (
    DEFAULT_SOURCES,
    ConfigError,
    Settings,
    load_settings,
)
from newsletter.deliver import tokens
from newsletter.deliver.message import MessageSettings
from newsletter.deliver.transport import OutboxTransport, transport_factory
from newsletter.pipeline.ingest import ingest
from newsletter.records import DeliveryStatus, Language, SourceKind, SubscriberStatus, TlsMode
from newsletter.render.variant import RenderOptions
from tests.conftest import ROOT, TEST_TOKEN_SECRET

SECRET_VARS = ("NEWSLETTER_TOKEN_SECRET", "NEWSLETTER_TOKEN_SECRET_OLD")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No override from the environment of whoever runs the tests, and a working directory without a config."""
    for var in (
        "NEWSLETTER_CONFIG",
        "NEWSLETTER_DATABASE_URL",
        "NEWSLETTER_ARCHIVE_DIR",
        "NEWSLETTER_TIMEZONE",
        "NEWSLETTER_SMTP_URL",
        *SECRET_VARS,
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)


def write(folder: Path, text: str, name: str = "newsletter.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message
    return message


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The console entry point of this checkout, as an operator runs it."""
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT), "HOME": str(cwd or ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "newsletter", *args],
        env={**base, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


# ---- unknown sections and keys -------------------------------------------------------------------------------


def test_unknown_section_is_refused_with_a_suggestion(tmp_path):
    path = write(tmp_path, '[delivry]\nfrom = "Digest <digest@example.org>"\n')
    assert error_of(path) == f"{path}: [delivry]: unknown section 'delivry'; did you mean 'delivery'?"


@pytest.mark.parametrize(
    ("text", "where", "suggestion"),
    [
        ('[newsletter]\ndatabse_url = "sqlite:///x.db"\n', "[newsletter] databse_url", "'database_url'"),
        ("[delivery]\nbatchsize = 10\n", "[delivery] batchsize", "'batch_size'"),
        ('[delivery.smtp]\nhost = "h.example.org"\npasword = "x"\n', "[delivery.smtp] pasword", None),
        ('[[sources]]\nname = "blog"\nkind = "feed"\npath = "a"\nenabeld = true\n', "[[sources]] 'blog' enabeld", None),
        ("[render]\nhtml_budget = 1000\n", "[render] html_budget", "'html_budget_bytes'"),
    ],
)
def test_unknown_key_is_refused(tmp_path, text, where, suggestion):
    path = write(tmp_path, text)
    message = error_of(path)
    assert message.startswith(f"{path}: {where}: unknown key")
    if suggestion:
        assert message.endswith(f"did you mean {suggestion}?")


def test_a_key_outside_any_section_names_its_section(tmp_path):
    path = write(tmp_path, 'database_url = "sqlite:///x.db"\n')
    assert error_of(path) == (
        f"{path}: database_url: unknown top-level key: keys go in a [section]; did you mean [newsletter] database_url?"
    )


# ---- wrong types and values ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[issue]\nlookback_days = "seven"\n', "[issue] lookback_days: Input should be a valid integer"),
        ('[newsletter]\ntimezone = "Mars/Olympus"\n', "[newsletter] timezone: unknown time zone 'Mars/Olympus'"),
        (
            '[delivery.smtp]\nhost = "h.example.org"\nport = "eighty"\n',
            "[delivery.smtp] port: Input should be a valid integer",
        ),
        ('[web]\nport = "eighty"\n', "[web] port: Input should be a valid integer"),
        ("[web]\nport = 70000\n", "[web] port: Input should be less than or equal to 65535 (got 70000)"),
        ("[delivery]\nbatch_size = 0\n", "[delivery] batch_size: Input should be greater than 0"),
        ("[delivery]\nmax_error_rate = 2\n", "[delivery] max_error_rate: Input should be less than or equal to 1"),
        ('[delivery]\ntransport = "carrier-pigeon"\n', "[delivery] transport: Input should be 'outbox' or 'smtp'"),
        (
            '[delivery.smtp]\nhost = "h.example.org"\ntls = "tls"\n',
            "[delivery.smtp] tls: Input should be 'none', 'starttls' or 'ssl'",
        ),
        ("[delivery.smtp]\nport = 25\n", "[delivery.smtp]: needs host (or url)"),
        (
            '[[sources]]\nname = "blog"\nkind = "rss"\npath = "a"\n',
            "[[sources]] 'blog' kind: Input should be 'feed', 'markdown' or 'text'",
        ),
        ('[[sources]]\nname = "blog"\nkind = "feed"\n', "[[sources]] 'blog': give exactly one of url or path"),
        (
            '[[sources]]\nname = "blog"\nkind = "feed"\nurl = "ftp://x.example.org/a"\n',
            "[[sources]] 'blog' url: not an http(s) URL",
        ),
        (
            '[[sources]]\nname = "a"\nkind = "feed"\npath = "x"\n[[sources]]\nname = "a"\nkind = "text"\npath = "y"\n',
            "[[sources]]: duplicate source name 'a'",
        ),
        ('[issue]\ntopic_order = ["3DGS", 7]\n', "[issue] topic_order[1]: Input should be a valid string"),
        ('[web]\nbase_url = "digest.example.org"\n', "[web] base_url: not an http(s) URL"),
        ('[newsletter]\ndatabase_url = "nonsense"\n', "[newsletter] database_url: not a database URL"),
        ("[fetch]\ntimeout = -1\n", "[fetch] timeout: Input should be greater than 0"),
        ("delivery = 5\n", "[delivery]: Input should be a table"),
        ("[delivery\n", "invalid TOML"),
    ],
)
def test_wrong_types_and_values_are_one_line_naming_file_and_key(tmp_path, text, expected):
    path = write(tmp_path, text)
    assert error_of(path).startswith(f"{path}: {expected}")


def test_the_offending_value_is_shown_but_never_a_database_url(tmp_path):
    assert error_of(write(tmp_path, '[issue]\nlookback_days = "seven"\n')).endswith("(got 'seven')")
    message = error_of(write(tmp_path, '[newsletter]\ndatabase_url = "pg:/user:hunter2@db"\n'))
    assert "hunter2" not in message


def test_every_error_is_counted(tmp_path):
    assert error_of(write(tmp_path, "[delivery]\nbatch_size = 0\nworkers = 0\n")).endswith("(+1 more)")


def test_cli_prints_a_config_error_on_one_line_and_exits_2(tmp_path):
    path = write(tmp_path, '[delivery.smtp]\nhost = "relay.example.org"\nport = "eighty"\n')
    proc = run_cli("--config", str(path), "ingest", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == (
        f"config error: {path}: [delivery.smtp] port: Input should be a valid integer, unable to parse string as "
        "an integer (got 'eighty')\n"
    )  # the "[delivery.smtp]" survives the console's markup, and a long line is not wrapped


def test_a_missing_config_file_is_one_line(tmp_path):
    assert error_of(tmp_path / "nope.toml") == f"config file not found: {tmp_path / 'nope.toml'}"


# ---- environment overrides -----------------------------------------------------------------------------------


def test_environment_overrides_the_file(tmp_path, monkeypatch):
    path = write(
        tmp_path / "conf",
        """
        [newsletter]
        database_url = "sqlite:///from-file.db"
        archive_dir = "raw-from-file"
        timezone = "Europe/Paris"
        """,
    )
    assert load_settings(path).timezone == "Europe/Paris"
    monkeypatch.setenv("NEWSLETTER_TIMEZONE", "UTC")
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", "postgresql+psycopg://app@db.example.org/newsletter")
    monkeypatch.setenv("NEWSLETTER_ARCHIVE_DIR", "raw-from-env")  # relative: to the working directory
    monkeypatch.setenv("NEWSLETTER_CONFIG", str(path))
    settings = load_settings()
    assert settings.timezone == "UTC"
    assert settings.database_url == "postgresql+psycopg://app@db.example.org/newsletter"
    assert settings.archive_dir == str(tmp_path / "raw-from-env")
    monkeypatch.setenv("NEWSLETTER_TIMEZONE", "  ")  # blank: not an override
    assert load_settings(path).timezone == "Europe/Paris"


def test_an_invalid_override_names_the_variable(tmp_path, monkeypatch):
    path = write(tmp_path, "[newsletter]\ntimezone = 'UTC'\n")
    monkeypatch.setenv("NEWSLETTER_TIMEZONE", "Mars/Olympus")
    assert error_of(path).startswith("NEWSLETTER_TIMEZONE: unknown time zone 'Mars/Olympus'")


def test_explicit_path_beats_the_variable_and_the_working_directory(tmp_path, monkeypatch):
    write(tmp_path, "[newsletter]\ntimezone = 'Europe/Paris'\n")  # ./newsletter.toml
    other = write(tmp_path / "other", "[newsletter]\ntimezone = 'America/New_York'\n")
    explicit = write(tmp_path / "explicit", "[newsletter]\ntimezone = 'Asia/Tokyo'\n")
    assert load_settings().timezone == "Europe/Paris"
    monkeypatch.setenv("NEWSLETTER_CONFIG", str(other))
    assert load_settings().timezone == "America/New_York"
    assert load_settings(explicit).timezone == "Asia/Tokyo"


# ---- paths ---------------------------------------------------------------------------------------------------


def test_relative_paths_are_relative_to_the_config_file(tmp_path, monkeypatch):
    conf = tmp_path / "conf"
    path = write(
        conf,
        """
        [newsletter]
        database_url = "sqlite:///var/n.db"
        archive_dir = "var/raw"

        [[sources]]
        name = "local"
        kind = "markdown"
        path = "posts"

        [web]
        archive_dir = "site/archive"

        [delivery]
        outbox = "mail"
        """,
    )
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    settings = load_settings(path)
    assert settings.database_url == f"sqlite:///{conf}/var/n.db"
    assert settings.archive_dir == str(conf / "var" / "raw")
    assert settings.source("local").path == str(conf / "posts")
    assert settings.web.archive_dir == str(conf / "site" / "archive")
    assert settings.delivery.outbox == str(conf / "mail")
    defaults = load_settings(write(conf, "", "empty.toml"))  # defaults are relative to the file too
    assert defaults.web.archive_dir == str(conf / "var" / "archive")
    assert defaults.delivery.outbox == str(conf / "var" / "outbox")


def test_absolute_paths_and_server_urls_are_kept(tmp_path):
    path = write(
        tmp_path / "conf",
        f"""
        [newsletter]
        database_url = "postgresql://app@db/newsletter"
        archive_dir = "{tmp_path}/raw"
        """,
    )
    settings = load_settings(path)
    assert settings.database_url == "postgresql://app@db/newsletter"
    assert settings.archive_dir == str(tmp_path / "raw")


# ---- the bundled sample only without a config file (#9.5) -------------------------------------------------


def test_sample_sources_only_when_there_is_no_config_file(tmp_path):
    settings = load_settings()  # tmp_path holds no newsletter.toml and NEWSLETTER_CONFIG is unset
    assert settings.config_path is None and settings.sources == DEFAULT_SOURCES
    path = write(tmp_path, '[newsletter]\ndatabase_url = "sqlite:///var/n.db"\n')
    assert load_settings(path).sources == ()


def test_ingest_without_sources_says_so(tmp_path):
    path = write(tmp_path, '[newsletter]\ndatabase_url = "sqlite:///var/n.db"\n')
    with pytest.raises(ConfigError, match=r"^no sources configured in .*newsletter\.toml: add \[\[sources\]\]$"):
        ingest(load_settings(path))
    assert not (tmp_path / "var" / "n.db").exists()  # nothing was stored, not even an empty store


def test_cli_ingest_without_sources_exits_non_zero_with_one_line(tmp_path):
    path = write(tmp_path, '[newsletter]\ndatabase_url = "sqlite:///var/n.db"\n')
    proc = run_cli("ingest", env={"NEWSLETTER_CONFIG": str(path)}, cwd=tmp_path)
    assert proc.returncode != 0
    assert proc.stderr == f"config error: no sources configured in {path}: add [[sources]]\n"


def test_the_repository_config_lists_the_sample_explicitly():
    settings = load_settings(ROOT / "newsletter.toml")
    assert {s.name for s in settings.sources if s.enabled} == {s.name for s in DEFAULT_SOURCES}
    assert {s.path for s in settings.sources if s.path} == {s.path for s in DEFAULT_SOURCES}


# ---- secrets (#9.3) ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "old", "problem"),
    [
        (None, None, "NEWSLETTER_TOKEN_SECRET is not set"),
        (" \t ", None, "NEWSLETTER_TOKEN_SECRET is not set"),
        ("s3cret", None, "NEWSLETTER_TOKEN_SECRET holds a secret of 6 bytes, fewer than 32"),
        ("x" * 31, None, "NEWSLETTER_TOKEN_SECRET holds a secret of 31 bytes"),
        (TEST_TOKEN_SECRET, "old", "NEWSLETTER_TOKEN_SECRET_OLD holds a secret of 3 bytes"),
    ],
)
def test_weak_secrets_are_refused_for_real_use(monkeypatch, secret, old, problem):
    for var, value in zip(SECRET_VARS, (secret, old), strict=True):
        if value is not None:
            monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError, match="refusing to send mail over SMTP") as info:
        tokens.require_secret("send mail over SMTP")
    assert str(info.value).startswith(problem) and "\n" not in str(info.value)


def test_a_long_enough_secret_is_accepted(monkeypatch):
    monkeypatch.setenv("NEWSLETTER_TOKEN_SECRET", "é" * 16)  # 32 bytes in UTF-8
    monkeypatch.setenv("NEWSLETTER_TOKEN_SECRET_OLD", f" {TEST_TOKEN_SECRET} ,")
    tokens.require_secret("serve on 0.0.0.0")


def test_a_blank_secret_signs_with_the_dev_key_not_an_empty_one(monkeypatch):
    monkeypatch.setenv("NEWSLETTER_TOKEN_SECRET", "   ")
    assert tokens.secrets() == [tokens.DEV_SECRET.encode()]


def test_smtp_refuses_the_dev_key_and_the_outbox_warns(tmp_path, monkeypatch, caplog):
    settings = load_settings(write(tmp_path, ""))
    monkeypatch.setenv("NEWSLETTER_SMTP_URL", "smtp://127.0.0.1:9?tls=none")
    with pytest.raises(ConfigError, match=r"^NEWSLETTER_TOKEN_SECRET is not set .*refusing to send mail over SMTP"):
        transport_factory(settings)
    monkeypatch.setenv("NEWSLETTER_TOKEN_SECRET", TEST_TOKEN_SECRET)
    transport_factory(settings)  # builds the factory; nothing connects yet
    monkeypatch.delenv("NEWSLETTER_SMTP_URL")
    monkeypatch.delenv("NEWSLETTER_TOKEN_SECRET")
    with caplog.at_level(logging.WARNING, logger="newsletter.deliver.tokens"):
        transport = transport_factory(settings)()
    assert isinstance(transport, OutboxTransport)
    assert any("development key" in r.getMessage() and "forge" in r.getMessage() for r in caplog.records)


def test_cli_send_over_smtp_without_a_secret_is_refused(tmp_path):
    path = write(
        tmp_path,
        f"""
        [newsletter]
        database_url = "sqlite:///var/n.db"
        [[sources]]
        name = "sample-feed"
        kind = "feed"
        path = "{ROOT}/newsletter/sample/feed.xml"
        """,
    )
    env = {"NEWSLETTER_CONFIG": str(path)}
    assert run_cli("ingest", env=env, cwd=tmp_path).returncode == 0
    assert run_cli("subscribers", "add", "ada@example.org", env=env, cwd=tmp_path).returncode == 0
    proc = run_cli("send", env={**env, "NEWSLETTER_SMTP_URL": "smtp://127.0.0.1:9?tls=none"}, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("config error: NEWSLETTER_TOKEN_SECRET is not set")
    assert proc.stderr.count("\n") == 1


# ---- sender identity (#9.2) ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("from", "not an address", "not one email address"),
        ("from", "Paper Digest digest@example.org", "not a valid email address"),
        ("from", "a@example.org, b@example.org", "not one email address"),
        ("from", "Digest <digest@example.org>\r\nBcc: victim@example.org", "contains a line break"),
        ("from", "Digest <digest@example.org>\nX-Evil: 1", "contains a line break"),
        ("reply_to", "lab at example.org", "not one email address"),
        ("reply_to", "Lab <lab@example.org>\rBcc: x@example.org", "contains a line break"),
        ("list_id", "digest", "not a List-Id"),
        ("list_id", "Digest <digest.example.org>\r\nBcc: x@example.org", "not a List-Id"),
    ],
)
def test_sender_addresses_are_validated_at_startup(tmp_path, key, value, problem):
    escaped = value.replace("\r", "\\r").replace("\n", "\\n")
    path = write(tmp_path, f'[delivery]\n{key} = "{escaped}"\n')
    assert error_of(path).startswith(f"{path}: [delivery] {key}: {problem}")


def test_valid_sender_addresses_are_kept_as_written(tmp_path):
    path = write(
        tmp_path,
        """
        [delivery]
        from = "论文速递 <news@lab.example.edu>"
        reply_to = "\\"Lab, PI\\" <pi@lab.example.edu>"
        list_id = "Paper Digest <digest.lab.example.edu>"
        """,
    )
    delivery = load_settings(path).delivery
    assert delivery.from_addr == "论文速递 <news@lab.example.edu>"
    assert delivery.reply_to == '"Lab, PI" <pi@lab.example.edu>'
    assert delivery.list_id == "Paper Digest <digest.lab.example.edu>"
    assert MessageSettings.from_settings(load_settings(path)).from_email == "news@lab.example.edu"


# ---- typed sections ------------------------------------------------------------------------------------------


def test_sections_are_typed(tmp_path):
    path = write(
        tmp_path,
        """
        [issue]
        lookback_days = 3
        topic_order = ["NeRF"]
        empty_ok = false
        [render]
        html_budget_bytes = 80000
        [delivery]
        batch_size = 8
        rate_limit_per_s = 2
        [delivery.smtp]
        host = "relay.example.org"
        tls = "starttls"
        """,
    )
    settings = load_settings(path)
    assert settings.issue.lookback_days == 3 and settings.issue.topic_order == ("NeRF",)
    assert settings.issue.empty_ok is False
    assert settings.render.html_budget_bytes == 80_000
    assert settings.delivery.batch_size == 8 and settings.delivery.rate_limit_per_s == 2.0
    assert settings.delivery.smtp.tls is TlsMode.STARTTLS and settings.delivery.smtp.port is None


def test_updated_validates_like_the_file():
    delivery = Settings().delivery
    assert delivery.updated(batch_size=8).batch_size == 8 and delivery.batch_size == 50
    with pytest.raises(ValidationError):
        delivery.updated(batch_size="eight")
    with pytest.raises(ValidationError):
        delivery.updated(batchsize=8)


def test_defaults_agree_with_the_stage_defaults():
    """RenderOptions and MessageSettings keep their own defaults for direct use: they must match the config's."""
    render = Settings().render.model_dump()
    stage = RenderOptions()
    assert {f.name: getattr(stage, f.name) for f in fields(RenderOptions) if f.name in render} == render
    assert MessageSettings.from_settings(Settings()) == MessageSettings()
    empty = Settings()
    assert empty.database_url == "sqlite:///var/newsletter.db" and empty.timezone == "Asia/Shanghai"


def test_enum_values_are_the_stored_strings():
    assert [str(x) for x in Language] == ["en", "zh", "bilingual"]
    assert [str(x) for x in SourceKind] == ["feed", "markdown", "text"]
    assert [str(x) for x in SubscriberStatus] == ["active", "unsubscribed", "bounced", "complained", "pending"]
    assert [str(x) for x in DeliveryStatus] == ["pending", "sending", "sent", "failed", "bounced", "skipped"]
    assert [str(x) for x in TlsMode] == ["none", "starttls", "ssl"]
