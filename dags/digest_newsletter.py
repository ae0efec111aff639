"""
# digest_newsletter

One newsletter issue per local day, sent to every active subscriber exactly once.

**Schedule**: `0 8 * * *` in Asia/Shanghai by default (env `NEWSLETTER_DAG_CRON`, `NEWSLETTER_DAG_TZ`), as a data
interval timetable (`CronDataIntervalTimetable`): the **logical date is the issue day**. The run of issue day D has
the data interval D 08:00 -> D+1 08:00 and starts at its end, the morning after (upstream posts D's papers
during D). The UI shows D as the run's logical date (08:00 Asia/Shanghai is 00:00 UTC); the run id names the run
time, as Airflow does for every timetable (`scheduled__<D+1>T00:00:00+00:00`).
The issue day is the local date (in the newsletter's timezone) of the logical date.

Why this timetable: with `CronTriggerTimetable` the logical date is the run time, the morning after, so every
date an operator typed was one day off its issue. A custom timetable could make the interval the local day
itself, but needs an Airflow plugin for the scheduler to deserialize it; the built-in data interval timetable
does the job. The CLI reads `--from-date 2024-12-05` as 00:00 UTC, which is exactly the 08:00 Asia/Shanghai
tick; with another `NEWSLETTER_DAG_TZ` or hour, give the dates as the local ticks (`2024-12-05T08:00:00-05:00`).

**Unpausing** starts at most one run, at once, whatever the time of day: the latest issue day whose morning-after
has passed (catchup=False keeps the latest missed interval), unless that run exists already. Its mails go only to
whoever has not had that issue (the ledger). Older missed days are explicit backfills. That issue looks back 7
days (`lookback_days`) and features every paper of those days not featured yet, so an older day sent after it no
longer has them (a paper is new only once): to send an older day first, trigger it (logical date D, `run_after`
the morning after) while the DAG is still paused; on unpausing, queued runs start oldest-due first.

**Manual runs**: without a logical date, the local day before the one it was triggered on; with a logical date
L, the local date of L (pass D 00:00 UTC or D 00:00 local: both are day D in Asia/Shanghai).

**Tasks**: `enabled_sources` -> `ingest` (one mapped instance per enabled source) -> `build_issue` ->
`translate` (English takeaways, `[translate]`; never fails the run) -> `render_variants` -> `test_send` |
`prepare_ledger` -> `plan_senders` -> `send` (one mapped instance per sender slot) -> `report`; `freshness`
checks the store after ingestion and alerts; `record_arrivals` turns what the ingests brought into paper-store
asset events; `purge_signups` (maintenance, every run) deletes web sign-ups left unconfirmed for
`[signup] purge_after_days`. Every task calls one step of `newsletter.pipeline.steps` and passes ids and counts
on (XCom never carries content).

**Params** (manual runs): `dry_run` (write the mails to the outbox instead of SMTP; the ledger is untouched),
`test_recipient` (one copy to this address, outside the ledger; nobody else gets anything), `test_lang` and
`topics` (the variant of the test copy), `resend` (explicit: sent rows go back to pending and are sent again;
logged).

**Backfill**: `airflow backfill create --dag-id digest_newsletter --from-date D1 --to-date D2 --max-active-runs 1`
(or the UI's backfill form with the same dates) sends the issues of days D1..D2 in date order; a day whose morning
after is still to come is left out. Without `--max-active-runs 1` a backfill runs up to 10 days at once. A backfill
reads the raw archive, not the network. The ledger makes re-runs safe: nobody gets the same issue twice (also with
`--reprocess-behavior completed`, which re-runs days already sent), and no paper is featured as new twice.

**Freshness** is an alert, not a verdict on history: `freshness` never fails a run. On a scheduled run a stale
upstream (a weekday with no new papers, a source failing twice in a row) emails the admins; backfills and manual
runs only log it.

**The Paper Digest tab** (plugin `newsletter_airflow`, also in the navigation): on this DAG the recent issues,
deliveries with the last errors, sources and subscribers; on a run, that run's issue. README "The Paper Digest
view in Airflow".

**Failures**: ingest and send retry with exponential backoff; a task that fails for good emails the admins
in `NEWSLETTER_ADMIN_EMAILS` (Airflow connection `smtp_default`, which also carries subscriber mail when the
config names no SMTP server). Operator guide: README "Operate".
"""

# Nothing heavy is imported at parse time: the scheduler and the DAG processor parse this file every few
# seconds, so `newsletter` (SQLAlchemy, feedparser, jinja2, premailer) is imported inside the tasks only.

from __future__ import annotations

import logging
import os
import socket
from datetime import date, timedelta

import _digest_common as common
from airflow.sdk import CronDataIntervalTimetable, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowSkipException

from newsletter_airflow.assets import PAPER_STORE, PAPER_STORE_ARRIVALS

