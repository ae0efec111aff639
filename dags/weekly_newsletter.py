"""
# weekly_newsletter

One newsletter issue per Monday–Sunday week (local days in the newsletter's timezone), sent to every active
**weekly** subscriber exactly once. Daily subscribers are served by `digest_newsletter` and never get this issue;
weekly subscribers never get the daily one. A paper is featured as new once per frequency: the weekly issue
features every paper of its week even though the daily issues already had them.

**Schedule**: weekly on `[issue] weekly_send_day` at `weekly_send_time` (newsletter.toml; default Monday 08:00),
in `NEWSLETTER_DAG_TZ` (Asia/Shanghai), or the cron in `NEWSLETTER_WEEKLY_CRON`. A data interval timetable
(`CronDataIntervalTimetable`): the **logical date is the tick in the week being sent**, and the run starts a week
later, at the next tick. Default: the run of Monday 2024-12-02 08:00 has the logical date Monday 2024-11-25 08:00
and sends the week 2024-11-25 .. 2024-12-01. The week of a run is the Monday–Sunday week containing the local
date of its logical date, so with any send day the week sent is the last complete week before the run.

**Unpausing** starts at most one run: the latest week whose send morning has passed (catchup=False). Older weeks
are explicit backfills.

**Manual runs**: without a logical date, the last complete week before the day it was triggered on; with a
logical date L, the week containing the local date of L.

**Backfill by week**: `airflow backfill create --dag-id weekly_newsletter --from-date M1 --to-date S2
--max-active-runs 1` makes one run per send-day tick in [M1, S2]: give the Monday of the first week and the Sunday
of the last week, and every week in between gets its run, in order (each week holds exactly one tick of its own,
whatever the send day). A week whose send morning is still to come is left out. A backfill reads the raw archive
of the week's window, not the network. The ledger makes re-runs safe: nobody gets the same issue twice, and a
re-run rebuilds the same (frozen) issue.

**Tasks**: `enabled_sources` -> `ingest` (mapped per source) -> `build_issue` -> `render_variants` ->
`test_send` | `prepare_ledger` -> `plan_senders` -> `send` (mapped per sender slot) -> `report`, each one step
of `newsletter.pipeline.steps` (the same steps as the daily DAG, with the weekly period).

**Params** (manual runs): `dry_run`, `test_recipient`, `test_lang`, `topics`, `resend`, as in `digest_newsletter`.
"""

# Nothing heavy is imported at parse time (see digest_newsletter): `newsletter` only inside the tasks; the schedule
# is read from the config file with tomllib (_digest_common.weekly_cron).

from __future__ import annotations

import logging
import os
from datetime import date, timedelta

import _digest_common as common
from airflow.sdk import CronDataIntervalTimetable, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowSkipException

from newsletter_airflow.assets import PAPER_STORE

log = logging.getLogger("newsletter.dags.weekly")

CRON = common.weekly_cron()
TIMEZONE = os.environ.get("NEWSLETTER_DAG_TZ", "Asia/Shanghai")
WEEKLY = "weekly"

TRANSIENT = {
    "retries": int(os.environ.get("NEWSLETTER_DAG_RETRIES", "3")),
    "retry_delay": timedelta(minutes=2),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(hours=1),
}
INGEST_DOC = """Fetch (conditional GET) or read one source before the weekly build; a backfill replays the raw
archive of the week's window instead. Raises when the source failed as a whole."""
SEND_DOC = """Send one sender slot's share of the weekly issue's ledger (each row marked sent right after the
server's 250, so a retry never sends a message twice). With `dry_run` the mails go to the outbox instead."""


def _week(settings) -> date:
    """The Monday of this run's week."""
    return common.issue_week(get_current_context(), settings.timezone)


