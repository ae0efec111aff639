"""The one in-process retry policy (tenacity): bounded attempts, a first delay that doubles, and a say on what
is transient. Used where a failure may clear up within seconds: an HTTP fetch, a store insert racing another
ingest, an SMTP (re)connect. Retries whose state must outlive the process (a deferred delivery) live in the
ledger instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import tenacity

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """At most `attempts` tries; the wait before try n+1 is `first_delay * 2**(n-1)` seconds."""

    attempts: int
    first_delay: float


def call(
    fn: Callable[[], T],
    backoff: Backoff,
    *,
    transient: type[BaseException] | tuple[type[BaseException], ...] = (),
    retry_result: Callable[[T], bool] | None = None,
    on_retry: Callable[[int], Any] | None = None,
    sleep: Callable[[float], Any] = time.sleep,
    within: float | None = None,
) -> T:
    """`fn()` until it returns a result `retry_result` does not flag, or raises what is not `transient`.

    When the tries run out the last outcome stands: its result is returned or its exception raised (the caller
    reports it in its own terms). `on_retry(n)` runs before the wait that follows failed try n. `within`
    (seconds) bounds the whole call: no try starts once that much time has passed, and no wait runs past it
    (the caller gives each try only the time left, see `remaining`)."""
    retry = tenacity.retry_if_exception_type(transient)
    stop = tenacity.stop_after_attempt(max(1, backoff.attempts))
    wait = tenacity.wait_exponential(multiplier=backoff.first_delay, min=0)
    if within is not None:
        stop = stop | tenacity.stop_before_delay(within)
    if retry_result is not None:
        retry = retry | tenacity.retry_if_result(retry_result)
    retrying = tenacity.Retrying(
        stop=stop,
        wait=wait,
        retry=retry,
        sleep=sleep,
        before_sleep=(lambda state: on_retry(state.attempt_number)) if on_retry else None,
        retry_error_callback=lambda state: state.outcome.result(),  # the last result, or its exception re-raised
    )
    return retrying(fn)
