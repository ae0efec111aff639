"""Transports: how finished message bytes leave. One interface, `open() / send(from, to, bytes) / close()`.

`SmtpTransport` speaks SMTP through smtplib (plain, STARTTLS or implicit TLS, optional AUTH). It holds ONE
connection for as long as it is open (the sender opens one per batch) and never retries by itself: a retry at
this level could deliver a message twice, so every failure is reported to the caller, who owns the ledger.
`send()` returns normally only when the server answered 250 to the end of DATA; otherwise it raises
`SendFailure` with a `kind`:

- `transient`: a 4xx answer to RCPT or DATA (greylisting, mailbox busy). Retry later.
- `permanent`: a 5xx answer to RCPT or DATA. `recipient_gone` says whether it condemns the address (any 5xx to
  RCPT, or an enhanced status 5.1.x / 5.2.1 at DATA, e.g. "550 5.1.1 user unknown"); a content rejection
  ("554 5.7.1 spam") fails only this message.
- `disconnected`: the connection dropped (server closed it, a socket error, a timeout, or a 421 "closing
  channel"). The message was not acknowledged: the caller puts it back and reconnects. RFC 5321 6.1 notes the
  one ambiguity: a drop after the final "." but before the server's reply, where the server may have kept it.
- `session`: the server refused our sender address (MAIL FROM); nothing to do with this recipient, and every
  further message would fail the same way: the caller stops the run.

`open()` raises `SendFailure(kind="disconnected")` when the server cannot be reached, and `TransportError`
for what a retry cannot fix (authentication refused, STARTTLS unsupported, an untrusted certificate).

SMTP settings, first found wins:
1. `NEWSLETTER_SMTP_URL`, a stable interface: `smtp://user:pass@host:587?tls=starttls`, `smtps://host` for
   implicit TLS; `?tls=none|starttls|ssl`; user and password percent-encoded; default ports 25 (none),
   587 (starttls), 465 (ssl); also `?timeout=30`, and `?cafile=/path/ca.pem` to trust exactly that CA for the
   relay (a private CA; default: the system's CA store). The certificate and host name are always verified.
2. `[delivery.smtp]` in the config: `url = "..."` (same syntax, without secrets), or `host`, `port`, `tls`,
   `username`; the password from `NEWSLETTER_SMTP_PASSWORD` (secrets never live in the file).
In the DAGs, when neither is set, the Airflow connection `smtp_default` (dags/_digest_common.py exports it as
NEWSLETTER_SMTP_URL): the library itself never imports Airflow.

`OutboxTransport` writes each message into a Maildir (`tmp/` then an atomic move into `new/`, by the stdlib's
`mailbox.Maildir`): the embedded default, so a fresh checkout can "send" without a mail server. Directory:
`[delivery] outbox` (default `var/outbox`, relative to the config file). One file per message; any mail client
opens it.
"""

from __future__ import annotations

import logging
import mailbox
import os
import re
import smtplib
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from newsletter.config import ConfigError, Settings, SmtpSettings
from newsletter.deliver import tokens
from newsletter.deliver.message import mail_address
from newsletter.records import TlsMode

log = logging.getLogger(__name__)
TLS_MODES = tuple(TlsMode)
DEFAULT_PORTS = {"none": 25, "starttls": 587, "ssl": 465}


class TransportError(Exception):
    """The transport cannot be used at all (bad credentials, TLS unavailable): stop, fix the configuration."""


class SendFailure(Exception):
    """One message was not accepted. `kind`: transient | permanent | disconnected | session (module docstring)."""

    def __init__(self, kind: str, code: int | None, detail: str, stage: str, recipient_gone: bool = False):
        super().__init__(f"{code or ''} {detail}".strip())
        self.kind, self.code, self.detail, self.stage = kind, code, detail, stage
        self.recipient_gone = recipient_gone

    def __str__(self) -> str:
        where = f" at {self.stage}" if self.stage else ""
        return f"{self.kind}{where}: {self.code or ''} {self.detail}".replace("  ", " ").strip()


class Transport(Protocol):
    def open(self) -> None: ...
    def send(self, from_addr: str, to_addr: str, msg: bytes) -> None: ...
    def close(self) -> None: ...
    def __enter__(self) -> Transport: ...
    def __exit__(self, *exc) -> None: ...


TransportFactory = Callable[[], Transport]


class _Base:
    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---- SMTP ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    tls: str = "none"  # none | starttls | ssl
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0
    local_hostname: str | None = None
    cafile: str | None = None  # trust exactly this CA (PEM) for the relay; None: the system's CA store

    def describe(self) -> str:
        """For logs and reports: never the password."""
        user = f"{self.username}@" if self.username else ""
        return f"smtp {user}{self.host}:{self.port} (tls={self.tls})"


