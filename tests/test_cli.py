"""The CLI as an operator uses it: the main job, preview, archive, send, deliveries, subscribers, and every
expected failure as one line with its exit status. In-process through click's CliRunner, asserting on the
output and on the database afterwards; a few tests run the console entry point as a real process."""

from __future__ import annotations

import email
import json
import socket
import tomllib
from datetime import date
from email import policy
from pathlib import Path

import click
import pytest
from sqlalchemy import func, select

from newsletter.cli import cli
from newsletter.cli.options import spread_greedy
from newsletter.config import SAMPLE_DIR
from newsletter.db import get_engine, session_scope
from newsletter.db.models import Delivery, IssueRow, Paper, Subscriber
from newsletter.deliver import subscribers
from newsletter.pipeline import steps as pipeline
from newsletter.pipeline.ingest import ingest
from tests.cli_runner import invoke, one_line_error, run_console
from tests.conftest import ROOT, TEST_TOKEN_SECRET

SAMPLE_SUBSCRIBERS = {"ada@example.org", "li.wei@example.org", "grace@example.org", "alan@example.org"}
DAY = "2026-11-25"  # the sample's newest post date: its issue
EMPTY_DAY = "2026-12-30"  # nothing posted: no issue


def write_config(folder: Path, extra: str = "") -> Path:
    """A config like the repository's (bundled sample, SQLite, outbox), with everything under `folder`."""
    text = (ROOT / "newsletter.toml").read_text(encoding="utf-8")
    text = text.replace('path = "newsletter/sample', f'path = "{ROOT}/newsletter/sample')
    path = folder / "newsletter.toml"
    path.write_text(text + extra, encoding="utf-8")
    return path


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    write_config(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def runner(workdir: Path, db_url: str):
    """`newsletter ARGS` on the workdir's config and the given database; keyword arguments set environment
    variables."""

    def run(*args: str, input: str | None = None, **env: str):
        env = {"NEWSLETTER_CONFIG": str(workdir / "newsletter.toml"), "NEWSLETTER_DATABASE_URL": db_url, **env}
        return invoke(*args, input=input, **env)

    return run


@pytest.fixture
def nl(workdir, db_url):
    """The CLI on this test's database: SQLite, and PostgreSQL when it answers. The engine's pooled connections
    are closed afterwards: PostgreSQL's connection slots are shared with every other test."""
    yield runner(workdir, db_url)
    get_engine(db_url).dispose()


@pytest.fixture
def nl_sqlite(workdir):
    """The CLI on SQLite only, for what does not depend on the database."""
    return runner(workdir, f"sqlite:///{workdir}/store.db")


def outbox(workdir: Path) -> list[Path]:
    return sorted((workdir / "var" / "outbox" / "new").glob("*"))


def ledger(db_url: str) -> dict[str, str]:
    """email -> delivery status, for every ledger row."""
    with session_scope(db_url) as s:
        rows = s.execute(
            select(Subscriber.email, Delivery.status).join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        )
        return dict(rows.all())


def count(db_url: str, model) -> int:
    with session_scope(db_url) as s:
        return s.scalar(select(func.count()).select_from(model))


# ---- the operator's commands ------------------------------------------------------------------------------


def test_main_job_sends_each_subscriber_once(nl, workdir, db_url):
    imported = nl("subscribers", "import", str(SAMPLE_DIR / "subscribers.csv"))
    assert imported.exit_code == 0 and "import: 4 added" in imported.stdout
    first = nl("run")
    assert first.exit_code == 0, first.output
    assert f"issue {DAY}" in first.stdout and "sent 4" in first.stdout and "0 sources failed" in first.stdout
    assert ledger(db_url) == dict.fromkeys(SAMPLE_SUBSCRIBERS, "sent")
    assert len(outbox(workdir)) == 4
    again = nl("run")
    assert again.exit_code == 0 and "sent 0" in again.stdout
    assert len(outbox(workdir)) == 4  # exactly once across reruns
    report = json.loads(nl("deliveries", "--date", DAY, "--format", "json").stdout)
    assert report["counts"]["sent"] == 4 and report["total"] == 4 and report["issue_date"] == DAY
    recipients = {
        email.message_from_bytes(p.read_bytes(), policy=policy.default)["To"].addresses[0].addr_spec
        for p in outbox(workdir)
    }
    assert recipients == SAMPLE_SUBSCRIBERS
    assert (workdir / "var" / "archive" / f"{DAY}.html").is_file()
    table = nl("deliveries")  # without --date: the newest post date
    assert table.exit_code == 0 and f"({DAY}): 4 deliveries: pending 0, sending 0, sent 4" in table.stdout


def test_ingest_files_take_several_values_and_papers_reads_the_store(nl, db_url):
    markdown = sorted((SAMPLE_DIR / "markdown").iterdir())[0]
    result = nl("ingest", "--file", str(SAMPLE_DIR / "feed.xml"), str(markdown), "--source", "old")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("│ old ") == 2 and "0 sources failed" in result.stdout
    assert count(db_url, Paper) == 8  # the feed's 7 + the Markdown post's new one
    jsonl = nl("papers", "--format", "jsonl", "--since", "2026-11-25", "--until", "2026-11-25", "--limit", "3")
    records = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert len(records) == 3 and all(r["first_seen"] <= "2026-11-25" for r in records)
    assert {"arxiv_id", "title", "authors", "topics", "first_seen", "venue", "sightings"} <= set(records[0])


def test_ingest_exits_1_when_a_source_fails_and_still_ingests_the_rest(workdir, db_url):
    gone = '\n[[sources]]\nname = "gone"\nkind = "feed"\npath = "/nonexistent/atom.xml"\n'
    config = write_config(workdir, gone)
    result = invoke("ingest", NEWSLETTER_CONFIG=str(config), NEWSLETTER_DATABASE_URL=db_url)
    assert result.exit_code == 1
    assert "source gone failed" in result.stderr and "1 sources failed" in result.stdout
    assert count(db_url, Paper) == 9  # the three sample sources


def test_preview_writes_the_parts_exactly_as_sent(nl, workdir):
    nl("ingest")
    result = nl("preview", "--date", DAY, "--lang", "zh", "--out", "out")
    assert result.exit_code == 0, result.output
    out = workdir / "out"
    eml = email.message_from_bytes((out / f"{DAY}_zh.eml").read_bytes(), policy=policy.default)
    assert eml["Subject"].startswith(f"论文速递 {DAY}")
    assert eml.get_body(("html",)).get_content() == (out / f"{DAY}_zh.html").read_bytes().decode("utf-8")
    assert eml.get_body(("plain",)).get_content() == (out / f"{DAY}_zh.txt").read_bytes().decode("utf-8")
    assert eml.get_body(("html",))["Content-Transfer-Encoding"] == "base64"
    for name in (f"{DAY}_zh.html", f"{DAY}_zh.txt", f"{DAY}_zh.eml"):
        assert name in result.stdout and "KB" in result.stdout


def test_preview_topics_take_several_values(nl, workdir):
    nl("ingest")
    result = nl("preview", "--topics", "NeRF", "3DGS", "--lang", "en")  # default date: the newest post date
    assert result.exit_code == 0, result.output
    text = (workdir / "var" / "preview" / f"{DAY}_en_3DGS-NeRF.txt").read_text(encoding="utf-8")
    assert "5 papers · 2 topics" in text


def test_archive_writes_the_page(nl, workdir):
    nl("ingest")
    result = nl("archive", "--date", DAY, "--out", "arch")
    assert result.exit_code == 0 and (workdir / "arch" / f"{DAY}.html").is_file()
    assert f"arch/{DAY}.html" in result.stdout


@pytest.mark.parametrize("command", ["archive", "preview", "deliveries"])
def test_a_day_without_an_issue_exits_3(nl, workdir, command):
    nl("ingest")
    result = nl(command, "--date", EMPTY_DAY)
    assert result.exit_code == 3
    assert one_line_error(result).startswith(f"no issue for {EMPTY_DAY}")
    assert not (workdir / "var" / "archive" / f"{EMPTY_DAY}.html").exists()


def test_an_empty_store_has_no_issue_to_show(nl_sqlite):
    result = nl_sqlite("preview")
    assert result.exit_code == 3 and "run `newsletter ingest` first" in one_line_error(result)


def test_build_of_an_empty_day_exits_0_unless_empty_ok_is_false(nl, workdir, db_url):
    nl("ingest")
    built = nl("build", "--date", DAY)
    assert built.exit_code == 0 and f"for {DAY}: 8 papers in 5 topics" in built.stdout
    empty = nl("build", "--date", EMPTY_DAY)
    assert empty.exit_code == 0 and f"no issue for {EMPTY_DAY}" in empty.stderr
    text = (workdir / "newsletter.toml").read_text(encoding="utf-8").replace("# empty_ok = true", "empty_ok = false")
    (workdir / "newsletter.toml").write_text(text, encoding="utf-8")
    assert nl("build", "--date", EMPTY_DAY).exit_code == 3
    with session_scope(db_url) as s:
        assert s.scalars(select(IssueRow.issue_date)).all() == [date.fromisoformat(DAY)]


def test_send_dry_run_and_test_recipient_leave_the_ledger_alone(nl, workdir, db_url):
    nl("subscribers", "import", str(SAMPLE_DIR / "subscribers.csv"))
    nl("ingest")
    dry = nl("send", "--date", DAY, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "dry run: 4 message(s) would be sent" in dry.stdout and ledger(db_url) == {}
    test = nl("send", "--date", DAY, "--test-recipient", "ops@example.org")
    assert test.exit_code == 0, test.output
    assert "ops@example.org" in test.stdout and ledger(db_url) == {}
    assert len(outbox(workdir)) == 1  # only the test copy
    real = nl("send", "--date", DAY, "--workers", "2")
    assert "sent 4" in real.stdout and len(outbox(workdir)) == 5
    assert ledger(db_url) == dict.fromkeys(SAMPLE_SUBSCRIBERS, "sent")


def test_subscribers_add_set_remove_list(nl, db_url):
    added = nl("subscribers", "add", "Ada@Example.org", "--name", "Ada", "--language", "zh", "--topics", "3DGS;NeRF")
    assert added.exit_code == 0 and "added ada@example.org (zh, topics: 3DGS, NeRF)" in added.stdout
    changed = nl("subscribers", "set", "ada@example.org", "--language", "en", "--all-topics", "--status", "bounced")
    assert changed.exit_code == 0 and "ada@example.org: bounced, en, topics: all" in changed.stdout
    nl("subscribers", "add", "grace@example.org")
    listed = nl("subscribers", "list", "--status", "bounced")
    assert listed.stdout.splitlines()[-1] == "1 subscribers" and "ada@example.org" in listed.stdout
    assert nl("subscribers", "remove", "grace@example.org").stdout.strip() == "unsubscribed grace@example.org"
    with session_scope(db_url) as s:
        rows = {sub.email: (sub.status, sub.language, sub.topics) for sub in s.scalars(select(Subscriber))}
    assert rows == {
        "ada@example.org": ("bounced", "en", None),
        "grace@example.org": ("unsubscribed", "bilingual", None),
    }
    assert nl("subscribers", "remove", "grace@example.org", "--purge").exit_code == 0
    assert count(db_url, Subscriber) == 1
    again = nl("subscribers", "add", "ada@example.org")
    assert again.exit_code == 1 and "already subscribed" in one_line_error(again)


def test_db_upgrades_the_schema(nl, db_url):
    assert nl("db").stdout.startswith("database at head: ")
    assert nl("db", "upgrade", "head").exit_code == 0
    with session_scope(db_url) as s:
        assert s.scalar(select(func.count()).select_from(Subscriber)) == 0  # the tables exist


def test_venues_reads_comments_on_stdin():
    result = invoke("venues", input="Accepted by NeurIPS 2024 (spotlight)\nSubmitted to CVPR 2025\n")
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert first == {"accepted": True, "venue": "NeurIPS", "year": 2024, "track": "spotlight"}
    assert not second["accepted"]


def test_config_may_come_before_or_after_the_command(workdir, db_url):
    config = str(write_config(workdir))
    before = invoke("--config", config, "subscribers", "add", "a@example.org", NEWSLETTER_DATABASE_URL=db_url)
    after = invoke("subscribers", "list", "--config", config, NEWSLETTER_DATABASE_URL=db_url)
    assert before.exit_code == after.exit_code == 0 and "a@example.org" in after.stdout


# ---- usage and expected failures: one line, a documented exit status ----------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ingest", "--since", "2024-12-01"], "--since and --until go with --replay"),
        (["ingest", "--kind", "feed"], "--kind goes with --file"),
        (["papers", "--since", "yesterday"], "not a date (YYYY-MM-DD): 'yesterday'"),
        (["ingest", "--replay", "--since", "soon"], "not a date or datetime"),
        (["preview", "--lang", "fr"], "'fr' is not one of"),
        (["papers", "--format", "csv"], "'csv' is not one of"),
        (["ingest", "--file"], "requires an argument"),
        (["nope"], "No such command 'nope'"),
    ],
)
def test_usage_errors_exit_2(nl_sqlite, args, message):
    result = nl_sqlite(*args)
    assert result.exit_code == 2 and message in result.stderr


