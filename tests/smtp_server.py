"""A real SMTP server for tests (aiosmtpd, 127.0.0.1, a free port) that counts what it accepted, per recipient,
and injects faults on demand:

- `drop_every=N`: on each connection, after N accepted messages the next MAIL FROM gets the connection cut
  (nothing of that message is accepted);
- `tempfail={addr: k}`: the first k RCPT TO for addr get "451 4.7.1" (then accepted); `tempfail_all=True`: every
  RCPT gets 451;
- `reject={addr}`: RCPT TO addr gets "550 5.1.1 user unknown";
- `refuse_sender=True`: every MAIL FROM gets "553 5.7.1 sender rejected" (a misconfigured relay);
- `hang_at=K`: the K-th accepted message is recorded as received but its "250" is held back until `release()`
  (the client is then stuck exactly where a crash is ambiguous: accepted by the server, not yet acknowledged);
- `delay_s`: each DATA answer is delayed (to make concurrent senders overlap).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    mail_options: list[str] = field(default_factory=list)


@dataclass
class FaultyHandler:
    drop_every: int | None = None
    tempfail: dict[str, int] = field(default_factory=dict)
    tempfail_all: bool = False
    reject: set[str] = field(default_factory=set)
    refuse_sender: bool = False
    hang_at: int | None = None
    delay_s: float = 0.0
    received: list[Received] = field(default_factory=list)
    drops: int = 0
    tempfailed: int = 0
    rejected: int = 0
    released: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        accepted = getattr(session, "n_accepted", 0)
        if self.drop_every is not None and accepted >= self.drop_every:
            self.drops += 1
            server.transport.abort()  # a hard cut: the client sees the connection reset or closed
            return "421 4.3.2 going away"
        if self.refuse_sender:
            return f"553 5.7.1 <{address}>: Sender address rejected: not owned by user"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.reject:
            self.rejected += 1
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if self.tempfail_all or self.tempfail.get(address, 0) > 0:
            if address in self.tempfail:
                self.tempfail[address] -= 1
            self.tempfailed += 1
            return "451 4.7.1 Greylisted, please try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            content, options = bytes(envelope.content), list(envelope.mail_options)
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), content, options))
            n = len(self.received)
        session.n_accepted = getattr(session, "n_accepted", 0) + 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.hang_at is not None and n == self.hang_at:
            deadline = time.monotonic() + 60
            while not self.released.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        return "250 2.0.0 Ok: queued"

    def release(self) -> None:
        self.released.set()

    def counts(self) -> Counter:
        with self.lock:
            return Counter(rcpt for r in self.received for rcpt in r.rcpt_tos)


class _AnyPortController(Controller):
    """aiosmtpd's Controller with port 0: the OS picks a free port, read back before the readiness probe."""

    def _trigger_server(self):
        self.port = self.server.sockets[0].getsockname()[1]
        return super()._trigger_server()


class SmtpServer:
    """`options` go to aiosmtpd: `ssl_context` (implicit TLS), `tls_context` + `require_starttls` (STARTTLS),
    `authenticator`, `auth_required`, `auth_exclude_mechanism` (tests/test_smtp_tls.py). `smtputf8`: offer
    SMTPUTF8 (RFC 6531), the extension non-ASCII local parts need."""

    def __init__(self, handler: FaultyHandler | None = None, smtputf8: bool = False, **options):
        self.handler = handler or FaultyHandler()
        self.controller = _AnyPortController(
            self.handler, hostname="127.0.0.1", port=0, enable_SMTPUTF8=smtputf8, **options
        )

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.handler.release()
        self.controller.stop()

    @property
    def port(self) -> int:
        return self.controller.port

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}?tls=none&timeout=10"

    def counts(self) -> Counter:
        return self.handler.counts()

    def wait_for(self, n: int, timeout: float = 30.0) -> bool:
        """Until the server has accepted `n` messages (a condition, not a timing assertion)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.handler.received) >= n:
                return True
            time.sleep(0.01)
        return False
