"""The "Paper Digest" Airflow plugin (package newsletter_airflow) and the paper-store asset.

- The plugin loads through the `airflow.plugins` entry point that pyproject.toml declares, and loading it
  stays light (every Airflow process loads plugins, task processes included).
- Its pages, served over real HTTP (uvicorn), show a real store: the bundled sample's issue built and sent by
  `newsletter run`, on SQLite and PostgreSQL, with failures recorded the way the sender and fetcher do.
- In a real `airflow api-server` (SQLite metadata database, simple auth manager) the pages answer only with a
  valid Airflow token: 401 without one, 403 with a bad one; the run tab resolves a run from Airflow's metadata.
- The ingest tasks emit a paper-store asset event when papers arrived, and none when nothing did (dag.test()).

Airflow runs in subprocesses with their own AIRFLOW_HOME, as in test_dags.py: it reads its configuration once
per process and keeps global state.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import tomllib
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from importlib.metadata import entry_points
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import select, update

from newsletter.config import SAMPLE_DIR, Settings, load_settings
from newsletter.db import session_scope
from newsletter.db.models import Delivery, FetchLog, Subscriber
from newsletter.pipeline.send import deliveries_for_date
from newsletter.pipeline.status import overview
from newsletter_airflow.views import create_app, run_issue_day
from tests.cli_runner import invoke
from tests.conftest import ROOT
from tests.test_dags import RUNNER, SAMPLE_SOURCES, _base_env, _python

DAY = date(2026, 11, 25)  # the bundled sample's day
SUBSCRIBERS = SAMPLE_DIR / "subscribers.csv"  # ada (en), li.wei (zh; 3DGS, NeRF), grace (en; 2 topics), alan (bi)
ENTRY_POINT = ("airflow.plugins", "paper_digest", "newsletter_airflow.plugin:PaperDigestPlugin")


def _write_config(folder: Path, database_url: str) -> Path:
    config = folder / "newsletter.toml"
    config.write_text(
        textwrap.dedent(f"""
        [newsletter]
        database_url = "{database_url}"
        archive_dir = "{folder}/raw"
        timezone = "Asia/Shanghai"

        [delivery]
        outbox = "{folder}/outbox"

        [web]
        base_url = "https://digest.example.org"
        archive_dir = "{folder}/archive"
        """)
        + SAMPLE_SOURCES,
        encoding="utf-8",
    )
    return config


def _record_trouble(settings: Settings) -> None:
    """What the sender and the fetcher write when things go wrong: a deferral, a bounce, an unsubscription,
    and a source failing twice in a row."""
    now = datetime.now(UTC)
    with session_scope(settings.database_url) as session:
        ids = dict(session.execute(select(Subscriber.email, Subscriber.id)).all())
        session.execute(
            update(Delivery)
            .where(Delivery.subscriber_id == ids["li.wei@example.org"])
            .values(status="failed", attempts=2, last_error="451 4.7.1 greylisted, try again later",
                    next_attempt_at=now + timedelta(minutes=30), updated_at=now)
        )  # fmt: skip
        session.execute(
            update(Delivery)
            .where(Delivery.subscriber_id == ids["grace@example.org"])
            .values(
                status="bounced",
                attempts=1,
                last_error="550 5.1.1 mailbox unavailable",
                updated_at=now - timedelta(minutes=1),
            )
        )
        session.execute(update(Subscriber).where(Subscriber.email == "grace@example.org").values(status="bounced"))
        session.execute(update(Subscriber).where(Subscriber.email == "alan@example.org").values(status="unsubscribed"))
        for seconds in (1, 2):  # after the run's own (successful) reads
            session.add(FetchLog(source="sample-text", location="/gone", fetched_at=now + timedelta(seconds=seconds),
                                 n_bytes=0, kind="text", error="no such path: /gone"))  # fmt: skip


@pytest.fixture
def store(db_url, tmp_path, monkeypatch) -> Settings:
    """The sample's issue of 2026-11-25, built, archived and sent to the four sample subscribers (outbox),
    by the CLI as an operator runs it; then some trouble recorded."""
    for name in [n for n in os.environ if n.startswith("NEWSLETTER_")]:
        monkeypatch.delenv(name)
    config = _write_config(tmp_path, db_url)
    assert invoke("--config", str(config), "subscribers", "import", str(SUBSCRIBERS)).exit_code == 0
    assert invoke("--config", str(config), "run", "--date", DAY.isoformat()).exit_code == 0
    settings = load_settings(config)
    _record_trouble(settings)
    return settings


class LiveApp:
    """An ASGI app on 127.0.0.1 and a free port, in a uvicorn thread (real HTTP, as the api-server serves it)."""

    def __init__(self, app) -> None:
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> httpx.Client:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        return self.client

    def __exit__(self, *exc) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(timeout=15)


def _runs(**runs: dict) -> object:
    """A run lookup over fixed runs, standing in for Airflow's metadata database (the api-server test below
    exercises the real one)."""
    return lambda dag_id, run_id: runs.get(run_id)


# ---- the entry point --------------------------------------------------------------------------------------

LOAD_PLUGIN = """
import json, sys
from importlib.metadata import EntryPoint
from airflow.plugins_manager import is_valid_plugin

