"""`newsletter serve`: the small web app behind the links in every email.

Routes: one-click unsubscribe (RFC 8058) with a confirmation page for people, the preferences form, the web
archive of past issues with its Atom feed (render/feed.py), the public sign-up form with its confirmation page
(double opt-in, deliver/signup.py) and a health check. Token pages (the confirmation link too) follow three rules:

- A bad token (forged, tampered, wrong purpose, unknown id, malformed, missing) always gets the same 400 page,
  byte for byte, and an unknown id still costs one HMAC per secret: the answer never tells whether an address
  or an id exists.
- GET never changes anything (link scanners and prefetchers follow every link in an email); POST acts at once,
  with no login and no second step. The token in the URL is what authorises the POST, so it is also the CSRF
  defence: a third-party page cannot post without knowing it.
- Tokens must not leak: no-store caching, `Referrer-Policy: no-referrer`, no external assets, and `serve()`
  strips them from the access log.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import socket
from dataclasses import dataclass
from datetime import date, timedelta
from functools import partial
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import BackgroundTasks, FastAPI, Form, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.requests import ClientDisconnect

from newsletter.config import Settings
from newsletter.db import session_scope
from newsletter.db.models import Subscriber
from newsletter.deliver import interests, signup, subscribers, tokens
from newsletter.i18n import BILINGUAL, catalog
from newsletter.registry.topics import known_topics, normalize_key, topic_names
from newsletter.render.feed import MEDIA_TYPE, archive_days, feed_entries, render_feed

log = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).resolve().parents[1] / "templates" / "web"
MAX_FORM_BYTES = 64 * 1024  # the preferences form is a few hundred bytes; one-click bodies are 26

# Stricter than tokens.parse_token (which goes through int(): it accepts "+1", "1_0" and full-width digits).
_TOKEN_SHAPE = re.compile(r"[0-9]{1,10}\.[a-z]\.[A-Za-z0-9_-]{1,64}")
_CONFIRM_SHAPE = re.compile(r"[0-9]{1,10}\.c\.[0-9]{1,12}\.[A-Za-z0-9_-]{1,64}")
_DUMMY_EMAIL = "nobody@invalid.invalid"  # signs the dummy HMAC for unknown ids
_MAX_ID = 2**31 - 1  # ids are INTEGER columns: PostgreSQL errors on a larger bound value instead of not finding it
_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")  # ASCII only: \d would accept other scripts' digits

BASE_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
# Archive pages are our own rendered issues: inline styles (email HTML), no scripts, no forms.
ARCHIVE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
PRIVATE_HEADERS = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex, nofollow"}


# ---- configuration ---------------------------------------------------------------------------------------


def web_archive_dir(settings: Settings) -> Path:
    """`[web] archive_dir` (default var/archive), relative to the config file like every other path."""
    return Path(settings.web.archive_dir)


@dataclass(frozen=True)
class _Web:
    """What the routes share: settings, templates, the stylesheet and the CSP that allows exactly it."""

    settings: Settings
    env: Environment
    css: Markup
    csp: str
    archive_dir: Path
    invalid_token_page: bytes  # rendered once, so every bad token gets exactly these bytes
    signups: signup.SignupWorker  # sign-up requests are handled off the request path

    def render(self, name: str, **ctx: Any) -> str:
        return self.env.get_template(name).render(css=self.css, **ctx)

    def page(self, name: str, status_code: int = 200, private: bool = True, **ctx: Any) -> HTMLResponse:
        headers = {"Content-Security-Policy": self.csp, **(PRIVATE_HEADERS if private else {})}
        return HTMLResponse(self.render(name, **ctx), status_code=status_code, headers=headers)

    def invalid_token(self) -> HTMLResponse:
        headers = {"Content-Security-Policy": self.csp, **PRIVATE_HEADERS}
        return HTMLResponse(self.invalid_token_page, status_code=400, headers=headers)


def _make_web(settings: Settings, templates_dir: Path) -> _Web:
    env = Environment(
        loader=FileSystemLoader(str(templates_dir)),
        autoescape=True,  # every template is HTML; .j2 names would defeat select_autoescape
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["page_langs"] = [catalog(lang) for lang in BILINGUAL]  # UI strings: templates/web/_macros.html.j2
    css = env.get_template("_style.css.j2").render().strip()
    # The one inline stylesheet is allowed by its hash: no 'unsafe-inline', no nonce plumbing.
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    csp = (
        f"default-src 'none'; style-src 'sha256-{digest}'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
    invalid = env.get_template("invalid_token.html.j2").render(css=Markup(css)).encode()
    return _Web(settings, env, Markup(css), csp, web_archive_dir(settings), invalid, signup.SignupWorker(settings))


# ---- tokens ----------------------------------------------------------------------------------------------


def subscriber_for_token(session: Session, token: str, purpose: str) -> Subscriber | None:
    """The subscriber a valid token of this purpose names, else None (whatever the reason)."""
    if not _TOKEN_SHAPE.fullmatch(token or ""):
        return None  # nothing looked up, so nothing to reveal
    try:
        sid, got_purpose, _sig = tokens.parse_token(token)
    except tokens.TokenError:
        return None
    sub = session.get(Subscriber, sid) if sid <= _MAX_ID else None
    # Always one HMAC per secret, against the stored email or a dummy, so timing does not tell the cases apart.
    valid = tokens.verify(token, sub.email if sub else _DUMMY_EMAIL, got_purpose)
    return sub if sub is not None and valid and got_purpose == purpose else None


def _link(route: str, sub: Subscriber, purpose: str) -> str:
    """Relative link ("preferences?token=..") so the app also works under a path prefix behind a proxy."""
    return f"{route}?token={quote(tokens.make_token(sub.id, purpose, sub.email), safe='')}"


def mask_email(email: str) -> str:
    """a…@example.org: enough for the owner to recognise, little for whoever the email was forwarded to."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}…@{domain}"


