"""The paper store on SQLite and PostgreSQL: dedupe, sightings, idempotence, acceptance events, merging."""

from __future__ import annotations

from datetime import date

from sqlalchemy import func, select

from newsletter.db import session_scope
from newsletter.db.models import AcceptanceEvent, Paper, Post, Sighting
from newsletter.records import ParsedPaper, ParsedPost
from newsletter.store.query import PaperFilter, find_papers, paper_record
from newsletter.store.record import record_posts


def paper(pid: str | None, title: str, version: str = "v1", comment: str | None = None, **kw) -> ParsedPaper:
    return ParsedPaper(
        title=title,
        authors=["A. Author", "B. Author"],
        arxiv_id=pid,
        arxiv_version=version if pid else None,
        abs_url=f"https://arxiv.org/abs/{pid}" if pid else None,
        pdf_url=f"http://arxiv.org/abs/{pid}{version}" if pid else None,
        comment=comment,
        **({"abstract": "An abstract."} | kw),
    )


def post(day: str, topic: str, *papers: ParsedPaper) -> ParsedPost:
    return ParsedPost(topic=topic, post_date=date.fromisoformat(day), papers=list(papers))


def ingest(url: str, *posts: ParsedPost):
    with session_scope(url) as session:
        return record_posts(session, list(posts), "test")


def counts(url: str) -> tuple[int, int, int, int]:
    with session_scope(url) as s:
        return tuple(s.scalar(select(func.count()).select_from(m)) for m in (Paper, Sighting, Post, AcceptanceEvent))


def records(url: str) -> list[dict]:
    with session_scope(url) as s:
        return [paper_record(p) for p in find_papers(s, PaperFilter())]


def test_same_payload_twice_changes_nothing(db_url):
    payload = [post("2024-12-05", "3DGS", paper("2412.00001", "A"), paper("2412.00002", "B"))]
    first = ingest(db_url, *payload)
    assert (first.papers_new, first.posts_new) == (2, 1)
    before = counts(db_url), records(db_url)
    again = ingest(db_url, *payload)
    assert (again.papers_new, again.papers_updated, again.papers_seen, again.posts_new) == (0, 0, 2, 0)
    assert (counts(db_url), records(db_url)) == before


def test_paper_in_two_topics_is_one_paper_with_two_topics(db_url):
    shared = paper("2412.00003", "Shared")
    stats = ingest(db_url, post("2024-12-05", "3DGS", shared), post("2024-12-05", "NeRF", shared))
    assert stats.papers_new == 1
    [rec] = records(db_url)
    assert rec["topics"] == ["3DGS", "NeRF"]
    assert [s["topic"] for s in rec["sightings"]] == ["3DGS", "NeRF"]


def test_new_version_with_acceptance_records_event(db_url):
    ingest(db_url, post("2024-12-05", "3DGS", paper("2412.00004", "P", "v1", "Under review at ICLR 2025")))
    stats = ingest(
        db_url, post("2024-12-09", "3DGS", paper("2412.00004", "P", "v2", "Accepted by NeurIPS 2024 (spotlight)"))
    )
    assert stats.acceptances == 1 and stats.papers_updated == 1
    [rec] = records(db_url)
    assert rec["venue"]["accepted"] and rec["venue"]["venue"] == "NeurIPS" and rec["venue"]["year"] == 2024
    assert [s["version"] for s in rec["sightings"]] == ["v1", "v2"]
    with session_scope(db_url) as s:
        [event] = s.scalars(select(AcceptanceEvent)).all()
        assert event.event_date == date(2024, 12, 9) and event.previous_comment == "Under review at ICLR 2025"
    # The same acceptance restated (another post, another wording of the track) is not news again.
    again = ingest(db_url, post("2024-12-10", "NeRF", paper("2412.00004", "P", "v2", "Accepted by NeurIPS 2024")))
    assert again.acceptances == 0 and counts(db_url)[3] == 1


def test_accepted_on_first_sight_is_a_badge_not_an_event(db_url):
    stats = ingest(db_url, post("2024-12-05", "3DGS", paper("2412.00005", "Q", comment="CVPR 2024")))
    assert stats.acceptances == 0
    assert records(db_url)[0]["venue"]["venue"] == "CVPR"