def _closed_port() -> int:
    with socket.socket() as probe:  # bound, never listening: connections are refused at once
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(
    ("args", "env", "code", "line"),
    [
        (
            ["papers"],
            {"NEWSLETTER_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/x"},
            1,
            "database error: connection failed: ",
        ),
        (
            ["papers"],
            {"NEWSLETTER_DATABASE_URL": "not a url"},
            2,
            "config error: NEWSLETTER_DATABASE_URL: not a database URL",
        ),
        (
            ["papers"],
            {"NEWSLETTER_DATABASE_URL": "nosuch://u:secret@h/db"},
            2,
            "config error: database URL nosuch://u:***@h/db",
        ),
        (
            ["send", "--test-recipient", "x@example.org"],
            {"NEWSLETTER_SMTP_URL": "smtp://127.0.0.1:{port}"},
            1,
            "delivery error: disconnected at connect: cannot connect to smtp 127.0.0.1:",
        ),
        (
            ["send", "--test-recipient", "x@example.org"],
            {"NEWSLETTER_SMTP_URL": "ftp://h"},
            2,
            "config error: SMTP URL",
        ),
        (["subscribers", "import", "missing.csv"], {}, 1, "error: No such file or directory: missing.csv"),
        (["--config", "missing.toml", "papers"], {}, 2, "config error: config file not found: missing.toml"),
        (["subscribers", "set", "nobody@example.org", "--name", "N"], {}, 1, "error: no subscriber nobody@example.org"),
    ],
    ids=[
        "db-unreachable",
        "db-url",
        "db-dialect",
        "smtp-refused",
        "smtp-url",
        "missing-file",
        "missing-config",
        "no-one",
    ],
)
def test_expected_failures_are_one_line(nl_sqlite, args, env, code, line):
    if args[0] == "send":
        nl_sqlite("ingest")  # an issue to send
    env = {"NEWSLETTER_TOKEN_SECRET": TEST_TOKEN_SECRET} | {k: v.format(port=_closed_port()) for k, v in env.items()}
    result = nl_sqlite(*args, **env)
    assert result.exit_code == code
    assert one_line_error(result).startswith(line)
    assert "secret" not in result.output