# ---- forms -----------------------------------------------------------------------------------------------


class PreferencesForm(BaseModel):
    """The preferences form as posted (FastAPI `Form`); every field optional, so a bad token still gets its 400."""

    language: str = ""
    scope: str = ""  # "all", or anything else for the ticked topics
    topic: list[str] = []
    frequency: str = ""  # "" (an older form): unchanged
    resubscribe: str = ""
    keywords: str | None = None  # "For you" interests (#11); None (a form without the field): unchanged
    seeds: str | None = None  # arXiv ids / links, one per line, or pasted BibTeX


# ---- unsubscribe -----------------------------------------------------------------------------------------


async def _is_one_click(request: Request) -> bool:
    """RFC 8058: mail clients POST "List-Unsubscribe=One-Click", urlencoded or multipart. The token in the URL is
    all that matters, so any body is accepted, even one the form parser refuses (not fastapi.Form, which would
    answer 400 and unsubscribe nobody): the body only labels the reason."""
    try:
        form = await request.form()
    except HTTPException as exc:
        if exc.status_code != 400:  # 413: over the size limit
            raise
        return False
    try:
        return form.get("List-Unsubscribe") == "One-Click"
    finally:
        await form.close()


def _unsubscribe_page(web: _Web, token: str) -> HTMLResponse:
    with session_scope(web.settings.database_url) as session:
        sub = subscriber_for_token(session, token, "unsubscribe")
        if sub is None:
            return web.invalid_token()
        return web.page(
            "unsubscribe.html.j2",
            email=mask_email(sub.email),
            already=sub.status != "active",
            preferences_url=_link("preferences", sub, "preferences"),
        )


def _unsubscribe(web: _Web, token: str, reason: str) -> HTMLResponse:
    with session_scope(web.settings.database_url) as session:
        sub = subscriber_for_token(session, token, "unsubscribe")
        if sub is None:
            return web.invalid_token()
        # Only an active address becomes unsubscribed. A bounced or complained one stays as it is: it already gets
        # nothing, and turning it into "unsubscribed" would let the preferences page resubscribe it, an operator's
        # decision. Either way the answer is the same success page.
        if sub.status == "active":
            subscribers.set_status(sub, "unsubscribed", reason)
        return web.page(
            "unsubscribed.html.j2",
            email=mask_email(sub.email),
            preferences_url=_link("preferences", sub, "preferences"),
        )


# ---- preferences -----------------------------------------------------------------------------------------


