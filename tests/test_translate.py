"""English takeaways (#11 item 4): [translate] against a fake chat-completions server over real HTTP.

The cache (a paper is never translated twice; a changed text is), the batch request count for a day, the
failures that must never block a send (a slow answer beyond the timeout, 500s, 4xx, malformed answers, with the
fallback to single papers), and what English and bilingual readers see, within the size budget."""

from __future__ import annotations

import logging
import textwrap
from dataclasses import replace
from datetime import date

import pytest
from sqlalchemy import func, select

from newsletter.config import ConfigError, TranslateSettings, load_settings
from newsletter.db import session_scope
from newsletter.db.models import Paper, Translation
from newsletter.pipeline.steps import build_step, period_for, translate_step
from newsletter.render.variant import RenderOptions, render_archive, render_variant
from newsletter.store.record import record_posts
from newsletter.translate.cache import Item
from newsletter.translate.client import ChatClient, Malformed
from tests.chat_server import ChatServer
from tests.cli_runner import invoke
from tests.issue_factory import make_issue
from tests.test_store import paper, post

DAY = date(2024, 12, 5)
LABEL = "Key takeaways (machine-translated)"


@pytest.fixture
def chat():
    with ChatServer() as server:
        yield server


def with_translate(settings, chat: ChatServer, **kw):
    cfg = {"enabled": True, "base_url": chat.base_url, "model": "fake-mt", "timeout": 5.0, "backoff": 0.01} | kw
    return replace(settings, translate=TranslateSettings(**cfg))


def zh_paper(pid: str, n_takeaways: int = 3, summary: bool = True):
    return paper(
        pid,
        f"Paper {pid}",
        summary_zh=f"论文 {pid} 提出了一种新的三维重建方法，显著提升了质量。" if summary else None,
        takeaways=[f"要点{k + 1}：论文 {pid} 在基准上取得领先结果。" for k in range(n_takeaways)],
    )


def add_day(url: str, n: int = 20, start: int = 1) -> list[str]:
    ids = [f"2412.{start + i:05d}" for i in range(n)]
    half = n // 2
    with session_scope(url) as s:
        record_posts(s, [post(DAY.isoformat(), "3DGS", *map(zh_paper, ids[:half])),
                         post(DAY.isoformat(), "NeRF", *map(zh_paper, ids[half:]))], "test")  # fmt: skip
    return ids


def build(settings):
    issue, _ = build_step(settings, period_for(settings, DAY))
    return issue


def papers_of(issue):
    return [h.paper for h in issue.highlights] + [p for s in issue.sections for p in s.papers]


# ---- the cache and the batches -----------------------------------------------------------------------------


def test_a_day_costs_few_requests_and_nothing_is_translated_twice(settings, chat):
    cfg = with_translate(settings, chat, batch_size=8)
    add_day(cfg.database_url, 20)
    before = build(cfg)
    assert all(not p.takeaways_en for p in papers_of(before))

    out = translate_step(cfg, before.issue_id)
    assert (out["papers"], out["translated"], out["failed"], out["requests"]) == (20, 20, 0, 3)
    assert chat.batch_sizes == [8, 8, 4]  # a day of 20 papers: 3 requests

    again = translate_step(cfg, before.issue_id)
    assert (again["cached"], again["translated"], again["requests"]) == (20, 0, 0)
    assert len(chat.bodies) == 3  # the second run asked nothing

    issue = build(cfg)
    for p in papers_of(issue):  # each answer landed on its own paper although the server answers in reverse
        assert p.arxiv_id in p.summary_en and len(p.takeaways_en) == 3
        assert all(p.arxiv_id in t for t in p.takeaways_en)
    assert issue.content_hash != before.content_hash  # the variants are rendered again, with the English

    # Upstream rewrote one summary: only that paper is asked again; the old row no longer matches.
    with session_scope(cfg.database_url) as s:
        row = s.scalar(select(Paper).where(Paper.arxiv_id == "2412.00007"))
        row.summary_zh = "论文 2412.00007 的摘要被上游重写了。"
    third = translate_step(cfg, before.issue_id)
    assert (third["cached"], third["translated"], third["requests"]) == (19, 1, 1)
    assert chat.batch_sizes[-1] == 1

    # Another model is another key: translated again, the first model's rows kept.
    other = replace(cfg, translate=cfg.translate.updated(model="other-mt", batch_size=20))
    assert translate_step(other, before.issue_id)["requests"] == 1
    with session_scope(cfg.database_url) as s:
        assert s.scalar(select(func.count()).select_from(Translation)) == 21 + 20


