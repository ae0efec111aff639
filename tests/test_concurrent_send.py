"""Two first sends of one issue at once (#9, 4): an Airflow send and an operator's `newsletter send`, two
backfills, a retried task. The issue, its variants and its ledger are each created once, neither run fails,
each run's report says truthfully how many ledger rows it created and how many it found, and everyone gets
the issue exactly once.

Deterministic without timing hopes: a barrier holds each run at the start of each racy step (after it has read
"nothing there yet", before it writes) until the other run is there too. A step that is serialised by a lock
never lets the second run reach the barrier while the first holds it: the first then goes on after the barrier's
timeout, which is the fix working, not a timing assumption (the outcome is the same either way)."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from newsletter.db import session_scope
from newsletter.db.models import Delivery, IssueRow, IssueVariant
from newsletter.deliver import ledger as ledger_module
from newsletter.issue import build as build_module
from newsletter.pipeline import steps
from newsletter.pipeline.send import send_date
from newsletter.store.record import record_posts
from tests.smtp_server import SmtpServer
from tests.test_deliver import DAY, add_subscribers, smtp, with_delivery
from tests.test_store import paper, post

PEOPLE = 24
BARRIER_TIMEOUT_S = 3.0  # only waited out when a lock keeps the other run away (the fix); never in a race


class Rendezvous:
    """Each thread waits at each named point once, until the other thread arrives or the timeout passes."""

    def __init__(self) -> None:
        self.barriers: dict[str, threading.Barrier] = {}
        self.met: dict[str, bool] = {}
        self.lock = threading.Lock()
        self.seen = threading.local()

    def wait(self, point: str) -> None:
        done = getattr(self.seen, "points", None)
        if done is None:
            done = self.seen.points = set()
        if point in done:
            return
        done.add(point)
        with self.lock:
            barrier = self.barriers.setdefault(point, threading.Barrier(2, timeout=BARRIER_TIMEOUT_S))
        try:
            barrier.wait()
            self.met[point] = True
        except threading.BrokenBarrierError:
            self.met.setdefault(point, False)


def _before(point: str, fn: Callable, meet: Rendezvous) -> Callable:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        meet.wait(point)
        return fn(*args, **kwargs)

    return wrapped


def _ledger_note(note: str) -> tuple[int, int]:
    created, existing = re.search(r"ledger: (\d+) new, (\d+) existing", note).groups()
    return int(created), int(existing)


def test_two_first_sends_at_once_create_everything_once_and_report_truthfully(settings, monkeypatch):
    settings = with_delivery(settings, batch_size=5)
    url = settings.database_url
    with session_scope(url) as s:  # papers for the day; the issue itself is built by the two runs
        record_posts(s, [post(DAY.isoformat(), "3DGS", paper("2412.00001", "Splat A"), paper("2412.00002", "B"))], "t")
    people = add_subscribers(url, PEOPLE, topics=(None,))
    meet = Rendezvous()
    # The racy windows: storing a new issue, counting then inserting ledger rows, rendering then storing a variant.
    monkeypatch.setattr(build_module, "_save", _before("issue", build_module._save, meet))
    active = ledger_module._active_subscribers
    monkeypatch.setattr(ledger_module, "_active_subscribers", _before("ledger", active, meet))
    monkeypatch.setattr(steps, "render_variant", _before("variant", steps.render_variant, meet))
    reports, errors = [], []
    with SmtpServer() as server:

        def one_run() -> None:
            try:
                reports.append(send_date(settings, DAY, transport_factory=smtp(server)))
            except Exception as exc:  # the assertion below shows it
                errors.append(f"{type(exc).__name__}: {exc}")

        runs = [threading.Thread(target=one_run) for _ in range(2)]
        for run in runs:
            run.start()
        for run in runs:
            run.join(timeout=300)
        counts = server.counts()
    assert errors == []
    assert meet.met["ledger"] and meet.met["variant"], meet.met  # both runs were inside those windows at once
    notes = sorted(_ledger_note(r.note) for r in reports)
    assert notes == [(0, PEOPLE), (PEOPLE, 0)]  # one run created every row, the other found them all
    assert sum(r.sent for r in reports) == PEOPLE
    assert counts == {p: 1 for p in people}
    with session_scope(url) as s:
        assert s.scalar(select(func.count()).select_from(IssueRow)) == 1
        assert s.scalar(select(func.count()).select_from(Delivery)) == PEOPLE
        keys = s.scalars(select(IssueVariant.variant_key)).all()
    assert len(keys) == len(set(keys)) == 3  # en, zh, bilingual: each stored once


@pytest.mark.parametrize("rows", [0, PEOPLE])
def test_prepare_ledger_reports_only_the_rows_it_inserted(settings, rows):
    """Without concurrency too: a first run creates every row; a rerun creates none and finds them all."""
    from newsletter.deliver.ledger import prepare_ledger
    from tests.test_deliver import make_issue

    url = settings.database_url
    issue_id = make_issue(url)
    add_subscribers(url, PEOPLE)
    if rows:
        with session_scope(url) as s:
            prepare_ledger(s, issue_id)
    with session_scope(url) as s:
        result = prepare_ledger(s, issue_id)
    assert (result.created, result.existing) == ((PEOPLE, 0) if not rows else (0, PEOPLE))
