"""Self-service sign-up with double opt-in: the request, the confirmation and welcome emails, the purge.

- `request_signup()` records a confirmation request for a new address (the subscriber row is `pending`: no issue
  is ever queued for it) or for someone who unsubscribed (their status is left alone until they confirm). An
  active, bounced or complained address gets nothing and nothing changes: the web page answers the same in every
  case, so it never tells whether an address is known, and the form can never resubscribe a suppressed address.
- Rate limits: at most `[signup] max_per_address` confirmation emails per address per `address_window_hours`,
  and `max_per_client` per client per `client_window_hours`, counted from the request rows themselves (a
  request over a limit gets no row and no email, and the same answer).
- Exactly once per request: the row is written first (`pending`) and claimed (`pending -> sending`, one
  conditional UPDATE) before anything is sent, so one request gives at most one email however often the send is
  called; a sender killed between the claim and the server's answer leaves the row in `sending`, never resent
  (the person may ask again). Emails go through the configured transport, like issues (outbox or SMTP).
- `confirm()` (a POST only) activates a pending or unsubscribed address with the choices of that request and
  queues one welcome email (linking the latest archive page and the preferences page). Confirmation links are
  signed over the request id, the address and the expiry (`tokens.make_confirm_token`), and expire after
  `confirm_ttl_hours`.
- `purge_pending()` deletes pending subscribers not confirmed within `purge_after_days` (and every request row
  older than that): `newsletter subscribers purge-pending`, also run by the daily DAG.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import weakref
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import Any, ClassVar

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from newsletter.config import Settings, SignupSettings
from newsletter.db import session_scope
from newsletter.db.models import SignupRequest, Subscriber
from newsletter.deliver import tokens
from newsletter.deliver.message import MessageSettings, display_name, mail_address
from newsletter.deliver.subscribers import check_name, normalise_email, parse_language, parse_topics
from newsletter.deliver.transport import SendFailure, TransportError, TransportFactory, transport_factory
from newsletter.i18n import BILINGUAL, catalog
from newsletter.render.feed import archive_days
from newsletter.render.variant import greeting

log = logging.getLogger(__name__)
MAIL_TEMPLATES = Path(__file__).resolve().parents[1] / "templates" / "mail"
CONFIRM, WELCOME = "confirm", "welcome"


def utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def client_key(host: str | None) -> str | None:
    """The client address as stored for the per-client limit: a keyed hash, so the table holds no IP addresses."""
    if not host:
        return None
    return hmac.new(tokens.secrets()[0], f"client\x1f{host}".encode(), hashlib.sha256).hexdigest()[:32]


# ---- the request -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignupForm:
    """What the form asked for, validated (`parse_form`)."""

    email: str
    name: str
    language: str
    topics: list[str] | None  # None: every topic


def parse_form(email: str, name: str, language: str, topics: list[str] | None) -> SignupForm:
    """Validated and normalised; SubscriberError (with a reason) otherwise."""
    return SignupForm(normalise_email(email), check_name(name), parse_language(language), parse_topics(topics))


@dataclass(frozen=True)
class Outcome:
    """What a request did. The web page shows the same thing whatever this says; it is for logs and tests."""

    request_id: int | None  # a confirmation email to send, or None
    reason: str  # new | pending | unsubscribed | active | bounced | complained | limit-address | limit-client


def request_signup(session: Session, cfg: SignupSettings, form: SignupForm, client: str | None) -> Outcome:
    now = utcnow()
    sub = session.scalar(select(Subscriber).where(Subscriber.email == form.email))
    if sub is not None and sub.status not in ("pending", "unsubscribed"):
        return Outcome(None, sub.status)  # active: nothing to confirm; bounced/complained: an operator's call
    limited = _over_limit(session, cfg, form.email, client, now)
    if limited:
        log.info("sign-up: %s limit reached, no confirmation email", limited)
        return Outcome(None, f"limit-{limited}")
    reason = sub.status if sub is not None else "new"
    if sub is None:
        sub = _new_pending(session, form, now)
        if sub is None:  # a concurrent request created it a moment ago: that one sends the email
            return Outcome(None, "pending")
    elif sub.status == "pending":
        sub.updated_at = now  # restarts the purge clock: the new link must outlive it
    req = SignupRequest(
        subscriber_id=sub.id,
        kind=CONFIRM,
        email=form.email,
        client=client,
        name=form.name,
        language=form.language,
        topics=form.topics,
        status="pending",
        created_at=now,
        expires_at=now + timedelta(hours=cfg.confirm_ttl_hours),
    )
    session.add(req)
    session.flush()
    return Outcome(req.id, reason)


def _new_pending(session: Session, form: SignupForm, now: datetime) -> Subscriber | None:
    sub = Subscriber(email=form.email, name=form.name, language=form.language, topics=form.topics,
                     status="pending", status_reason="signed up on the web", status_changed_at=now,
                     created_at=now, updated_at=now)  # fmt: skip
    try:
        with session.begin_nested():  # a savepoint: the unique email may lose a race with a concurrent request
            session.add(sub)
    except IntegrityError:
        return None
    return sub


def _over_limit(session: Session, cfg: SignupSettings, email: str, client: str | None, now: datetime) -> str | None:
    """'address' or 'client' when one more confirmation email would exceed that limit, else None."""

    def count(*where: Any) -> int:
        query = select(func.count()).select_from(SignupRequest).where(SignupRequest.kind == CONFIRM, *where)
        return session.scalar(query) or 0

    since = now - timedelta(hours=cfg.address_window_hours)
    if count(SignupRequest.email == email, SignupRequest.created_at >= since) >= cfg.max_per_address:
        return "address"
    since = now - timedelta(hours=cfg.client_window_hours)
    if client and count(SignupRequest.client == client, SignupRequest.created_at >= since) >= cfg.max_per_client:
        return "client"
    return None


# ---- confirmation ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Confirmation:
    """A confirmation link looked up: `state` is valid | expired | done (the address is active already)."""

    state: str
    request: SignupRequest
    subscriber: Subscriber


def lookup(session: Session, token: str) -> Confirmation | None:
    """The request a confirmation token names, or None whatever the reason (forged, unknown, superseded by a
    bounce...). An unknown id still costs one HMAC per secret, so timing does not tell the cases apart."""
    try:
        rid, expires, _sig = tokens.parse_confirm_token(token)
    except tokens.TokenError:
        return None
    req = session.get(SignupRequest, rid) if 0 < rid <= 2**31 - 1 else None
    valid = tokens.verify_confirm(token, req.email if req else "nobody@invalid.invalid")
    if req is None or not valid or req.kind != CONFIRM or req.expires_at is None:
        return None
    if int(_aware(req.expires_at).timestamp()) != expires:
        return None
    sub = session.get(Subscriber, req.subscriber_id)
    if sub is None or sub.email != req.email:
        return None
    if sub.status == "active":
        return Confirmation("done", req, sub)
    if sub.status not in ("pending", "unsubscribed"):
        return None  # bounced or complained since: the link no longer does anything
    state = "expired" if utcnow() >= _aware(req.expires_at) else "valid"
    return Confirmation(state, req, sub)


def confirm(session: Session, token: str) -> tuple[Confirmation | None, int | None]:
    """(the lookup, the id of the welcome email to send). Activates the address with the request's choices when
    the link is valid; a second POST (or a concurrent one) finds it done and queues nothing."""
    found = lookup(session, token)
    if found is None or found.state != "valid":
        return found, None
    now, req, sub = utcnow(), found.request, found.subscriber
    # One conditional UPDATE: of two concurrent confirmations exactly one changes the row and sends the welcome.
    values = {"status": "active", "status_reason": "confirmed sign-up", "status_changed_at": now,
              "updated_at": now, "name": req.name, "language": req.language, "topics": req.topics}  # fmt: skip
    changed = session.execute(
        update(Subscriber)
        .where(Subscriber.id == sub.id, Subscriber.status.in_(("pending", "unsubscribed")))
        .values(**values)
        .execution_options(synchronize_session=False)
    ).rowcount
    session.refresh(sub)
    if changed != 1:
        return Confirmation("done", req, sub), None
    req.confirmed_at = now
    welcome = SignupRequest(subscriber_id=sub.id, kind=WELCOME, email=sub.email, client=None, name=sub.name,
                            language=sub.language, topics=sub.topics, status="pending", created_at=now)  # fmt: skip
    session.add(welcome)
    session.flush()
    return Confirmation("valid", req, sub), welcome.id


# ---- sending ---------------------------------------------------------------------------------------------


def send_request(settings: Settings, request_id: int, factory: TransportFactory | None = None) -> str:
    """Send the email of one request, at most once: 'sent', 'failed' (the reason is stored) or 'taken' (another
    call claimed it first, or it was sent already)."""
    with session_scope(settings.database_url) as session:
        claimed = session.execute(
            update(SignupRequest)
            .where(SignupRequest.id == request_id, SignupRequest.status == "pending")
            .values(status="sending", claimed_at=utcnow())
        ).rowcount
        if claimed != 1:
            return "taken"
    # The claim is committed before anything is sent: a second call, or a crash and a rerun, sends nothing more.
    try:
        with session_scope(settings.database_url) as session:
            req = session.get(SignupRequest, request_id)
            to = mail_address(req.email)
            msg = build_email(settings, req, session.get(Subscriber, req.subscriber_id))
        ms = MessageSettings.from_settings(settings)
        with (factory or transport_factory(settings))() as transport:
            transport.send(ms.from_email, to, msg)
    except (SendFailure, TransportError, OSError) as exc:
        log.warning("sign-up email %s not sent: %s", request_id, exc)
        _mark(settings, request_id, status="failed", error=str(exc)[:500])
        return "failed"
    except Exception as exc:  # a bug building this one email: say so, and leave no row stuck in `sending`
        log.exception("sign-up email %s: cannot build or send it", request_id)
        _mark(settings, request_id, status="failed", error=f"{type(exc).__name__}: {exc}"[:500])
        return "failed"
    _mark(settings, request_id, status="sent", sent_at=utcnow(), error=None)
    return "sent"


def _mark(settings: Settings, request_id: int, **values: Any) -> None:
    with session_scope(settings.database_url) as session:
        session.execute(update(SignupRequest).where(SignupRequest.id == request_id).values(**values))


def send_quietly(settings: Settings, request_id: int) -> None:
    """For the web app's background task: never raises (the page has been answered already)."""
    try:
        send_request(settings, request_id)
    except Exception:
        log.exception("sign-up email %s: unexpected error", request_id)


