"""`newsletter subscribers`: import, add, set, remove, list."""

from __future__ import annotations

import click

from newsletter.cli.options import (
    Group,
    language_option,
    out,
    pass_settings,
    status_option,
    subscriber_frequency_option,
    table,
    warn,
)
from newsletter.config import Settings
from newsletter.db.models import Subscriber
from newsletter.pipeline import admin

TOPICS_HELP = "';'-separated topics, e.g. \"3DGS;NeRF\" (default: all)."


def _describe(sub: Subscriber) -> str:
    weekly = ", weekly" if sub.frequency == "weekly" else ""  # daily, the default, as the output always was
    return f"{sub.language}, topics: {', '.join(sub.topics or ['all'])}{weekly}"


@click.group(cls=Group)
def subscribers() -> None:
    """Manage subscribers.

    Import a CSV, add, change, remove, list, purge unconfirmed web sign-ups. An import never resubscribes
    someone who unsubscribed, bounced or complained; `set --status active` does.

    \b
    Examples:
      newsletter subscribers import people.csv
      newsletter subscribers add ada@example.org --name Ada --language zh --topics "3DGS;NeRF"
      newsletter subscribers list --status active
    """


@subscribers.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--encoding", help="The file's encoding (default: detected, and reported).")
@pass_settings
def import_(settings: Settings, file: str, encoding: str | None) -> None:
    """Import FILE, a CSV with columns email,name,language,topics (topics ';'-separated, empty = all) and
    optionally frequency (daily or weekly; empty = daily; no column: unchanged), in whatever encoding a
    spreadsheet saved it (UTF-8, a BOM, else detected: GB18030, latin-1, UTF-16...).

    Every rejected row is reported with its line number and reason; the rest is imported. Re-importing the
    same file changes nothing.

    \b
    Example:
      newsletter subscribers import people.csv
    """
    report = admin.import_subscribers(settings, file, encoding)
    click.echo(
        f"import: {report.added} added, {report.updated} updated, {report.unchanged} unchanged, "
        f"{len(report.kept_out)} kept out, {len(report.rejected)} rejected (read as {report.encoding})"
    )
    for line in report.notes:
        warn("note", line)
    for line in report.kept_out:
        warn("kept out", line)
    for line in report.rejected:
        warn("rejected", line, style="red")


@subscribers.command()
@click.argument("email")
@click.option("--name", default="", help="Display name, used in the greeting.")
@language_option(default="bilingual")
@click.option("--topics", help=TOPICS_HELP)
@subscriber_frequency_option(default="daily")
@pass_settings
def add(settings: Settings, email: str, name: str, language: str, topics: str | None, frequency: str) -> None:
    """Subscribe EMAIL (refused when the address is already known: use `set`).

    \b
    Examples:
      newsletter subscribers add ada@example.org --name Ada --language zh --topics "3DGS;NeRF"
      newsletter subscribers add bob@example.org --frequency weekly
    """
    sub = admin.add_subscriber(settings, email, name, language, topics, frequency)
    click.echo(f"added {sub.email} ({_describe(sub)})")


@subscribers.command("set")
@click.argument("email")
@click.option("--name", help="Display name.")
@language_option()
@click.option("--topics", help="';'-separated topics.")
@click.option("--all-topics", is_flag=True, help="Every topic.")
@status_option("Set the status (an operator's override, e.g. `active` after a bounce was fixed).")
@subscriber_frequency_option()
@pass_settings
def set_(
    settings: Settings,
    email: str,
    name: str | None,
    language: str | None,
    topics: str | None,
    all_topics: bool,
    status: str | None,
    frequency: str | None,
) -> None:
    """Change a subscriber's name, language, topics, frequency or status.

    \b
    Examples:
      newsletter subscribers set ada@example.org --language en
      newsletter subscribers set ada@example.org --frequency weekly
      newsletter subscribers set ada@example.org --status active
    """
    sub = admin.change_subscriber(
        settings, email, name=name, language=language, topics=topics, all_topics=all_topics, status=status,
        frequency=frequency,
    )  # fmt: skip
    click.echo(f"{sub.email}: {sub.status}, {_describe(sub)}")


@subscribers.command()
@click.argument("email")
@click.option("--purge", is_flag=True, help="Delete the row instead (an import could then add them again).")
@pass_settings
def remove(settings: Settings, email: str, purge: bool) -> None:
    """Unsubscribe EMAIL; the row is kept, so imports never re-add them.

    \b
    Example:
      newsletter subscribers remove ada@example.org
    """
    sub = admin.remove_subscriber(settings, email, purge)
    click.echo(f"{'deleted' if purge else 'unsubscribed'} {sub.email}")


@subscribers.command("purge-pending")
@pass_settings
def purge_pending(settings: Settings) -> None:
    """Delete web sign-ups never confirmed within [signup] purge_after_days (default 7) of their last request,
    and sign-up request rows older than that. Also run by the daily DAG.

    \b
    Example:
      newsletter subscribers purge-pending
    """
    out_ = admin.purge_pending(settings)
    click.echo(f"purged {out_['subscribers']} unconfirmed sign-ups, {out_['requests']} request rows")


@subscribers.command("list")
@status_option("Only subscribers with this status.")
@pass_settings
def list_(settings: Settings, status: str | None) -> None:
    """List subscribers by address, then a count line (`N subscribers`).

    \b
    Example:
      newsletter subscribers list --status active
    """
    rows = admin.list_subscribers(settings, status)
    columns = ("email", "name", "language", "topics", "frequency", "status")
    out.print(
        table(
            "subscribers",
            columns,
            [(s.email, s.name, s.language, ", ".join(s.topics or ["all"]), s.frequency, s.status) for s in rows],
        )
    )
    click.echo(f"{len(rows)} subscribers")


@subscribers.command("export")
@click.argument("file", required=False, type=click.Path(dir_okay=False, allow_dash=True))
@pass_settings
def export(settings: Settings, file: str | None) -> None:
    """Write every subscriber as CSV to FILE (default: standard output).

    Columns email,name,language,topics,frequency,status: `subscribers import` reads the file back (status is
    informational: an import never changes it).

    \b
    Example:
      newsletter subscribers export people.csv
    """
    text = admin.export_subscribers(settings)
    if file in (None, "-"):
        click.echo(text, nl=False)
        return
    with open(file, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)
    click.echo(f"exported {text.count(chr(10)) - 1} subscribers to {file}", err=True)
