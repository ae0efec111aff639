"""`session_scope`: one transaction per block, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import InvalidRequestError

from newsletter.db import session_scope
from newsletter.db.models import Subscriber
from newsletter.deliver import subscribers


def count(url: str) -> int:
    with session_scope(url) as s:
        return s.scalar(select(func.count()).select_from(Subscriber))


def test_a_block_commits_on_success_and_rolls_back_on_error(db_url):
    with session_scope(db_url) as s:
        subscribers.add(s, "ada@example.org", "", "en", None)
    assert count(db_url) == 1
    with pytest.raises(RuntimeError), session_scope(db_url) as s:
        subscribers.add(s, "bob@example.org", "", "en", None)
        s.flush()  # written to the database, not yet committed
        raise RuntimeError("boom")
    assert count(db_url) == 1


def test_the_block_owns_the_transaction(db_url):
    """Code inside a block must not commit it half-way (the rest would run outside any transaction)."""
    with pytest.raises(InvalidRequestError), session_scope(db_url) as s:
        subscribers.add(s, "ada@example.org", "", "en", None)
        s.commit()
        s.scalar(select(func.count()).select_from(Subscriber))
