"""Drive the `newsletter` command in-process (click's CliRunner) or, for the few console-script tests, as a real
process that imports THIS checkout. Either way the environment carries no NEWSLETTER_* setting of the caller's
shell except those a test gives, so a developer's NEWSLETTER_SMTP_URL never leaks into a test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner, Result

from newsletter.cli import cli
from tests.conftest import ROOT


def clean_env(**settings: str) -> dict[str, str | None]:
    """CliRunner env: every NEWSLETTER_* of this process unset (None), then `settings`."""
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("NEWSLETTER_")}
    env.update(settings)
    return env


def invoke(*args: str, input: str | None = None, **env: str) -> Result:
    """`newsletter ARGS` in this process. Unexpected exceptions propagate (a traceback fails the test); the
    expected ones must have become a one-line message and an exit status."""
    return CliRunner().invoke(cli, list(args), input=input, env=clean_env(**env), catch_exceptions=False)


def one_line_error(result: Result) -> str:
    """The single stderr line of an expected failure (asserts there is exactly one, and no traceback)."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def run_console(cwd: Path, *args: str, code: str | None = None, **env: str) -> subprocess.CompletedProcess:
    """`python -m newsletter ARGS` (or `python -c CODE ARGS`) in a child process with a minimal environment and
    PYTHONPATH at this checkout, so it runs the code under test rather than whatever `newsletter` is installed."""
    child_env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "PYTHONPATH": str(ROOT), **env}
    command = [sys.executable, "-c", code] if code else [sys.executable, "-m", "newsletter"]
    return subprocess.run(
        [*command, *args], cwd=cwd, env=child_env, capture_output=True, text=True, timeout=300, check=False
    )