def parse_smtp_url(url: str) -> SmtpConfig:
    """`smtp://user:pass@host:587?tls=starttls`, `smtps://host` (module docstring)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("smtp", "smtps"):
        raise ConfigError(f"SMTP URL must start with smtp:// or smtps://, got {parts.scheme or url!r}")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    try:
        port, timeout = parts.port, float(query.get("timeout", 30))
    except ValueError as exc:
        raise ConfigError(f"SMTP URL: {exc}") from exc
    tls = query.get("tls", "ssl" if parts.scheme == "smtps" else None)
    if tls is None:
        tls = "starttls" if port == 587 else "none"
    if tls not in TLS_MODES:
        raise ConfigError(f"SMTP URL: tls must be one of {', '.join(TLS_MODES)}, got {tls!r}")
    if not parts.hostname:
        raise ConfigError("SMTP URL has no host")
    port = port or DEFAULT_PORTS[tls]
    return SmtpConfig(
        host=parts.hostname,
        port=port,
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        timeout=timeout,
        cafile=query.get("cafile") or None,
    )


def _from_section(section: SmtpSettings) -> SmtpConfig:
    if section.url:
        cfg = parse_smtp_url(section.url)
    else:
        cfg = SmtpConfig(
            host=section.host or "",
            port=section.port or DEFAULT_PORTS[section.tls],
            tls=section.tls,
            username=section.username or None,
            timeout=section.timeout,
        )
    password = os.environ.get("NEWSLETTER_SMTP_PASSWORD")
    if password and cfg.password is None:
        cfg = replace(cfg, password=password)
    return cfg


def smtp_config(settings: Settings) -> SmtpConfig:
    """SMTP settings: NEWSLETTER_SMTP_URL, else [delivery.smtp]."""
    url = os.environ.get("NEWSLETTER_SMTP_URL")
    if url:
        return parse_smtp_url(url)
    if settings.delivery.smtp:
        return _from_section(settings.delivery.smtp)
    raise ConfigError("no SMTP settings: set NEWSLETTER_SMTP_URL or [delivery.smtp]")


_ADDRESS_GONE = ("5.1.", "5.2.1")  # bad mailbox / address, mailbox disabled (RFC 3463)


def _text(raw: bytes | str) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def _failure(code: int, raw: bytes | str, stage: str) -> SendFailure:
    detail = _text(raw)
    if code == 421 or code < 0:  # 421: the server is closing the channel; -1: smtplib saw a garbled reply
        return SendFailure("disconnected", code, detail, stage)
    if 400 <= code < 500:
        return SendFailure("transient", code, detail, stage)
    gone = stage == "rcpt" or detail.lstrip().startswith(_ADDRESS_GONE)
    return SendFailure("permanent", code, detail, stage, recipient_gone=gone)


def _may_need_dot_stuffing(msg: bytes, max_dots: int = 256) -> bool:
    """True when a line might start with "." (or when checking would take longer than stuffing). Walks the dots
    with find() (memchr): base64 bodies have none, headers a few; `b"\\n." in msg` is far slower here, because
    "\\n" occurs every 78 bytes and each occurrence is a false start."""
    if msg.startswith(b"."):
        return True
    i = msg.find(b".")
    for _ in range(max_dots):
        if i == -1:
            return False
        if msg[i - 1] == 10:  # "\n"
            return True
        i = msg.find(b".", i + 1)
    return i != -1


_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+")


def _esmtp_options(smtp: smtplib.SMTP, options) -> str:
    """The option list exactly as smtplib's mail() and rcpt() append it."""
    return " " + " ".join(options) if options and smtp.does_esmtp else ""