def test_off_by_default_asks_nothing_and_shows_nothing(settings, chat):
    assert settings.translate.enabled is False
    add_day(settings.database_url, 4)
    issue = build(settings)
    assert translate_step(settings, issue.issue_id) == {"enabled": False, "issue_id": issue.issue_id}
    # Translations made while it was on are not shown once it is off.
    translate_step(with_translate(settings, chat), issue.issue_id)
    assert len(chat.bodies) == 1 and all(not p.takeaways_en for p in papers_of(build(settings)))


def test_papers_without_chinese_text_are_not_sent_and_the_key_goes_in_the_header(sqlite_settings, chat, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_TRANSLATE_API_KEY", "sk-test-123")
    cfg = with_translate(sqlite_settings, chat)
    with session_scope(cfg.database_url) as s:
        papers = [zh_paper("2412.00001"), paper("2412.00002", "No zh"), zh_paper("2412.00003", n_takeaways=0),
                  zh_paper("2412.00004", summary=False)]  # fmt: skip
        record_posts(s, [post(DAY.isoformat(), "3DGS", *papers)], "t")
    out = translate_step(cfg, build(cfg).issue_id)
    assert (out["nothing_to_translate"], out["translated"], out["requests"]) == (1, 3, 1)
    assert chat.headers[0]["Authorization"] == "Bearer sk-test-123"
    assert chat.bodies[0]["model"] == "fake-mt" and chat.bodies[0]["response_format"] == {"type": "json_object"}
    by_id = {p.arxiv_id: p for p in papers_of(build(cfg))}
    assert by_id["2412.00003"].takeaways_en == [] and by_id["2412.00003"].summary_en
    assert by_id["2412.00004"].summary_en is None and len(by_id["2412.00004"].takeaways_en) == 3


# ---- failures never block a send ---------------------------------------------------------------------------


def _expect_untranslated(cfg, issue_id: int) -> None:
    issue = build(cfg)
    assert issue.issue_id == issue_id and all(not p.takeaways_en for p in papers_of(issue))
    html = render_variant(issue, "en").html
    assert LABEL not in html and "2412.00001" in html  # today's English email, unchanged


def test_a_slow_answer_beyond_the_timeout_leaves_the_papers_as_they_are(sqlite_settings, chat, caplog):
    cfg = with_translate(sqlite_settings, chat, timeout=0.5, retries=3, backoff=1.0)
    add_day(cfg.database_url, 2)
    chat.script = [("slow", 3.0)]
    issue = build(cfg)
    with caplog.at_level(logging.WARNING, logger="newsletter.translate"):
        out = translate_step(cfg, issue.issue_id)
    # One try: the retry's wait would end past the timeout, which bounds the request retries included.
    assert (out["failed"], out["translated"], out["requests"]) == (2, 0, 1)
    assert "no answer within 0.5s" in out["failures"][0]
    assert any("2412.00001" in r.getMessage() and "untranslated" in r.getMessage() for r in caplog.records)
    _expect_untranslated(cfg, issue.issue_id)


def test_5xx_is_retried_within_the_timeout_then_given_up_and_a_dead_endpoint_is_not_asked_forever(
    sqlite_settings, chat
):
    cfg = with_translate(sqlite_settings, chat, batch_size=2, retries=2, max_failures=2)
    add_day(cfg.database_url, 6)
    chat.script = [("status", 500)] * 6
    issue = build(cfg)
    out = translate_step(cfg, issue.issue_id)
    # Batches 1 and 2: three tries each (500 is transient); then two failed requests in a row: batch 3 not asked.
    assert (out["requests"], out["failed"], out["skipped"], out["translated"]) == (6, 4, 2, 0)
    assert "HTTP 500" in out["failures"][0]
    _expect_untranslated(cfg, issue.issue_id)
    # The next run asks again (failures are not cached) and succeeds.
    assert translate_step(cfg, issue.issue_id)["translated"] == 6


def test_a_4xx_is_not_retried(sqlite_settings, chat):
    cfg = with_translate(sqlite_settings, chat, retries=3)
    add_day(cfg.database_url, 2)
    chat.script = [("status", 401)]
    out = translate_step(cfg, build(cfg).issue_id)
    assert (out["requests"], out["failed"]) == (1, 2) and "HTTP 401" in out["failures"][0]


def test_a_malformed_batch_answer_falls_back_to_single_papers(sqlite_settings, chat):
    cfg = with_translate(sqlite_settings, chat, batch_size=4)
    add_day(cfg.database_url, 4)
    chat.script = [("content", "Sure! Here are your translations: {papers: [oops")]  # not JSON
    out = translate_step(cfg, build(cfg).issue_id)
    assert (out["translated"], out["failed"], out["batch_fallbacks"], out["requests"]) == (4, 0, 1, 5)
    assert chat.batch_sizes == [4, 1, 1, 1, 1]


def test_a_batch_answer_missing_a_paper_asks_only_that_one_again(sqlite_settings, chat):
    cfg = with_translate(sqlite_settings, chat, batch_size=4)
    add_day(cfg.database_url, 4)
    chat.script = [("drop", 3)]
    out = translate_step(cfg, build(cfg).issue_id)
    assert (out["translated"], out["requests"], out["batch_fallbacks"]) == (4, 2, 1)
    assert chat.batch_sizes == [4, 1]


def test_a_malformed_single_answer_is_a_counted_failure(sqlite_settings, chat):
    cfg = with_translate(sqlite_settings, chat, batch_size=2)
    add_day(cfg.database_url, 2)
    chat.script = [("chinese",), ("content", "[]"), ("ok",)]  # batch echoes Chinese; single 1 garbage; 2 fine
    out = translate_step(cfg, build(cfg).issue_id)
    assert (out["translated"], out["failed"], out["requests"]) == (1, 1, 3)
    assert "malformed answer" in out["failures"][0]


ITEM = Item(1, "2412.00001", "论文 2412.00001 的摘要。", ["要点一 2412.00001", "要点二 2412.00001"], "h")


@pytest.mark.parametrize(
    "content, problem",
    [
        ('{"papers": [{"id": "1", "summary": "S", "takeaways": ["only one"]}]}', "2 takeaways sent, 1 answered"),
        ('{"papers": [{"id": "1", "summary": "论文的摘要。", "takeaways": ["a", "b"]}]}', "not English"),
        ('{"papers": [{"id": "1", "summary": null, "takeaways": ["a", "b"]}]}', "summary: not text"),
        ('{"papers": [{"id": "1", "summary": "S", "takeaways": ["a", "  "]}]}', "takeaway 2: empty"),
    ],
)
def test_answers_are_checked_against_what_was_sent(chat, content, problem):
    chat.script = [("content", content)]
    cfg = TranslateSettings(enabled=True, base_url=chat.base_url, timeout=5)
    with ChatClient(cfg) as client:
        answer = client.translate([ITEM])
    assert answer.done == [] and problem in answer.rejected[1]


def test_a_fenced_json_answer_is_accepted_and_other_ids_are_ignored(chat):
    content = '```json\n{"papers": [{"id": "9", "summary": "X"}, {"id": "1", "summary": " An  <b>S</b> ", ' \
              '"takeaways": ["A", "B"]}]}\n```'  # fmt: skip
    chat.script = [("content", content)]
    with ChatClient(TranslateSettings(enabled=True, base_url=chat.base_url)) as client:
        [done] = client.translate([ITEM]).done
    assert (done.summary_en, done.takeaways_en) == ("An <b>S</b>", ["A", "B"])  # text; escaped where shown
    chat.script = [("content", "not json at all")]
    with ChatClient(TranslateSettings(enabled=True, base_url=chat.base_url)) as client, pytest.raises(Malformed):
        client.translate([ITEM])


# ---- what readers see --------------------------------------------------------------------------------------


def test_english_and_bilingual_readers_see_the_translation_chinese_readers_nothing_new(sqlite_settings, chat):
    cfg = with_translate(sqlite_settings, chat)
    add_day(cfg.database_url, 2)
    plain = build(cfg)
    translate_step(cfg, plain.issue_id)
    issue = build(cfg)

    en = render_variant(issue, "en")
    assert LABEL in en.html and "Takeaway 1 of paper 2412.00001, in English" in en.html
    assert "要点" not in en.html and "论文 2412.00001" not in en.html  # no Chinese for English readers
    assert LABEL in en.text and "Takeaway 1 of paper 2412.00001" in en.text
    assert "Summary of paper" not in en.html  # the English abstract is there: the summary is not repeated

    both = render_variant(issue, "bilingual")
    assert LABEL in both.html and "Takeaway 2 of paper 2412.00002, in English" in both.html
    assert "要点1：论文 2412.00001" in both.html  # and the Chinese takeaways, as before
    assert LABEL in both.text and "要点1" in both.text

    zh, zh_before = render_variant(issue, "zh"), render_variant(plain, "zh")
    assert (zh.html, zh.text) == (zh_before.html, zh_before.text)  # Chinese readers: byte for byte the same

    page = render_archive(issue)
    assert LABEL in page and "Summary of paper 2412.00001" in page and "Takeaway 3 of paper 2412.00002" in page


def test_a_paper_without_english_abstract_shows_the_english_summary_to_english_readers():
    issue = make_issue(4, topics=("3DGS",), n_accepted=0, n_highlights=0, seed=3)
    p = issue.sections[0].papers[0]
    p.abstract, p.summary_zh, p.takeaways = "", "只有中文摘要。", ["要点一", "要点二"]
    view_before = render_variant(issue, "en").html
    assert "只有中文摘要" in view_before  # today: the Chinese rather than an empty card
    p.summary_en, p.takeaways_en = "Only a Chinese summary.", ["Point one", "Point two"]
    html = render_variant(issue, "en").html
    assert "Summary (machine-translated):" in html and "Only a Chinese summary." in html
    assert "只有中文摘要" not in html and "Point two" in html


def test_english_takeaways_count_in_the_size_budget():
    """An issue whose papers all fit in full without translations, near the budget: with English takeaways the
    HTML part still fits (fewer papers in full, the rest listed by title), for English and bilingual readers."""
    for mode in ("en", "bilingual"):
        issue = make_issue(40, seed=11)
        everyone = render_variant(issue, mode, opts=RenderOptions(html_budget_bytes=10**7))
        budget = everyone.html_encoded_size + 2000  # all 40 + highlights in full, with ~2 KB to spare
        opts = RenderOptions(html_budget_bytes=budget)
        before = render_variant(issue, mode, opts=opts)
        assert before.n_listed == 0 and not before.over_budget
        for p in papers_of(issue):
            p.takeaways_en = [f"Machine-translated takeaway {k} of {p.arxiv_id}" for k in range(len(p.takeaways))]
        after = render_variant(issue, mode, opts=opts)
        assert not after.over_budget and after.html_encoded_size <= budget
        assert after.n_full < before.n_full and after.n_listed > 0  # the English took room: fewer in full
        assert 0 < after.html.count(LABEL) <= after.n_full  # one list per paper in full with takeaways


# ---- config and CLI ----------------------------------------------------------------------------------------


def test_config_section_is_typed_and_the_key_never_in_the_file(tmp_path):
    path = tmp_path / "n.toml"
    path.write_text('[translate]\nenabled = true\napi_key = "sk-x"\n')
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert str(err.value) == f"{path}: [translate] api_key: unknown key 'api_key'; did you mean 'api_key_env'?"
    path.write_text('[translate]\nbase_url = "ftp://x"\n')
    with pytest.raises(ConfigError, match=r"\[translate\] base_url: not an http\(s\) URL"):
        load_settings(path)
    path.write_text('[translate]\nenabled = true\nbase_url = "http://127.0.0.1:11434/v1/"\nbatch_size = 4\n')
    cfg = load_settings(path).translate
    assert (cfg.enabled, cfg.base_url, cfg.batch_size, cfg.model) == (True, "http://127.0.0.1:11434/v1", 4,
                                                                      "gpt-4o-mini")  # fmt: skip


def test_cli_translate_then_nothing_left_to_ask(tmp_path, chat, monkeypatch):
    monkeypatch.chdir(tmp_path)
    db = f"sqlite:///{tmp_path}/n.db"
    config = tmp_path / "newsletter.toml"
    config.write_text(
        textwrap.dedent(f"""
        [newsletter]
        database_url = "{db}"
        archive_dir = "{tmp_path}/raw"
        [translate]
        enabled = true
        base_url = "{chat.base_url}"
        model = "fake-mt"
        timeout = 5
        """)
    )
    add_day(db, 4)
    first = invoke("translate", "--date", "2024-12-05", "--config", str(config))
    assert first.exit_code == 0, first.output
    assert "4 translated" in first.stdout and "1 requests to fake-mt" in first.stdout
    second = invoke("translate", "--date", "2024-12-05", "--config", str(config), "--format", "json")
    assert '"cached": 4' in second.stdout and '"requests": 0' in second.stdout
    chat.script = [("status", 503)] * 10
    with session_scope(db) as s:
        s.execute(Translation.__table__.delete())
    failed = invoke("translate", "--date", "2024-12-05", "--config", str(config))
    assert failed.exit_code == 0  # a translation failure never fails the command (nor the send after it)
    assert "2412.00001: HTTP 503" in failed.stderr and "4 failed" in failed.stdout


def test_the_whole_job_translates_before_the_archive_and_the_send(sqlite_settings, chat, tmp_path):
    from newsletter.pipeline.admin import run_job

    cfg = with_translate(replace(sqlite_settings, web=sqlite_settings.web.updated(archive_dir=str(tmp_path / "a"))),
                         chat)  # fmt: skip
    job = run_job(cfg, dry_run=True)  # the bundled sample, as `newsletter run --dry-run`
    assert job.translate["translated"] > 0 and job.translate["failed"] == 0
    assert all(p.takeaways_en for p in papers_of(job.issue) if p.takeaways)
    assert LABEL in job.archive.read_text(encoding="utf-8")