def _topic_choices(sub: Subscriber) -> list[dict[str, Any]]:
    """The registry's topics, then any topic the subscriber has that the registry lacks (kept selectable)."""
    chosen = {normalize_key(t) for t in sub.topics or []}
    keys = list(known_topics())
    registry = {normalize_key(k) for k in keys}
    keys += [t for t in sub.topics or [] if normalize_key(t) not in registry]
    choices = []
    for key in keys:
        en, zh = topic_names(key)
        choices.append({"key": key, "en": en, "zh": zh, "checked": normalize_key(key) in chosen})
    return choices


def _preferences_ctx(sub: Subscriber, **extra: Any) -> dict[str, Any]:
    return {
        "email": mask_email(sub.email),
        "status": sub.status,
        "language": sub.language,
        "frequency": sub.frequency,
        "all_topics": sub.topics is None,
        "topics": _topic_choices(sub),
        "unsubscribe_url": _link("unsubscribe", sub, "unsubscribe"),
        "keywords": sub.keywords or "",
        "seeds": "\n".join(s.get("arxiv_id") or s.get("title", "") for s in sub.seeds or []),
        "saved": False,
        "error": None,
        **extra,
    }


def _preferences_page(web: _Web, token: str) -> HTMLResponse:
    with session_scope(web.settings.database_url) as session:
        sub = subscriber_for_token(session, token, "preferences")
        if sub is None:
            return web.invalid_token()
        return web.page("preferences.html.j2", **_preferences_ctx(sub))


def _form_error(form: PreferencesForm, allowed: set[str]) -> str | None:
    """The catalog key ([web] table) of the message when the submitted form cannot be saved as it is."""
    if form.language not in subscribers.LANGUAGES:
        return "error_language"
    if form.frequency and form.frequency not in subscribers.FREQUENCIES:
        return "error_frequency"
    if form.scope != "all" and not [t for t in form.topic if t in allowed]:
        return "error_topics"
    return None


def _save_preferences(web: _Web, token: str, form: PreferencesForm) -> HTMLResponse:
    with session_scope(web.settings.database_url) as session:
        sub = subscriber_for_token(session, token, "preferences")
        if sub is None:
            return web.invalid_token()
        allowed = {c["key"] for c in _topic_choices(sub)}  # a tampered form cannot invent topics
        error = _form_error(form, allowed)
        if error:
            return web.page("preferences.html.j2", status_code=422, **_preferences_ctx(sub, error=error))
        try:
            keywords, seeds = _form_interests(form, sub)
        except interests.InterestsError as exc:
            key = "error_keywords" if "keywords" in str(exc) else "error_seeds"
            return web.page("preferences.html.j2", status_code=422, **_preferences_ctx(sub, error=key))
        picked = [t for t in form.topic if t in allowed]
        subscribers.update(
            sub,
            language=form.language,
            topics=picked,
            all_topics=form.scope == "all",
            frequency=form.frequency or None,
            keywords=keywords,
            seeds=seeds,
        )
        # Only the person's own "unsubscribed" is theirs to undo; bounces and complaints need an operator.
        if sub.status == "unsubscribed" and form.resubscribe == "1":
            subscribers.set_status(sub, "active", "resubscribed on the preferences page")
        return web.page("preferences.html.j2", **_preferences_ctx(sub, saved=True))


def _form_interests(form: PreferencesForm, sub: Subscriber) -> tuple[str | None, list[dict[str, str]] | None]:
    """(keywords, seeds) as `subscribers.update` takes them. Seeds: arXiv ids or links, or pasted BibTeX; a
    line that is a title shown back from a seed without id keeps that seed (the page cannot show its abstract)."""
    keywords = None if form.keywords is None else interests.parse_keywords(form.keywords) or ""
    if form.seeds is None:
        return keywords, None
    raw = form.seeds.strip()
    if raw.startswith("@"):
        found = interests.read_bibtex(raw, source="preferences")
        if not found.seeds:
            raise interests.InterestsError("no usable BibTeX entry")
        return keywords, found.seeds
    kept = {s.get("title", ""): s for s in sub.seeds or [] if not s.get("arxiv_id")}
    seeds: list[dict[str, str]] = []
    for line in raw.splitlines():
        line = line.strip()
        if line in kept:
            seeds.append(kept[line])
        elif line:
            seeds += interests.parse_seeds(line, files=False).seeds
    return keywords, seeds