def test_a_csv_that_is_not_utf8_is_imported_with_names_intact(nl, workdir, db_url):
    (workdir / "people.csv").write_bytes("email,name,language,topics\nli@example.org,李伟,zh,\n".encode("gb18030"))
    result = nl("subscribers", "import", "people.csv")
    assert result.exit_code == 0 and "1 added" in result.output and "(read as gb18030" in result.output
    with session_scope(db_url) as s:
        assert [sub.name for sub in s.scalars(select(Subscriber))] == ["李伟"]


def test_a_bad_config_is_one_line_with_status_2(workdir):
    (workdir / "newsletter.toml").write_text('[[sources]]\nname = "x"\nkind = "nope"\npath = "a"\n', encoding="utf-8")
    result = invoke("ingest", NEWSLETTER_CONFIG=str(workdir / "newsletter.toml"))
    assert result.exit_code == 2 and "kind: Input should be 'feed', 'markdown' or 'text'" in one_line_error(result)


# ---- help ------------------------------------------------------------------------------------------------


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))


@pytest.mark.parametrize("path", list(_commands(cli)), ids=" ".join)
def test_every_command_has_help_with_an_example(path):
    result = invoke(*path, "--help")
    assert result.exit_code == 0
    assert "Example" in result.stdout and f"newsletter {' '.join(path)}" in result.stdout


