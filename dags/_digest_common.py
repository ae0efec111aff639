"""What the DAG files share: settings, admin alerts, the ingest task's body, the Airflow SMTP connection, the
weekly schedule.

Not a DAG file: `.airflowignore` keeps the DAG processor from parsing it, and the DAG files import it as a
top-level module (Airflow puts the DAG bundle's folder on sys.path, both when parsing and when running tasks).
Like the DAG files it imports `newsletter` inside functions only: parsing must stay cheap.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from airflow.sdk import Param, get_current_context

from newsletter_airflow.assets import announce_arrivals

log = logging.getLogger("newsletter.dags")

# The repository's config, used when NEWSLETTER_CONFIG is unset (a checkout with dags/ beside newsletter.toml).
DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "newsletter.toml"
SMTP_CONN_ID = "smtp_default"


def settings():
    """The newsletter settings: $NEWSLETTER_CONFIG, else the checkout's newsletter.toml, else the defaults."""
    from newsletter.config import load_settings

    explicit = os.environ.get("NEWSLETTER_CONFIG")
    return load_settings(explicit or (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None))


def label(text: str) -> None:
    """The mapped instance's name in the UI (map_index_template "{{ label }}")."""
    get_current_context()["label"] = text  # type: ignore[index]


def issue_day(context: dict[str, Any], timezone: str) -> date:
    """The issue day of a run: the local date of its logical date (the data interval's start for scheduled and
    backfill runs, the date asked for in a manual run); a manual run without one (Airflow 3 gives it no data
    interval either) covers the local day before the one it was triggered on."""
    from zoneinfo import ZoneInfo

    when = context.get("logical_date") or context.get("data_interval_start")
    if when is None:
        when = context["dag_run"].run_after.astimezone(ZoneInfo(timezone)) - timedelta(days=1)
    return when.astimezone(ZoneInfo(timezone)).date()


def replay_window(day: date, cfg, last: date | None = None) -> tuple[datetime, datetime]:
    """Payloads that can hold posts of `day` (or of the days `day`..`last`, a week): fetched from `lookback_days`
    before it to 4 days after (the feed keeps about 3 days of posts)."""
    lookback = cfg.issue.lookback_days
    start = datetime.combine(day - timedelta(days=lookback), datetime.min.time(), tzinfo=UTC)
    return start, datetime.combine((last or day) + timedelta(days=4), datetime.min.time(), tzinfo=UTC)


def issue_week(context: dict[str, Any], timezone: str) -> date:
    """The Monday of a weekly run's week: the Monday-Sunday week (local days) containing the local date of the
    logical date, which is the send-day tick at or after the week's start (the data interval's start for
    scheduled and backfill runs). A manual run without a logical date covers the last complete week before the
    day it was triggered on."""
    from zoneinfo import ZoneInfo

    when = context.get("logical_date") or context.get("data_interval_start")
    if when is None:
        when = context["dag_run"].run_after.astimezone(ZoneInfo(timezone)) - timedelta(days=7)
    day = when.astimezone(ZoneInfo(timezone)).date()
    return day - timedelta(days=day.weekday())


WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
WEEKLY_DEFAULT = ("monday", "08:00")


def weekly_cron() -> str:
    """The weekly DAG's cron: NEWSLETTER_WEEKLY_CRON, else `[issue] weekly_send_day` and `weekly_send_time` of the
    config file (the same file the tasks read), else Monday 08:00. Read with tomllib at parse time: `newsletter`
    (pydantic, SQLAlchemy) must not be imported by the DAG processor; the tasks validate the file fully."""
    import tomllib

    explicit = os.environ.get("NEWSLETTER_WEEKLY_CRON")
    if explicit:
        return explicit
    path = os.environ.get("NEWSLETTER_CONFIG") or (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None)
    issue = {}
    if path:
        with open(path, "rb") as handle:
            issue = tomllib.load(handle).get("issue", {})
    day = str(issue.get("weekly_send_day", WEEKLY_DEFAULT[0])).strip().lower()
    at = issue.get("weekly_send_time", WEEKLY_DEFAULT[1])
    hour, minute = (at.hour, at.minute) if hasattr(at, "hour") else _hh_mm(str(at))
    if day not in WEEKDAYS:
        raise ValueError(f"{path}: [issue] weekly_send_day must be one of {', '.join(WEEKDAYS)}, got {day!r}")
    return f"{minute} {hour} * * {(WEEKDAYS.index(day) + 1) % 7}"  # cron: 0 = Sunday, 1 = Monday


