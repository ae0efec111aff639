"""The `newsletter` command: every capability the DAGs use, for operators to run by hand.

A click group. Each command is a thin function over one function of `newsletter.pipeline` (mostly
`pipeline.admin`); the options several commands share, the settings loader and the mapping of expected
failures to one line and an exit status live in `options`. The console script and `python -m newsletter`
both call `main`.
"""

from __future__ import annotations

import click

from newsletter.cli import delivery, issues, store
from newsletter.cli.options import Group, config_option
from newsletter.cli.subscribers import subscribers

EPILOG = """\b
Exit status: 0 done; 1 failed (a source, the send, the database or mail server
unreachable, a file unreadable); 2 usage or configuration error; 3 no issue for
the date (archive, preview, deliveries; build with [issue] empty_ok = false)."""


@click.group(
    cls=Group,
    epilog=EPILOG,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
)
@config_option
def cli(config_path: str | None) -> None:
    """paper-digest: arXiv digest posts in, one bilingual email out.

    \b
    Examples:
      newsletter ingest
      newsletter run --dry-run
      newsletter send --date 2024-12-05 --test-recipient me@example.org
    """


for _command in (
    store.ingest,
    store.papers,
    store.venues,
    store.db,
    issues.build,
    issues.translate,
    issues.archive,
    issues.preview,
    subscribers,
    delivery.serve,
    delivery.send,
    delivery.deliveries,
    delivery.run,
):
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> None:
    """The console script `newsletter` (and `python -m newsletter`): exits with the command's status."""
    cli.main(args=argv)
