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
if not out.is_terminal:
    out = Console(highlight=False, soft_wrap=True, width=140)  # logs and pipes: don't squeeze tables to 80
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
    from newsletter.store.record import IngestStats

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
    from newsletter.pipeline import ingest

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
    from newsletter.store.query import PaperFilter, find_papers, paper_record

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
    from newsletter.registry.venues import extract_venue

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


# ---- issues: build, archive, preview ---------------------------------------------------------------------


def _latest_post_date(settings: Settings) -> date | None:
    from sqlalchemy import func, select

    from newsletter.db import session_scope
    from newsletter.db.models import Post

    with session_scope(settings.database_url) as session:
        return session.scalar(select(func.max(Post.post_date)).where(Post.n_papers > 0))


def _issue_for(args: argparse.Namespace, settings: Settings):
    """Build (or rebuild identically) the issue of --date; None with a clear message when it is empty."""
    from newsletter.pipeline import steps as pipeline

    day = args.date or _latest_post_date(settings)
    if day is None:
        err.print("no posts in the store yet: run `newsletter ingest` first")
        return None
    issue, _info = pipeline.build_step(settings, pipeline.period_for(settings, day))
    if issue is None:
        err.print(f"no issue for {day}: no new papers or acceptances in that period (nothing to send)")
    return issue


def _size(path) -> str:
    return f"{path.stat().st_size / 1024:.1f} KB"


@command("build")
def cmd_build(args: argparse.Namespace, settings: Settings) -> int:
    issue = _issue_for(args, settings)
    if issue is None:
        return 0 if settings.section("issue").get("empty_ok", True) else 3
    out.print(
        f"issue {issue.issue_id} for {issue.issue_date}: {issue.n_papers} papers in {len(issue.sections)} topics, "
        f"{len(issue.highlights)} acceptance highlights (hash {issue.content_hash[:12]})"
    )
    return 0


@command("archive")
def cmd_archive(args: argparse.Namespace, settings: Settings) -> int:
    from newsletter.pipeline import steps as pipeline

    issue = _issue_for(args, settings)
    if issue is None:
        return 3
    path = pipeline.write_archive(settings, issue, args.out)
    out.print(f"archive page: {path} ({_size(path)})")
    return 0


