"""What every command shares: option decorators declared once, parameter types, the settings loader, the exit
statuses, and the one place where expected failures become one line instead of a traceback.

Exit statuses (README "Run"): 0 done, 1 failed (a source, the send, the database, the mail server, a file),
2 usage or configuration error, 3 no issue for the date.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from sqlalchemy.exc import InterfaceError, OperationalError

from newsletter.config import ConfigError, load_settings
from newsletter.deliver.interests import InterestsError
from newsletter.deliver.stopping import SendInterrupted
from newsletter.deliver.subscribers import FREQUENCIES, LANGUAGES, STATUSES, SubscriberError
from newsletter.deliver.transport import SendFailure, TransportError
from newsletter.pipeline.admin import NoIssue

FAILED, USAGE, NO_ISSUE = 1, 2, 3

out = Console(highlight=False, soft_wrap=True)
if not out.is_terminal:
    out = Console(highlight=False, soft_wrap=True, width=140)  # logs and pipes: don't squeeze tables to 80
err = Console(stderr=True, highlight=False)


# ---- expected failures: one line and an exit status --------------------------------------------------------


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()  # DBAPIError: the driver's message, not SQLAlchemy's
    return text.splitlines()[0] if text else type(exc).__name__


def _os_error(exc: OSError) -> str:
    return f"{exc.strerror}: {exc.filename}" if exc.strerror and exc.filename else _first_line(exc)


# (exception types, prefix of the line, exit status); the first match wins. Anything else is a bug: traceback.
EXPECTED: tuple[tuple[tuple[type[BaseException], ...], str, int], ...] = (
    ((NoIssue,), "", NO_ISSUE),
    ((ConfigError,), "config error", USAGE),
    ((OperationalError, InterfaceError), "database error", FAILED),
    ((SendFailure, TransportError), "delivery error", FAILED),
    ((SendInterrupted,), "send interrupted", FAILED),
    ((SubscriberError, InterestsError), "error", FAILED),
    ((OSError,), "error", FAILED),
)


class Failure(click.ClickException):
    """An expected failure, shown as `prefix: detail` on stderr, with its exit status."""

    def __init__(self, prefix: str, detail: str, exit_code: int = FAILED):
        super().__init__(f"{prefix}: {detail}" if prefix else detail)
        self.prefix, self.detail, self.exit_code = prefix, detail, exit_code

    @classmethod
    def expected(cls, exc: BaseException) -> Failure | None:
        for types, prefix, code in EXPECTED:
            if isinstance(exc, types):
                detail = _os_error(exc) if isinstance(exc, OSError) else _first_line(exc)
                return cls(prefix, detail, code)
        return None

    def show(self, file: Any = None) -> None:
        prefix = click.style(f"{self.prefix}:", fg="red") + " " if self.prefix else ""
        click.echo(prefix + self.detail, file=file, err=file is None)


class Command(click.Command):
    """Options marked greedy take one or more values up to the next option, as `ingest --file a.xml b.md`
    always did (argparse's nargs="+"; click options take a fixed number): the values are spread out as
    `--file a.xml --file b.md` before click parses them."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        greedy = {name for p in self.params if isinstance(p, GreedyOption) for name in p.opts}
        return super().parse_args(ctx, spread_greedy(args, greedy) if greedy else args)


def spread_greedy(args: list[str], greedy: set[str]) -> list[str]:
    """["--file", "a", "b", "--kind", "feed"] -> ["--file", "a", "--file", "b", "--kind", "feed"]."""
    spread: list[str] = []
    option, values = None, 0
    for i, arg in enumerate(args):
        if arg == "--":
            return spread + args[i:]
        if arg.startswith("-") and len(arg) > 1:
            option, values = (arg if arg in greedy else None), 0
        elif option is not None:
            if values:
                spread.append(option)
            values += 1
        spread.append(arg)
    return spread


class GreedyOption(click.Option):
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, multiple=True, **kwargs)


def command(**kwargs: Any) -> Callable[[Callable[..., Any]], Command]:
    """click.command for this CLI (greedy options); sub-groups use `@group.command()`, which does the same."""
    return click.command(cls=Command, **kwargs)


class Group(click.Group):
    """Every command and sub-group of `newsletter`: maps the expected failures (EXPECTED) to one line."""

    command_class = Command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.ClickException:
            raise
        except Exception as exc:
            failure = Failure.expected(exc)
            if failure is None:
                raise
            raise failure from exc


# ---- parameter types ---------------------------------------------------------------------------------------


class Day(click.ParamType):
    name = "YYYY-MM-DD"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> date:
        if isinstance(value, date):
            return value
        try:
            return date.fromisoformat(value)
        except ValueError:
            self.fail(f"not a date (YYYY-MM-DD): {value!r}", param, ctx)


