"""Sending and what surrounds it: send, deliveries, serve, and run (the whole job by hand)."""

from __future__ import annotations

import json
from datetime import date

import click

from newsletter.cli.options import (
    FAILED,
    command,
    date_option,
    dry_run_option,
    exit_status,
    format_option,
    frequency_option,
    out,
    pass_settings,
    progress,
    table,
)
from newsletter.cli.store import print_reports
from newsletter.config import Settings
from newsletter.deliver.sender import SendReport
from newsletter.pipeline import admin
from newsletter.pipeline.send import send_date
from newsletter.web.app import serve as serve_app


def _print_send(report: SendReport) -> None:
    """The counts on stdout; why a send stopped is one line on stderr (the exit status is then 1)."""
    click.echo(report.summary(stop_reason=False))
    if report.note:
        click.echo(report.note)
    if report.interrupted:  # SIGTERM/SIGINT: the process ends with status 1 and this one line, no traceback
        click.echo(
            f"send interrupted by {report.interrupted}: {report.released} claimed message(s) put back to pending"
            f"{f', {report.abandoned} abandoned in flight' if report.abandoned else ''}; run send again for the "
            "rest (nobody gets it twice)",
            err=True,
        )
    elif report.stopped:  # breaker, relay down, sender refused: claimed rows went back to pending
        click.echo(f"delivery error: send stopped: {report.stopped}", err=True)


@command()
@date_option()
@dry_run_option("Send nothing: count and build what would be sent, per variant.")
@click.option("--test-recipient", metavar="ADDR", help="One copy to ADDR, outside the ledger.")
@click.option("--workers", type=click.IntRange(min=1), help="Parallel senders (PostgreSQL; SQLite uses one).")
@click.option("--recover", is_flag=True, help="First requeue rows of crashed senders (see README).")
@frequency_option()
@pass_settings
def send(
    settings: Settings,
    day: date | None,
    dry_run: bool,
    test_recipient: str | None,
    workers: int | None,
    recover: bool,
    frequency: str,
) -> None:
    """Send an issue, exactly once (the ledger).

    Every active subscriber gets the issue once, whatever reruns or crashes happen. Exit status 1 when the send
    stopped (circuit breaker, server refusing the sender, SIGTERM/SIGINT) or the test copy failed. On SIGTERM or
    Ctrl-C the message in flight is finished and every claimed row goes back to pending.

    \b
    Examples:
      newsletter send --date 2024-12-05 --dry-run
      newsletter send --date 2024-12-05 --test-recipient me@example.org
      newsletter send --date 2024-12-05 --workers 4 --recover
      newsletter send --weekly --date 2024-12-01       # the week 2024-11-25 .. 12-01, weekly subscribers
    """
    with progress() as update:
        report = send_date(
            settings,
            admin.issue_day(settings, day),
            dry_run=dry_run,
            test_recipient=test_recipient,
            workers=workers,
            recover=recover,
            progress=update,
            frequency=frequency,
        )
    _print_send(report)
    if not report.ok:
        exit_status(FAILED)


@command()
@date_option()
@format_option("table", "json")
@frequency_option()
@pass_settings
def deliveries(settings: Settings, day: date | None, fmt: str, frequency: str) -> None:
    """Delivery counts by status, and failures.

    Each failure comes with the server's answer. Exit status 3 when the day has no issue.

    \b
    Examples:
      newsletter deliveries --date 2024-12-05
      newsletter deliveries --date 2024-12-05 --format json
    """
    report = admin.deliveries(settings, day, frequency)
    if fmt == "json":
        click.echo(json.dumps(report, ensure_ascii=False, default=str))
        return
    counts = ", ".join(f"{k} {v}" for k, v in report["counts"].items())
    click.echo(f"issue {report['issue_id']} ({report['issue_date']}): {report['total']} deliveries: {counts}")
    if report["failures"]:
        rows = [
            (f["email"], f["status"], str(f["attempts"]), f["error"] or "", f["next_attempt_at"] or "")
            for f in report["failures"]
        ]
        out.print(table("failures", ("email", "status", "attempts", "error", "next attempt"), rows))


@command()
@click.option("--host", help="Listen address (default: [web] host, else 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port (default: [web] port, else 8000).")
@pass_settings
def serve(settings: Settings, host: str | None, port: int | None) -> None:
    """The web app: unsubscribe, preferences, archive.

    One-click unsubscribe, preferences, archive pages and /healthz, until interrupted.

    \b
    Example:
      newsletter serve --host 0.0.0.0 --port 8000
    """
    serve_app(settings, host, port)


@command()
@date_option()
@dry_run_option("Everything but sending.")
@frequency_option()
@pass_settings
def run(settings: Settings, day: date | None, dry_run: bool, frequency: str) -> None:
    """The main job: ingest, build, archive, send.

    What the scheduled run does, by hand: ingest, build the issue, render, write the archive page, send, report.

    Exit status 1 when a source failed or the send stopped.

    \b
    Examples:
      newsletter run
      newsletter run --date 2024-12-05 --dry-run
      newsletter run --frequency weekly --date 2024-12-01
    """
    with progress() as update:
        job = admin.run_job(settings, day, dry_run=dry_run, progress=update, frequency=frequency)
    failed = print_reports(job.ingest)
    if job.no_issue:
        click.echo(job.no_issue, err=True)
    if job.issue is not None:
        what = f"week ending {job.issue.issue_date}" if job.issue.frequency == "weekly" else job.issue.issue_date
        click.echo(
            f"issue {what}: {job.issue.n_papers} new papers in {len(job.issue.sections)} topics, "
            f"{len(job.issue.highlights)} acceptance highlights"
        )
        if job.translate is not None:
            t = job.translate
            click.echo(
                f"translate: {t['cached']} cached, {t['translated']} translated, {t['failed']} failed, "
                f"{t['skipped']} skipped ({t['requests']} requests)"
            )
        click.echo(f"archive page: {job.archive}")
    if job.send is not None:
        _print_send(job.send)
        failed = failed or not job.send.ok
    if job.outbox is not None:
        click.echo(f"outbox (no SMTP configured): {job.outbox}/new/")
    if failed:
        exit_status(FAILED)
