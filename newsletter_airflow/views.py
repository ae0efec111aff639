"""The "Paper Digest" pages: a FastAPI app that renders `newsletter.pipeline.status` with Jinja2.

No Airflow import here: `app.py` wires in Airflow's access check and the run lookup, so these pages can be
built and tested over a plain store. Pages are HTML with one inline stylesheet and no script, readable inside
the Airflow UI's iframe (which is sandboxed without scripts on DAG and run pages). Every link is root-relative
to where the app is mounted (`request.scope["root_path"]`), so it works under any Airflow base URL.

Routes (below the mount point, /paper-digest in Airflow):
  /                          every recent issue, last delivery errors, sources, subscribers (navigation view)
  /dags/{dag_id}             the DAG tab: the same overview for the newsletter's DAGs
  /runs/{dag_id}/{run_id}    the run tab: the issue that run built (or will build)
  /issues/{day}              one issue in full
  /archive/{day}             the issue's archive page, as `newsletter serve` publishes it
  /deliveries/{day}          JSON: exactly `newsletter deliveries --date DAY --format json`
  /status.json               JSON: the overview's data
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.params import Depends
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException

from newsletter.config import Settings
from newsletter.issue.build import Period
from newsletter.pipeline.send import deliveries_for_date
from newsletter.pipeline.status import issue_status, overview
from newsletter.pipeline.steps import archive_dir
from newsletter.web.app import parse_day as parse_iso_day

TEMPLATES = Path(__file__).resolve().parent / "templates"
DIGEST_DAG, INGEST_DAG = "digest_newsletter", "ingest_feeds"
NEWSLETTER_DAGS = (DIGEST_DAG, INGEST_DAG)
# Styles only (inline), no scripts, no forms; framed by the Airflow UI on the same origin only.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; " \
      "frame-ancestors 'self'"  # fmt: skip
# Archive pages are our own rendered issues (email HTML): inline styles, https images, nothing else.
ARCHIVE_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; base-uri 'none'; " \
              "form-action 'none'; frame-ancestors 'self'"  # fmt: skip
HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}

# The navigation icon, a page with lines of text: blue with a white rim and white lines, so it shows on the
# light navigation bar, on the dark one and on the highlighted (active) entry alike.
ICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><rect x="2.5" y="3.5" width="19" height="17" '
    'rx="3" fill="#1c6fd1" stroke="#ffffff" stroke-width="1.2"/><path d="M7 8.5h10M7 12h10M7 15.5h6" '
    'stroke="#ffffff" stroke-width="1.8" stroke-linecap="round"/></svg>'
)

SettingsLoader = Callable[[], Settings]
# (dag_id, run_id) -> the run as plain values (see app.resolve_run), or None when Airflow has no such run.
RunResolver = Callable[[str, str], dict[str, Any] | None]


def max_failures() -> int:
    """Consecutive failed fetches that make a source an alert: the DAGs' NEWSLETTER_ALERT_AFTER_FAILURES."""
    return int(os.environ.get("NEWSLETTER_ALERT_AFTER_FAILURES", "2"))


def parse_day(raw: str) -> date:
    """A YYYY-MM-DD path parameter (the web app's strict rule), or 404: nothing else may name a file or an issue."""
    day = parse_iso_day(raw)
    if day is None:
        raise HTTPException(404, f"not a date: {raw!r} (YYYY-MM-DD)")
    return day


def run_issue_day(run: dict[str, Any], timezone: str) -> tuple[date | None, str]:
    """The issue day of a digest_newsletter run, and where it comes from. What the run's `build_issue`
    returned wins: it is what the run actually built, whatever the timetable. Before that task ran, the
    day is worked out as the DAG does (dags/digest_newsletter.py `issue_day`): the local day the data
    interval covers, else (a manual run without one) the day before the run was due."""
    built = run.get("built") or {}
    if built.get("issue_date"):
        return date.fromisoformat(built["issue_date"]), "built by this run's build_issue"
    start, end = run.get("data_interval_start"), run.get("data_interval_end")
    if start is not None and end is not None and end > start:
        return Period.from_interval(start, end, timezone).last, "the run's data interval"
    if run.get("run_after") is not None:
        after = run["run_after"]
        return Period.from_interval(after - timedelta(days=1), after, timezone).last, "the day before the run"
    return None, "no data interval"


# ---- rendering --------------------------------------------------------------------------------------------


def _parse_time(value: str | datetime | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


def _when(value: str | datetime | None) -> str:
    moment = _parse_time(value)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if moment else "—"


def _ago(value: str | datetime | None, now: datetime | None = None) -> str:
    moment = _parse_time(value)
    if moment is None:
        return "never"
    seconds = ((now or datetime.now(UTC)) - moment).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if abs(seconds) >= size:
            amount = f"{abs(seconds) / size:.0f} {unit}"
            return f"{amount} ago" if seconds > 0 else f"in {amount}"
    return "just now"


def _size(n: int | None) -> str:
    if not n:
        return "—" if n is None else "0"
    return f"{n / 1000:.1f} KB" if n < 1_000_000 else f"{n / 1_000_000:.1f} MB"


def make_env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=["jinja2.ext.do"],
    )
    env.filters.update(when=_when, ago=_ago, size=_size)
    return env


