"""Subscribers: validation, CSV import with rejected rows, idempotent re-import; signed tokens."""

from __future__ import annotations

import pytest

from newsletter.db import session_scope
from newsletter.deliver import subscribers, tokens
from tests.conftest import FIXTURES

CSV = (FIXTURES / "subscribers" / "subscribers.csv").read_text(encoding="utf-8")


def test_import_reports_bad_rows_and_keeps_good_ones(db_url):
    with session_scope(db_url) as s:
        report = subscribers.import_csv(s, CSV)
    assert report.added == 4
    assert len(report.rejected) == 3
    joined = "\n".join(report.rejected)
    assert "row 5" in joined and "not-an-email" in joined  # invalid address
    assert "row 6" in joined and "fr" in joined  # unknown language
    assert "row 7" in joined and "twice" in joined  # duplicate after normalisation
    with session_scope(db_url) as s:
        by_email = {sub.email: sub for sub in subscribers.active(s)}
        assert set(by_email) == {"alice@example.org", "bob@example.org", "carol@example.org", "frank@example.org"}
        assert by_email["alice@example.org"].topics is None and by_email["alice@example.org"].language == "bilingual"
        assert by_email["bob@example.org"].topics == ["3DGS", "NeRF"]
        assert by_email["carol@example.org"].topics == ["3DGS"]  # canonical topic key
        assert by_email["frank@example.org"].language == "bilingual"


def test_reimport_changes_nothing_and_never_resubscribes(db_url):
    with session_scope(db_url) as s:
        subscribers.import_csv(s, CSV)
    with session_scope(db_url) as s:
        subscribers.set_status(subscribers.get(s, "carol@example.org"), "unsubscribed", "one-click")
    with session_scope(db_url) as s:
        again = subscribers.import_csv(s, CSV)
    assert (again.added, again.updated, again.unchanged) == (0, 0, 3)
    assert again.kept_out == ["carol@example.org: unsubscribed, not resubscribed by an import"]
    with session_scope(db_url) as s:
        assert subscribers.get(s, "carol@example.org").status == "unsubscribed"


@pytest.mark.parametrize("status", ["unsubscribed", "bounced", "complained"])
def test_an_import_never_resubscribes_or_edits_an_inactive_subscriber(db_url, status):
    """Whatever took them out (their choice, a dead mailbox, a spam complaint), a CSV row for them changes
    nothing: not the status, not the reason, not even the name, language or topics the row carries."""
    with session_scope(db_url) as s:
        subscribers.import_csv(s, CSV)
    with session_scope(db_url) as s:
        subscribers.set_status(subscribers.get(s, "bob@example.org"), status, f"{status} for the test")
    changed = "email,name,language,topics\nBOB@example.org,Robert,zh,\nnew@example.org,New,en,\n"
    with session_scope(db_url) as s:
        report = subscribers.import_csv(s, changed)
    assert (report.added, report.updated, report.unchanged, report.rejected) == (1, 0, 0, [])
    assert report.kept_out == [f"bob@example.org: {status}, not resubscribed by an import"]
    with session_scope(db_url) as s:
        bob = subscribers.get(s, "bob@example.org")
        assert (bob.status, bob.status_reason) == (status, f"{status} for the test")
        assert (bob.name, bob.language, bob.topics) == ("Bob", "en", ["3DGS", "NeRF"])
        assert "bob@example.org" not in {sub.email for sub in subscribers.active(s)}


def test_missing_columns_is_an_error(db_url):
    with session_scope(db_url) as s, pytest.raises(subscribers.SubscriberError, match="language"):
        subscribers.import_csv(s, "email,name\na@example.org,A\n")


def test_add_validates_and_normalises(db_url):
    with session_scope(db_url) as s:
        sub = subscribers.add(s, "  Zed@Example.ORG ", "Zed", "zh", "NeRF; 3DGS")
        assert (sub.email, sub.language, sub.topics) == ("zed@example.org", "zh", ["3DGS", "NeRF"])
        with pytest.raises(subscribers.SubscriberError, match="already"):
            subscribers.add(s, "zed@example.org")
        with pytest.raises(subscribers.SubscriberError, match="language"):
            subscribers.add(s, "y@example.org", language="de")


def test_tokens_verify_and_reject_tampering(monkeypatch):
    monkeypatch.setenv("NEWSLETTER_TOKEN_SECRET", "s1")
    token = tokens.make_token(42, "unsubscribe", "a@example.org")
    assert tokens.verify(token, "a@example.org", "unsubscribe")
    assert not tokens.verify(token, "b@example.org", "unsubscribe")  # bound to the address
    assert not tokens.verify(token, "a@example.org", "preferences")  # bound to the purpose
    sid, short, sig = token.split(".")
    assert not tokens.verify(f"43.{short}.{sig}", "a@example.org", "unsubscribe")
    assert not tokens.verify(f"{sid}.{short}.{sig[:-1]}A", "a@example.org", "unsubscribe")
    assert not tokens.verify("garbage", "a@example.org", "unsubscribe")


def test_secret_rotation_keeps_old_links_working_only_while_listed(monkeypatch):
    monkeypatch.setenv("NEWSLETTER_TOKEN_SECRET", "old")
    token = tokens.make_token(7, "preferences", "a@example.org")
    monkeypatch.setenv("NEWSLETTER_TOKEN_SECRET", "new")
    assert not tokens.verify(token, "a@example.org", "preferences")
    monkeypatch.setenv("NEWSLETTER_TOKEN_SECRET_OLD", "old")
    assert tokens.verify(token, "a@example.org", "preferences")
