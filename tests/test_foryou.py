"""#11 item 3, "For you": interests (keywords, seed papers, BibTeX), the TF-IDF ranking and its reasons, the pick
rendered once per variant within the size budget, and delivered through a real SMTP server; subscribers without
interests get exactly the plain variant."""

from __future__ import annotations

import json
import mailbox
from dataclasses import replace
from datetime import date
from email import message_from_bytes, policy

import httpx
import pytest

from newsletter.db import session_scope
from newsletter.deliver import interests, subscribers
from newsletter.deliver.interests import InterestsError, parse_seeds, read_bibtex
from newsletter.deliver.message import MessageSettings, MessageTemplate, Person, assemble
from newsletter.issue.build import IssueSettings, Period, build_issue
from newsletter.issue.recommend import Interests, Ranker, Seed, StoredDoc, _distinct_terms
from newsletter.pipeline import steps
from newsletter.pipeline.send import send_date
from newsletter.render.variant import RenderOptions, personalize, render_variant
from newsletter.store.record import record_posts
from tests import issue_factory
from tests.cli_runner import invoke
from tests.smtp_server import SmtpServer
from tests.test_browser import VALUES as BROWSER_VALUES
from tests.test_browser import measure, requires_chromium, screenshot
from tests.test_deliver import smtp, with_delivery
from tests.test_store import paper, post
from tests.test_webapp import LiveServer, _add, _token

DAY = date(2024, 12, 5)

# A small day across four subjects; the abstracts share generic words ("method", "results") on purpose.
PAPERS = [
    ("2412.00001", "3DGS", "Real-Time Gaussian Splatting for Large Scenes",
     "We present a gaussian splatting method that renders large scenes in real time with level of detail."),
    ("2412.00002", "3DGS", "Sparse-View Gaussian Splatting with Depth Priors",
     "Gaussian splatting from sparse views is regularised with monocular depth priors; results improve."),
    ("2412.00003", "Talking Head Generation", "Audio-Driven Talking Head Generation with Emotion Control",
     "A talking head model driven by audio, with lip sync and controllable emotion; the method beats baselines."),
    ("2412.00004", "Talking Head Generation", "Expressive Lip Sync for Portrait Animation",
     "Portrait animation from speech audio with accurate lip sync and head motion; results on two datasets."),
    ("2412.00005", "医学图像", "Semi-Supervised Lesion Segmentation in Ultrasound",
     "Lesion segmentation in breast ultrasound images with few labels; the method uses consistency training."),
    ("2412.00006", "Diffusion Models", "Training-Free Guidance for Text-to-Image Diffusion",
     "A guidance method for text-to-image diffusion models without training; results improve fidelity."),
]  # fmt: skip


def docs() -> list[StoredDoc]:
    return [StoredDoc(i + 1, aid, title, abstract) for i, (aid, _, title, abstract) in enumerate(PAPERS)]


def make_issue(url: str) -> int:
    posts = {}
    for aid, topic, title, abstract in PAPERS:
        posts.setdefault(topic, []).append(paper(aid, title, abstract=abstract))
    with session_scope(url) as s:
        record_posts(s, [post(DAY.isoformat(), t, *ps) for t, ps in posts.items()], "test")
    with session_scope(url) as s:
        return build_issue(s, Period.day(DAY, "Asia/Shanghai"), IssueSettings()).issue_id


# ---- ranking ---------------------------------------------------------------------------------------------


def test_seeds_rank_papers_of_their_subject_first():
    seeds = (
        Seed(title="Emotional talking face generation from audio", abstract="Talking head video with lip sync."),
        Seed(title="One-shot audio-driven portrait animation", abstract="Head motion and lip sync from speech."),
    )
    picks = Ranker(docs()).rank([Interests(seeds=seeds)], 5)[0]
    assert [p.arxiv_id for p in picks[:2]] == ["2412.00003", "2412.00004"] or [p.arxiv_id for p in picks[:2]] == [
        "2412.00004",
        "2412.00003",
    ]
    assert all(p.score > 0 for p in picks) and picks == sorted(picks, key=lambda p: -p.score)
    assert "2412.00005" not in [p.arxiv_id for p in picks]  # nothing in common with segmentation