log = logging.getLogger("newsletter.dags.digest")

# Read at parse time: environment lookups only, so parsing stays cheap.
CRON = os.environ.get("NEWSLETTER_DAG_CRON", "0 8 * * *")
TIMEZONE = os.environ.get("NEWSLETTER_DAG_TZ", "Asia/Shanghai")


def _log_ingest_totals(results: list[dict], enabled: int) -> None:
    """One line for the whole ingestion; a source that failed for good pushed no result."""
    statuses = [r["status"] for r in results]
    log.info(
        "sources: %s fetched, %s not modified, %s failed; papers new %s / duplicate %s; acceptances %s",
        statuses.count("ok"), statuses.count("not modified"), enabled - len(results),
        sum(r["papers_new"] for r in results), sum(r["papers_seen"] for r in results),
        sum(r["acceptances"] for r in results),
    )  # fmt: skip


def _send_counts(out: dict) -> dict:
    """sent / failed / bounced / retried / recovered out of the sender's report (4xx deferred or given up count as
    failed, a dropped connection's requeued message as retried, a crashed sender's requeued claims as recovered)."""
    return {
        "sent": out.get("sent", 0),
        "failed": out.get("deferred", 0) + out.get("gave_up", 0),
        "bounced": out.get("bounced", 0),
        "retried": out.get("requeued", 0),
        "recovered": out.get("recovered", 0),
    }


# Transient failures (network, SMTP relay, a locked database) are retried with exponential backoff:
# about 2, 4, 8 minutes (Airflow adds up to 100% jitter), never more than an hour. Airflow 3.3's
# retry_exponential_backoff is a multiplier: True would mean 1.0, i.e. no backoff at all.
TRANSIENT = {
    "retries": int(os.environ.get("NEWSLETTER_DAG_RETRIES", "3")),
    "retry_delay": timedelta(minutes=2),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(hours=1),
}


# Mapped tasks do not take their docstring as doc_md: it is given explicitly.
INGEST_DOC = """Fetch (conditional GET) or read one source, archive and store it. Raises when the source failed as a
whole, so Airflow retries it with backoff; a bad entry or paper is only a warning in the log."""
SEND_DOC = """Send one sender slot's share of the ledger. Each row is marked sent right after the server's 250, so a
retry never sends a message twice. Raises when sending stopped early (circuit breaker, relay down), so Airflow
retries later with backoff. With `dry_run` every pending mail is written to the outbox instead, and the ledger
is left untouched (a real run afterwards still sends everything)."""


# ---- the DAG --------------------------------------------------------------------------------------------