class _FastData:
    """smtplib's DATA dot-stuffs with a regex over the whole message, ~1 ms for a 140 KB digest. When no line
    starts with "." (always, for our base64 bodies) the stuffing is a no-op, and a cheap scan proves it."""

    # Hand-written on purpose (#8): on a 127 KB digest smtplib's stuffing costs 1.2-1.8 ms, this scan 0.01-0.02
    # ms; bench/send.py's raw loop sends 419 msg/s with smtplib's DATA and 767 msg/s with this one (1,000
    # subscribers). tests/test_deliver.py::test_fast_data_path_delivers_what_smtplib_delivers compares the two.

    # smtplib's MAIL and RCPT run every address through email.utils.parseaddr (~25 us each, per message); a
    # plain ASCII addr-spec (what mail_address() gives us) is quoted the same way by wrapping it in <>.
    def mail(self, sender, options=()):
        if not _PLAIN_ADDRESS.fullmatch(sender) or any(o.lower() == "smtputf8" for o in options):
            return super().mail(sender, options)
        self.putcmd("mail", f"FROM:<{sender}>{_esmtp_options(self, options)}")
        return self.getreply()

    def rcpt(self, recip, options=()):
        if not _PLAIN_ADDRESS.fullmatch(recip):
            return super().rcpt(recip, options)
        self.putcmd("rcpt", f"TO:<{recip}>{_esmtp_options(self, options)}")
        return self.getreply()

    def data(self, msg):
        if not isinstance(msg, bytes):
            return super().data(msg)
        if _may_need_dot_stuffing(msg):
            if not msg.count(b"\r") == msg.count(b"\n") == msg.count(b"\r\n"):
                return super().data(msg)  # bare CR or LF: smtplib also normalises the line endings
            # Every line ends in CRLF: stuffing is one C-level replace instead of smtplib's regex (3-4x faster
            # on the QP-encoded English digests, which hold a thousand dots and defeat the scan).
            msg = msg.replace(b"\r\n.", b"\r\n..")
            msg = b"." + msg if msg.startswith(b".") else msg
        self.putcmd("data")
        code, repl = self.getreply()
        if code != 354:
            raise smtplib.SMTPDataError(code, repl)
        self.send(msg + (b".\r\n" if msg.endswith(b"\r\n") else b"\r\n.\r\n"))
        return self.getreply()


class _SMTP(_FastData, smtplib.SMTP):
    pass


class _SMTPSSL(_FastData, smtplib.SMTP_SSL):
    pass


class SmtpTransport(_Base):
    def __init__(self, cfg: SmtpConfig, ssl_context: ssl.SSLContext | None = None):
        self.cfg = cfg
        self._ssl_context = ssl_context
        self._smtp: smtplib.SMTP | None = None

    def __repr__(self) -> str:
        return f"SmtpTransport({self.cfg.describe()})"

    @property
    def ssl_context(self) -> ssl.SSLContext:
        # Created on first use: loading the CA store costs ~50 ms, and a plain connection never needs it.
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context(cafile=self.cfg.cafile)
        return self._ssl_context

    def open(self) -> None:
        self.close()
        cfg = self.cfg
        try:
            if cfg.tls == "ssl":
                smtp = _SMTPSSL(cfg.host, cfg.port, cfg.local_hostname, timeout=cfg.timeout, context=self.ssl_context)
            else:
                smtp = _SMTP(cfg.host, cfg.port, cfg.local_hostname, timeout=cfg.timeout)
        except smtplib.SMTPConnectError as exc:
            raise SendFailure("disconnected", exc.smtp_code, _text(exc.smtp_error), "connect") from exc
        except ssl.SSLCertVerificationError as exc:  # before OSError: a retry cannot fix it
            raise TransportError(f"{cfg.describe()}: certificate not trusted: {exc.verify_message}") from exc
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            raise SendFailure("disconnected", None, f"cannot connect to {cfg.describe()}: {exc}", "connect") from exc
        try:
            self._handshake(smtp)
        except BaseException:
            _quietly_close(smtp)
            raise
        self._smtp = smtp

    def _handshake(self, smtp: smtplib.SMTP) -> None:
        cfg = self.cfg
        try:
            smtp.ehlo()
            if cfg.tls == "starttls":
                if not smtp.has_extn("starttls"):
                    raise TransportError(f"{cfg.describe()}: server does not offer STARTTLS")
                smtp.starttls(context=self.ssl_context)
                smtp.ehlo()
            if cfg.username:
                smtp.login(cfg.username, cfg.password or "")
        except smtplib.SMTPAuthenticationError as exc:
            raise TransportError(f"{cfg.describe()}: authentication refused: {exc.smtp_code}") from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise TransportError(f"{cfg.describe()}: {exc}") from exc
        except ssl.SSLCertVerificationError as exc:  # STARTTLS to a relay we do not trust
            raise TransportError(f"{cfg.describe()}: certificate not trusted: {exc.verify_message}") from exc
        except smtplib.SMTPResponseException as exc:
            raise SendFailure("disconnected", exc.smtp_code, _text(exc.smtp_error), "helo") from exc
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            raise SendFailure("disconnected", None, str(exc), "helo") from exc

    def send(self, from_addr: str, to_addr: str, msg: bytes) -> None:
        if self._smtp is None:
            raise SendFailure("disconnected", None, "not connected", "")
        from_addr, to_addr = mail_address(from_addr), mail_address(to_addr)
        options = self._utf8_options(to_addr) if not (from_addr.isascii() and to_addr.isascii()) else ()
        try:
            self._smtp.sendmail(from_addr, [to_addr], msg, mail_options=options)
        except smtplib.SMTPRecipientsRefused as exc:
            code, raw = next(iter(exc.recipients.values()))
            raise self._fail(_failure(code, raw, "rcpt")) from exc
        except smtplib.SMTPSenderRefused as exc:
            failure = _failure(exc.smtp_code, exc.smtp_error, "mail")
            if failure.kind != "disconnected":
                failure.kind = "session"
            raise self._fail(failure) from exc
        except smtplib.SMTPDataError as exc:
            raise self._fail(_failure(exc.smtp_code, exc.smtp_error, "data")) from exc
        except smtplib.SMTPResponseException as exc:
            raise self._fail(_failure(exc.smtp_code, exc.smtp_error, "")) from exc
        except (smtplib.SMTPServerDisconnected, OSError) as exc:  # SMTPException is an OSError: keep this last
            raise self._fail(SendFailure("disconnected", None, str(exc) or type(exc).__name__, "")) from exc

    def _utf8_options(self, to_addr: str) -> tuple[str, ...]:
        """MAIL FROM options for a non-ASCII address (RFC 6531); a server without SMTPUTF8 cannot take it, which
        fails this recipient only, at once and for good (retrying would change nothing)."""
        if not self._smtp.has_extn("smtputf8"):
            raise SendFailure("permanent", None, f"the server does not offer SMTPUTF8, needed for {to_addr}", "rcpt")
        return ("SMTPUTF8", "BODY=8BITMIME") if self._smtp.has_extn("8bitmime") else ("SMTPUTF8",)

    def _fail(self, failure: SendFailure) -> SendFailure:
        if failure.kind == "disconnected":
            self.close()  # the session state is unknown: never reuse it
        return failure

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            _quietly_close(smtp)

    def abort(self) -> None:
        """Drop the connection without QUIT: the session is mid-exchange (a message abandoned in flight), and a
        QUIT would wait for the answer to it."""
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            smtp.close()