def test_keywords_rank_and_the_reason_names_the_matched_terms():
    picks = Ranker(docs()).rank([Interests(keywords="gaussian splatting")], 5)[0]
    assert {p.arxiv_id for p in picks} == {"2412.00001", "2412.00002"}  # only papers sharing a term
    assert picks[0].terms[0] == "gaussian splatting"  # the pair, not also its words
    assert "splatting" not in picks[0].terms and "gaussian" not in picks[0].terms
    assert picks[0].reason.startswith("gaussian splatting")


def test_reason_terms_are_distinct_and_pairs_replace_their_words():
    assert _distinct_terms(["splatting", "gaussian splatting", "gaussian", "depth", "priors"]) == (
        "gaussian splatting",
        "depth",
        "priors",
    )
    assert _distinct_terms(["lip", "lip sync", "sync", "audio"]) == ("lip sync", "audio")


def test_no_interests_no_pick_and_seeds_in_the_issue_are_never_picked():
    ranker = Ranker(docs())
    none, unrelated, own = ranker.rank(
        [Interests(), Interests(keywords="protein folding"), Interests(seeds=(Seed("2412.00001"),))], 5
    )
    assert none == [] and unrelated == []
    assert own and "2412.00001" not in [p.arxiv_id for p in own]
    assert own[0].arxiv_id == "2412.00002"  # its closest neighbour


def test_ranking_is_deterministic_and_batch_independent():
    a = Interests(keywords="audio lip sync")
    b = Interests(seeds=(Seed(title="Diffusion guidance", abstract="text-to-image diffusion without training"),))
    together = Ranker(docs()).rank([a, b], 3)
    assert together == [Ranker(docs()).rank([a], 3)[0], Ranker(docs()).rank([b], 3)[0]]


# ---- interests input ---------------------------------------------------------------------------------------

BIB = r"""
@article{kerbl2023,
  title = {{3D} Gaussian Splatting for Real-Time Radiance Field Rendering},
  journal = {ACM Transactions on Graphics}, doi = {10.1145/3592433}, year = {2023},
  abstract = {Radiance field methods have recently revolutionized novel-view synthesis.}
}
@misc{zotero1, title = {Sonic: Shifting Focus to Global Audio Perception}, eprint = {2411.16331},
  archivePrefix = {arXiv}, primaryClass = {cs.CV}}
@misc{zotero2, title = {JoyVASA}, url = {https://arxiv.org/abs/2411.09209v3}}
@article{doi_arxiv, title = {Via DOI}, doi = {10.48550/arXiv.2312.00001}}
@inproceedings{cvpr, title = {A CVPR paper}, doi = {10.1109/CVPR52729.2023.01234}}
@misc{empty, year = {2020}}
@article{broken, title = {unterminated
"""


def test_bibtex_import_takes_ids_titles_and_abstracts():
    found = read_bibtex(BIB, source="lib.bib")
    by_title = {s.get("title"): s for s in found.seeds}
    assert by_title["3D Gaussian Splatting for Real-Time Radiance Field Rendering"] == {
        "title": "3D Gaussian Splatting for Real-Time Radiance Field Rendering",
        "abstract": "Radiance field methods have recently revolutionized novel-view synthesis.",
    }  # no arXiv id: title + abstract kept, the ACM DOI is not mistaken for one
    assert by_title["Sonic: Shifting Focus to Global Audio Perception"]["arxiv_id"] == "2411.16331"
    assert by_title["JoyVASA"]["arxiv_id"] == "2411.09209"  # version dropped
    assert by_title["Via DOI"]["arxiv_id"] == "2312.00001"
    assert "arxiv_id" not in by_title["A CVPR paper"]  # 2023.01234 inside a DOI is not an arXiv id
    assert any("entry empty: no arXiv id and no title" in line for line in found.skipped)
    assert any("lib.bib" in line and "unreadable" in line for line in found.skipped)


def test_seed_arguments_ids_urls_and_files(tmp_path):
    bib = tmp_path / "export.bib"
    bib.write_text(BIB, encoding="utf-8")
    found = parse_seeds(["2401.01234v2 https://arxiv.org/pdf/2402.05678", str(bib), "2401.01234"])
    ids = [s.get("arxiv_id") for s in found.seeds]
    assert ids[:2] == ["2401.01234", "2402.05678"] and ids.count("2401.01234") == 1
    assert "2411.16331" in ids
    with pytest.raises(InterestsError, match="'gaussian' is not an arXiv id"):
        parse_seeds("gaussian")
    with pytest.raises(InterestsError, match="is not an arXiv id"):
        parse_seeds(str(bib), files=False)  # a CSV cell or a form never names a file to read