@dag(
    dag_id="digest_newsletter",
    # Data intervals, so the logical date (interval start) is the issue day and backfill dates are issue days; see
    # DAG_DOC. A custom timetable would let the interval be the local day itself, but needs a plugin to
    # deserialize in the scheduler; 08:00 Asia/Shanghai is 00:00 UTC, so a date typed in the CLI lands on the tick.
    # No start_date, catchup=False: unpausing runs only the latest due issue (DAG_DOC "Unpausing").
    schedule=CronDataIntervalTimetable(CRON, timezone=TIMEZONE),
    catchup=False,
    max_active_runs=1,  # one sender at a time: runs never race for the same ledger
    doc_md=__doc__,
    tags=["newsletter"],
    default_args={"owner": "newsletter", "retries": 0, "on_failure_callback": common.alert_admins},
    params=common.send_params("this issue"),
)
def digest_newsletter():
    @task
    def enabled_sources() -> list[str]:
        """The names of the enabled sources in the config: one `ingest` instance each."""
        names = [s.name for s in common.settings().sources if s.enabled]
        log.info("enabled sources: %s", ", ".join(names) or "none")
        return names

    # Sources are ingested in parallel: the store retries a unique-key race with a concurrent ingest.
    @task(
        map_index_template="{{ label }}",
        execution_timeout=timedelta(minutes=20),
        doc_md=INGEST_DOC,
        **TRANSIENT,
    )
    def ingest(source: str) -> dict:
        return common.ingest_source(source)

    # The outlet: a paper-store asset event per source that brought papers (newsletter_airflow.assets).
    @task(trigger_rule="all_done", outlets=[PAPER_STORE_ARRIVALS])
    def record_arrivals(ingested: list[dict]) -> list[dict]:
        """Record what the ingests brought as paper-store asset events (one per source with new or updated papers
        or acceptances, with the counts; none when nothing arrived): the Assets view shows when papers last
        arrived and which runs read them."""
        return common.record_arrivals(list(ingested))

    @task(trigger_rule="all_done")
    def freshness(ingested: list[dict]) -> dict:
        """An alert, never a verdict: the issue day was a weekday with zero new papers, or a source has failed
        two runs in a row. On a scheduled run the admins get one email per outage; backfills and manual runs only log
        (history is what it is). Never fails: the run's colour says whether the newsletter went out."""
        from html import escape

        from newsletter.pipeline.steps import freshness_step

        settings = common.settings()
        context = get_current_context()
        day = common.issue_day(context, settings.timezone)
        failures = int(os.environ.get("NEWSLETTER_ALERT_AFTER_FAILURES", "2"))
        out = freshness_step(settings, day, max_failures=failures, track=True)  # track: notify once per outage
        log.info("freshness %s: %s new papers, failing sources %s", day, out["new_papers"], out["failing_sources"])
        fetched = {r["source"] for r in ingested}
        failed_now = [s.name for s in settings.sources if s.enabled and s.name not in fetched]  # emailed already
        scheduled = "scheduled" in str(getattr(context["dag_run"], "run_type", ""))
        for line in [*out["alerts"], *(f"source {n} failed in this run" for n in failed_now)]:
            log.warning("freshness alert: %s", line)
        if out["alerts"] and out["notify"] and scheduled:
            body = "".join(f"<p>{escape(a)}</p>" for a in out["alerts"])
            common.alert_admins(context, f"[paper-digest] upstream stale for {day}", body)
        return {
            **{k: out[k] for k in ("day", "new_papers", "failing_sources", "alerts")},
            "emailed": bool(out["alerts"] and out["notify"]) and scheduled,
        }

    # all_done: a failed source must not stop the issue (the others' papers go out). One build at a time: two
    # issues built at once could both feature the same paper as new.
    @task(trigger_rule="all_done", max_active_tis_per_dag=1, inlets=[PAPER_STORE])
    def build_issue(ingested: list[dict]) -> dict:
        """Build (or rebuild identically) the issue of the run's day. Skips the rest when there is nothing new."""
        from newsletter.pipeline.steps import build_step, period_for

        settings = common.settings()
        _log_ingest_totals(list(ingested), len([s for s in settings.sources if s.enabled]))
        day = common.issue_day(get_current_context(), settings.timezone)
        issue, info = build_step(settings, period_for(settings, day))
        if issue is None:
            raise AirflowSkipException(f"no issue for {day}: no new papers or acceptances (nothing to send)")
        log.info(
            "issue %s for %s: %s papers in %s topics, %s acceptance highlights",
            info["issue_id"], info["issue_date"], info["papers"], info["topics"], info["highlights"],
        )  # fmt: skip
        return {k: info[k] for k in ("issue_id", "issue_date", "papers", "highlights", "topics")}

    @task
    def translate(built: dict) -> dict:
        """English for the Chinese summaries and takeaways of the issue's papers ([translate]; off by default),
        each paper once (cached). Never fails the run: a paper whose translation failed stays Chinese-only (a
        warning naming it, counted in the XCom), and so does every paper if this task itself goes wrong."""
        from newsletter.pipeline.steps import translate_step

        try:
            out = translate_step(common.settings(), built["issue_id"])
        except Exception as exc:  # a send must never wait on, or fail for, a translation
            log.warning("translation skipped for issue %s: %s: %s", built["issue_id"], type(exc).__name__, exc)
            return {"issue_id": built["issue_id"], "error": f"{type(exc).__name__}: {exc}"}
        if out.get("enabled"):
            log.info(
                "translate issue %s: %s papers, %s cached, %s translated, %s failed, %s skipped, %s requests",
                out["issue_id"], out["papers"], out["cached"], out["translated"], out["failed"], out["skipped"],
                out["requests"],
            )  # fmt: skip
        else:
            log.info("translation is off ([translate] enabled = false)")
        return {k: v for k, v in out.items() if k != "failures"} | {"failures": len(out.get("failures", []))}

    @task
    def render_variants(built: dict) -> dict:
        """Render each distinct (language, topics) variant once, store it, and write the web archive page."""
        from newsletter.pipeline.steps import build_step, period_for, render_step, subscriber_variants, write_archive

        settings = common.settings()
        day = date.fromisoformat(built["issue_date"])
        issue, _ = build_step(settings, period_for(settings, day))  # identical rebuild: the Issue, not its XCom
        if issue is None or issue.issue_id != built["issue_id"]:
            raise RuntimeError(f"the issue of {day} changed under the run (expected id {built['issue_id']})")
        out = render_step(settings, issue, subscriber_variants(settings))
        page = write_archive(settings, issue)
        log.info(
            "variants %s: %s rendered, %s reused, largest HTML %s bytes; archive page %s",
            out["variants"], out["rendered"], out["reused"], out["largest_html_bytes"], page,
        )  # fmt: skip
        return {"issue_id": issue.issue_id, **out}

    @task
    def test_send(built: dict) -> dict:
        """With `test_recipient`: one copy to that address, outside the ledger. Skipped otherwise."""
        from newsletter.pipeline.steps import send_test_copy

        params = get_current_context()["params"]
        address = params.get("test_recipient")
        if not address:
            raise AirflowSkipException("no test_recipient: this is a real run")
        day = date.fromisoformat(built["issue_date"])
        settings = common.settings()
        common.use_airflow_smtp(settings)
        out = send_test_copy(settings, day, address, params["test_lang"], params.get("topics"))
        log.info("test copy of %s to %s: %s", built["issue_date"], address, out)
        return out

    @task
    def prepare_ledger(built: dict) -> dict:
        """One pending delivery per subscriber who has something to read (existing rows untouched, so a re-run
        never queues anyone twice). With `resend`: sent rows go back to pending first (logged)."""
        from newsletter.pipeline.steps import prepare_step, resend_step

        context = get_current_context()
        params, issue_id = context["params"], built["issue_id"]
        if params.get("test_recipient"):
            raise AirflowSkipException("test run: only the test copy is sent")
        settings = common.settings()
        if params.get("resend"):
            reason = f"resend requested in run {context['run_id']} by {context['dag_run'].triggering_user_name}"
            log.warning("RESEND issue %s: %s -> %s", issue_id, reason, resend_step(settings, issue_id, reason))
        out = prepare_step(settings, issue_id)
        log.info("ledger for issue %s: %s", issue_id, out)
        return {"issue_id": issue_id, **out}

    @task
    def plan_senders(prepared: dict) -> list[int]:
        """The sender slots to map `send` over (0..N-1); none when nothing is pending."""
        from newsletter.pipeline.steps import plan_senders as plan

        slots = plan(common.settings(), prepared["issue_id"])
        log.info("issue %s: %s sender slot(s)", prepared["issue_id"], len(slots))
        return slots

    @task(map_index_template="{{ label }}", execution_timeout=timedelta(hours=2), doc_md=SEND_DOC, **TRANSIENT)
    def send(prepared: dict, slot: int) -> dict:
        from newsletter.pipeline.steps import send_step

        dry_run = bool(get_current_context()["params"].get("dry_run"))
        common.label(f"slot {slot}{' (dry run)' if dry_run else ''}")
        # Which machine sent: with CeleryExecutor the slots spread over the workers (scripts/e2e-celery reads this).
        log.info("sender slot %s on host %s pid %s", slot, socket.gethostname(), os.getpid())
        settings = common.settings()
        if not dry_run:
            common.use_airflow_smtp(settings)
        out = send_step(settings, prepared["issue_id"], slot, dry_run)
        if dry_run:
            log.info("slot %s, dry run: %s", slot, out)
            return {k: v for k, v in out.items() if isinstance(v, int | str | bool)}
        counts = _send_counts(out)
        log.info(
            "slot %s: sent %s, failed %s, bounced %s, retried %s, stale claims recovered %s", slot, *counts.values()
        )
        for error in out.get("errors", [])[-20:]:
            log.warning("%s", error)
        if out.get("stopped"):
            raise RuntimeError(f"sending stopped: {out['stopped']}")
        return counts

    @task(trigger_rule="none_failed_min_one_success")  # also when nothing was pending (no send instance)
    def report(prepared: dict) -> dict:
        """Counts by delivery status for the issue, and the failures with their reasons."""
        from newsletter.pipeline.steps import report_step

        out = report_step(common.settings(), prepared["issue_id"])
        counts = out.get("counts", {})
        log.info("issue %s delivery: %s", prepared["issue_id"], ", ".join(f"{k} {v}" for k, v in counts.items()))
        for failure in out.get("failures", [])[:50]:
            log.warning("not delivered: %s", failure)
        return {"issue_id": prepared["issue_id"], "counts": counts, "failures": len(out.get("failures", []))}

    @task(trigger_rule="all_done")
    def purge_signups() -> dict:
        """Maintenance, on every run (with or without an issue): web sign-ups never confirmed within `[signup]
        purge_after_days` of their last request are deleted, with old sign-up request rows (README "Sign-up";
        by hand: `newsletter subscribers purge-pending`)."""
        from newsletter.pipeline.admin import purge_pending

        out = purge_pending(common.settings())
        log.info("purged %s unconfirmed sign-ups, %s request rows", out["subscribers"], out["requests"])
        return out

    purge_signups()
    ingested = ingest.expand(source=enabled_sources())
    record_arrivals(ingested)
    freshness(ingested)
    built = build_issue(ingested)
    rendered = render_variants(built)
    translate(built) >> rendered
    rendered >> test_send(built)
    prepared = prepare_ledger(built)
    rendered >> prepared
    sent = send.partial(prepared=prepared).expand(slot=plan_senders(prepared))
    sent >> report(prepared)


digest_newsletter()
