"""The shared retry policy: bounded tries, doubling waits, only what is transient, the last outcome stands."""

from __future__ import annotations

import pytest

from newsletter.retry import Backoff, call


class Flaky:
    """Fails (raises `exc`, or returns "bad") `failures` times, then returns "ok"."""

    def __init__(self, failures: int, exc: type[BaseException] | None = None):
        self.failures, self.exc, self.calls = failures, exc, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            if self.exc:
                raise self.exc(f"failure {self.calls}")
            return "bad"
        return "ok"


def test_transient_exceptions_are_retried_with_doubling_waits():
    slept: list[float] = []
    fn = Flaky(3, ConnectionError)
    assert call(fn, Backoff(5, 0.5), transient=ConnectionError, sleep=slept.append) == "ok"
    assert fn.calls == 4 and slept == [0.5, 1.0, 2.0]


def test_the_last_exception_is_raised_when_tries_run_out():
    fn = Flaky(10, ConnectionError)
    with pytest.raises(ConnectionError, match="failure 3"):
        call(fn, Backoff(3, 0), transient=ConnectionError, sleep=lambda _s: None)
    assert fn.calls == 3


def test_other_exceptions_are_not_retried():
    fn = Flaky(1, KeyError)
    with pytest.raises(KeyError):
        call(fn, Backoff(3, 0), transient=ConnectionError, sleep=lambda _s: None)
    assert fn.calls == 1


def test_flagged_results_are_retried_and_the_last_one_is_returned():
    fn = Flaky(1)
    assert call(fn, Backoff(3, 0), retry_result=lambda r: r == "bad", sleep=lambda _s: None) == "ok"
    fn = Flaky(5)
    assert call(fn, Backoff(2, 0), retry_result=lambda r: r == "bad", sleep=lambda _s: None) == "bad"
    assert fn.calls == 2


def test_on_retry_sees_each_failed_try_and_one_attempt_means_no_retry():
    seen: list[int] = []
    call(Flaky(2, OSError), Backoff(3, 0), transient=OSError, on_retry=seen.append, sleep=lambda _s: None)
    assert seen == [1, 2]
    fn = Flaky(1, OSError)
    with pytest.raises(OSError):
        call(fn, Backoff(1, 0), transient=OSError, on_retry=seen.append, sleep=lambda _s: None)
    assert fn.calls == 1 and seen == [1, 2]


def test_within_bounds_the_whole_call_no_wait_runs_past_it():
    slept: list[float] = []
    bounded = Flaky(10)
    # Waits 0.5, 1, 2, 4 ...: the first would already end past the 0.3 s bound, so one try only.
    assert call(bounded, Backoff(10, 0.5), retry_result=lambda r: r == "bad", sleep=slept.append, within=0.3) == "bad"
    assert bounded.calls == 1 and slept == []
    unbounded = Flaky(10)
    call(unbounded, Backoff(10, 0.5), retry_result=lambda r: r == "bad", sleep=slept.append)
    assert unbounded.calls == 10
    roomy = Flaky(2)  # waits 0.01 and 0.02 fit in 60 s: within changes nothing then
    assert call(roomy, Backoff(5, 0.01), retry_result=lambda r: r == "bad", sleep=lambda _s: None, within=60) == "ok"