def _quietly_close(smtp: smtplib.SMTP) -> None:
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        pass
    finally:
        smtp.close()


# ---- outbox ----------------------------------------------------------------------------------------------


class OutboxTransport(_Base):
    """A Maildir, written by the stdlib's `mailbox.Maildir`: each message goes to tmp/, is fsynced, then moved
    into new/ under a unique name (readers never see half a file). Mail clients and `mailbox` read it as is."""

    _lock = threading.Lock()  # Maildir's unique-name counter is a class attribute: one writer at a time

    def __init__(self, directory: str | os.PathLike):
        self.dir = Path(directory)
        self._box: mailbox.Maildir | None = None

    def __repr__(self) -> str:
        return f"OutboxTransport({self.dir})"

    def open(self) -> None:
        try:
            for sub in ("tmp", "new", "cur"):  # Maildir(create=True) makes neither parents nor missing subfolders
                (self.dir / sub).mkdir(parents=True, exist_ok=True)
            self._box = mailbox.Maildir(self.dir, factory=None, create=False)
        except OSError as exc:
            raise TransportError(f"outbox {self.dir}: {exc}") from exc

    def send(self, from_addr: str, to_addr: str, msg: bytes) -> None:
        if self._box is None:
            raise SendFailure("disconnected", None, "outbox not open", "")
        # Return-Path and Delivered-To record the envelope, as a delivery agent writing a Maildir would.
        envelope = f"Return-Path: <{from_addr}>\r\nDelivered-To: {to_addr}\r\n".encode()
        try:
            with OutboxTransport._lock:
                self._box.add(envelope + msg)  # bytes are written as they are
        except (OSError, mailbox.Error) as exc:
            raise SendFailure("disconnected", None, f"outbox {self.dir}: {exc}", "") from exc

    def close(self) -> None:
        box, self._box = self._box, None
        if box is not None:
            box.close()


def outbox_dir(settings: Settings) -> Path:
    return Path(settings.delivery.outbox)


def transport_kind(settings: Settings) -> str:
    if os.environ.get("NEWSLETTER_SMTP_URL"):
        return "smtp"
    return settings.delivery.transport


def transport_factory(settings: Settings) -> TransportFactory:
    """SMTP when NEWSLETTER_SMTP_URL is set or `[delivery] transport = "smtp"`, else the outbox. Real mail needs
    a real token secret; the outbox (the embedded demo) goes on with a warning."""
    if transport_kind(settings) == "smtp":
        tokens.require_secret("send mail over SMTP")
        cfg = smtp_config(settings)
        return lambda: SmtpTransport(cfg)
    tokens.warn_if_dev_secret("the outbox")
    directory = outbox_dir(settings)
    return lambda: OutboxTransport(directory)