def test_cli_add_set_and_list_interests(db_url, tmp_path):
    bib = tmp_path / "zotero.bib"
    bib.write_text(BIB, encoding="utf-8")
    env = {"NEWSLETTER_DATABASE_URL": db_url}
    r = invoke("subscribers", "add", "ada@example.org", "--keywords", "gaussian  splatting", "--seeds", str(bib), **env)
    assert r.exit_code == 0, r.output
    assert "keywords: gaussian splatting" in r.output and "5 seed paper(s)" in r.output
    assert "skipped" in r.stderr and "entry empty: no arXiv id and no title" in " ".join(r.stderr.split())
    r = invoke("subscribers", "set", "ada@example.org", "--seeds", "2411.16331", "2412.00001", **env)
    assert r.exit_code == 0, r.output
    with session_scope(db_url) as s:
        sub = subscribers.get(s, "ada@example.org")
        assert sub.seeds == [{"arxiv_id": "2411.16331"}, {"arxiv_id": "2412.00001"}]
        assert sub.keywords == "gaussian splatting"
    r = invoke("subscribers", "set", "ada@example.org", "--seeds", "not-an-id", **env)
    assert r.exit_code == 1 and "not an arXiv id" in r.stderr
    r = invoke("subscribers", "set", "ada@example.org", "--keywords", "", **env)
    assert r.exit_code == 0
    r = invoke("subscribers", "list", **env)
    assert "2411.16331 2412.00001" in r.output


def test_csv_columns_keywords_and_seeds(db_url):
    csv = (
        "email,name,language,topics,keywords,seeds\n"
        "ada@example.org,Ada,en,,gaussian splatting,2412.00001; 2412.00003\n"
        "bo@example.org,Bo,zh,NeRF,,\n"
        "cy@example.org,Cy,en,,,/etc/passwd\n"
    )
    with session_scope(db_url) as s:
        report = subscribers.import_csv(s, csv)
        assert report.added == 2 and len(report.rejected) == 1 and "row 4" in report.rejected[0]
        ada, bo = subscribers.get(s, "ada@example.org"), subscribers.get(s, "bo@example.org")
        assert ada.keywords == "gaussian splatting"
        assert ada.seeds == [{"arxiv_id": "2412.00001"}, {"arxiv_id": "2412.00003"}]
        assert (bo.keywords, bo.seeds) == (None, None)
    with session_scope(db_url) as s:  # re-import: unchanged; an older file without the columns keeps them
        assert subscribers.import_csv(s, csv).unchanged == 2
        assert subscribers.import_csv(s, "email,name,language,topics\nada@example.org,Ada,en,\n").unchanged == 1
        assert subscribers.get(s, "ada@example.org").keywords == "gaussian splatting"


# ---- the CLI -----------------------------------------------------------------------------------------------


def test_recommend_cli_prints_jsonl_best_first(db_url):
    make_issue(db_url)
    env = {"NEWSLETTER_DATABASE_URL": db_url}
    r = invoke("recommend", "--date", "2024-12-05", "--keywords", "audio lip sync", "--format", "jsonl", **env)
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.output.splitlines()]
    assert rows and all(set(row) == {"arxiv_id", "score", "title", "reason"} for row in rows)
    assert [row["arxiv_id"] for row in rows][:2] in (["2412.00004", "2412.00003"], ["2412.00003", "2412.00004"])
    assert [row["score"] for row in rows] == sorted((row["score"] for row in rows), reverse=True)
    assert "lip sync" in rows[0]["reason"]
    r = invoke("recommend", "--date", "2024-12-05", "--seeds", "2412.00001", "--top", "1", "--format", "jsonl", **env)
    assert [json.loads(line)["arxiv_id"] for line in r.output.splitlines()] == ["2412.00002"]
    r = invoke("recommend", "--date", "2024-12-05", "--seeds", "2001.00001", "--keywords", "lip", **env)
    assert r.exit_code == 0 and "seed 2001.00001: not in the store" in " ".join(r.stderr.split())
    r = invoke("recommend", "--date", "2030-01-01", "--keywords", "x", **env)
    assert r.exit_code == 3


