"""Commands over the paper store: ingest, papers, venues, db."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import TextIO

import click

from newsletter.cli.options import (
    FAILED,
    Day,
    GreedyOption,
    Group,
    Instant,
    command,
    config_option,
    exit_status,
    format_option,
    out,
    pass_settings,
    progress,
    since_until,
    source_option,
    table,
    warn,
)
from newsletter.config import Settings
from newsletter.ingest.parse.detect import KINDS
from newsletter.pipeline import admin
from newsletter.pipeline import ingest as ingesting
from newsletter.pipeline.ingest import SourceReport
from newsletter.registry.venues import extract_venue
from newsletter.store.query import PaperFilter
from newsletter.store.record import IngestStats


@command()
@source_option("Only this configured source (with --file: the source name to log).")
@click.option("--file", "files", cls=GreedyOption, metavar="FILE...", help="Ingest local file(s); kind guessed.")
@click.option(
    "--kind", type=click.Choice([str(k) for k in KINDS]), help="With --file: the kind, instead of guessing it."
)
@click.option("--replay", is_flag=True, help="Re-parse archived payloads, no network.")
@since_until(Instant(), "With --replay: fetched at or after (ISO date/time).", "With --replay: fetched before.")
@pass_settings
def ingest(
    settings: Settings,
    source: str | None,
    files: tuple[str, ...],
    kind: str | None,
    replay: bool,
    since: datetime | None,
    until: datetime | None,
) -> None:
    """Fetch or read the sources, store the papers.

    Every payload is archived first. Prints a table per source and a summary. Exit status 1 only when a source
    failed as a whole; a bad entry
    is a warning naming the source and the item.

    \b
    Examples:
      newsletter ingest
      newsletter ingest --source sample-feed
      newsletter ingest --file old-atom.xml 2024-12-07_NeRF.md
      newsletter ingest --replay --since 2024-12-01 --until 2024-12-08
    """
    if files and replay:
        raise click.UsageError("give --file or --replay, not both")
    if (since or until) and not replay:
        raise click.UsageError("--since and --until go with --replay")
    if kind and not files:
        raise click.UsageError("--kind goes with --file")
    with progress() as update:
        if replay:
            reports = ingesting.replay(settings, since, until, source, progress=update)
        elif files:
            reports = admin.ingest_files(settings, files, kind, source or "file", progress=update)
        else:
            reports = ingesting.ingest(settings, [source] if source else None, progress=update)
    if print_reports(reports):
        exit_status(FAILED)


def print_reports(reports: list[SourceReport]) -> bool:
    """The ingest table, failures and warnings, and the summary line; True when a source failed."""
    total = IngestStats()
    rows = []
    for r in reports:
        s = r.stats
        counts = (r.payloads, s.posts, s.posts_new, s.papers_new, s.papers_seen, s.papers_updated, s.acceptances)
        rows.append((r.source, r.status, *map(str, counts)))
        total.merge(s)
    columns = ("source", "status", "payloads", "posts", "new posts", "papers new", "seen before", "updated", "acc.")
    out.print(table("ingest", columns, rows, right=columns[2:]))
    for r in reports:
        if r.error:
            warn(f"source {r.source} failed", r.error, style="red")
    for warning in total.warnings:
        warn("warning", warning)
    failed = sum(r.failed for r in reports)
    out.print(
        f"summary: {total.posts} posts ({total.posts_new} new), papers {total.papers_new} new / "
        f"{total.papers_seen} seen before / {total.papers_updated} updated, {total.acceptances} acceptances, "
        f"{len(total.warnings)} warnings, {failed} sources failed"
    )
    return failed > 0


@command()
@since_until(Day(), "Post date from (inclusive).", "Post date to (inclusive).")
@click.option("--topic", help="Posted under this topic.")
@click.option("--venue", help="Accepted at this venue, e.g. CVPR.")
@click.option("--accepted", is_flag=True, help="Only accepted papers.")
@click.option("--limit", type=click.IntRange(min=0), help="At most this many papers.")
@format_option("table", "jsonl")
@pass_settings
def papers(
    settings: Settings,
    since: date | None,
    until: date | None,
    topic: str | None,
    venue: str | None,
    accepted: bool,
    limit: int | None,
    fmt: str,
) -> None:
    """Query the paper store.

    Papers come in first-post order. `--format jsonl` writes one JSON object per paper, a stable interface (fields
    in the README).

    \b
    Examples:
      newsletter papers --since 2024-12-01 --topic 3DGS --venue CVPR
      newsletter papers --format jsonl
    """
    records = admin.papers(settings, PaperFilter(since, until, topic, venue, accepted), limit)
    if fmt == "jsonl":
        for rec in records:
            click.echo(json.dumps(rec, ensure_ascii=False))
        return
    rows = []
    for rec in records:
        v = rec["venue"]
        badge = " ".join(
            str(x) for x in (v["venue"] or ("accepted" if v["accepted"] else ""), v["year"], v["track"]) if x
        )
        rows.append((rec["arxiv_id"] or "-", rec["first_seen"], ", ".join(rec["topics"]), badge, rec["title"]))
    out.print(table(f"{len(records)} papers", ("arXiv", "first", "topics", "venue", "title"), rows))


@command()
@click.argument("comments", type=click.File("r", encoding="utf-8"), default="-")
def venues(comments: TextIO) -> None:
    """Why a paper got its badge: comments in, JSON out.

    Reads arXiv comments, one per line, from stdin (or COMMENTS) and writes one {accepted, venue, year, track}
    object per line.

    \b
    Example:
      echo "Accepted by NeurIPS 2024 (spotlight)" | newsletter venues
    """
    for line in comments:
        click.echo(json.dumps(extract_venue(line.rstrip("\n")).as_dict(), ensure_ascii=False))


@click.group(cls=Group, invoke_without_command=True)
@config_option
@click.pass_context
def db(ctx: click.Context, config_path: str | None) -> None:
    """Migrate the database schema.

    Every command also does it on demand. Without a subcommand: upgrade to the newest revision.

    \b
    Examples:
      newsletter db
      newsletter db upgrade 0003
    """
    if ctx.invoked_subcommand is None:
        ctx.invoke(upgrade)


@db.command()
@click.argument("revision", default="head")
@pass_settings
def upgrade(settings: Settings, revision: str) -> None:
    """Upgrade the schema to REVISION (default: head).

    \b
    Example:
      newsletter db upgrade head
    """
    url = admin.upgrade_db(settings, revision)
    out.print(f"database at {revision}: {url}")