def test_older_sighting_arriving_late_does_not_override_latest_state(db_url):
    ingest(db_url, post("2024-12-09", "3DGS", paper("2412.00006", "R", "v2", "Accepted to ECCV 2024")))
    ingest(db_url, post("2024-12-01", "3DGS", paper("2412.00006", "R", "v1", "Under review")))
    [rec] = records(db_url)
    assert rec["venue"]["venue"] == "ECCV" and rec["first_seen"] == "2024-12-01"
    assert [s["post_date"] for s in rec["sightings"]] == ["2024-12-01", "2024-12-09"]
    assert counts(db_url)[3] == 0


def test_title_only_paper_merges_when_id_arrives(db_url):
    ingest(db_url, post("2025-05-28", "Vision Transformer", paper(None, "Token  Merging, Revisited!")))
    stats = ingest(db_url, post("2025-05-29", "LLM", paper("2505.00007", "token merging revisited")))
    assert stats.papers_new == 0
    [rec] = records(db_url)
    assert rec["arxiv_id"] == "2505.00007" and rec["topics"] == ["Vision Transformer", "LLM"]
    # And the reverse: an id-less copy of a known paper attaches to it.
    ingest(db_url, post("2025-05-30", "GAN", paper(None, "Token merging revisited")))
    assert counts(db_url)[0] == 1


def test_missing_summary_is_completed_by_a_later_sighting(db_url):
    ingest(db_url, post("2024-12-05", "3DGS", paper("2412.00008", "S", summary_zh=None)))
    ingest(db_url, post("2024-12-05", "NeRF", paper("2412.00008", "S", summary_zh="中文摘要")))
    with session_scope(db_url) as s:
        assert s.scalars(select(Paper)).one().summary_zh == "中文摘要"


def test_post_identity_is_date_and_topic_not_url(db_url):
    a = post("2024-12-05", "3DGS", paper("2412.00009", "T"))
    a.url = "https://old.example/2024/12/05/Paper/2024-12-05/3DGS/"
    b = post("2024-12-05", "3DGS", paper("2412.00009", "T"))
    b.url = "https://new.example/Paper/2024-12-05/3DGS/"
    ingest(db_url, a)
    ingest(db_url, b)
    with session_scope(db_url) as s:
        [row] = s.scalars(select(Post)).all()
        assert row.url == b.url
    assert counts(db_url)[:2] == (1, 1)


def test_filters(db_url):
    ingest(
        db_url,
        post("2024-12-05", "3DGS", paper("2412.00010", "U", comment="Accepted by CVPR 2025")),
        post("2024-12-06", "NeRF", paper("2412.00011", "V")),
    )
    with session_scope(db_url) as s:
        assert [p.arxiv_id for p in find_papers(s, PaperFilter(topic="nerf"))] == ["2412.00011"]
        assert [p.arxiv_id for p in find_papers(s, PaperFilter(venue="cvpr"))] == ["2412.00010"]
        assert [p.arxiv_id for p in find_papers(s, PaperFilter(since=date(2024, 12, 6)))] == ["2412.00011"]
        assert [p.arxiv_id for p in find_papers(s, PaperFilter(until=date(2024, 12, 5)))] == ["2412.00010"]


def test_code_and_project_links_stored_and_in_jsonl(db_url):
    """#12: links from the abstract and the comment land in papers.code_url / project_url and the jsonl."""
    ingest(
        db_url,
        post(
            "2024-12-05",
            "3DGS",
            paper(
                "2412.00001",
                "A",
                comment=r"CVPR 2024. Project page: \url{https://a.github.io/p/}.",
                abstract="Code is at https://github.com/o/a.",
            ),
            paper("2412.00002", "B", abstract="Data: https://huggingface.co/datasets/o/d."),
        ),
    )
    by_id = {r["arxiv_id"]: r for r in records(db_url)}
    assert (by_id["2412.00001"]["code_url"], by_id["2412.00001"]["project_url"]) == (
        "https://github.com/o/a",
        "https://a.github.io/p",
    )
    assert by_id["2412.00002"]["code_url"] is None and by_id["2412.00002"]["project_url"] is None
