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
for what a retry cannot fix (authentication refused, STARTTLS unsupported).

SMTP settings, first found wins:
1. `NEWSLETTER_SMTP_URL`, a stable interface: `smtp://user:pass@host:587?tls=starttls`, `smtps://host` for
   implicit TLS; `?tls=none|starttls|ssl`; user and password percent-encoded; default ports 25 (none),
   587 (starttls), 465 (ssl); also `?timeout=30`.
2. `[delivery.smtp]` in the config: `url = "..."` (same syntax, without secrets), or `host`, `port`, `tls`,
   `username`; the password from `NEWSLETTER_SMTP_PASSWORD` (secrets never live in the file).
3. The Airflow connection `smtp_default` (host, port, login, password; extras `disable_ssl`, `disable_tls`,
   `timeout` with the SMTP provider's meaning). Airflow is imported only here, only when 1 and 2 are absent.

`OutboxTransport` writes each message as a .eml file into a Maildir (`tmp/` then an atomic rename into
`new/`): the embedded default, so a fresh checkout can "send" without a mail server. Directory: `[delivery]
outbox` (default `var/outbox`, relative to the config file). Any mail client can open the files.
"""

from __future__ import annotations

import os
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from newsletter.config import ConfigError, Settings
from newsletter.deliver.message import mail_address

TLS_MODES = ("none", "starttls", "ssl")
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
    )


def _from_section(raw: dict) -> SmtpConfig:
    if raw.get("url"):
        cfg = parse_smtp_url(raw["url"])
    else:
        if not raw.get("host"):
            raise ConfigError("[delivery.smtp] needs host (or url)")
        tls = raw.get("tls", "none")
        if tls not in TLS_MODES:
            raise ConfigError(f"[delivery.smtp] tls must be one of {', '.join(TLS_MODES)}, got {tls!r}")
        cfg = SmtpConfig(
            host=raw["host"],
            port=int(raw.get("port") or DEFAULT_PORTS[tls]),
            tls=tls,
            username=raw.get("username") or None,
            timeout=float(raw.get("timeout", 30)),
        )
    password = os.environ.get("NEWSLETTER_SMTP_PASSWORD")
    if password and cfg.password is None:
        cfg = SmtpConfig(cfg.host, cfg.port, cfg.tls, cfg.username, password, cfg.timeout)
    return cfg


def _from_airflow(conn_id: str = "smtp_default") -> SmtpConfig:
    """Read an Airflow connection ourselves: SmtpHook would add its own retries (a duplicate risk)."""
    try:
        try:
            from airflow.sdk import BaseHook
        except ImportError:  # Airflow 2
            from airflow.hooks.base import BaseHook
    except ImportError as exc:
        raise ConfigError(
            "no SMTP settings: set NEWSLETTER_SMTP_URL or [delivery.smtp] (Airflow is not installed)"
        ) from exc
    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception as exc:  # Airflow raises its own not-found type, which differs between versions
        raise ConfigError(f"no SMTP settings: NEWSLETTER_SMTP_URL, [delivery.smtp], Airflow {conn_id}: {exc}") from exc
    extra = conn.extra_dejson or {}
    # The SMTP provider's semantics: SSL unless disable_ssl; else STARTTLS unless disable_tls.
    if not extra.get("disable_ssl", False):
        tls = "ssl"
    elif not extra.get("disable_tls", False):
        tls = "starttls"
    else:
        tls = "none"
    return SmtpConfig(
        host=conn.host or "localhost",
        port=int(conn.port or DEFAULT_PORTS[tls]),
        tls=tls,
        username=conn.login or None,
        password=conn.password or None,
        timeout=float(extra.get("timeout", 30)),
    )


def smtp_config(settings: Settings) -> SmtpConfig:
    """SMTP settings: NEWSLETTER_SMTP_URL, else [delivery.smtp], else the Airflow connection smtp_default."""
    url = os.environ.get("NEWSLETTER_SMTP_URL")
    if url:
        return parse_smtp_url(url)
    section = settings.section("delivery").get("smtp")
    if section:
        return _from_section(section)
    return _from_airflow()


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


class _FastData:
    """smtplib's DATA dot-stuffs with a regex over the whole message, ~1 ms for a 140 KB digest. When no line
    starts with "." (always, for our base64 bodies) the stuffing is a no-op, and a cheap scan proves it."""

    def data(self, msg):
        if not isinstance(msg, bytes) or _may_need_dot_stuffing(msg):
            return super().data(msg)
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
            self._ssl_context = ssl.create_default_context()
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


def _quietly_close(smtp: smtplib.SMTP) -> None:
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        pass
    finally:
        smtp.close()


# ---- outbox ----------------------------------------------------------------------------------------------


class OutboxTransport(_Base):
    """A Maildir: each message written to tmp/, fsynced, then renamed into new/ (readers never see half a file)."""

    _counter = 0
    _lock = threading.Lock()

    def __init__(self, directory: str | os.PathLike):
        self.dir = Path(directory)

    def __repr__(self) -> str:
        return f"OutboxTransport({self.dir})"

    def open(self) -> None:
        for sub in ("tmp", "new", "cur"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)

    def _name(self) -> str:
        with OutboxTransport._lock:
            OutboxTransport._counter += 1
            n = OutboxTransport._counter
        now = time.time()
        return f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}Q{n}.{socket.gethostname().replace('/', '_')}.eml"

    def send(self, from_addr: str, to_addr: str, msg: bytes) -> None:
        name = self._name()
        tmp = self.dir / "tmp" / name
        # Return-Path and Delivered-To record the envelope, as a delivery agent writing a Maildir would.
        envelope = f"Return-Path: <{from_addr}>\r\nDelivered-To: {to_addr}\r\n".encode()
        try:
            with open(tmp, "wb") as fh:
                fh.write(envelope + msg)
                fh.flush()
                os.fsync(fh.fileno())
            os.rename(tmp, self.dir / "new" / name)
        except OSError as exc:
            raise SendFailure("disconnected", None, f"outbox {self.dir}: {exc}", "") from exc

    def close(self) -> None:
        pass


def outbox_dir(settings: Settings) -> Path:
    return settings.path(settings.section("delivery").get("outbox", "var/outbox"))


def transport_kind(settings: Settings) -> str:
    if os.environ.get("NEWSLETTER_SMTP_URL"):
        return "smtp"
    return settings.section("delivery").get("transport") or "outbox"


def transport_factory(settings: Settings) -> TransportFactory:
    """SMTP when NEWSLETTER_SMTP_URL is set or `[delivery] transport = "smtp"`, else the outbox."""
    kind = transport_kind(settings)
    if kind == "smtp":
        cfg = smtp_config(settings)
        return lambda: SmtpTransport(cfg)
    if kind == "outbox":
        directory = outbox_dir(settings)
        return lambda: OutboxTransport(directory)
    raise ConfigError(f'[delivery] transport must be "smtp" or "outbox", got {kind!r}')
