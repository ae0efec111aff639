"""Commands over one day's issue: build, translate, archive, preview. A day without an issue exits 3."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import click

from newsletter.cli.options import (
    NO_ISSUE,
    GreedyOption,
    command,
    date_option,
    exit_status,
    format_option,
    frequency_option,
    language_option,
    out_option,
    pass_settings,
    warn,
)
from newsletter.config import Settings
from newsletter.pipeline import admin
from newsletter.records import VariantSpec


def _kb(path: Path) -> str:
    return f"{path.stat().st_size / 1024:.1f} KB"


@command()
@date_option()
@frequency_option()
@pass_settings
def build(settings: Settings, day: date | None, frequency: str) -> None:
    """Build (or rebuild identically) a day's issue, or with --weekly its week's.

    The issue is stored with a content hash. A day with nothing new and no acceptance has no issue: exit status 0,
    or 3 with `[issue] empty_ok = false`. The weekly issue covers the Monday-Sunday week containing --date.

    \b
    Examples:
      newsletter build --date 2024-12-05
      newsletter build --weekly --date 2024-12-05      # the week 2024-12-02 .. 2024-12-08
    """
    try:
        issue = admin.issue_for(settings, day, frequency)
    except admin.NoIssue as exc:
        click.echo(str(exc), err=True)
        if not admin.empty_issue_ok(settings):
            exit_status(NO_ISSUE)
        return
    what = f"the week ending {issue.issue_date}" if issue.frequency == "weekly" else str(issue.issue_date)
    click.echo(
        f"issue {issue.issue_id} for {what}: {issue.n_papers} papers in {len(issue.sections)} topics, "
        f"{len(issue.highlights)} acceptance highlights (hash {issue.content_hash[:12]})"
    )


@command()
@date_option()
@format_option("text", "json")
@pass_settings
def translate(settings: Settings, day: date | None, fmt: str) -> None:
    """Translate an issue's Chinese summaries and takeaways into English.

    Asks the [translate] endpoint (an OpenAI-compatible chat-completions API) for the papers of the day's issue
    that have no cached translation for their current text and the model, a batch of papers per request. A paper
    that fails (timeout, HTTP error, malformed answer) stays Chinese-only and is listed: exit status 0 all the
    same (translation never blocks a send). Nothing is asked when [translate] enabled is false. Exit status 3
    when the day has no issue.

    \b
    Examples:
      newsletter translate --date 2024-12-05
      newsletter translate --date 2024-12-05 --format json
    """
    report = admin.translate(settings, day)
    if fmt == "json":
        click.echo(json.dumps(report, ensure_ascii=False))
        return
    if not report["enabled"]:
        click.echo(f"translation is off ([translate] enabled = false): nothing asked for {report['issue_date']}")
        return
    for line in report["failures"]:
        warn("warning", f"translate: {line} (left untranslated)")
    click.echo(
        f"issue {report['issue_date']}: {report['papers']} papers; {report['cached']} cached, "
        f"{report['translated']} translated, {report['failed']} failed, {report['skipped']} skipped, "
        f"{report['nothing_to_translate']} with nothing to translate; {report['requests']} requests "
        f"to {report['model']}"
    )


@command()
@date_option()
@out_option("Folder (default: [web] archive_dir, what `serve` publishes).")
@frequency_option()
@pass_settings
def archive(settings: Settings, day: date | None, folder: str | None, frequency: str) -> None:
    """Write the web archive page of an issue.

    The page is bilingual and complete. Exit status 3 when the day has no issue.

    \b
    Example:
      newsletter archive --date 2024-12-05
      newsletter archive --weekly --date 2024-12-05    # week-2024-12-02.html
    """
    path = admin.write_archive(settings, day, folder, frequency)
    click.echo(f"archive page: {path} ({_kb(path)})")


@command()
@date_option()
@language_option("--lang", default="bilingual", help="Language mode of the variant.")
@click.option("--topics", cls=GreedyOption, metavar="TOPIC...", help="Topic selection (default: all).")
@out_option("Folder (default: var/preview).")
@frequency_option()
@pass_settings
def preview(
    settings: Settings, day: date | None, lang: str, topics: tuple[str, ...], folder: str | None, frequency: str
) -> None:
    """Write an issue's parts and .eml exactly as sent.

    Writes the HTML part, the text part and the whole message of one variant, with their sizes. Exit status 3 when
    the day has no issue.

    \b
    Example:
      newsletter preview --date 2024-12-05 --lang zh --topics 3DGS NeRF --out /tmp/p
    """
    spec = VariantSpec(lang, frozenset(topics) if topics else None)
    shown = admin.write_preview(settings, day, spec, folder or "var/preview", frequency)
    click.echo(f"subject: {shown.subject}")
    for kind, path in shown.paths.items():
        click.echo(f"{kind}: {path} ({_kb(path)})")
    click.echo(
        f"html part as sent: {shown.html_encoded_size / 1024:.1f} KB; "
        f"papers in full / listed: {shown.n_full} / {shown.n_listed}"
    )
