"""The send step: issue, ledger, variants, send, for `newsletter send` and the digest DAG."""

from __future__ import annotations

import logging
from datetime import date

from sqlalchemy import select

from newsletter.config import Settings
from newsletter.db import session_scope
from newsletter.db.models import IssueRow, Subscriber
from newsletter.deliver.ledger import (
    Progress,
    deliveries_report,
    parse_variant_key,
    prepare_ledger,
    recover_stale,
    variant_key,
)
from newsletter.deliver.message import MessageSettings
from newsletter.deliver.sender import SendReport, default_worker, probe_variants, send_issue, send_test, would_send
from newsletter.deliver.subscribers import normalise_email
from newsletter.deliver.transport import TransportFactory
from newsletter.pipeline import steps as pipeline
from newsletter.records import Frequency
from newsletter.render.variant import render_variant

log = logging.getLogger(__name__)


def send_date(
    settings: Settings,
    day: date,
    *,
    dry_run: bool = False,
    test_recipient: str | None = None,
    workers: int | None = None,
    recover: bool = False,
    progress: Progress | None = None,
    transport_factory: TransportFactory | None = None,
    frequency: str = Frequency.DAILY,
) -> SendReport:
    """`newsletter send --date D`: build (or load the frozen) issue, queue the ledger, render the variants it
    needs, send. `dry_run`: nothing is sent, queued or frozen (the issue itself is built and stored, as the
    issue step would); the report says what would be sent per variant (each variant is rendered and one
    message of it assembled). `test_recipient`: one copy to that address
    (their own variant if they subscribe, else bilingual with every topic), outside the ledger. `recover`: first
    put rows of crashed workers (claimed longer than `stale_after_s` ago) back to pending. `frequency` weekly:
    the issue of the Monday-Sunday week containing `day`, for the weekly subscribers."""

    cfg, ms = settings.delivery, MessageSettings.from_settings(settings)
    issue, _ = pipeline.build_step(settings, pipeline.period_for(settings, day, frequency))
    if issue is None:
        what = f"week of {day}" if frequency == Frequency.WEEKLY else str(day)
        return SendReport(0, default_worker(), dry_run=dry_run, note=f"no issue for {what}: nothing to send")
    if test_recipient:
        return _send_test_copy(settings, issue, test_recipient, transport_factory)
    with session_scope(settings.database_url) as session:
        ledger = prepare_ledger(session, issue.issue_id, ms=ms)
        recovered = recover_stale(session, issue.issue_id, cfg.stale_after_s) if recover and not dry_run else 0
        if dry_run:
            report = SendReport(issue.issue_id, default_worker(), dry_run=True)
            report.would_send = would_send(session, issue.issue_id, cfg)
            report.left = deliveries_report(session, issue.issue_id, max_failures=0)["counts"]
            session.rollback()  # the ledger rows were only counted
    note = f"ledger: {ledger.created} new, {ledger.existing} existing, {len(ledger.skipped)} with nothing to read"
    if recovered:
        note += f"; {recovered} stale claim(s) recovered"
    if dry_run:
        opts = pipeline.render_options(settings)
        variants = {k: render_variant(issue, *parse_variant_key(k), opts) for k in report.would_send}
        probe_variants(variants, variants, ms, issue.issue_id, issue.issue_date)
        report.note = note
        return report
    variants = pipeline.variants_for_sending(settings, issue.issue_id, issue)
    report = send_issue(settings, issue.issue_id, variants, transport_factory, workers=workers, progress=progress)
    report.note = note
    return report


def _send_test_copy(settings: Settings, issue, address: str, factory: TransportFactory | None) -> SendReport:

    with session_scope(settings.database_url) as session:
        sub = session.scalar(select(Subscriber).where(Subscriber.email == normalise_email(address)))
        key = variant_key(sub.language, sub.topics) if sub else variant_key("bilingual", None)
    variant = render_variant(issue, *parse_variant_key(key), pipeline.render_options(settings))
    # A refused connection or login propagates: the CLI turns it into one `delivery error:` line, exit 1.
    mid = send_test(settings, issue.issue_id, issue.issue_date, variant, address, factory)
    report = SendReport(issue.issue_id, default_worker(), sent=1)
    report.note = f"test copy of variant {key!r} sent to {address} ({mid}); the ledger is unchanged"
    return report


def deliveries_for_date(settings: Settings, day: date, frequency: str = Frequency.DAILY) -> dict | None:
    """`newsletter deliveries --date D`: the ledger report of that date's (or week's) issue (None when there is
    none)."""
    last = pipeline.period_for(settings, day, frequency).last
    with session_scope(settings.database_url) as session:
        issue_id = session.scalar(
            select(IssueRow.id).where(IssueRow.issue_date == last, IssueRow.frequency == frequency)
        )
        return None if issue_id is None else deliveries_report(session, issue_id)