# ---- sign-up ---------------------------------------------------------------------------------------------


class SubscribeForm(BaseModel):
    """The sign-up form as posted; every field optional so that a bad form gets its own page, not a 422 JSON."""

    email: str = ""
    name: str = ""
    language: str = "bilingual"
    scope: str = "all"
    topic: list[str] = []
    website: str = ""  # the honeypot: people never see it, so anything in it was typed by a bot


def _topic_list(chosen: list[str] | None) -> list[dict[str, Any]]:
    picked = {normalize_key(t) for t in chosen or []}
    choices = []
    for key in known_topics():
        en, zh = topic_names(key)
        choices.append({"key": key, "en": en, "zh": zh, "checked": normalize_key(key) in picked})
    return choices


def _subscribe_page(web: _Web, form: SubscribeForm | None = None, error: str | None = None) -> HTMLResponse:
    form = form or SubscribeForm()
    ctx = {"email": form.email, "name_value": form.name, "language": form.language, "all_topics": form.scope == "all",
           "topics": _topic_list(form.topic), "error": error}  # fmt: skip
    return web.page("subscribe.html.j2", status_code=422 if error else 200, private=bool(error), **ctx)


def _signup_error(form: SubscribeForm) -> tuple[str | None, signup.SignupForm | None]:
    """(catalog key of the problem, None) or (None, the validated form)."""
    allowed = set(known_topics())
    topics = [t for t in form.topic if t in allowed]
    if form.language not in subscribers.LANGUAGES:
        return "error_language", None
    if form.scope != "all" and not topics:
        return "error_topics", None
    try:
        subscribers.check_name(form.name)
    except subscribers.SubscriberError:
        return "error_name", None
    try:
        return None, signup.parse_form(form.email, form.name, form.language, None if form.scope == "all" else topics)
    except subscribers.SubscriberError:
        return "error_email", None


def _subscribe(web: _Web, form: SubscribeForm, host: str | None, background: BackgroundTasks) -> HTMLResponse:
    error, parsed = _signup_error(form)
    if error or parsed is None:
        return _subscribe_page(web, form, error or "error_email")
    if form.website.strip():
        log.info("sign-up: honeypot filled in, nothing done")
    else:
        # Nothing that depends on the address happens before the answer, not even a query: its content and its
        # timing are the same for a new, a known or a suppressed address (deliver.signup.SignupWorker). Handed
        # over once the answer is out, so the worker does not even compete with it for the interpreter.
        background.add_task(web.signups.submit, parsed, signup.client_key(host))
    hours = f"{web.settings.signup.confirm_ttl_hours:g}"
    return web.page("subscribe_sent.html.j2", email=parsed.email, hours=hours)


def _confirm(web: _Web, token: str, background: BackgroundTasks | None) -> HTMLResponse:
    """GET (background None) shows the button; POST confirms."""
    if not _CONFIRM_SHAPE.fullmatch(token or ""):
        return web.invalid_token()
    with session_scope(web.settings.database_url) as session:
        if background is None:
            found, welcome = signup.lookup(session, token), None
        else:
            found, welcome = signup.confirm(session, token)
        if found is None:
            return web.invalid_token()
        state = "confirmed" if welcome is not None else found.state
        email = found.subscriber.email
    if welcome is not None and background is not None:
        background.add_task(signup.send_quietly, web.settings, welcome)
    hours = f"{web.settings.signup.confirm_ttl_hours:g}"
    return web.page("confirm.html.j2", status_code=410 if state == "expired" else 200, state=state,
                    email=mask_email(email), hours=hours)  # fmt: skip


# ---- archive ---------------------------------------------------------------------------------------------


def parse_day(raw: str) -> date | None:
    """A YYYY-MM-DD calendar date, or None: the only thing an archive URL may name."""
    if not _ISO_DAY.fullmatch(raw):
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        return None


def archive_dates(folder: Path) -> list[date]:
    """Dates with an archive page, newest first."""
    return archive_days(folder)