# ---- rendering and the budget ------------------------------------------------------------------------------


def _html_part_size(eml: bytes) -> int:
    """The HTML part as encoded in the message (what Gmail measures), CRLF lines included."""
    _head, _, rest = eml.partition(b"Content-Type: text/html")
    body = rest.split(b"\r\n\r\n", 1)[1]
    return len(body[: body.index(b"--=_pd_")])


@pytest.mark.parametrize("mode", ["en", "zh", "bilingual"])
def test_the_largest_pick_fits_the_budget_taking_room_from_full_papers(mode):
    issue = issue_factory.make_issue(160, long_summaries=True, seed=3)
    opts = RenderOptions()
    variant = render_variant(issue, mode, None, opts)
    fy = variant.foryou
    assert fy is not None and fy.n_full <= variant.n_full and fy.n_full + fy.n_listed >= variant.n_full
    assert render_variant(issue, mode, None, opts).foryou == fy  # deterministic
    # The worst pick: the items with the longest markup, each with the longest reason.
    worst = sorted(fy.items, key=lambda k: len("".join(fy.items[k][:2]).encode()), reverse=True)
    pick = fy.pick([(int(k), "w" * 200) for k in worst])
    template = MessageTemplate.build(fy, MessageSettings(), 1, DAY, lang=mode)
    long_name = Person(7, "someone.with.a.long.address@example.org", "名" * 40)
    eml = assemble(template, long_name, pick=pick)
    assert pick[0].count("<li>") == 5
    assert _html_part_size(eml) <= opts.html_budget_bytes
    html = message_from_bytes(eml, policy=policy.default).get_body(("html",)).get_content()
    assert pick[0] in html and html.index(pick[0]) < html.index("</body>")


def test_without_picks_rendering_is_unchanged():
    issue = issue_factory.make_issue(120, seed=5)
    plain = render_variant(issue, "zh", None, RenderOptions(foryou_top_k=0))
    with_room = render_variant(issue, "zh", None, RenderOptions())
    assert plain.foryou is None
    assert (with_room.html, with_room.text, with_room.subject) == (plain.html, plain.text, plain.subject)
    values = {"NAME": "Ada", "UNSUBSCRIBE_URL": "https://x/u?t=1", "PREFERENCES_URL": "https://x/p?t=1"}
    assert personalize(with_room, values) == personalize(plain, values)


# ---- delivered through a real SMTP server --------------------------------------------------------------------


def test_the_pick_is_delivered_and_readers_without_interests_get_the_plain_issue(settings, token_secret):
    settings = with_delivery(settings)
    make_issue(settings.database_url)
    with session_scope(settings.database_url) as s:
        plain_sub = subscribers.add(s, "plain@example.org", "Plain", "en")
        subscribers.add(s, "fan@example.org", "Fan", "en", keywords="audio lip sync talking head")
        found = interests.parse_seeds("2412.00001")
        subscribers.add(s, "splat@example.org", "Splat", "en", seeds=found.seeds)
        subscribers.add(s, "none@example.org", "None", "en", keywords="protein folding")  # nothing matches
        plain_id = plain_sub.id
    with SmtpServer() as server:
        report = send_date(settings, DAY, transport_factory=smtp(server))
        got = {r.rcpt_tos[0]: r.data for r in server.handler.received}
    assert report.sent == 4 and set(got) == {"plain@example.org", "fan@example.org", "splat@example.org",
                                            "none@example.org"}  # fmt: skip

    def html(addr: str) -> str:
        return message_from_bytes(got[addr], policy=policy.default).get_body(("html",)).get_content()

    fan, splat = html("fan@example.org"), html("splat@example.org")
    assert "For you" in fan and "Matches: " in fan
    first = fan.split("For you", 1)[1]
    assert first.index("Audio-Driven Talking Head") < first.index("Real-Time Gaussian Splatting") or (
        "Real-Time Gaussian Splatting" not in first.split("</ol>")[0]
    )
    pick = splat.split("For you", 1)[1].split("</ol>")[0]
    assert "Sparse-View Gaussian Splatting" in pick and "Real-Time Gaussian Splatting" not in pick  # own seed
    assert "For you" not in html("plain@example.org") and "For you" not in html("none@example.org")

    # Byte for byte what the plain variant gives, as sent before #11 (the Date header aside).
    issue, _ = steps.build_step(settings, steps.period_for(settings, DAY))
    opts = replace(steps.render_options(settings), foryou_top_k=0)
    template = MessageTemplate.build(
        render_variant(issue, "en", None, opts), MessageSettings.from_settings(settings), issue.issue_id, DAY
    )
    with session_scope(settings.database_url) as s:
        sub = s.get(type(plain_sub), plain_id)
        expected = assemble(template, sub)

    def without_date(eml: bytes) -> bytes:
        return b"\r\n".join(line for line in eml.split(b"\r\n") if not line.startswith(b"Date: "))

    assert without_date(got["plain@example.org"]) == without_date(expected)


