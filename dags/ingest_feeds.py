"""
# ingest_feeds

Ingests every enabled source every hour (`30 * * * *` in Asia/Shanghai by default; env `NEWSLETTER_INGEST_CRON`,
`NEWSLETTER_DAG_TZ`), so no upstream post is ever missed.

Why a DAG of its own: the upstream feed keeps only its 20 newest posts (about 3 days). The daily
digest_newsletter run ingests too, but if it fails, is paused or is late for a few days, posts fall off the
feed before anyone reads them. An hourly conditional GET costs one HTTP 304 when nothing changed, and every
post is in the store within the hour it appeared, whatever happens to the daily run.

No retries here: the fetch layer already retries transient errors, and the next run is an hour away.
`check_sources` fails, and emails the admins (`NEWSLETTER_ADMIN_EMAILS`), when a source has failed
`NEWSLETTER_ALERT_AFTER_FAILURES` (default 2) fetches in a row; it emails once per outage, and the daily
digest_newsletter run reminds every day while it lasts. Zero new papers on a weekday is checked once a day, by
digest_newsletter's `freshness`.
"""

# Like digest_newsletter it imports `newsletter` inside its tasks only (cheap to parse).

from __future__ import annotations

import logging
import os
from datetime import timedelta

import _digest_common as common
from airflow.sdk import CronTriggerTimetable, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from newsletter_airflow.assets import PAPER_STORE_ARRIVALS

log = logging.getLogger("newsletter.dags.ingest")

# Off the hour by default, so it never ingests at the same moment as the 08:00 digest run.
CRON = os.environ.get("NEWSLETTER_INGEST_CRON", "30 * * * *")
TIMEZONE = os.environ.get("NEWSLETTER_DAG_TZ", "Asia/Shanghai")
FAILURES_TO_ALERT = int(os.environ.get("NEWSLETTER_ALERT_AFTER_FAILURES", "2"))

# check_sources' alert: one email per outage, naming the failing sources.
alert_ingestion_failing = common.alert(
    subject="[paper-digest] ingestion failing: {{ exception }}",
    html="<p>{{ exception | e }}</p><p>Log: <a href='{{ ti.log_url }}'>{{ ti.log_url }}</a></p>",
)


@dag(
    dag_id="ingest_feeds",
    # No start_date: once unpaused it ingests at once (run_immediately), then hourly.
    schedule=CronTriggerTimetable(CRON, timezone=TIMEZONE, interval=timedelta(hours=1), run_immediately=True),
    catchup=False,  # an hour missed is caught by the next conditional GET: the feed still holds it
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=50),  # a hung run must not block the next hour's
    doc_md=__doc__,
    tags=["newsletter"],
    default_args={"owner": "newsletter", "retries": 0},
)
def ingest_feeds():
    @task
    def enabled_sources() -> list[str]:
        """The names of the enabled sources in the config: one `ingest` instance each."""
        return [s.name for s in common.settings().sources if s.enabled]

    @task(
        map_index_template="{{ label }}",
        execution_timeout=timedelta(minutes=20),
        doc_md="Fetch (conditional GET) or read one source and store it; fails when the source failed as a whole.",
    )
    def ingest(source: str) -> dict:
        return common.ingest_source(source)

    # The outlet: a paper-store asset event per source that brought papers (newsletter_airflow.assets).
    @task(trigger_rule="all_done", outlets=[PAPER_STORE_ARRIVALS])
    def record_arrivals(ingested: list[dict]) -> list[dict]:
        """Record what the ingests brought as paper-store asset events (one per source with new or updated papers
        or acceptances, with the counts; none when nothing arrived)."""
        return common.record_arrivals(list(ingested))

    @task(trigger_rule="all_done", on_failure_callback=alert_ingestion_failing)
    def check_sources() -> dict:
        """Fail (and alert) when a source has failed several fetches in a row: after ~3 days of outage its
        posts are gone from the feed. Emails once per outage: while the previous run's check failed too, it
        stays red without emailing again."""
        from newsletter.pipeline.steps import freshness_step

        settings = common.settings()
        context = get_current_context()
        out = freshness_step(settings, context["dag_run"].run_after.date(), max_failures=FAILURES_TO_ALERT)
        failing = out["failing_sources"]
        if failing:
            previous = context["ti"].get_previous_ti()
            error = AirflowFailException(
                "; ".join(f"source {name} failed {n} fetches in a row" for name, n in failing.items())
            )
            error.alert = previous is None or previous.state != "failed"  # type: ignore[attr-defined]
            raise error
        log.info("every source fetched fine")
        return {"failing_sources": failing}

    ingested = ingest.expand(source=enabled_sources())
    record_arrivals(ingested)
    ingested >> check_sources()


ingest_feeds()