def test_greedy_options_spread_their_values():
    args = ["--file", "a.xml", "b.md", "--kind", "feed", "--", "--file"]
    assert spread_greedy(args, {"--file"}) == ["--file", "a.xml", "--file", "b.md", "--kind", "feed", "--", "--file"]


# ---- the console entry point, as a real process running this checkout --------------------------------------


def test_the_child_process_imports_this_checkout(tmp_path):
    result = run_console(tmp_path, code="import newsletter.cli; print(newsletter.cli.__file__)")
    assert Path(result.stdout.strip()) == ROOT / "newsletter" / "cli" / "__init__.py", result.stderr


def test_main_job_through_python_m_newsletter(tmp_path):
    config = str(write_config(tmp_path))
    assert (
        run_console(
            tmp_path, "subscribers", "import", str(SAMPLE_DIR / "subscribers.csv"), NEWSLETTER_CONFIG=config
        ).returncode
        == 0
    )
    first = run_console(tmp_path, "run", NEWSLETTER_CONFIG=config)
    assert first.returncode == 0 and "sent 4" in first.stdout, first.stderr
    assert len(outbox(tmp_path)) == 4


def test_console_script_entry_point_exits_with_the_status(tmp_path):
    """What pip's `newsletter` script runs (pyproject's entry point), with status and stderr as documented."""
    entry = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]["newsletter"]
    module, function = entry.split(":")
    code = f"import sys; sys.argv[0] = 'newsletter'; from {module} import {function}; sys.exit({function}())"
    config = str(write_config(tmp_path))
    empty = run_console(tmp_path, "archive", "--date", EMPTY_DAY, code=code, NEWSLETTER_CONFIG=config)
    assert empty.returncode == 3 and empty.stderr.startswith(f"no issue for {EMPTY_DAY}: ")
    down = run_console(
        tmp_path,
        "papers",
        code=code,
        NEWSLETTER_CONFIG=config,
        NEWSLETTER_DATABASE_URL="postgresql+psycopg://nobody@127.0.0.1:1/x",
    )
    assert down.returncode == 1 and down.stderr.startswith("database error: ") and "Traceback" not in down.stderr


