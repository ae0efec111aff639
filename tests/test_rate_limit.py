"""`[delivery] rate_limit_per_s`, checked without a wall clock: the sender runs on an injected clock that only
moves when the sender sleeps, and the real SMTP server notes that clock's reading as each message arrives. With
a limit of r per second the k-th message must arrive at exactly k / r, whatever the machine's speed.
(bench/rate_limit.py measures the same at the server on the real clock, over a few hundred messages.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise

import pytest

from newsletter.deliver import sender as sender_module
from newsletter.deliver.stopping import StopRequest
from tests.smtp_server import FaultyHandler, SmtpServer
from tests.test_deliver import ledger, prepared, send, with_delivery


@dataclass
class FakeClock:
    """Stands in for the `time` module inside the sender: `monotonic()` reads it, `sleep()` advances it."""

    now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class ClockedHandler(FaultyHandler):
    """Notes the fake clock's reading when each message arrives (the sender is blocked until the 250, so the
    clock cannot move while the server handles it)."""

    clock: FakeClock | None = None
    arrivals: list[float] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope):
        self.arrivals.append(self.clock.now)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(sender_module, "time", fake)
    # The limiter waits through the stop request (a SIGTERM cuts the wait short): on the fake clock too.
    monkeypatch.setattr(StopRequest, "sleep", lambda _self, seconds: fake.sleep(max(0.0, seconds)) or False)
    return fake


@pytest.mark.parametrize("rate", [4.0, 25.0])
def test_messages_reach_the_server_exactly_one_interval_apart(sqlite_settings, clock, rate):
    settings = with_delivery(sqlite_settings, rate_limit_per_s=rate, batch_size=4)  # 5 connections for 18
    issue_id, emails = prepared(settings, 18)
    with SmtpServer(ClockedHandler(clock=clock)) as server:
        report = send(settings, issue_id, server)
        arrivals = [t - server.handler.arrivals[0] for t in server.handler.arrivals]
    assert {s for s, _ in ledger(settings.database_url, issue_id).values()} == {"sent"}
    assert report.sent == 18 and server.counts() == dict.fromkeys(emails, 1)
    assert arrivals == pytest.approx([k / rate for k in range(18)])
    # Any window of one second holds at most `rate` messages (no burst when a new batch connects).
    assert max(sum(t <= a < t + 1 for a in arrivals) for t in arrivals) == min(18, int(rate))
    assert clock.sleeps == pytest.approx([1 / rate] * 17)  # the limiter's own waits: nothing else slept


def test_slow_sending_is_not_made_up_for_with_a_burst(sqlite_settings, clock):
    """When the sender falls behind (the server takes 0.5 s to answer the 6th message), the pace resumes from
    there: the slots it missed meanwhile are not spent on a catch-up burst."""
    settings = with_delivery(sqlite_settings, rate_limit_per_s=10, batch_size=20)
    issue_id, _ = prepared(settings, 10)

    @dataclass
    class Stall(ClockedHandler):
        async def handle_DATA(self, server, session, envelope):
            answer = await super().handle_DATA(server, session, envelope)
            if len(self.arrivals) == 6:
                self.clock.now += 0.5  # the server takes half a second to answer the 6th
            return answer

    with SmtpServer(Stall(clock=clock)) as server:
        assert send(settings, issue_id, server).sent == 10
        gaps = [b - a for a, b in pairwise(server.handler.arrivals)]
    assert gaps == pytest.approx([0.1] * 5 + [0.5] + [0.1] * 3)


def test_no_limit_means_no_waiting(sqlite_settings, clock):
    settings = with_delivery(sqlite_settings, rate_limit_per_s=0)
    issue_id, _ = prepared(settings, 12)
    with SmtpServer(ClockedHandler(clock=clock)) as server:
        assert send(settings, issue_id, server).sent == 12
        assert server.handler.arrivals == [clock.now] * 12
    assert clock.sleeps == []
