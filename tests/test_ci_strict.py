"""Under CI=true a skip for a missing component (PostgreSQL, Chromium, the corpus) is a failure; locally a skip."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

PROBE = """
import pytest

def test_needs_postgres():
    pytest.skip("PostgreSQL does not answer at postgresql://127.0.0.1:1/test")

def test_optional():
    pytest.skip("NEWSLETTER_E2E=0 skips scripts/e2e")
"""


@pytest.mark.parametrize(("ci", "code", "summary"), [("true", 1, "1 failed, 1 skipped"), ("", 0, "2 skipped")])
def test_missing_components_fail_only_on_ci(tmp_path, ci, code, summary):
    (tmp_path / "conftest.py").write_text(
        "from tests.conftest import pytest_make_collect_report, pytest_runtest_makereport\n"
    )
    (tmp_path / "test_probe.py").write_text(PROBE)
    env = {**os.environ, "CI": ci, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == code, proc.stdout
    assert summary in proc.stdout.splitlines()[-1]
    if ci:
        assert "required component is missing: Skipped: PostgreSQL does not answer" in proc.stdout


DEAD_PG = "postgresql+psycopg://postgres@127.0.0.1:1/test"  # nothing listens on port 1


@pytest.mark.parametrize(("ci", "code", "summary"), [("true", 1, "2 errors"), ("", 0, "2 skipped")])
def test_unreachable_postgres_fails_real_tests_on_ci(tmp_path, ci, code, summary):
    """The real conftest and real PostgreSQL-parametrised tests (not a probe), pointed at a dead server through
    NEWSLETTER_TEST_PG: under CI=true they fail with the server they could not reach; locally they skip."""
    env = {**os.environ, "CI": ci, "NEWSLETTER_TEST_PG": DEAD_PG, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "postgres", "-rsE", "tests/test_db.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == code, proc.stdout
    assert summary in proc.stdout.splitlines()[-1], proc.stdout
    reason = f"PostgreSQL does not answer at {DEAD_PG}: connection failed"
    named = [line for line in proc.stdout.splitlines() if line.startswith("ERROR tests/test_db.py::")]
    assert len(named) == (2 if ci else 0), proc.stdout
    assert all(f"[postgres] - CI=true and a required component is missing: Skipped: {reason}" in x for x in named)
    assert reason in proc.stdout