def _feed(web: _Web) -> Response:
    """The Atom feed, built like the `feed.xml` written next to the archive pages (render/feed.py)."""
    r, base = web.settings.render, web.settings.web.base_url
    with session_scope(web.settings.database_url) as session:
        body = render_feed(feed_entries(session, web.archive_dir), base, r.site_name, r.site_name_zh)
    headers = {"Cache-Control": "public, max-age=300"}
    return Response(body, media_type=f"{MEDIA_TYPE}; charset=utf-8", headers=headers)


def archive_weeks(folder: Path) -> list[dict[str, str]]:
    """Weekly issues with an archive page (`week-<Monday>.html`), newest first, as {first, last} ISO dates."""
    if not folder.is_dir():
        return []
    weeks = []
    for path in folder.glob("week-*.html"):
        monday = parse_day(path.name.removeprefix("week-").removesuffix(".html"))
        if monday and monday.weekday() == 0 and path.is_file():
            weeks.append(monday)
    return [{"first": d.isoformat(), "last": (d + timedelta(days=6)).isoformat()} for d in sorted(weeks, reverse=True)]


def _archive_file(web: _Web, raw: str) -> Response:
    weekly = raw.startswith("week-")
    day = parse_day(raw.removeprefix("week-"))
    # The file name is rebuilt from the parsed date, never from the request: nothing else can be reached.
    path = web.archive_dir / f"{'week-' if weekly else ''}{day.isoformat()}.html" if day else None
    if path is None or not path.is_file():
        return web.page("not_found.html.j2", status_code=404, private=False)
    headers = {"Content-Security-Policy": ARCHIVE_CSP, "Cache-Control": "public, max-age=300"}
    return FileResponse(path, media_type="text/html; charset=utf-8", headers=headers)


# ---- health ----------------------------------------------------------------------------------------------


def _healthz(web: _Web) -> JSONResponse:
    try:
        with session_scope(web.settings.database_url) as session:
            session.execute(text("SELECT 1"))
    except Exception:
        log.exception("health check: database unavailable")  # details go to the log, not to the caller
        body, status = {"status": "error", "database": "unavailable"}, 503
    else:
        body, status = {"status": "ok", "database": "ok"}, 200
    return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


# ---- the app ---------------------------------------------------------------------------------------------


