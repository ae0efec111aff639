"""The weekly_newsletter DAG: its schedule from the config, how backfill dates map to weeks, and real runs with
`dag.test()` for a mix of daily and weekly subscribers (each gets only their own issue, exactly once)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.test_dags import (
    DAGS,
    SAMPLE_SOURCES,
    _base_env,
    _env,
    _inspect,
    _mails,
    _python,
    _run_dag,
    _sent_to,
    _write_config,
    airflow_db,  # noqa: F401 -- the fixture
)

WEEKLY_SUBSCRIBERS = """email,name,language,topics,frequency
ada@example.org,Ada Lovelace,bilingual,,weekly
li.wei@example.org,李伟,zh,3DGS;NeRF,weekly
grace@example.org,Grace Hopper,en,Diffusion Models;Talking Head Generation,daily
alan@example.org,,en,,daily
"""


def test_weekly_dag_schedule_comes_from_the_config(tmp_path):
    info = _inspect(tmp_path)  # no config: the default, Monday 08:00
    weekly = info["dags"]["weekly_newsletter"]
    assert info["errors"] == {}
    assert (weekly["timetable"], weekly["cron"], weekly["tz"]) == ("CronDataIntervalTimetable", "0 8 * * 1",
                                                                    "Asia/Shanghai")  # fmt: skip
    assert (weekly["catchup"], weekly["max_active_runs"]) == (False, 1)
    assert set(weekly["tasks"]) == {"enabled_sources", "ingest", "build_issue", "render_variants", "test_send",
                                    "prepare_ledger", "plan_senders", "send", "report"}  # fmt: skip
    assert weekly["tasks"]["build_issue"]["max_active_tis_per_dag"] == 1
    for name in ("ingest", "send"):
        t = weekly["tasks"][name]
        assert t["mapped"] and t["retries"] >= 1 and t["backoff"] > 1, (name, t)
    config = tmp_path / "n.toml"
    config.write_text('[issue]\nweekly_send_day = "Friday"\nweekly_send_time = 07:30:00\n', encoding="utf-8")
    assert _inspect(tmp_path, NEWSLETTER_CONFIG=str(config))["dags"]["weekly_newsletter"]["cron"] == "30 7 * * 5"
    config.write_text('[issue]\nweekly_send_day = "sunday"\nweekly_send_time = "18:05"\n', encoding="utf-8")
    assert _inspect(tmp_path, NEWSLETTER_CONFIG=str(config))["dags"]["weekly_newsletter"]["cron"] == "5 18 * * 0"
    env = {"NEWSLETTER_CONFIG": str(config), "NEWSLETTER_WEEKLY_CRON": "0 6 * * 2"}
    assert _inspect(tmp_path, **env)["dags"]["weekly_newsletter"]["cron"] == "0 6 * * 2"
    config.write_text('[issue]\nweekly_send_day = "someday"\n', encoding="utf-8")
    errors = _inspect(tmp_path, NEWSLETTER_CONFIG=str(config))["errors"]
    assert any("weekly_send_day must be one of monday" in e for e in errors.values()), errors


# What `airflow backfill create --from-date ... --to-date ...` iterates for the weekly DAG (dates in UTC, as the
# CLI parses them), and the week each run sends (the task's own function, on the run's logical date).
BACKFILL = """
import json, sys
from pathlib import Path
import pendulum
from airflow.dag_processing.dagbag import BundleDagBag
from airflow.serialization.encoders import coerce_to_core_timetable
from airflow.timetables.base import TimeRestriction

sys.path.append(sys.argv[1])
import _digest_common as common

bag = BundleDagBag(dag_folder=sys.argv[1], bundle_path=Path(sys.argv[1]))
tt = coerce_to_core_timetable(bag.dags["weekly_newsletter"].timetable)
out = []
for first, last in json.loads(sys.argv[2]):
    restriction = TimeRestriction(pendulum.parse(first), pendulum.parse(last), catchup=True)
    info, runs = None, []
    while info := tt.next_dagrun_info_v2(last_dagrun_info=info, restriction=restriction):
        week = common.issue_week({"logical_date": info.logical_date}, "Asia/Shanghai")
        runs.append([info.logical_date.in_timezone("Asia/Shanghai").isoformat(), info.run_after.in_timezone(
            "Asia/Shanghai").isoformat(), week.isoformat()])
    out.append(runs)
