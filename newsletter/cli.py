"""The `newsletter` command: every capability the DAGs use, for operators to run by hand."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime

from rich.console import Console
from rich.table import Table

from newsletter.config import ConfigError, Settings, load_settings

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)

COMMANDS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {}


def command(name: str):
    def wrap(fn):
        COMMANDS[name] = fn
        return fn

    return wrap


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from exc


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date or datetime (ISO 8601): {text!r}") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# ---- ingest ---------------------------------------------------------------------------------------------


def _progress():
    """A one-line status on stderr for long work; silent when stderr is not a terminal."""
    status = err.status("starting") if err.is_terminal else None
    if status:
        status.start()

    def update(message: str) -> None:
        if status:
            status.update(message)

    return status, update


def _print_reports(reports) -> int:
    from newsletter.store import IngestStats

    total = IngestStats()
    table = Table(title="ingest", title_justify="left")
    for col in ("source", "status", "payloads", "posts", "new posts", "papers new", "seen before", "updated", "acc."):
        table.add_column(col, justify="left" if col in ("source", "status") else "right")
    for r in reports:
        s = r.stats
        table.add_row(
            r.source,
            r.status,
            *map(str, (r.payloads, s.posts, s.posts_new, s.papers_new, s.papers_seen)),
            str(s.papers_updated),
            str(s.acceptances),
        )
        total.merge(s)
    out.print(table)
    for r in reports:
        if r.error:
            err.print(f"[red]source {r.source} failed:[/red] {r.error}")
    for warning in total.warnings:
        err.print(f"[yellow]warning:[/yellow] {warning}")
    out.print(
        f"summary: {total.posts} posts ({total.posts_new} new), papers {total.papers_new} new / "
        f"{total.papers_seen} seen before / {total.papers_updated} updated, {total.acceptances} acceptances, "
        f"{len(total.warnings)} warnings, {sum(r.failed for r in reports)} sources failed"
    )
    return 1 if any(r.failed for r in reports) else 0


@command("ingest")
def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from newsletter import ingest

    status, update = _progress()
    try:
        if args.replay:
            reports = ingest.replay(settings, args.since, args.until, args.source, progress=update)
        elif args.file:
            reports = []
            for i, path in enumerate(args.file, 1):
                update(f"file {i}/{len(args.file)}: {path}")
                reports.append(ingest.ingest_file(settings, path, kind=args.kind, source=args.source or "file"))
        else:
            reports = ingest.ingest(settings, [args.source] if args.source else None, progress=update)
    finally:
        if status:
            status.stop()
    return _print_reports(reports)


# ---- papers / venues ------------------------------------------------------------------------------------


@command("papers")
def cmd_papers(args: argparse.Namespace, settings: Settings) -> int:
    from newsletter.db import session_scope
    from newsletter.query import PaperFilter, find_papers, paper_record

    flt = PaperFilter(args.since, args.until, args.topic, args.venue, args.accepted)
    with session_scope(settings.database_url) as session:
        records = [paper_record(p) for p in find_papers(session, flt, args.limit)]
    if args.format == "jsonl":
        for rec in records:
            sys.stdout.write(json.dumps(rec, ensure_ascii=False) + "\n")
        return 0
    table = Table(title=f"{len(records)} papers", title_justify="left")
    for col in ("arXiv", "first", "topics", "venue", "title"):
        table.add_column(col, overflow="fold")
    for rec in records:
        v = rec["venue"]
        badge = " ".join(
            str(x) for x in (v["venue"] or ("accepted" if v["accepted"] else ""), v["year"], v["track"]) if x
        )
        table.add_row(rec["arxiv_id"] or "-", rec["first_seen"], ", ".join(rec["topics"]), badge, rec["title"])
    out.print(table)
    return 0


@command("venues")
def cmd_venues(args: argparse.Namespace, settings: Settings) -> int:
    from newsletter.venues import extract_venue

    for line in sys.stdin:
        sys.stdout.write(json.dumps(extract_venue(line.rstrip("\n")).as_dict(), ensure_ascii=False) + "\n")
        sys.stdout.flush()
    return 0


@command("db")
def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    from newsletter.db import get_engine, migrate

    migrate(get_engine(settings.database_url), args.revision)
    out.print(f"database at {args.revision}: {get_engine(settings.database_url).url.render_as_string()}")
    return 0


# ---- the main job ---------------------------------------------------------------------------------------


@command("run")
def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    """The scheduled job by hand: ingest every source, then show what the store holds."""
    code = cmd_ingest(argparse.Namespace(replay=False, file=None, source=None, kind=None), settings)
    from newsletter.db import session_scope
    from newsletter.query import PaperFilter, find_papers

    with session_scope(settings.database_url) as session:
        papers = find_papers(session, PaperFilter())
        accepted = sum(p.accepted for p in papers)
    out.print(f"store: {len(papers)} papers, {accepted} accepted ({settings.database_url})")
    return code


# ---- argument parsing -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="newsletter", description="paper-digest: arXiv digest posts in, email out")
    parser.add_argument("--config", help="config file (default: $NEWSLETTER_CONFIG or ./newsletter.toml)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ingest", help="fetch/read sources, archive payloads, store papers")
    p.add_argument("--source", help="only this configured source (with --file: the source name to log)")
    p.add_argument("--file", nargs="+", help="ingest local file(s); kind guessed from the content")
    p.add_argument("--kind", choices=["feed", "markdown", "text", "html"], help="with --file: skip the guess")
    p.add_argument("--replay", action="store_true", help="re-parse archived payloads, no network")
    p.add_argument("--since", type=_instant, help="with --replay: fetched at or after (ISO date/time)")
    p.add_argument("--until", type=_instant, help="with --replay: fetched before (ISO date/time)")

    p = sub.add_parser("papers", help="query the paper store")
    p.add_argument("--since", type=_day, help="post date from (inclusive)")
    p.add_argument("--until", type=_day, help="post date to (inclusive)")
    p.add_argument("--topic")
    p.add_argument("--venue", help="accepted at this venue, e.g. CVPR")
    p.add_argument("--accepted", action="store_true", help="only accepted papers")
    p.add_argument("--limit", type=int)
    p.add_argument("--format", choices=["table", "jsonl"], default="table")

    sub.add_parser("venues", help="read arXiv comments on stdin, write {accepted,venue,year,track} JSON lines")

    p = sub.add_parser("db", help="migrate the database schema")
    p.add_argument("revision", nargs="?", default="head")

    sub.add_parser("run", help="the main job: ingest everything, then report")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
        return COMMANDS[args.command](args, settings)
    except ConfigError as exc:
        err.print(f"[red]config error:[/red] {exc}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
