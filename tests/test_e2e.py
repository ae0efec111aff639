"""scripts/e2e from the test suite: the whole stack (PostgreSQL databases, Airflow api-server, scheduler and
dag-processor, an SMTP sink, the web app), about 80 s. Runs whenever PostgreSQL answers (as in CI);
NEWSLETTER_E2E=0 leaves it out of a quick local run."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.conftest import PG_SKIP, ROOT


@pytest.mark.skipif(bool(PG_SKIP), reason=f"scripts/e2e needs PostgreSQL: {PG_SKIP}")
@pytest.mark.skipif(os.environ.get("NEWSLETTER_E2E") == "0", reason="NEWSLETTER_E2E=0 skips scripts/e2e")
def test_e2e_script_passes():
    proc = subprocess.run([str(ROOT / "scripts" / "e2e")], capture_output=True, text=True, timeout=1020)
    print(proc.stdout[-4000:])
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert "e2e: PASSED" in proc.stdout