print("RESULT " + json.dumps(out))
"""


def _backfill(tmp_path: Path, ranges: list[list[str]], **env: str) -> list:
    proc = _python(BACKFILL, {**_base_env(tmp_path), **env}, str(DAGS), json.dumps(ranges))
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT ") :])


def test_backfill_dates_map_to_weeks(tmp_path):
    """README: give the Monday of the first week and the Sunday of the last; each week gets one run, which
    sends that week and starts at the next send-day tick. Same with another send day."""
    monday = _backfill(tmp_path, [["2024-11-25", "2024-12-08"]])
    assert monday == [[
        ["2024-11-25T08:00:00+08:00", "2024-12-02T08:00:00+08:00", "2024-11-25"],
        ["2024-12-02T08:00:00+08:00", "2024-12-09T08:00:00+08:00", "2024-12-02"],
    ]]  # fmt: skip
    config = tmp_path / "n.toml"
    config.write_text('[issue]\nweekly_send_day = "wednesday"\n', encoding="utf-8")
    wednesday = _backfill(tmp_path, [["2024-11-25", "2024-12-08"]], NEWSLETTER_CONFIG=str(config))
    assert [[run[0][:10], run[2]] for run in wednesday[0]] == [
        ["2024-11-27", "2024-11-25"],
        ["2024-12-04", "2024-12-02"],
    ]
    assert wednesday[0][0][1] == "2024-12-04T08:00:00+08:00"  # the week 11-25 .. 12-01 goes out on Wednesday 12-04


def test_weekly_and_daily_runs_send_each_reader_their_own_issue_once(tmp_path, airflow_db):  # noqa: F811
    """The sample week (2026-11-23 .. 29): the weekly run sends the weekly issue to the two weekly readers only;
    a re-run (a cleared run, a backfill) sends nothing more; the daily run for 2026-11-25 sends the daily issue to
    the daily readers only. Both issues feature the same papers: once per frequency."""
    csv = tmp_path / "subscribers.csv"
    csv.write_text(WEEKLY_SUBSCRIBERS, encoding="utf-8")
    env = _env(tmp_path, airflow_db, _write_config(tmp_path, SAMPLE_SOURCES))
    week_run = {"logical_date": "2026-11-23T00:00:00+00:00"}  # the Monday 08:00 tick of the week
    result = _run_dag(env, "weekly_newsletter", [week_run, week_run], subscribers=csv)
    assert [r["state"] for r in result["runs"]] == ["success", "success"], result
    first, again = result["runs"]
    assert first["tasks"]["report[-1]"] == "success" and first["tasks"]["test_send[-1]"] == "skipped"
    weekly_mails = _mails(tmp_path / "outbox")
    assert sorted(m["Delivered-To"] for m in weekly_mails) == ["ada@example.org", "li.wei@example.org"]
    assert all("2026-11-23 – 2026-11-29" in m["Subject"] for m in weekly_mails)
    assert (tmp_path / "archive" / "week-2026-11-23.html").is_file()
    assert "send[0]" not in again["tasks"]  # nothing pending on the re-run: no sender at all

    daily = _run_dag(env, "digest_newsletter", [{"logical_date": "2026-11-25T00:00:00+00:00"}], subscribers=None)
    assert daily["runs"][0]["state"] == "success", daily
    mails = _mails(tmp_path / "outbox")
    assert len([m for m in mails if "2026-11-23 – 2026-11-29" in m["Subject"]]) == 2  # no weekly mail again
    daily_mails = [m for m in mails if "2026-11-23 – 2026-11-29" not in m["Subject"]]
    assert all("2026-11-25" in m["Subject"] for m in daily_mails)
    assert sorted(m["Delivered-To"] for m in daily_mails) == ["alan@example.org", "grace@example.org"]
    assert _sent_to(tmp_path / "newsletter.db") == sorted(
        ["ada@example.org", "li.wei@example.org", "alan@example.org", "grace@example.org"]
    )


def test_airflow_backfill_create_makes_one_run_per_week(tmp_path, airflow_db):  # noqa: F811
    """The real `airflow backfill create --dry-run` (the CLI an operator runs, README "Daily or weekly"): from the
    Monday of the first week to the Sunday of the last, one run per week, logical date = the week's Monday tick."""
    import shutil
    import subprocess
    import sys

    home = tmp_path / "airflow"
    home.mkdir()
    shutil.copy(airflow_db, home / "airflow.db")
    env = _base_env(home)
    airflow = [sys.executable, "-m", "airflow"]
    done = subprocess.run([*airflow, "dags", "reserialize"], env=env, cwd=home, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    args = ["backfill", "create", "--dag-id", "weekly_newsletter", "--from-date", "2024-11-25", "--to-date",
            "2024-12-08", "--dry-run"]  # fmt: skip
    done = subprocess.run([*airflow, *args], env=env, cwd=home, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = done.stdout[done.stdout.index("Runs to be attempted") :]
    assert re.findall(r"\| (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+00:00) ", table) == [
        "2024-11-25 00:00:00+00:00",  # 08:00 Asia/Shanghai: the week 2024-11-25 .. 12-01
        "2024-12-02 00:00:00+00:00",  # the week 2024-12-02 .. 12-08
    ]