def _hh_mm(text: str) -> tuple[int, int]:
    hour, _, minute = text.partition(":")
    if not (hour.isdigit() and minute[:2].isdigit() and int(hour) < 24 and int(minute[:2]) < 60):
        raise ValueError(f"[issue] weekly_send_time must be HH:MM, got {text!r}")
    return int(hour), int(minute[:2])


def send_params(what: str) -> dict[str, Param]:
    """The run parameters both newsletter DAGs take (trigger form): dry run, a test copy, or an explicit resend of
    `what` ("this issue", "this week's issue")."""
    return {
        "dry_run": Param(False, type="boolean", description="Render and write the mails to the outbox, not SMTP."),
        "test_recipient": Param(
            None,
            type=["null", "string"],
            description="Send one copy to this address only, outside the ledger (a proof). Empty: real run.",
        ),
        "test_lang": Param("bilingual", enum=["en", "zh", "bilingual"], description="Language of the test copy."),
        "topics": Param(
            None,
            type=["null", "array"],
            items={"type": "string"},
            description="Topic keys of the test copy (one per line); empty: every topic.",
        ),
        "resend": Param(
            False,
            type="boolean",
            description=f"Send {what} AGAIN to subscribers who already got it (explicit, logged).",
        ),
    }


INGEST_KEYS = (
    "source", "status", "posts_new", "papers_new", "papers_seen", "papers_updated", "acceptances", "warnings",
)  # fmt: skip


def ingest_source(source: str, weekly: bool = False) -> dict:
    """The `ingest` task of the DAGs: fetch (conditional GET) or read one source, archive and store it. A
    backfill replays the raw archive instead of the network: the feed has long moved on, and the result must not
    depend on when the backfill runs (`weekly`: the window of the run's whole week). Raises when the source failed
    as a whole (a bad entry is only a warning)."""
    from newsletter.pipeline.steps import ingest_step, replay_step

    label(source)
    context = get_current_context()
    cfg = settings()
    if "backfill" in str(getattr(context["dag_run"], "run_type", "")):
        if weekly:
            monday = issue_week(context, cfg.timezone)
            since, until = replay_window(monday, cfg, monday + timedelta(days=6))
        else:
            since, until = replay_window(issue_day(context, cfg.timezone), cfg)
        log.info("backfill: replaying %s payloads archived %s .. %s (no network)", source, since, until)
        out = replay_step(cfg, source, since, until)
    else:
        out = ingest_step(cfg, source)
    log.info(
        "source %s: %s; papers new %s / duplicate %s / updated %s; acceptances %s; warnings %s",
        source, out["status"], out["papers_new"], out["papers_seen"], out["papers_updated"],
        out["acceptances"], out["warnings"],
    )  # fmt: skip
    for line in out.get("warning_lines", []):
        log.warning("%s", line)
    if out["status"] == "failed":
        raise RuntimeError(f"source {source} failed: {out.get('error')}")
    return {k: out.get(k) for k in INGEST_KEYS}


def record_arrivals(ingested: list[dict]) -> list[dict]:
    """The `record_arrivals` task of both DAGs: one paper-store asset event per source whose ingest changed the
    store (with its counts), none when nothing arrived. One task per run emits them, not each mapped `ingest`:
    Airflow 3.3 links an alias to its asset on the first event through it, and two tasks doing that at once
    collide on a unique key (asset_alias_asset_pkey), which fails the second task although its ingest is done."""
    events = get_current_context()["outlet_events"]
    extras = [extra for report in ingested if (extra := announce_arrivals(events, report))]
    log.info("paper-store events: %s", ", ".join(f"{e['source']} +{e['papers_new']}" for e in extras) or "none")
    return extras


# ---- the Airflow SMTP connection ------------------------------------------------------------------------------