class Instant(click.ParamType):
    """An ISO date or datetime; without a zone it is UTC (what the fetch log stores)."""

    name = "ISO-DATETIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            instant = datetime.fromisoformat(value)
        except ValueError:
            self.fail(f"not a date or datetime (ISO 8601): {value!r}", param, ctx)
        return instant if instant.tzinfo else instant.replace(tzinfo=UTC)


# ---- shared options ----------------------------------------------------------------------------------------

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def config_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--config",
        "config_path",
        metavar="PATH",
        type=click.Path(dir_okay=False),
        help="Config file (default: $NEWSLETTER_CONFIG, else ./newsletter.toml, else the built-in sample).",
    )(fn)


def pass_settings(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Load the settings and pass them as the first argument. The config file is the command's --config, else
    one given before the command name (`newsletter --config X ingest`). Loading happens inside the command, so
    a config error is one line (exit 2) and `--help` never needs a valid config."""

    @config_option
    @click.pass_context
    @functools.wraps(fn)
    def with_settings(ctx: click.Context, *args: Any, config_path: str | None = None, **kwargs: Any) -> Any:
        for outer in (ctx, *_parents(ctx)):
            config_path = config_path or outer.params.get("config_path")
        return fn(load_settings(config_path), *args, **kwargs)

    return with_settings


def _parents(ctx: click.Context) -> Iterator[click.Context]:
    while ctx.parent is not None:
        ctx = ctx.parent
        yield ctx


def date_option(help: str = "Issue date (default: the newest post date in the store).") -> Decorator:
    return click.option("--date", "day", type=Day(), help=help)


FREQUENCY_HELP = "Which issue: the day's (default) or that of the Monday-Sunday week containing --date."


def frequency_option(help: str = FREQUENCY_HELP) -> Decorator:
    """--frequency daily|weekly, and --weekly as its short form; the command gets `frequency`."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def merged(*args: Any, frequency: str | None = None, weekly: bool = False, **kwargs: Any) -> Any:
            if weekly and frequency == "daily":
                raise click.UsageError("--weekly contradicts --frequency daily")
            return fn(*args, frequency="weekly" if weekly else frequency or "daily", **kwargs)

        merged = click.option("--weekly", is_flag=True, help="Same as --frequency weekly.")(merged)
        return click.option(
            "--frequency", type=click.Choice([str(f) for f in FREQUENCIES]), help=help + " [default: daily]"
        )(merged)

    return decorate


def subscriber_frequency_option(default: str | None = None) -> Decorator:
    return click.option(
        "--frequency",
        type=click.Choice([str(f) for f in FREQUENCIES]),
        default=default,
        show_default=bool(default),
        help="daily: every day's issue; weekly: one issue a week (Monday-Sunday).",
    )


def since_until(kind: click.ParamType, since: str, until: str) -> Decorator:
    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn = click.option("--until", type=kind, help=until)(fn)
        return click.option("--since", type=kind, help=since)(fn)

    return decorate


def format_option(*choices: str) -> Decorator:
    """--format, the first choice being the default (a table for people; json/jsonl is the stable interface)."""
    return click.option(
        "--format", "fmt", type=click.Choice(choices), default=choices[0], show_default=True, help="Output format."
    )


def source_option(help: str) -> Decorator:
    return click.option("--source", metavar="NAME", help=help)


def dry_run_option(help: str) -> Decorator:
    return click.option("--dry-run", is_flag=True, help=help)


def language_option(*names: str, default: str | None = None, help: str = "Language mode.") -> Decorator:
    return click.option(
        *(names or ("--language",)),
        type=click.Choice([str(lang) for lang in LANGUAGES]),
        default=default,
        show_default=bool(default),
        help=help,
    )


def status_option(help: str) -> Decorator:
    return click.option("--status", type=click.Choice([str(s) for s in STATUSES]), help=help)


def out_option(help: str) -> Decorator:
    return click.option("--out", "folder", metavar="FOLDER", type=click.Path(file_okay=False), help=help)


def exit_status(code: int) -> None:
    """End the command with this status (after its output)."""
    click.get_current_context().exit(code)


# ---- output ------------------------------------------------------------------------------------------------


@contextmanager
def progress() -> Iterator[Callable[[str], None]]:
    """A one-line status on stderr for long work; silent when stderr is not a terminal."""
    if not err.is_terminal:
        yield lambda _message: None
        return
    with err.status("starting") as status:
        yield status.update


def table(title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]], right: tuple[str, ...] = ()) -> Table:
    grid = Table(title=title, title_justify="left")
    for col in columns:
        grid.add_column(col, justify="right" if col in right else "left", overflow="fold")
    for row in rows:
        grid.add_row(*map(Text, row))  # Text: a title like "[cs.CV] ..." is data, not rich markup
    return grid


def warn(kind: str, message: str, style: str = "yellow") -> None:
    """`kind: message` on stderr, the kind coloured on a terminal."""
    err.print(f"[{style}]{escape(kind)}:[/{style}] {escape(message)}")
