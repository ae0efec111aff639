"""scripts/e2e from the test suite, on demand: it starts the whole stack (PostgreSQL databases, Airflow
api-server, scheduler and dag-processor, an SMTP sink, the web app) and takes about two minutes, so it runs
only when NEWSLETTER_E2E=1 (.ci/run sets it)."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.conftest import ROOT


@pytest.mark.skipif(os.environ.get("NEWSLETTER_E2E") != "1", reason="set NEWSLETTER_E2E=1 to run scripts/e2e")
def test_e2e_script_passes():
    proc = subprocess.run([str(ROOT / "scripts" / "e2e")], capture_output=True, text=True, timeout=660)
    print(proc.stdout[-4000:])
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert "e2e: PASSED" in proc.stdout