@command("preview")
def cmd_preview(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from newsletter.pipeline import steps as pipeline

    issue = _issue_for(args, settings)
    if issue is None:
        return 3
    spec = pipeline.VariantSpec(args.lang, frozenset(args.topics) if args.topics else None)
    variant, html, text, eml = pipeline.preview_step(settings, issue, spec)
    folder = Path(args.out or "var/preview")
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{issue.issue_date}_{args.lang}" + (f"_{'-'.join(sorted(args.topics))}" if args.topics else "")
    paths = {"html": folder / f"{stem}.html", "text": folder / f"{stem}.txt", "eml": folder / f"{stem}.eml"}
    paths["html"].write_text(html, encoding="utf-8")
    paths["text"].write_text(text, encoding="utf-8")
    paths["eml"].write_bytes(eml)
    out.print(f"subject: {variant.subject}")
    for kind, path in paths.items():
        out.print(f"{kind}: {path} ({_size(path)})")
    out.print(
        f"html part as sent (base64): {variant.html_encoded_size / 1024:.1f} KB; "
        f"{variant.n_full} papers in full, {variant.n_listed} listed by title"
    )
    return 0


# ---- subscribers ----------------------------------------------------------------------------------------


@command("subscribers")
def cmd_subscribers(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from newsletter.db import session_scope
    from newsletter.deliver import subscribers as subs

    try:
        with session_scope(settings.database_url) as session:
            if args.action == "import":
                return _print_import(subs.import_file(session, Path(args.file), args.encoding))
            if args.action == "list":
                return _list_subscribers(session, args.status)
            if args.action == "add":
                sub = subs.add(session, args.email, args.name or "", args.language or "bilingual", args.topics)
                out.print(f"added {sub.email} ({sub.language}, topics: {', '.join(sub.topics or ['all'])})")
                return 0
            sub = subs.get(session, args.email)
            if sub is None:
                err.print(f"no subscriber {args.email}")
                return 1
            if args.action == "remove":
                session.delete(sub) if args.purge else subs.set_status(sub, "unsubscribed", "removed by operator")
                out.print(f"{'deleted' if args.purge else 'unsubscribed'} {sub.email}")
                return 0
            subs.update(sub, args.name, args.language, args.topics, all_topics=args.all_topics)
            if args.status:
                subs.set_status(sub, args.status, "set by operator")
            out.print(f"{sub.email}: {sub.status}, {sub.language}, topics: {', '.join(sub.topics or ['all'])}")
            return 0
    except (subs.SubscriberError, OSError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        return 1


def _print_import(report) -> int:
    out.print(
        f"import: {report.added} added, {report.updated} updated, {report.unchanged} unchanged, "
        f"{len(report.kept_out)} kept out, {len(report.rejected)} rejected (read as {report.encoding})"
    )
    for line in report.notes:
        err.print(f"[yellow]note:[/yellow] {line}")
    for line in report.kept_out:
        err.print(f"[yellow]kept out:[/yellow] {line}")
    for line in report.rejected:
        err.print(f"[red]rejected:[/red] {line}")
    return 0


def _list_subscribers(session, status: str | None) -> int:
    from sqlalchemy import select

    from newsletter.db.models import Subscriber

    query = select(Subscriber).order_by(Subscriber.email)
    if status:
        query = query.where(Subscriber.status == status)
    table = Table(title="subscribers", title_justify="left")
    for col in ("email", "name", "language", "topics", "status"):
        table.add_column(col)
    rows = session.scalars(query).all()
    for sub in rows:
        table.add_row(sub.email, sub.name, sub.language, ", ".join(sub.topics or ["all"]), sub.status)
    out.print(table)
    out.print(f"{len(rows)} subscribers")
    return 0


@command("serve")
def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from newsletter.web.app import serve

    serve(settings, args.host, args.port)
    return 0


# ---- delivery -------------------------------------------------------------------------------------------


@command("send")
def cmd_send(args: argparse.Namespace, settings: Settings) -> int:
    from newsletter.pipeline.send import send_date

    day = args.date or _latest_post_date(settings)
    if day is None:
        err.print("no posts in the store yet: run `newsletter ingest` first")
        return 1
    status, update = _progress()
    try:
        report = send_date(
            settings,
            day,
            dry_run=args.dry_run,
            test_recipient=args.test_recipient,
            workers=args.workers,
            recover=args.recover,
            progress=update,
        )
    finally:
        if status:
            status.stop()
    out.print(report.summary())
    if report.note:
        out.print(report.note)
    return 0 if report.ok else 1


@command("deliveries")
def cmd_deliveries(args: argparse.Namespace, settings: Settings) -> int:
    from newsletter.pipeline.send import deliveries_for_date

    day = args.date or _latest_post_date(settings)
    report = deliveries_for_date(settings, day) if day else None
    if report is None:
        err.print(f"no issue for {day}")
        return 1
    if args.format == "json":
        sys.stdout.write(json.dumps(report, ensure_ascii=False, default=str) + "\n")
        return 0
    counts = ", ".join(f"{k} {v}" for k, v in report["counts"].items())
    out.print(f"issue {report['issue_id']} ({report['issue_date']}): {report['total']} deliveries: {counts}")
    if report["failures"]:
        table = Table(title="failures", title_justify="left")
        for col in ("email", "status", "attempts", "error", "next attempt"):
            table.add_column(col, overflow="fold")
        for f in report["failures"]:
            table.add_row(f["email"], f["status"], str(f["attempts"]), f["error"] or "", f["next_attempt_at"] or "")
        out.print(table)
    return 0


# ---- the main job ---------------------------------------------------------------------------------------


@command("run")
def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    """The scheduled job by hand: ingest, build the issue, render, publish the archive page, send, report."""
    from newsletter.pipeline import steps as pipeline
    from newsletter.pipeline.send import send_date

    code = cmd_ingest(argparse.Namespace(replay=False, file=None, source=None, kind=None), settings)
    day = args.date or _latest_post_date(settings)
    issue = _issue_for(argparse.Namespace(date=day), settings) if day else None
    if issue is None:
        return code
    out.print(
        f"issue {issue.issue_date}: {issue.n_papers} new papers in {len(issue.sections)} topics, "
        f"{len(issue.highlights)} acceptance highlights"
    )
    out.print(f"archive page: {pipeline.write_archive(settings, issue)}")
    report = send_date(settings, issue.issue_date, dry_run=args.dry_run)
    out.print(report.summary())
    if report.note:
        out.print(report.note)
    from newsletter.deliver.transport import outbox_dir, transport_kind

    if transport_kind(settings) == "outbox":
        out.print(f"outbox (no SMTP configured): {outbox_dir(settings)}/new/")
    return code or (0 if report.ok else 1)


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

    p = sub.add_parser("build", help="build (or rebuild identically) the issue of a date")
    p.add_argument("--date", type=_day, help="issue date (default: the newest post date in the store)")

    p = sub.add_parser("archive", help="write the web archive page of an issue")
    p.add_argument("--date", type=_day, help="issue date (default: the newest post date in the store)")
    p.add_argument("--out", help="folder (default: [web] archive_dir, what `serve` publishes)")

    p = sub.add_parser("preview", help="write an issue's HTML part, text part and .eml exactly as sent")
    p.add_argument("--date", type=_day, help="issue date (default: the newest post date in the store)")
    p.add_argument("--lang", choices=["en", "zh", "bilingual"], default="bilingual")
    p.add_argument("--topics", nargs="+", help="topic selection (default: all)")
    p.add_argument("--out", help="folder (default: var/preview)")

    p = sub.add_parser("subscribers", help="manage subscribers")
    ssub = p.add_subparsers(dest="action", required=True)
    a = ssub.add_parser("add")
    a.add_argument("email")
    a.add_argument("--name")
    a.add_argument("--language", choices=["en", "zh", "bilingual"])
    a.add_argument("--topics", help="';'-separated topics (default: all)")
    a = ssub.add_parser("import", help="CSV with columns email,name,language,topics")
    a.add_argument("file")
    a.add_argument("--encoding", help="the file's encoding (default: detected, and reported)")
    a = ssub.add_parser("list")
    a.add_argument("--status", choices=["active", "unsubscribed", "bounced", "complained"])
    a = ssub.add_parser("set")
    a.add_argument("email")
    a.add_argument("--name")
    a.add_argument("--language", choices=["en", "zh", "bilingual"])
    a.add_argument("--topics", help="';'-separated topics")
    a.add_argument("--all-topics", action="store_true")
    a.add_argument("--status", choices=["active", "unsubscribed", "bounced", "complained"])
    a = ssub.add_parser("remove", help="unsubscribe (kept, so imports never re-add them); --purge deletes")
    a.add_argument("email")
    a.add_argument("--purge", action="store_true")

    p = sub.add_parser("serve", help="web app: one-click unsubscribe, preferences, archive, healthz")
    p.add_argument("--host")
    p.add_argument("--port", type=int)

    p = sub.add_parser("send", help="send an issue to its subscribers (exactly once, via the ledger)")
    p.add_argument("--date", type=_day, help="issue date (default: the newest post date in the store)")
    p.add_argument("--dry-run", action="store_true", help="send nothing; count and build what would be sent")
    p.add_argument("--test-recipient", metavar="ADDR", help="one copy to ADDR, outside the ledger")
    p.add_argument("--workers", type=int, help="parallel senders (PostgreSQL; SQLite uses one)")
    p.add_argument("--recover", action="store_true", help="first requeue rows of crashed senders (see README)")

    p = sub.add_parser("deliveries", help="delivery counts by status and failures with reasons")
    p.add_argument("--date", type=_day, help="issue date (default: the newest post date in the store)")
    p.add_argument("--format", choices=["table", "json"], default="table")

    p = sub.add_parser("run", help="the main job: ingest, build, render, archive, send, report")
    p.add_argument("--date", type=_day, help="issue date (default: the newest post date in the store)")
    p.add_argument("--dry-run", action="store_true", help="everything but sending")
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
