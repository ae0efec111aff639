"""The paper store as an Airflow asset: the Airflow UI's asset view shows when papers last arrived (and from
which source and run), and which tasks read the store (digest_newsletter's `build_issue` lists it as an inlet).

Ingest tasks emit through an alias and only when the store changed: an hourly ingest of an unchanged feed (a
304) adds no event, so the asset's last event is the last arrival, not the last poll. Light on purpose: the
DAG files import this module at parse time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow.sdk import Asset, AssetAlias

PAPER_STORE = Asset(name="paper-store", uri="newsletter://paper-store", group="newsletter")
# The ingest tasks' outlet: an alias lets a task decide at run time whether it emits an event at all.
PAPER_STORE_ARRIVALS = AssetAlias(name="paper-store-arrivals", group="newsletter")

CHANGES = ("papers_new", "papers_updated", "acceptances")  # counts of an ingest report that change the store
EXTRA_KEYS = ("source", "status", "posts_new", *CHANGES)


def announce_arrivals(outlet_events: Any, report: Mapping[str, Any]) -> dict[str, Any] | None:
    """Add a paper-store event with the ingest's counts as its extra when the ingest changed the store (new or
    updated papers, acceptances); returns the extra, or None when nothing arrived (no event)."""
    if not any(report.get(key) for key in CHANGES):
        return None
    extra = {key: report.get(key) for key in EXTRA_KEYS}
    outlet_events[PAPER_STORE_ARRIVALS].add(PAPER_STORE, extra=extra)
    return extra