group, name, value = sys.argv[1:4]
before = set(sys.modules)
plugin = EntryPoint(name=name, value=value, group=group).load()
print("RESULT " + json.dumps({
    "valid": is_valid_plugin(plugin), "name": plugin.name,
    "apps": [{k: v for k, v in a.items() if k != "app"} for a in plugin.fastapi_apps],
    "views": plugin.external_views,
    "imported": sorted(m for m in set(sys.modules) - before
                       if m.split(".")[0] in ("newsletter", "jinja2", "sqlalchemy")
                       or m.startswith(("newsletter_airflow.app", "newsletter_airflow.views",
                                        "airflow.api_fastapi.core_api.security"))),
}))
"""


def test_pyproject_declares_the_entry_point_and_it_loads_a_light_valid_plugin(tmp_path):
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["entry-points"]
    group, name, value = ENTRY_POINT
    assert declared[group] == {name: value}
    proc = _python(LOAD_PLUGIN, _base_env(tmp_path), group, name, value, timeout=300)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    plugin = json.loads(lines[-1][len("RESULT ") :])
    assert plugin["valid"] and plugin["name"] == "paper_digest"
    assert plugin["apps"] == [{"url_prefix": "/paper-digest", "name": "Paper Digest"}]
    views = {v["destination"]: v for v in plugin["views"]}
    assert set(views) == {"nav", "dag", "dag_run"}
    assert views["nav"]["href"] == "paper-digest/" and views["nav"]["name"] == "Paper Digest"
    assert views["dag"]["href"] == "paper-digest/dags/{DAG_ID}"
    assert views["dag_run"]["href"] == "paper-digest/runs/{DAG_ID}/{RUN_ID}"
    assert len({v["url_route"] for v in plugin["views"]}) == 3  # Airflow drops views whose routes collide
    # Task processes load every plugin: the app, the library and Airflow's security module wait for a request.
    assert plugin["imported"] == []


def test_the_installed_distribution_registers_the_entry_point():
    group, name, value = ENTRY_POINT
    installed = {ep.name: ep.value for ep in entry_points(group=group)}
    if name not in installed:
        pytest.skip(
            "the installed `newsletter` distribution predates the plugin: `pip install -e .` registers its entry "
            "point (./dev does it when pyproject.toml changes)"
        )
    assert installed[name] == value


# ---- the pages over a real store -------------------------------------------------------------------------


def test_overview_shows_issues_deliveries_sources_and_subscribers(store):
    data = overview(store, max_failures=2)
    (issue,) = data["issues"]
    assert (issue["issue_date"], issue["papers"], issue["highlights"]) == ("2026-11-25", 8, 1)
    assert sum(t["papers"] for t in issue["topics"]) == issue["featured"] == 9
    assert {t["name"] for t in issue["topics"]} >= {"3D Gaussian Splatting", "NeRF"}
    assert len(issue["variants"]) == 4 and 0 < issue["largest_html_bytes"] < issue["budget_bytes"] == 90_000
    assert issue["deliveries"] == {"pending": 0, "sending": 0, "sent": 2, "failed": 1, "bounced": 1, "skipped": 0}
    assert issue["archive_page"] and issue["archive_url"] == "https://digest.example.org/archive/2026-11-25"
    assert [(e["email"], e["status"]) for e in data["last_errors"]] == [
        ("li.wei@example.org", "failed"),
        ("grace@example.org", "bounced"),
    ]  # newest first
    sources = {s["name"]: s for s in data["sources"]}
    assert sources["sample-text"]["consecutive_failures"] == 2 and sources["sample-text"]["alert"]
    assert sources["sample-feed"]["consecutive_failures"] == 0 and not sources["sample-feed"]["alert"]
    assert sources["sample-feed"]["last_new_paper"]["post_date"] == "2026-11-25"
    assert sources["sample-feed"]["bytes_total"] == (SAMPLE_DIR / "feed.xml").stat().st_size
    subs = data["subscribers"]
    assert subs["totals"] == {"active": 2, "unsubscribed": 1, "bounced": 1, "complained": 0}
    assert subs["counts"]["active"] == {"en": 0, "zh": 1, "bilingual": 1}

    with LiveApp(create_app(lambda: store)) as http:
        page = http.get("/")
        assert page.status_code == 200 and "frame-ancestors 'self'" in page.headers["content-security-policy"]
        html = page.text
        expected = ("2026-11-25", "3D Gaussian Splatting", "2 sent", "1 failed", "1 bounced", "Needs attention",
                    "451 4.7.1 greylisted", "550 5.1.1 mailbox unavailable", "sample-text", "no such path: /gone",
                    'href="/issues/2026-11-25"', 'href="/archive/2026-11-25"',
                    'href="/deliveries/2026-11-25"')  # fmt: skip
        for text in expected:
            assert text in html, text
        assert "<script" not in html  # the iframe on DAG and run pages allows no scripts
        assert http.get("/status.json").json()["subscribers"]["totals"]["active"] == 2
        assert http.get("/dags/digest_newsletter").text.count("2026-11-25") >= 2
        assert "belongs to the digest_newsletter and ingest_feeds DAGs" in http.get("/dags/some_other_dag").text


def test_issue_page_and_the_deliveries_json_of_the_cli(store, capsys):
    with LiveApp(create_app(lambda: store)) as http:
        html = http.get("/issues/2026-11-25").text
        for text in ("Issue 2026-11-25", "zh", "3DGS, NeRF", "all topics", "/ 90.0 KB", "greylisted",
                     "https://digest.example.org/archive/2026-11-25"):  # fmt: skip
            assert text in html, text
        served = http.get("/deliveries/2026-11-25")
        missing = http.get("/deliveries/2026-11-24")
    result = invoke("--config", store.config_path, "deliveries", "--date", "2026-11-25", "--format", "json")
    assert result.exit_code == 0
    printed = json.loads(result.stdout.strip().splitlines()[-1])
    assert served.status_code == 200 and served.json() == printed == deliveries_for_date(store, DAY)
    assert printed["counts"]["failed"] == 1 and printed["failures"][0]["error"]
    assert missing.status_code == 404 and missing.json() == {"detail": "no issue for 2026-11-24"}


def test_archive_pages_and_days_that_name_nothing(store):
    with LiveApp(create_app(lambda: store)) as http:
        page = http.get("/archive/2026-11-25")
        assert page.status_code == 200 and "<title>Paper Digest 2026-11-25" in page.text
        assert "frame-ancestors 'self'" in page.headers["content-security-policy"]  # viewable in the iframe
        for bad in ("2026-11-24", "2026-13-01", "20261125", "2026-11-25.html", "..%2Fnewsletter.toml"):
            answer = http.get(f"/archive/{bad}", headers={"accept": "text/html"})
            assert answer.status_code == 404 and "<html" in answer.text, bad
        assert http.get("/issues/2026-11-24").status_code == 404


def test_run_tab_shows_the_issue_the_run_built():
    # The day of a run: what its build_issue returned, else its data interval as the DAG maps it, else (a
    # manual run without one) the day before it was due; local days in the newsletter's timezone.
    night = datetime(2026, 11, 25, 16, 0, tzinfo=UTC)  # 2026-11-26 00:00 in Shanghai
    interval = {"data_interval_start": datetime(2026, 11, 25, 0, 0, tzinfo=UTC),
                "data_interval_end": datetime(2026, 11, 26, 0, 0, tzinfo=UTC)}  # fmt: skip
    assert run_issue_day({**interval, "built": {"issue_date": "2026-11-20"}}, "Asia/Shanghai")[0] == date(2026, 11, 20)
    assert run_issue_day(interval, "Asia/Shanghai") == (DAY, "the run's data interval")
    assert run_issue_day({"run_after": night}, "Asia/Shanghai")[0] == DAY
    assert run_issue_day({}, "Asia/Shanghai") == (None, "no data interval")


def test_run_pages(store):
    runs = _runs(
        built={"state": "success", "built": {"issue_date": "2026-11-25", "issue_id": 1}},
        queued={"state": "queued", "built": None, "data_interval_start": datetime(2026, 11, 24, 0, 0, tzinfo=UTC),
                "data_interval_end": datetime(2026, 11, 25, 0, 0, tzinfo=UTC)},
    )  # fmt: skip
    with LiveApp(create_app(lambda: store, resolve_run=runs)) as http:
        built = http.get("/runs/digest_newsletter/built").text
        assert "Issue 2026-11-25" in built and "built by this run&#39;s build_issue" in built and "greylisted" in built
        queued = http.get("/runs/digest_newsletter/queued").text
        assert "No issue for 2026-11-24" in queued and "has not built it" in queued
        assert "has no run" in http.get("/runs/digest_newsletter/scheduled__2026-11-25T00:00:00+00:00").text
        assert "Sources" in http.get("/runs/ingest_feeds/manual__1").text  # an ingest run: the sources


# ---- a real api-server: Airflow's own access check -------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def airflow_db(tmp_path_factory) -> Path:
    """A migrated, empty Airflow metadata database (SQLite), copied by each user."""
    home = tmp_path_factory.mktemp("airflow-template")
    proc = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=_base_env(home), cwd=home,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return home / "airflow.db"


def _entry_point_path(folder: Path) -> list[str]:
    """sys.path entries that make the entry point visible to a subprocess of this interpreter. An install made
    before the plugin existed (a shared development venv) lacks it: a minimal distribution carrying exactly
    pyproject.toml's entry point stands in, so Airflow's own entry-point loader is what finds the plugin."""
    group, name, value = ENTRY_POINT
    if name in {ep.name for ep in entry_points(group=group)}:
        return []
    info = folder / "paper_digest_entry_point-0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: paper-digest-entry-point\nVersion: 0\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n{name} = {value}\n")
    return [str(folder)]


def _checkout_code(folder: Path) -> str:
    """A sys.path entry with this checkout's packages and nothing else. The checkout itself would do, but an
    editable install leaves newsletter.egg-info in it: Airflow would then find the entry point twice (that folder
    and the installed distribution) and report the second as a plugin import error."""
    folder.mkdir()
    for package in ("newsletter", "newsletter_airflow"):
        (folder / package).symlink_to(ROOT / package, target_is_directory=True)
    return str(folder)


@pytest.fixture(scope="module")
def api_server(airflow_db, tmp_path_factory) -> Iterator[dict]:
    """`airflow api-server` (simple auth manager, SQLite metadata with the DAGs serialized) over a store
    holding the sample's issue; yields its URL, an admin JWT and the environment."""
    tmp = tmp_path_factory.mktemp("api-server")
    home = tmp / "airflow"
    home.mkdir()
    (home / "airflow.db").write_bytes(airflow_db.read_bytes())
    (tmp / "passwords.json").write_text(json.dumps({"admin": "admin-pw"}))
    config = _write_config(tmp, f"sqlite:///{tmp}/newsletter.db")
    env = _base_env(home)
    env.update(
        PYTHONPATH=os.pathsep.join([*_entry_point_path(tmp / "site"), _checkout_code(tmp / "checkout")]),
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="admin:admin",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(tmp / "passwords.json"),
        AIRFLOW__API_AUTH__JWT_SECRET="test-jwt-secret-" + "x" * 32,
        AIRFLOW__API__SECRET_KEY="test-api-secret-" + "y" * 32,
        NEWSLETTER_CONFIG=str(config),
    )
    for args in (["subscribers", "import", str(SUBSCRIBERS)], ["run", "--date", DAY.isoformat()]):
        proc = subprocess.run([sys.executable, "-m", "newsletter", *args], env=env, cwd=tmp,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    proc = subprocess.run([sys.executable, "-m", "airflow", "dags", "reserialize"], env=env, cwd=home,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp / "api-server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "airflow", "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env=env, cwd=home, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while True:
            assert server.poll() is None, (tmp / "api-server.log").read_text()[-5000:]
            assert time.monotonic() < deadline, "the api-server did not answer in 240 s"
            try:
                if httpx.get(f"{url}/api/v2/monitor/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        token = httpx.post(f"{url}/auth/token", json={"username": "admin", "password": "admin-pw"}, timeout=30)
        yield {"url": url, "token": token.json()["access_token"], "log": tmp / "api-server.log"}
    finally:
        os.killpg(server.pid, 15)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
            server.wait(timeout=30)
        log.close()


def test_api_server_serves_the_view_only_to_airflow_users(api_server):
    url, token = api_server["url"], api_server["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    with (
        httpx.Client(base_url=url, timeout=60) as http,
        httpx.Client(base_url=url, timeout=60, cookies={"_token": token[:-4] + "AAAA"}) as tampered,
    ):
        plugins = http.get("/api/v2/plugins", headers=bearer).json()["plugins"]
        (plugin,) = [p for p in plugins if p["name"] == "paper_digest"]
        assert "EntryPoint(name='paper_digest'" in plugin["source"]
        assert {v["destination"] for v in plugin["external_views"]} == {"nav", "dag", "dag_run"}
        errors = http.get("/api/v2/plugins/importErrors", headers=bearer).json()
        assert errors["total_entries"] == 0, errors

        for path in ("/paper-digest/", "/paper-digest/status.json", "/paper-digest/issues/2026-11-25",
                     "/paper-digest/deliveries/2026-11-25", "/paper-digest/archive/2026-11-25",
                     "/paper-digest/runs/digest_newsletter/x", "/paper-digest/icon.svg"):  # fmt: skip
            assert http.get(path).status_code == 401, path  # no token
            assert http.get(path, headers={"Authorization": "Bearer not.a.jwt"}).status_code == 403, path
            assert tampered.get(path).status_code == 403, path  # a cookie whose signature does not match
        denied = http.get("/paper-digest/", headers={"accept": "text/html"})
        assert denied.status_code == 401 and "Not logged in to Airflow" in denied.text

        page = http.get("/paper-digest/", headers=bearer)  # an API client
        assert page.status_code == 200 and "2026-11-25" in page.text and "3D Gaussian Splatting" in page.text
        assert 'href="/paper-digest/issues/2026-11-25"' in page.text  # links below the mount point
        http.cookies.set("_token", token)  # the UI: the cookie its login page sets, in the iframe's requests
        assert http.get("/paper-digest/deliveries/2026-11-25").json()["counts"]["sent"] == 4
        http.cookies.clear()

        # A run for 2026-11-25 with the scheduler's dates, as the README triggers one (never started: no
        # scheduler here): the run tab finds it in Airflow's metadata database and maps it to its issue through
        # the data interval.
        run = {"dag_run_id": "proof-2026-11-25", "logical_date": "2026-11-25T00:00:00Z",
               "data_interval_start": "2026-11-25T00:00:00Z", "data_interval_end": "2026-11-26T00:00:00Z"}  # fmt: skip
        created = http.post("/api/v2/dags/digest_newsletter/dagRuns", json=run, headers=bearer)
        assert created.status_code == 200, created.text
        tab = http.get("/paper-digest/runs/digest_newsletter/proof-2026-11-25", headers=bearer).text
        assert "Issue 2026-11-25" in tab and "the run&#39;s data interval" in tab and "4 sent" in tab
        assert "has no run" in http.get("/paper-digest/runs/digest_newsletter/nope", headers=bearer).text


# ---- the paper-store asset -------------------------------------------------------------------------------


def test_ingest_emits_a_paper_store_event_only_when_papers_arrive(airflow_db, tmp_path):
    """Two ingest_feeds runs over the sample: the first stores its papers (one event per source, with the
    counts), the second finds nothing new (no event: the asset's last event is the last arrival)."""
    home = tmp_path / "airflow"
    home.mkdir()
    (home / "airflow.db").write_bytes(airflow_db.read_bytes())
    env = _base_env(home)
    env["NEWSLETTER_CONFIG"] = str(_write_config(tmp_path, f"sqlite:///{tmp_path}/newsletter.db"))
    runs = [{"logical_date": "2026-11-26T00:30:00+00:00"}, {"logical_date": "2026-11-26T01:30:00+00:00"}]
    spec = {"dags": str(ROOT / "dags"), "dag_id": "ingest_feeds", "subscribers": "", "runs": runs}
    proc = _python(RUNNER, env, json.dumps(spec), timeout=600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-6000:] + proc.stderr[-6000:]
    assert [r["state"] for r in json.loads(lines[-1][len("RESULT ") :])["runs"]] == ["success", "success"]
    with sqlite3.connect(home / "airflow.db") as db:
        events = db.execute(
            "SELECT e.source_run_id, e.source_task_id, e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id"
            " WHERE a.name = 'paper-store' AND a.uri = 'newsletter://paper-store/' ORDER BY e.id"
        ).fetchall()
        runs = [run_id for (run_id,) in db.execute("SELECT run_id FROM dag_run ORDER BY id")]
    assert {run_id for run_id, _, _ in events} == {runs[0]}, events  # the second run brought nothing: no event
    extras = [json.loads(extra) for _, _, extra in events]
    assert {e["source"] for e in extras} == {"sample-feed", "sample-markdown", "sample-text"}
    assert sum(e["papers_new"] for e in extras) == 9 and all(task == "record_arrivals" for _, task, _ in events)