def use_airflow_smtp(cfg) -> None:
    """Subscriber mail through the Airflow connection `smtp_default` when the config names no SMTP server.

    The library never imports Airflow: it reads NEWSLETTER_SMTP_URL, else `[delivery.smtp]`. When SMTP is the
    transport and neither is set, this exports the connection as NEWSLETTER_SMTP_URL for this task process.
    Without the connection nothing changes, and the library's own "no SMTP settings" error names the fix."""
    from newsletter.config import ConfigError
    from newsletter.deliver.transport import smtp_config, transport_kind

    if os.environ.get("NEWSLETTER_SMTP_URL") or transport_kind(cfg) != "smtp":
        return
    try:
        smtp_config(cfg)
        return  # [delivery.smtp] is set: it wins over the connection
    except ConfigError:
        pass
    url = smtp_url_from_airflow()
    if url:
        os.environ["NEWSLETTER_SMTP_URL"] = url


def smtp_url_from_airflow(conn_id: str = SMTP_CONN_ID) -> str | None:
    """The connection as an SMTP URL, with the SMTP provider's meaning of its extras: SSL unless `disable_ssl`,
    else STARTTLS unless `disable_tls`; `timeout`. None when the connection does not exist. We read it ourselves:
    SmtpHook would add its own retries (a duplicate risk)."""
    from airflow.sdk import BaseHook

    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception as exc:  # Airflow raises its own not-found type, which differs between versions
        log.info("no Airflow connection %s: %s", conn_id, exc)
        return None
    extra = conn.extra_dejson or {}
    if not extra.get("disable_ssl", False):
        tls = "ssl"
    elif not extra.get("disable_tls", False):
        tls = "starttls"
    else:
        tls = "none"
    auth = ""
    if conn.login:
        auth = quote(conn.login, safe="") + (f":{quote(conn.password, safe='')}" if conn.password else "") + "@"
    port = f":{conn.port}" if conn.port else ""
    query = urlencode({"tls": tls, "timeout": extra.get("timeout", 30)})
    return f"smtp://{auth}{conn.host or 'localhost'}{port}?{query}"


# ---- admin alerts ---------------------------------------------------------------------------------------------


def admins() -> list[str]:
    """NEWSLETTER_ADMIN_EMAILS, comma- or semicolon-separated."""
    raw = os.environ.get("NEWSLETTER_ADMIN_EMAILS", "").replace(";", ",")
    return [a.strip() for a in raw.split(",") if a.strip()]


TASK_FAILED_SUBJECT = "[paper-digest] {{ ti.dag_id }}.{{ ti.task_id }} failed ({{ run_id }})"
TASK_FAILED_HTML = (
    "<p>Task <b>{{ ti.dag_id }}.{{ ti.task_id }}</b> failed for good in run <code>{{ run_id }}</code> "
    "(try {{ ti.try_number }}).</p><pre>{{ exception | e }}</pre>"
    "<p>Log: <a href='{{ ti.log_url }}'>{{ ti.log_url }}</a></p>"
)


def alert_admins(context: dict[str, Any], subject: str = TASK_FAILED_SUBJECT, html: str = TASK_FAILED_HTML) -> None:
    """on_failure_callback: email the admins through the SMTP provider's notifier (connection `smtp_default`).
    Never raises: a broken alert path must not hide the original failure, so problems are logged instead. An
    exception with `alert = False` was already reported: no email."""
    exc = context.get("exception")
    if getattr(exc, "alert", True) is False:
        log.info("alert suppressed: already reported (%s)", exc)
        return
    to = admins()
    if not to:
        log.warning("NEWSLETTER_ADMIN_EMAILS is unset: no alert email for this failure")
        return
    try:
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        sender = os.environ.get("NEWSLETTER_ALERT_FROM", "Paper Digest alerts <alerts@localhost>")
        SmtpNotifier(to=to, from_email=sender, subject=subject, html_content=html)(context)
        log.info("alert email sent to %s", ", ".join(to))
    except Exception:  # ImportError (no SMTP provider) included: log, never mask the failure itself
        log.exception("could not send the alert email to %s", ", ".join(to))


def alert(subject: str, html: str) -> Callable[[dict[str, Any]], None]:
    """An on_failure_callback like `alert_admins`, with its own subject and body templates."""

    def callback(context: dict[str, Any]) -> None:
        alert_admins(context, subject, html)

    return callback
