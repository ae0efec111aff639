"""Benchmark: how long Airflow's DagBag takes to parse dags/ (what the dag-processor repeats for every file).

Each run is a fresh process with its own AIRFLOW_HOME (nothing cached between runs) that imports Airflow first,
then parses dags/ with DagBag; the figure is DagBag's own per-file parse time summed over dags/ (Airflow's
import is the same for any DAG file and is not counted), best of N runs.
Last line: dag_parse_s=<best of N, seconds>; target < 0.3.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 0.3
PARSE = """
import json, sys
from pathlib import Path
from airflow.dag_processing.dagbag import BundleDagBag

# What the dag-processor uses: the bundle's folder goes on sys.path, so the DAG files share _digest_common.
bag = BundleDagBag(dag_folder=sys.argv[1], bundle_path=Path(sys.argv[1]))
assert not bag.import_errors, bag.import_errors
print("RESULT " + json.dumps(sum(s.duration.total_seconds() for s in bag.dagbag_stats)))
"""


def parse_once(home: Path) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "NEWSLETTER_", "_AIRFLOW"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
        PYTHONPATH=str(ROOT),
    )
    proc = subprocess.run(
        [sys.executable, "-c", PARSE, str(ROOT / "dags")], env=env, cwd=home, capture_output=True, text=True
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.exit(f"DagBag failed: {proc.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dag-parse-") as tmp:
        times = sorted(parse_once(Path(tmp)) for _ in range(args.runs))
    print(f"dags/ parse time (DagBag), {args.runs} fresh processes: " + ", ".join(f"{t:.3f}" for t in times))
    print(f"target < {TARGET_S} s")
    print(f"dag_parse_s={times[0]:.3f}")
    return 0 if times[0] < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