# ---- the preferences page ----------------------------------------------------------------------------------


def test_preferences_page_edits_interests_over_http(web_settings, db_url):
    sid = _add(db_url, "ada@example.org", "en")
    with LiveServer(web_settings) as live, httpx.Client(base_url=live.url, timeout=10) as client:
        url = f"/preferences?token={_token(db_url, sid, 'preferences')}"
        page = client.get(url)
        assert 'name="keywords"' in page.text and '<label class="ifield" for="seeds">' in page.text
        form = {"language": "en", "scope": "all", "keywords": "gaussian avatars", "seeds": "2412.00001\n2412.00003"}
        r = client.post(url, data=form)
        assert r.status_code == 200 and "Saved." in r.text
        assert 'value="gaussian avatars"' in r.text and "2412.00001\n2412.00003</textarea>" in r.text
        r = client.post(url, data={**form, "seeds": "@misc{x, title={Sonic}, eprint={2411.16331}}"})
        assert r.status_code == 200
        with session_scope(db_url) as s:
            sub = subscribers.get(s, "ada@example.org")
            assert (sub.keywords, sub.seeds) == ("gaussian avatars", [{"arxiv_id": "2411.16331", "title": "Sonic"}])
        r = client.post(url, data={**form, "seeds": "not an id"})
        assert r.status_code == 422 and "Seed papers must be arXiv ids" in r.text
        r = client.post(url, data={"language": "en", "scope": "all"})  # a form without the fields keeps them
        assert r.status_code == 200
        with session_scope(db_url) as s:
            assert subscribers.get(s, "ada@example.org").keywords == "gaussian avatars"


def test_the_dry_run_outbox_shows_the_pick(settings):
    issue_id = make_issue(settings.database_url)
    with session_scope(settings.database_url) as s:
        subscribers.add(s, "fan@example.org", "Fan", "zh", keywords="lip sync")
        subscribers.add(s, "plain@example.org", "Plain", "zh")
    steps.prepare_step(settings, issue_id)
    result = steps.dry_run_to_outbox(settings, issue_id)
    assert result["written_to_outbox"] == 2
    box = mailbox.Maildir(result["outbox"], create=False)
    bodies = {
        m["To"].addresses[0].addr_spec: m.get_body(("html",)).get_content()
        for m in (message_from_bytes(box.get_bytes(k), policy=policy.default) for k in box.iterkeys())
    }
    assert "为你推荐" in bodies["fan@example.org"] and "Expressive Lip Sync" in bodies["fan@example.org"]
    assert "为你推荐" not in bodies["plain@example.org"]


# ---- how it looks --------------------------------------------------------------------------------------------


@requires_chromium
@pytest.mark.parametrize("width", [375, 800])
@pytest.mark.parametrize("mode", ["zh", "bilingual"])
def test_the_pick_lays_out_on_a_phone_and_a_desktop(mode, width, tmp_path):
    issue = issue_factory.make_issue(90, long_summaries=True, seed=3)
    fy = render_variant(issue, mode).foryou
    ids = list(fy.items)[:5]
    pick = fy.pick([(int(k), "gaussian splatting, talking head, avatar") for k in ids])
    page = tmp_path / f"email-foryou-{mode}.html"
    page.write_text(personalize(fy, BROWSER_VALUES, pick)[0])
    m = measure(page, width, tmp_path / "profile")
    assert m["innerWidth"] == width and m["scrollWidth"] <= width, m
    screenshot(page, width, f"email-foryou-{mode}-{width}.png", tmp_path / "profile")
