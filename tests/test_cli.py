"""The CLI as an operator uses it, in subprocesses: the main job, preview, archive, send, deliveries."""

from __future__ import annotations

import email
import json
import subprocess
import sys
from datetime import date
from email import policy
from pathlib import Path

import pytest

from newsletter.config import SAMPLE_DIR
from tests.conftest import ROOT


@pytest.fixture
def workdir(tmp_path) -> Path:
    """A config like the repository's (bundled sample, SQLite, outbox), with everything under tmp_path."""
    text = (
        (ROOT / "newsletter.toml")
        .read_text(encoding="utf-8")
        .replace('path = "newsletter/sample', f'path = "{ROOT}/newsletter/sample')
    )
    (tmp_path / "newsletter.toml").write_text(text, encoding="utf-8")
    return tmp_path


def cli(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(workdir), "NEWSLETTER_CONFIG": str(workdir / "newsletter.toml")}
    return subprocess.run(
        [sys.executable, "-m", "newsletter.cli", *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def outbox(workdir: Path) -> list[Path]:
    return sorted((workdir / "var" / "outbox" / "new").glob("*"))


def test_main_job_sends_each_subscriber_once(workdir):
    assert cli(workdir, "subscribers", "import", str(SAMPLE_DIR / "subscribers.csv")).returncode == 0
    first = cli(workdir, "run")
    assert first.returncode == 0, first.stderr
    assert "issue 2026-11-25" in first.stdout and "sent 4" in first.stdout
    assert len(outbox(workdir)) == 4
    again = cli(workdir, "run")
    assert again.returncode == 0 and "sent 0" in again.stdout
    assert len(outbox(workdir)) == 4  # exactly once across reruns
    report = json.loads(cli(workdir, "deliveries", "--date", "2026-11-25", "--format", "json").stdout)
    assert report["counts"]["sent"] == 4 and report["total"] == 4
    recipients = {
        email.message_from_bytes(p.read_bytes(), policy=policy.default)["To"].addresses[0].addr_spec
        for p in outbox(workdir)
    }
    assert recipients == {"ada@example.org", "li.wei@example.org", "grace@example.org", "alan@example.org"}
    assert (workdir / "var" / "archive" / "2026-11-25.html").is_file()


def test_preview_writes_the_parts_exactly_as_sent(workdir):
    cli(workdir, "ingest")
    result = cli(workdir, "preview", "--date", "2026-11-25", "--lang", "zh", "--out", "out")
    assert result.returncode == 0, result.stderr
    out = workdir / "out"
    eml = email.message_from_bytes((out / "2026-11-25_zh.eml").read_bytes(), policy=policy.default)
    assert eml["Subject"].startswith("论文速递 2026-11-25")
    assert eml.get_body(("html",)).get_content() == (out / "2026-11-25_zh.html").read_bytes().decode("utf-8")
    assert eml.get_body(("plain",)).get_content() == (out / "2026-11-25_zh.txt").read_bytes().decode("utf-8")
    assert eml.get_body(("html",))["Content-Transfer-Encoding"] == "base64"
    for name in ("2026-11-25_zh.html", "2026-11-25_zh.txt", "2026-11-25_zh.eml"):
        assert name in result.stdout and "KB" in result.stdout


def test_archive_and_empty_dates(workdir):
    cli(workdir, "ingest")
    result = cli(workdir, "archive", "--date", "2026-11-25", "--out", "arch")
    assert result.returncode == 0 and (workdir / "arch" / "2026-11-25.html").is_file()
    empty = cli(workdir, "archive", "--date", "2026-12-30")
    assert empty.returncode == 3 and "no issue for 2026-12-30" in empty.stderr


def test_send_dry_run_and_test_recipient_leave_the_ledger_alone(workdir):
    cli(workdir, "subscribers", "import", str(SAMPLE_DIR / "subscribers.csv"))
    cli(workdir, "ingest")
    dry = cli(workdir, "send", "--date", "2026-11-25", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    test = cli(workdir, "send", "--date", "2026-11-25", "--test-recipient", "ops@example.org")
    assert test.returncode == 0, test.stderr
    assert len(outbox(workdir)) == 1  # only the test copy
    real = cli(workdir, "send", "--date", "2026-11-25")
    assert "sent 4" in real.stdout and len(outbox(workdir)) == 5


def test_bad_config_is_reported(workdir):
    (workdir / "newsletter.toml").write_text('[[sources]]\nname = "x"\nkind = "nope"\npath = "a"\n', encoding="utf-8")
    result = cli(workdir, "ingest")
    assert result.returncode == 2 and "kind must be one of" in result.stderr


def test_subscriber_changing_language_after_render_still_gets_mail(sqlite_settings):
    """The DAG renders variants, then queues the ledger: a preference change in between must not break send."""
    from newsletter.db import session_scope
    from newsletter.deliver import subscribers
    from newsletter.pipeline import steps as pipeline
    from newsletter.pipeline.ingest import ingest

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
