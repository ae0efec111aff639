"""A polite stop for the sender: SIGTERM (Airflow stopping a task, `docker compose stop`, systemd) or SIGINT
(Ctrl-C) asks every sender thread to stop after the message in flight instead of killing the process mid-batch.

The first signal only sets a flag: the message in flight is finished (its SMTP answer awaited and recorded),
the rows claimed but not yet attempted go back to pending, the connection is closed, and the send returns a
report saying so. A second signal abandons the message in flight at once (`SendInterrupted`): that one row
stays `sending`, like a SIGKILL's (recovered after `stale_after_s`, at most one duplicate); the rest are
released all the same.

The handler chains to the one it replaced (Airflow's task runner installs its own SIGTERM handler, which calls
the operator's `on_kill`), except the defaults that would end the process or raise KeyboardInterrupt in the
middle of a send. Signals can only be handled in the main thread; elsewhere (a sender run from a worker thread)
nothing is installed and the process keeps its usual behaviour.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class SendInterrupted(Exception):
    """A second stop signal: the message in flight is abandoned."""


class StopRequest:
    """Set by the first stop signal; every sender thread checks it between messages."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signal_name: str | None = None
        self.in_flight = False  # a message is being handed to the server (only then can a second signal abandon)
        self.abandoned = False  # a second signal abandoned it: drop the connection, no QUIT

    def request(self, name: str) -> None:
        self.signal_name = self.signal_name or name
        self._event.set()

    def __bool__(self) -> bool:
        return self._event.is_set()

    def sleep(self, seconds: float) -> bool:
        """Sleep up to `seconds`; returns early (True) when a stop is requested."""
        return self._event.wait(max(0.0, seconds))


def _chainable(previous: Any) -> bool:
    """A previous handler worth calling: a real function, not SIG_DFL/SIG_IGN nor Python's KeyboardInterrupt."""
    return callable(previous) and previous is not signal.default_int_handler


@contextmanager
def stop_on_signals(stop: StopRequest, abandon: bool = True) -> Iterator[StopRequest]:
    """While inside, SIGTERM/SIGINT request a polite stop (module docstring); the previous handlers come back
    on leaving. `abandon`: a second signal during a message in flight raises SendInterrupted in this thread
    (only when the sender runs in it); otherwise, and outside that window, a second signal changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if stop:
            if abandon and stop.in_flight:  # the second signal: stop waiting for the message in flight
                stop.in_flight, stop.abandoned = False, True
                raise SendInterrupted(f"{name} received twice: the message in flight was abandoned")
            return
        stop.request(name)
        before = previous.get(signum)
        if _chainable(before):
            before(signum, frame)

    for sig in SIGNALS:
        previous[sig] = signal.signal(sig, handler)
    try:
        yield stop
    finally:
        for sig, before in previous.items():
            signal.signal(sig, before if before is not None else signal.SIG_DFL)