class _Pages:
    """Templates plus what every page needs: where the app is mounted, and the settings of this request."""

    def __init__(self, load_settings: SettingsLoader) -> None:
        self.env = make_env()
        self.load_settings = load_settings

    def render(self, request: Request, name: str, status_code: int = 200, **ctx: Any) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        html = self.env.get_template(name).render(root=root, dag_ids=NEWSLETTER_DAGS, **ctx)
        return HTMLResponse(html, status_code=status_code, headers={**HEADERS, "Content-Security-Policy": CSP})


# ---- the app ----------------------------------------------------------------------------------------------


def create_app(
    load_settings: SettingsLoader,
    dependencies: Sequence[Depends] = (),
    resolve_run: RunResolver | None = None,
) -> FastAPI:
    """The pages over the store `load_settings()` names. `dependencies` guard every route (in Airflow: its
    access check); `resolve_run` looks a DAG run up (in Airflow: its metadata database)."""
    pages = _Pages(load_settings)
    app = FastAPI(
        title="Paper Digest", docs_url=None, redoc_url=None, openapi_url=None, dependencies=list(dependencies)
    )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        """401/403/404 as a short page for the iframe, as JSON for API clients; status and headers kept."""
        if "text/html" in request.headers.get("accept", ""):
            response = pages.render(request, "error.html.j2", exc.status_code, status=exc.status_code,
                                    detail=exc.detail)  # fmt: skip
        else:
            response = JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=HEADERS)
        response.headers.update(exc.headers or {})
        return response

    @app.get("/", response_class=HTMLResponse)
    def home(request: Request) -> Response:
        settings = load_settings()
        return pages.render(request, "overview.html.j2", data=overview(settings, max_failures=max_failures()))

    @app.get("/icon.svg")
    def icon() -> Response:
        return Response(ICON, media_type="image/svg+xml", headers={"Cache-Control": "private, max-age=86400"})

    @app.get("/status.json")
    def status_json() -> Response:
        return JSONResponse(overview(load_settings(), max_failures=max_failures()), headers=HEADERS)

    @app.get("/dags/{dag_id}", response_class=HTMLResponse)
    def dag_page(request: Request, dag_id: str) -> Response:
        if dag_id not in NEWSLETTER_DAGS:
            return pages.render(request, "other_dag.html.j2", dag_id=dag_id)
        data = overview(load_settings(), max_failures=max_failures())
        return pages.render(request, "overview.html.j2", data=data, dag_id=dag_id)

    @app.get("/runs/{dag_id}/{run_id:path}", response_class=HTMLResponse)
    def run_page(request: Request, dag_id: str, run_id: str) -> Response:
        settings = load_settings()
        if dag_id != DIGEST_DAG:
            # An ingest run (or another DAG): what it feeds is the sources table.
            data = overview(settings, max_failures=max_failures())
            return pages.render(request, "overview.html.j2", data=data, dag_id=dag_id, run_id=run_id)
        run = resolve_run(dag_id, run_id) if resolve_run else None
        day, basis = run_issue_day(run, settings.timezone) if run else (None, "")
        issue = issue_status(settings, day) if day else None
        return pages.render(
            request, "run.html.j2", dag_id=dag_id, run_id=run_id, run=run, day=day, basis=basis, issue=issue
        )

    @app.get("/issues/{day}", response_class=HTMLResponse)
    def issue_page(request: Request, day: str) -> Response:
        wanted = parse_day(day)
        issue = issue_status(load_settings(), wanted)
        if issue is None:
            raise HTTPException(404, f"no issue for {wanted}")
        return pages.render(request, "issue.html.j2", issue=issue)

    @app.get("/archive/{day}")
    def archive_page(day: str) -> Response:
        # The file name is rebuilt from the parsed date, never taken from the request.
        path = archive_dir(load_settings()) / f"{parse_day(day).isoformat()}.html"
        if not path.is_file():
            raise HTTPException(404, f"no archive page for {day} (written by render_variants / newsletter archive)")
        headers = {**HEADERS, "Content-Security-Policy": ARCHIVE_CSP}
        return FileResponse(path, media_type="text/html; charset=utf-8", headers=headers)

    @app.get("/deliveries/{day}")
    def deliveries(day: str) -> Response:
        wanted = parse_day(day)
        report = deliveries_for_date(load_settings(), wanted)
        if report is None:
            raise HTTPException(404, f"no issue for {wanted}")
        return JSONResponse(report, headers=HEADERS)

    return app
