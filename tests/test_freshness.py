"""The "weekday with zero new papers" alert notifies once per outage (freshness_step with track=True, as the
daily digest calls it), on SQLite and PostgreSQL. tests/test_dags.py checks the same through the DAG, counting
the alert emails at a real SMTP server.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import select

from newsletter.db import session_scope
from newsletter.db.models import OpenAlert
from newsletter.pipeline.steps import NO_NEW_PAPERS, freshness_step
from tests.test_store import ingest, paper, post

# November 2026: the 16th is a Monday. Papers first posted on Mon 16, Thu 19 and Tue 24 only.
MON, TUE, WED, THU, FRI, SAT, SUN = (date(2026, 11, d) for d in range(16, 23))
NEXT_MON, NEXT_TUE = date(2026, 11, 23), date(2026, 11, 24)


def _store(url: str) -> None:
    ingest(
        url,
        post(MON.isoformat(), "3DGS", paper("2611.00001", "Monday")),
        post(THU.isoformat(), "3DGS", paper("2611.00002", "Thursday")),
        post(NEXT_TUE.isoformat(), "NeRF", paper("2611.00003", "Next Tuesday")),
    )


def check(settings, day: date) -> tuple[bool, bool]:
    """(alert raised, alert to email) for the zero-papers condition on `day`, as the digest checks it."""
    out = freshness_step(settings, day, track=True)
    raised = [a for a in out["alerts"] if a.startswith("no new papers")]
    notify = [a for a in out["notify"] if a.startswith("no new papers")]
    assert out["failing_sources"] == {} and len(raised) <= 1 and set(notify) <= set(raised)
    return bool(raised), bool(notify)


def open_alert(url: str) -> tuple[date, date] | None:
    with session_scope(url) as s:
        row = s.scalar(select(OpenAlert).where(OpenAlert.key == NO_NEW_PAPERS))
        return (row.since, row.last_seen) if row else None


def test_zero_papers_alert_emails_once_per_outage(settings):
    url = settings.database_url
    _store(url)
    assert check(settings, MON) == (False, False)
    assert check(settings, TUE) == (True, True)  # the outage starts: the one email
    assert check(settings, WED) == (True, False)  # still red, no second email
    assert check(settings, WED) == (True, False)  # a retry of the same day: still no second email
    assert open_alert(url) == (TUE, WED)
    assert check(settings, THU) == (False, False)  # papers again: the outage is over
    assert open_alert(url) is None
    assert check(settings, FRI) == (True, True)  # a new outage, a new email
    assert check(settings, SAT) == (False, False)  # weekends are not checked ...
    assert check(settings, SUN) == (False, False)
    assert open_alert(url) == (FRI, FRI)  # ... and neither end nor extend an outage
    assert check(settings, NEXT_MON) == (True, False)  # the same outage as Friday's
    assert check(settings, WED) == (True, False)  # a backfill of an older day: no email ...
    assert check(settings, MON) == (False, False)  # ... and an older good day does not end today's outage
    assert open_alert(url) == (FRI, NEXT_MON)
    assert check(settings, NEXT_TUE) == (False, False)
    assert open_alert(url) is None


def test_untracked_checks_leave_the_outage_state_alone(settings):
    """ingest_feeds' hourly check calls freshness_step for the current day, often before that day's papers
    are posted: it must neither open nor close the digest's outage (it does not track)."""
    _store(settings.database_url)
    out = freshness_step(settings, TUE)
    assert (
        out["alerts"]
        == out["notify"]
        == ["no new papers for 2026-11-17 (Tuesday): is upstream stalled or is ingestion broken?"]
    )
    assert open_alert(settings.database_url) is None
    assert check(settings, TUE) == (True, True)  # the digest's check still notifies the first time
    freshness_step(settings, THU)  # untracked, with papers: does not close it
    assert open_alert(settings.database_url) == (TUE, TUE)