class SignupWorker:
    """Handles sign-up requests off the request path, one at a time, in one thread per web process.

    Why not in the request: the page must not tell a new address from a known one, and neither may its timing.
    Recording a new address (two inserts and a commit) and sending its email take tens of milliseconds that a
    known address does not (measured: 126 vs 77 ms median when done in the request). So the route only validates
    the form, answers, and then (a background task that only calls `submit`) hands it here: everything that
    depends on the address happens after the answer and outside the HTTP exchange (doing the work itself in a
    FastAPI background task would hold the keep-alive connection until it finished, a timing signal too).
    One thread also makes the rate limits exact: two requests are never counted at the same time.
    A request still queued when the process is killed is lost (its page said "check your inbox"; the person can
    ask again); nothing is ever sent twice."""

    _all: ClassVar[weakref.WeakSet[SignupWorker]] = weakref.WeakSet()
    MAX_QUEUED = 1000  # a flood of form posts is dropped beyond this (logged), instead of growing without bound

    def __init__(self, settings: Settings, max_queued: int = MAX_QUEUED) -> None:
        self.settings = settings
        self.max_queued = max_queued
        self.dropped = 0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="signup")
        self._futures: set[Future] = set()
        self._lock = threading.Lock()
        SignupWorker._all.add(self)

    def submit(self, form: SignupForm, client: str | None) -> bool:
        """Queue one request; False (and nothing queued) when `max_queued` are waiting already."""
        with self._lock:
            if len(self._futures) >= self.max_queued:
                self.dropped += 1
                log.warning("sign-up: %s requests queued, one dropped (%s so far)", self.max_queued, self.dropped)
                return False
            future = self._pool.submit(self._handle, form, client)
            self._futures.add(future)
        future.add_done_callback(self._done)
        return True

    def _done(self, future: Future) -> None:
        with self._lock:
            self._futures.discard(future)

    def _handle(self, form: SignupForm, client: str | None) -> None:
        try:
            with session_scope(self.settings.database_url) as session:
                outcome = request_signup(session, self.settings.signup, form, client)
            log.info("sign-up request: %s", outcome.reason)
            if outcome.request_id is not None:
                send_request(self.settings, outcome.request_id)
        except Exception:
            log.exception("sign-up request: unexpected error")

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Until every request handed over so far is handled (tests, shutdown)."""
        with self._lock:
            pending = list(self._futures)
        return not wait(pending, timeout=timeout).not_done

    @classmethod
    def wait_all(cls, timeout: float = 30.0) -> bool:
        return all(worker.wait_idle(timeout) for worker in list(cls._all))


# ---- the emails ------------------------------------------------------------------------------------------


def _mail_env() -> Environment:
    return Environment(
        loader=FileSystemLoader(str(MAIL_TEMPLATES)),
        autoescape=lambda name: bool(name) and name.endswith(".html.j2"),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _langs(mode: str) -> tuple[str, ...]:
    return BILINGUAL if mode == "bilingual" else (mode,)


def latest_archive_url(settings: Settings) -> str:
    days = archive_days(Path(settings.web.archive_dir))
    base = settings.web.base_url
    return f"{base}/archive/{days[0].isoformat()}" if days else f"{base}/archive/"


def _blocks(settings: Settings, req: SignupRequest, sub: Subscriber) -> tuple[str, list[dict[str, Any]], dict]:
    """(subject, one block of text per language, extra headers)."""
    base = settings.web.base_url
    sites = {"en": settings.render.site_name, "zh": settings.render.site_name_zh}
    blocks, headers = [], {}
    if req.kind == CONFIRM:
        expires = _aware(req.expires_at)
        url = f"{base}/confirm?token={tokens.make_confirm_token(req.id, req.email, int(expires.timestamp()))}"
        when = expires.strftime("%Y-%m-%d %H:%M UTC")
        for lang in _langs(req.language):
            ui, site = catalog(lang), sites[lang]
            blocks.append({
                "lang": ui.html_lang,
                "subject": ui("signup.confirm_subject", site=site),
                "paragraphs": [ui("signup.confirm_intro", site=site, email=req.email)],
                "links": [(ui("signup.confirm_action"), url)],
                "notes": [ui("signup.confirm_expires", expires=when), ui("signup.confirm_ignore")],
            })  # fmt: skip
    else:
        unsubscribe = f"{base}/unsubscribe?token={tokens.make_token(sub.id, 'unsubscribe', sub.email)}"
        preferences = f"{base}/preferences?token={tokens.make_token(sub.id, 'preferences', sub.email)}"
        latest = latest_archive_url(settings)
        for lang in _langs(req.language):
            ui, site = catalog(lang), sites[lang]
            blocks.append({
                "lang": ui.html_lang,
                "subject": ui("signup.welcome_subject", site=site),
                "paragraphs": [ui("signup.welcome_intro", site=site)],
                "links": [(ui("signup.welcome_latest"), latest), (ui("signup.welcome_preferences"), preferences),
                          (ui("signup.welcome_unsubscribe"), unsubscribe)],
                "notes": [],
            })  # fmt: skip
        headers = {"List-Unsubscribe": f"<{unsubscribe}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
    return " | ".join(b["subject"] for b in blocks), blocks, headers


def build_email(settings: Settings, req: SignupRequest, sub: Subscriber) -> bytes:
    """The confirmation or welcome email of a request, text and HTML, in the language chosen on the form."""
    ms = MessageSettings.from_settings(settings)
    subject, blocks, headers = _blocks(settings, req, sub)
    env = _mail_env()
    ctx = {"greeting": greeting(req.language, display_name(req.name)), "blocks": blocks, "subject": subject,
           "html_lang": blocks[0]["lang"]}  # fmt: skip
    msg = EmailMessage()
    msg["From"] = ms.from_addr
    msg["To"] = formataddr((display_name(req.name), mail_address(req.email)))
    msg["Subject"] = subject
    msg["Date"] = format_datetime(utcnow().replace(microsecond=0))
    digest = hashlib.sha256(f"{req.id}|{req.kind}|{req.email}".encode()).hexdigest()[:10]
    msg["Message-ID"] = f"<signup-{req.id}.{req.kind}.{digest}@{ms.domain}>"
    if ms.reply_to:
        msg["Reply-To"] = ms.reply_to
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "OOF, AutoReply"
    for name, value in headers.items():
        msg[name] = value
    msg.set_content(env.get_template("signup.txt.j2").render(**ctx), cte="quoted-printable")
    msg.add_alternative(env.get_template("signup.html.j2").render(**ctx), subtype="html", cte="quoted-printable")
    return msg.as_bytes(policy=policy.SMTP)


# ---- purge -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PurgeReport:
    subscribers: int  # pending subscribers deleted
    requests: int  # request rows deleted (of every subscriber)

    def as_dict(self) -> dict[str, int]:
        return {"subscribers": self.subscribers, "requests": self.requests}


def purge_pending(session: Session, cfg: SignupSettings, now: datetime | None = None) -> PurgeReport:
    """Delete pending subscribers not confirmed within `purge_after_days` of their last request, and request
    rows older than that (they only count for rate limits, whose windows are shorter)."""
    cutoff = (now or utcnow()) - timedelta(days=cfg.purge_after_days)
    stale = select(Subscriber.id).where(Subscriber.status == "pending", Subscriber.updated_at < cutoff)
    ids = list(session.scalars(stale))
    requests = session.execute(
        delete(SignupRequest).where((SignupRequest.created_at < cutoff) | SignupRequest.subscriber_id.in_(ids))
    ).rowcount
    gone = session.execute(delete(Subscriber).where(Subscriber.id.in_(ids))).rowcount if ids else 0
    return PurgeReport(gone, requests)
