"""Issue assembly: membership, highlights, late arrivals, ordering, idempotent rebuilds, empty periods."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from newsletter.db import session_scope
from newsletter.issue.build import IssueSettings, Period, build_issue, freeze_issue
from newsletter.store.record import record_posts
from tests.test_store import paper, post

CFG = IssueSettings(lookback_days=7)


def add(url, *posts):
    with session_scope(url) as s:
        record_posts(s, list(posts), "test")


def build(url, day: str, cfg: IssueSettings = CFG):
    with session_scope(url) as s:
        return build_issue(s, Period.day(date.fromisoformat(day), "Asia/Shanghai"), cfg)


def ids(issue) -> list[str]:
    return [p.arxiv_id for s in issue.sections for p in s.papers]


def test_each_paper_once_under_primary_topic_with_also_in(db_url):
    shared = paper("2412.00001", "Shared")
    add(db_url, post("2024-12-05", "NeRF", shared, paper("2412.00002", "N")), post("2024-12-05", "3DGS", shared))
    issue = build(db_url, "2024-12-05")
    assert sorted(ids(issue)) == ["2412.00001", "2412.00002"]
    [p] = [p for s in issue.sections for p in s.papers if p.arxiv_id == "2412.00001"]
    # Same first day in both topics: ties go by configured order, then name ("3DGS" < "NeRF").
    assert p.primary_topic == "3DGS" and p.topics == ["3DGS", "NeRF"]


def test_acceptance_of_previously_featured_paper_is_a_highlight_only(db_url):
    add(db_url, post("2024-12-05", "3DGS", paper("2412.00003", "P", "v1", "Under review")))
    assert ids(build(db_url, "2024-12-05")) == ["2412.00003"]
    add(
        db_url,
        post(
            "2024-12-06", "3DGS", paper("2412.00003", "P", "v2", "Accepted by NeurIPS 2024"), paper("2412.00004", "Q")
        ),
    )
    issue = build(db_url, "2024-12-06")
    assert ids(issue) == ["2412.00004"]  # P is not new again
    [h] = issue.highlights
    assert h.paper.arxiv_id == "2412.00003" and h.previously_featured and h.venue.venue == "NeurIPS"
    assert h.event_date == date(2024, 12, 6)


def test_new_and_accepted_in_same_issue_appears_once(db_url):
    add(db_url, post("2024-12-05", "3DGS", paper("2412.00005", "R", "v1", "Under review")))
    add(db_url, post("2024-12-06", "3DGS", paper("2412.00005", "R", "v2", "Accepted to CVPR 2025")))
    issue = build(db_url, "2024-12-06")  # the 12-05 issue was never built: R is a look-back paper
    assert ids(issue) == [] and [h.paper.arxiv_id for h in issue.highlights] == ["2412.00005"]
    assert not issue.highlights[0].previously_featured


def test_late_arrival_goes_into_next_issue_within_lookback(db_url):
    add(db_url, post("2024-12-05", "3DGS", paper("2412.00006", "S")))
    build(db_url, "2024-12-05")
    add(db_url, post("2024-12-05", "NeRF", paper("2412.00007", "Late")))  # arrived after 12-05 was built
    add(db_url, post("2024-11-20", "NeRF", paper("2411.00008", "Too old")))
    add(db_url, post("2024-12-06", "3DGS", paper("2412.00009", "T")))
    assert sorted(ids(build(db_url, "2024-12-06"))) == ["2412.00007", "2412.00009"]
    # ... and the 12-05 issue, rebuilt, does not take it back.
    assert ids(build(db_url, "2024-12-05")) == ["2412.00006"]


def test_rebuild_gives_the_same_issue(db_url):
    add(db_url, post("2024-12-05", "3DGS", paper("2412.00010", "U"), paper("2412.00011", "V", comment="ICLR 2025")))
    first, second = build(db_url, "2024-12-05"), build(db_url, "2024-12-05")
    assert first.issue_id == second.issue_id and first.content_hash == second.content_hash
    assert first.content_hash


def test_frozen_issue_keeps_its_membership(db_url):
    add(db_url, post("2024-12-05", "3DGS", paper("2412.00012", "W")))
    issue = build(db_url, "2024-12-05")
    with session_scope(db_url) as s:
        freeze_issue(s, issue.issue_id)
    add(db_url, post("2024-12-05", "NeRF", paper("2412.00013", "Late")))
    again = build(db_url, "2024-12-05")
    assert ids(again) == ["2412.00012"] and again.content_hash == issue.content_hash


def test_empty_period_gives_no_issue(db_url):
    add(db_url, post("2024-12-05", "3DGS", paper("2412.00014", "X")))
    build(db_url, "2024-12-05")
    assert build(db_url, "2024-12-07") is None


def test_ordering_topics_and_accepted_first(db_url):
    add(
        db_url,
        post("2024-12-05", "NeRF", paper("2412.00020", "a"), paper("2412.00021", "b"), paper("2412.00022", "c")),
        post("2024-12-05", "GAN", paper("2412.00023", "d")),
        post("2024-12-05", "3DGS", paper("2412.00024", "e"), paper("2412.00025", "f", comment="Accepted to ECCV 2024")),
    )
    issue = build(db_url, "2024-12-05", IssueSettings(topic_order=("GAN",)))
    assert [s.topic for s in issue.sections] == ["GAN", "NeRF", "3DGS"]  # configured, then size
    assert [p.arxiv_id for p in issue.sections[2].papers] == ["2412.00025", "2412.00024"]  # accepted first
    assert issue.sections[0].name_zh == "生成对抗网络"


def test_highlights_order_main_track_before_workshop(db_url):
    posts_v1 = [paper(f"2412.0003{i}", t, "v1", "Under review") for i, t in enumerate("klm")]
    add(db_url, post("2024-12-04", "3DGS", *posts_v1))
    comments = ["CVPR 2025 Workshop on X", "Accepted to ICLR 2025 as a poster", "Accepted at NeurIPS 2024 (oral)"]
    posts_v2 = [paper(f"2412.0003{i}", t, "v2", c) for i, (t, c) in enumerate(zip("klm", comments, strict=True))]
    add(db_url, post("2024-12-05", "3DGS", *posts_v2))
    issue = build(db_url, "2024-12-05")
    assert [h.venue.venue for h in issue.highlights] == ["NeurIPS", "ICLR", "CVPR"]


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        ("2024-12-05T00:00:00+00:00", "2024-12-06T00:00:00+00:00", ("2024-12-05", "2024-12-05")),  # 08:00 local
        ("2024-12-04T16:00:00+00:00", "2024-12-05T16:00:00+00:00", ("2024-12-05", "2024-12-05")),  # midnight local
        ("2024-12-05T00:00:00+00:00", "2024-12-05T00:00:00+00:00", ("2024-12-05", "2024-12-05")),  # empty interval
        ("2024-12-01T16:00:00+00:00", "2024-12-08T16:00:00+00:00", ("2024-12-02", "2024-12-08")),  # a week
    ],
)
def test_period_from_data_interval(start, end, expected):
    p = Period.from_interval(datetime.fromisoformat(start), datetime.fromisoformat(end), "Asia/Shanghai")
    assert (p.first.isoformat(), p.last.isoformat()) == expected
    assert p.start.astimezone(UTC) <= datetime.fromisoformat(start).astimezone(UTC) or p.first == p.last