def create_app(settings: Settings, templates_dir: Path = TEMPLATES_DIR) -> FastAPI:
    web = _make_web(settings, templates_dir)
    app = FastAPI(title="paper-digest", docs_url=None, redoc_url=None, openapi_url=None)
    # Starlette's own slash redirect is absolute, built from the Host header: an attacker's Host would come
    # back in Location. The one such redirect worth keeping (/archive) is a relative route below.
    app.router.redirect_slashes = False
    get = partial(app.api_route, methods=["GET", "HEAD"])  # HEAD wherever GET (FastAPI's get() answers 405)

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> Response:
        # Sent by the outermost middleware, past security_headers: the headers are set here. Starlette still
        # re-raises, so the server logs the traceback.
        headers = {**BASE_HEADERS, "Content-Security-Policy": web.csp, **PRIVATE_HEADERS}
        return PlainTextResponse("internal server error", status_code=500, headers=headers)

    # Bodies over MAX_FORM_BYTES get 413: at once by Content-Length, else counted as they stream in.
    app.add_middleware(RequestBodyLimitMiddleware, max_body_size=MAX_FORM_BYTES)

    @app.exception_handler(413)
    async def too_large(_request: Request, _exc: Exception) -> Response:
        return PlainTextResponse("Content Too Large", status_code=413)  # the middleware's own answer, as text

    @app.exception_handler(ClientDisconnect)
    async def client_left(_request: Request, _exc: Exception) -> Response:
        # Routine on the internet, and nobody gets this answer: an INFO line, not an ERROR with a traceback.
        log.info("client disconnected before its request body was read")
        return PlainTextResponse("client disconnected", status_code=400)

    @app.exception_handler(400)
    async def bad_request(request: Request, exc: Exception) -> Response:
        # FastAPI turns a disconnect while it parses a Form body into a bare 400: say the same INFO line.
        if isinstance(exc.__cause__, ClientDisconnect):
            return await client_left(request, exc)
        return await http_exception_handler(request, exc)

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        for name, value in BASE_HEADERS.items():
            response.headers.setdefault(name, value)
        response.headers.setdefault("Content-Security-Policy", web.csp)
        return response

    @get("/", include_in_schema=False)
    def index() -> Response:
        return RedirectResponse("archive/", status_code=307)

    @get("/archive", include_in_schema=False)
    def archive_no_slash() -> Response:
        return RedirectResponse("archive/", status_code=307)  # relative: never the request's Host

    @get("/unsubscribe")
    def unsubscribe_page(token: str = "") -> Response:
        return _unsubscribe_page(web, token)

    @app.post("/unsubscribe")
    async def unsubscribe(request: Request, token: str = "") -> Response:
        reason = "one-click" if await _is_one_click(request) else "unsubscribe page"
        return await run_in_threadpool(_unsubscribe, web, token, reason)

    @get("/preferences")
    def preferences_page(token: str = "") -> Response:
        return _preferences_page(web, token)

    @app.post("/preferences")
    def preferences(form: Annotated[PreferencesForm, Form()], token: str = "") -> Response:
        return _save_preferences(web, token, form)

    @get("/subscribe")
    def subscribe_page() -> Response:
        if not settings.signup.enabled:
            return web.page("not_found.html.j2", status_code=404, private=False)
        return _subscribe_page(web)

    @app.post("/subscribe")
    def subscribe(form: Annotated[SubscribeForm, Form()], request: Request, background: BackgroundTasks) -> Response:
        if not settings.signup.enabled:
            return web.page("not_found.html.j2", status_code=404, private=False)
        return _subscribe(web, form, request.client.host if request.client else None, background)

    @get("/confirm")
    def confirm_page(token: str = "") -> Response:
        return _confirm(web, token, None)

    @app.post("/confirm")
    def confirm(background: BackgroundTasks, token: str = "") -> Response:
        return _confirm(web, token, background)

    @get("/feed.xml")
    def feed() -> Response:
        return _feed(web)

    @get("/archive/")
    def archive_index() -> Response:
        days = [d.isoformat() for d in archive_dates(web.archive_dir)]
        weeks = archive_weeks(web.archive_dir)
        return web.page("archive_index.html.j2", private=False, days=days, weeks=weeks)

    @get("/archive/{day}")
    def archive_page(day: str) -> Response:
        return _archive_file(web, day)

    @get("/healthz")
    def healthz() -> Response:
        return _healthz(web)

    return app


# ---- serving ---------------------------------------------------------------------------------------------

_TOKEN_IN_QUERY = re.compile(r"(token=)[^&\s\"]*")


def redact_tokens(text_: str) -> str:
    return _TOKEN_IN_QUERY.sub(r"\1[redacted]", text_)


class RedactTokens(logging.Filter):
    """Access-log lines carry the query string: a token there would be a working link in the logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact_tokens(a) if isinstance(a, str) else a for a in record.args)
        return True


def check_secret(host: str) -> None:
    """The development key is in the source code: with it anyone could forge unsubscribe and preferences links,
    so `serve` refuses it on every address, loopback included (a local proxy would publish it all the same)."""
    tokens.require_secret(f"serve on {host}")


def serve(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Run the app with uvicorn until interrupted. host/port default to `[web] host`/`port`, then
    127.0.0.1:8000. Behind a TLS-terminating proxy, which should also add HSTS."""
    import uvicorn

    host = host or settings.web.host
    port = port if port is not None else settings.web.port
    check_secret(host)
    app = create_app(settings)
    _check_listen(host, port)
    config = uvicorn.Config(app, host=host, port=port, server_header=False, log_level="info")
    # After Config: it (re)configures uvicorn's loggers.
    logging.getLogger("uvicorn.access").addFilter(RedactTokens())
    try:
        uvicorn.Server(config).run()
    except SystemExit as exc:  # uvicorn exits with status 3 when it cannot bind (taken between check and run)
        if exc.code:
            raise OSError(f"cannot listen on {host}:{port} (see the log line above)") from None
        raise


def _check_listen(host: str, port: int) -> None:
    """An address in use or a host that does not resolve is one line (exit status 1), before uvicorn starts and
    logs its own startup."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _name, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
            probe.bind(address)
    except OSError as exc:
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
