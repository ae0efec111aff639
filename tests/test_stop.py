"""A send stopped by SIGTERM/SIGINT (#9, 4): what Airflow sends a task it stops, what `docker compose stop` and
Ctrl-C send. Real `python -m newsletter send` processes against a real SMTP server: the message in flight is
finished, every claimed row goes back to pending, the process ends with status 1 and one line, and the next run
delivers the rest with nobody twice. (SIGKILL keeps its documented cost: tests/test_deliver.py.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from newsletter.db import session_scope
from newsletter.db.models import Delivery
from newsletter.deliver.ledger import recover_stale
from newsletter.deliver.stopping import SendInterrupted, StopRequest, stop_on_signals
from tests.conftest import ROOT, TEST_TOKEN_SECRET
from tests.smtp_server import FaultyHandler, SmtpServer
from tests.test_deliver import DAY, add_subscribers, make_issue

PEOPLE = 30
BATCH = 8


def _statuses(url: str, issue_id: int) -> Counter:
    with session_scope(url) as s:
        return Counter(s.scalars(select(Delivery.status).where(Delivery.issue_id == issue_id)))


def _sender(tmp_path: Path, url: str, server: SmtpServer) -> subprocess.Popen:
    config = tmp_path / "stop.toml"
    config.write_text(f"[delivery]\nbatch_size = {BATCH}\n")
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PYTHONPATH": str(ROOT),
        "NEWSLETTER_DATABASE_URL": url,
        "NEWSLETTER_SMTP_URL": server.url,
        "NEWSLETTER_TOKEN_SECRET": TEST_TOKEN_SECRET,
    }
    command = [sys.executable, "-m", "newsletter", "send", "--config", str(config), "--date", DAY.isoformat()]
    return subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(child: subprocess.Popen) -> tuple[int, str, str]:
    out, err = child.communicate(timeout=120)
    return child.returncode, out, err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_mid_batch_requeues_the_claims_and_a_rerun_sends_the_rest(settings, tmp_path, sig):
    url = settings.database_url
    issue_id = make_issue(url)
    people = add_subscribers(url, PEOPLE)
    # The server holds back the "250" of the 10th message (the 2nd of the 2nd batch of 8): the signal arrives
    # while that message is in flight, deterministically.
    with SmtpServer(FaultyHandler(hang_at=10)) as server:
        child = _sender(tmp_path, url, server)
        try:
            assert server.wait_for(10, timeout=120), "the sender never reached the server"
            child.send_signal(sig)
        finally:
            server.handler.release()
            code, out, err = _finish(child)
        assert code == 1, out + err
        assert "Traceback" not in err
        name = signal.Signals(sig).name
        assert err.strip().splitlines() == [
            f"send interrupted by {name}: 6 claimed message(s) put back to pending; run send again for the rest "
            "(nobody gets it twice)"
        ]
        assert "sent 10," in out and "STOPPED" not in out  # the counts on stdout, the reason once, on stderr
        # The one in flight was finished (its 250 came after the signal) and marked; nothing is left claimed.
        assert _statuses(url, issue_id) == {"sent": 10, "pending": PEOPLE - 10}
        again = _sender(tmp_path, url, server)
        code, out, err = _finish(again)
        assert code == 0, out + err
        counts = server.counts()
    assert counts == {p: 1 for p in people}  # everyone exactly once, at the server
    assert _statuses(url, issue_id) == {"sent": PEOPLE}


def test_a_second_signal_abandons_the_message_in_flight_like_a_kill(sqlite_settings, tmp_path):
    url = sqlite_settings.database_url
    issue_id = make_issue(url)
    people = add_subscribers(url, PEOPLE)
    with SmtpServer(FaultyHandler(hang_at=10)) as server:
        child = _sender(tmp_path, url, server)
        try:
            assert server.wait_for(10, timeout=120), "the sender never reached the server"
            # Two different signals (two of the same kind may merge into one while pending): the first waits
            # for the 250 the server holds back, the second abandons that message.
            child.send_signal(signal.SIGTERM)
            child.send_signal(signal.SIGINT)
            code, out, err = _finish(child)
        finally:
            server.handler.release()
        assert code == 1 and "Traceback" not in err, out + err
        [line] = err.strip().splitlines()
        assert line.startswith("send interrupted by SIG") and line.endswith(
            ": 6 claimed message(s) put back to pending, 1 abandoned in flight; run send again for the rest "
            "(nobody gets it twice)"
        )
        # The abandoned message may have been accepted (here it was): its row stays claimed, as after a SIGKILL.
        assert _statuses(url, issue_id) == {"sent": 9, "sending": 1, "pending": PEOPLE - 10}
        assert _finish(_sender(tmp_path, url, server))[0] == 0
        with session_scope(url) as s:
            assert recover_stale(s, issue_id, 0) == 1
        assert _finish(_sender(tmp_path, url, server))[0] == 0
        counts = server.counts()
    assert set(counts) == set(people) and sum(counts.values()) == PEOPLE + 1  # at most one duplicate
    assert _statuses(url, issue_id) == {"sent": PEOPLE}


def test_the_handler_chains_to_the_one_it_replaced_and_restores_it():
    """Airflow's task runner handles SIGTERM itself (it calls the operator's on_kill): a send inside a task must
    still call it, and leave it installed afterwards."""
    calls: list[int] = []

    def airflow_like(signum, _frame):
        calls.append(signum)

    before = signal.signal(signal.SIGTERM, airflow_like)
    try:
        stop = StopRequest()
        with stop_on_signals(stop):
            os.kill(os.getpid(), signal.SIGTERM)
            assert stop and stop.signal_name == "SIGTERM" and calls == [signal.SIGTERM]
            os.kill(os.getpid(), signal.SIGTERM)  # no message in flight: a second signal changes nothing
            stop.in_flight = True
            with pytest.raises(SendInterrupted):
                os.kill(os.getpid(), signal.SIGTERM)
        assert signal.getsignal(signal.SIGTERM) is airflow_like
        assert calls == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, before)


def test_ctrl_c_does_not_raise_keyboard_interrupt_mid_send():
    stop = StopRequest()
    with stop_on_signals(stop):
        os.kill(os.getpid(), signal.SIGINT)  # Python's default handler would raise KeyboardInterrupt here
    assert stop.signal_name == "SIGINT"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