# ---- a pipeline case that lived here ---------------------------------------------------------------------


def test_subscriber_changing_language_after_render_still_gets_mail(sqlite_settings):
    """The DAG renders variants, then queues the ledger: a preference change in between must not break send."""
    with session_scope(sqlite_settings.database_url) as s:
        subscribers.import_csv(s, (SAMPLE_DIR / "subscribers.csv").read_text(encoding="utf-8"))
    ingest(sqlite_settings)
    issue, _ = pipeline.build_step(sqlite_settings, pipeline.period_for(sqlite_settings, date(2026, 11, 25)))
    pipeline.render_step(sqlite_settings, issue, pipeline.subscriber_variants(sqlite_settings))
    with session_scope(sqlite_settings.database_url) as s:  # a variant nobody had at render time
        subscribers.update(subscribers.get(s, "alan@example.org"), language="zh", topics="NeRF")
    pipeline.prepare_step(sqlite_settings, issue.issue_id)
    out = pipeline.send_step(sqlite_settings, issue.issue_id)
    assert out["sent"] == 4
    assert "zh|NeRF" in pipeline.load_variants(sqlite_settings, issue.issue_id)


@pytest.mark.parametrize("command", ["send", "run"])
def test_a_real_send_with_the_mail_server_down_is_one_line_and_loses_nothing(nl_sqlite, workdir, command):
    config = workdir / "newsletter.toml"
    config.write_text(config.read_text().replace("[delivery]\n", "[delivery]\nreconnect_tries = 0\n", 1))
    nl_sqlite("ingest")
    nl_sqlite("subscribers", "import", str(SAMPLE_DIR / "subscribers.csv"))
    env = {"NEWSLETTER_TOKEN_SECRET": TEST_TOKEN_SECRET, "NEWSLETTER_SMTP_URL": f"smtp://127.0.0.1:{_closed_port()}"}
    result = nl_sqlite(command, **env)
    assert result.exit_code == 1
    assert one_line_error(result).startswith("delivery error: send stopped: cannot connect after 1 tries: ")
    assert set(ledger(f"sqlite:///{workdir}/store.db").values()) == {"pending"}  # claims went back


def test_serve_on_an_address_in_use_is_one_line(nl_sqlite):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = nl_sqlite("serve", "--port", str(port), NEWSLETTER_TOKEN_SECRET=TEST_TOKEN_SECRET)
    assert result.exit_code == 1
    assert one_line_error(result) == f"error: cannot listen on 127.0.0.1:{port}: Address already in use"