@dag(
    dag_id="weekly_newsletter",
    schedule=CronDataIntervalTimetable(CRON, timezone=TIMEZONE),
    catchup=False,
    max_active_runs=1,  # one sender at a time: runs never race for the same ledger
    doc_md=__doc__,
    tags=["newsletter"],
    default_args={"owner": "newsletter", "retries": 0, "on_failure_callback": common.alert_admins},
    params=common.send_params("this week's issue"),
)
def weekly_newsletter():
    @task
    def enabled_sources() -> list[str]:
        """The names of the enabled sources in the config: one `ingest` instance each."""
        return [s.name for s in common.settings().sources if s.enabled]

    @task(map_index_template="{{ label }}", execution_timeout=timedelta(minutes=20), doc_md=INGEST_DOC, **TRANSIENT)
    def ingest(source: str) -> dict:
        return common.ingest_source(source, weekly=True)

    # all_done: a failed source must not stop the issue. One build at a time (two weekly builds at once could
    # both feature a paper as new); the daily builds never interfere: each frequency has its own memory.
    @task(trigger_rule="all_done", max_active_tis_per_dag=1, inlets=[PAPER_STORE])
    def build_issue(ingested: list[dict]) -> dict:
        """Build (or rebuild identically) the weekly issue of the run's week. Skips the rest when it is empty."""
        from newsletter.pipeline.steps import build_step, period_for

        settings = common.settings()
        monday = _week(settings)
        issue, info = build_step(settings, period_for(settings, monday, WEEKLY))
        if issue is None:
            raise AirflowSkipException(f"no weekly issue for the week of {monday}: nothing new, no acceptance")
        log.info(
            "weekly issue %s for %s .. %s: %s papers in %s topics, %s acceptance highlights",
            info["issue_id"], info["period_first"], info["issue_date"], info["papers"], info["topics"],
            info["highlights"],
        )  # fmt: skip
        return {k: info[k] for k in ("issue_id", "issue_date", "period_first", "papers", "highlights", "topics")}

    @task
    def render_variants(built: dict) -> dict:
        """Render each (language, topics) variant of the weekly subscribers once; write the weekly archive page."""
        from newsletter.pipeline.steps import build_step, period_for, render_step, subscriber_variants, write_archive

        settings = common.settings()
        issue, _ = build_step(settings, period_for(settings, date.fromisoformat(built["issue_date"]), WEEKLY))
        if issue is None or issue.issue_id != built["issue_id"]:
            raise RuntimeError(f"the weekly issue of {built['issue_date']} changed under the run")
        out = render_step(settings, issue, subscriber_variants(settings, WEEKLY))
        page = write_archive(settings, issue)
        log.info("variants %s: %s rendered, %s reused, largest HTML %s bytes; archive page %s",
                 out["variants"], out["rendered"], out["reused"], out["largest_html_bytes"], page)  # fmt: skip
        return {"issue_id": issue.issue_id, **out}

    @task
    def test_send(built: dict) -> dict:
        """With `test_recipient`: one copy to that address, outside the ledger. Skipped otherwise."""
        from newsletter.pipeline.steps import send_test_copy

        params = get_current_context()["params"]
        if not params.get("test_recipient"):
            raise AirflowSkipException("no test_recipient: this is a real run")
        settings = common.settings()
        common.use_airflow_smtp(settings)
        day = date.fromisoformat(built["issue_date"])
        return send_test_copy(
            settings, day, params["test_recipient"], params["test_lang"], params.get("topics"), frequency=WEEKLY
        )

    @task
    def prepare_ledger(built: dict) -> dict:
        """One pending delivery per weekly subscriber with something to read (existing rows untouched)."""
        from newsletter.pipeline.steps import prepare_step, resend_step

        context = get_current_context()
        params, issue_id = context["params"], built["issue_id"]
        if params.get("test_recipient"):
            raise AirflowSkipException("test run: only the test copy is sent")
        settings = common.settings()
        if params.get("resend"):
            reason = f"resend requested in run {context['run_id']}"
            log.warning("RESEND weekly issue %s: %s", issue_id, resend_step(settings, issue_id, reason))
        out = prepare_step(settings, issue_id)
        log.info("ledger for weekly issue %s: %s", issue_id, out)
        return {"issue_id": issue_id, **out}

    @task
    def plan_senders(prepared: dict) -> list[int]:
        """The sender slots to map `send` over; none when nothing is pending."""
        from newsletter.pipeline.steps import plan_senders as plan

        return plan(common.settings(), prepared["issue_id"])

    @task(map_index_template="{{ label }}", execution_timeout=timedelta(hours=2), doc_md=SEND_DOC, **TRANSIENT)
    def send(prepared: dict, slot: int) -> dict:
        from newsletter.pipeline.steps import send_step

        dry_run = bool(get_current_context()["params"].get("dry_run"))
        common.label(f"slot {slot}{' (dry run)' if dry_run else ''}")
        settings = common.settings()
        if not dry_run:
            common.use_airflow_smtp(settings)
        out = send_step(settings, prepared["issue_id"], slot, dry_run)
        for error in out.get("errors", [])[-20:]:
            log.warning("%s", error)
        if out.get("stopped"):
            raise RuntimeError(f"sending stopped: {out['stopped']}")
        return {k: v for k, v in out.items() if isinstance(v, int | str | bool)}

    @task(trigger_rule="none_failed_min_one_success")
    def report(prepared: dict) -> dict:
        """Counts by delivery status for the weekly issue, and the failures with their reasons."""
        from newsletter.pipeline.steps import report_step

        out = report_step(common.settings(), prepared["issue_id"])
        log.info("weekly issue %s delivery: %s", prepared["issue_id"], out.get("counts"))
        return {"issue_id": prepared["issue_id"], "counts": out.get("counts", {}), "failures": len(out["failures"])}

    ingested = ingest.expand(source=enabled_sources())
    built = build_issue(ingested)
    rendered = render_variants(built)
    rendered >> test_send(built)
    prepared = prepare_ledger(built)
    rendered >> prepared
    sent = send.partial(prepared=prepared).expand(slot=plan_senders(prepared))
    sent >> report(prepared)


weekly_newsletter()
