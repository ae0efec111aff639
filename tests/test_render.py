"""Render stage: variants, escaping, languages, size budget, premailer configuration, archive, text part."""

from __future__ import annotations

import email.message
import email.mime.text
import email.policy
import re
from dataclasses import replace
from datetime import date

import pytest
from lxml import html as lxml_html

from bench.common import counting_premailer
from newsletter.records import Venue
from newsletter.registry.topics import topic_names, topic_slug
from newsletter.render import transfer
from newsletter.render import variant as render
from newsletter.render.variant import (
    PH_GREETING,
    PH_PREFERENCES_URL,
    PH_UNSUBSCRIBE_URL,
    RenderOptions,
    cut_sentences,
    encoded_size,
    html_encoded_size,
    personalize,
    render_archive,
    render_variant,
    wrap_text,
)
from tests.issue_factory import EVIL_AUTHOR, EVIL_TAKEAWAY, EVIL_TITLE, make_evil_issue, make_issue

MODES = ("en", "zh", "bilingual")
VALUES = {"NAME": "Ada", "UNSUBSCRIBE_URL": "https://x.org/u?id=1&t=2", "PREFERENCES_URL": "https://x.org/p"}
_CJK = re.compile(r"[\u3400-\u9fff]")
_LATIN_WORD = re.compile(r"[A-Za-z]{3,}")


@pytest.fixture(scope="module")
def issue63():
    return make_issue(63)


@pytest.fixture(scope="module")
def big():
    """A heavy day: 150 new papers with long Chinese summaries, plus a previously featured highlight (since
    #12 an English email carries about 90 such papers in full, so the day must be heavier than that)."""
    return make_issue(150, long_summaries=True, n_accepted=6, n_highlights=4, seed=3)


@pytest.fixture(scope="module")
def big_variants(big):
    """The three language variants, and how many premailer runs each took."""
    variants, calls = {}, {}
    for mode in MODES:
        with counting_premailer() as count:
            variants[mode] = render_variant(big, mode)
        calls[mode] = count.n
    return variants, calls


def all_papers(issue):
    papers = {h.paper.paper_id: h.paper for h in issue.highlights}
    for s in issue.sections:
        for p in s.papers:
            papers.setdefault(p.paper_id, p)
    return papers


def squash(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def text_nodes(doc):
    """(text, effective lang) for every non-blank text node of the body."""
    for el in doc.body.iter():
        if not isinstance(el.tag, str):
            continue
        for text in (el.text, *(c.tail for c in el)):
            if text and text.strip():
                owner = el
                lang = next((a.get("lang") for a in [owner, *owner.iterancestors()] if a.get("lang")), None)
                yield text.strip(), lang


# ---- each paper exactly once -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_each_paper_exactly_once(issue63, mode):
    v = render_variant(issue63, mode)
    html, text = squash(v.html), squash(v.text)
    papers = all_papers(issue63)
    for p in papers.values():
        assert html.count(p.title) == 1, p.title
        assert text.count(p.title) == 1, p.title
    assert v.n_full + v.n_listed + v.n_hidden == len(papers)
    assert v.n_hidden == 0


def test_highlight_paper_not_repeated_in_its_section(issue63):
    in_sections = {p.paper_id for s in issue63.sections for p in s.papers}
    assert any(h.paper.paper_id in in_sections for h in issue63.highlights)  # the factory makes this case
    v = render_variant(issue63, "en", opts=RenderOptions(html_budget_bytes=10**7))
    for h in issue63.highlights:
        assert squash(v.html).count(h.paper.title) == 1


# ---- escaping --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_markup_in_content_renders_as_text(mode):
    issue = make_evil_issue()
    v = render_variant(issue, mode, opts=RenderOptions(html_budget_bytes=10**7))
    html, text = personalize(v, VALUES)
    assert "<script" not in html and "<img" not in html and "<b>bold" not in html
    doc = lxml_html.fromstring(html)
    body_text = squash(doc.text_content())
    shown_title = EVIL_TITLE.replace("%%", "%\u200b%")
    assert shown_title in body_text
    assert EVIL_AUTHOR in body_text
    if mode != "en":
        assert EVIL_TAKEAWAY in body_text
    # the text part is plain text: the same characters, not entities
    assert "&lt;" not in text and "&amp;" not in text
    assert squash(shown_title) in squash(text) and EVIL_AUTHOR in squash(text)
    # a title that spells a placeholder is not substituted
    assert "UNSUBSCRIBE_URL" in body_text and "UNSUBSCRIBE_URL" in text


def test_archive_escapes_content():
    page = render_archive(make_evil_issue())
    assert "<script" not in page and "<img" not in page
    assert EVIL_AUTHOR in squash(lxml_html.fromstring(page).text_content())


# ---- languages -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_lang_attributes(issue63, mode):
    v = render_variant(issue63, mode)
    doc = lxml_html.fromstring(personalize(v, VALUES)[0])
    assert doc.get("lang") == {"en": "en", "zh": "zh-CN", "bilingual": "zh-CN"}[mode]
    assert {el.get("lang") for el in doc.iter() if isinstance(el.tag, str) and el.get("lang")} <= {"en", "zh-CN"}
    checked_zh = checked_en = 0
    for text, lang in text_nodes(doc):
        letters = [c for c in text if c.isalpha()]
        n_cjk = len(_CJK.findall(text))
        if n_cjk and n_cjk * 2 > len(letters):
            assert lang == "zh-CN", (text, lang)
            checked_zh += 1
        elif not n_cjk and len(_LATIN_WORD.findall(text)) >= 2:
            assert lang == "en", (text, lang)
            checked_en += 1
    assert checked_en > 10
    assert checked_zh > 10 if mode != "en" else checked_zh == 0


def test_mode_contents(issue63):
    paper = next(p for s in issue63.sections for p in s.papers if p.summary_zh and p.takeaways)
    opts = RenderOptions(html_budget_bytes=10**7)
    en, zh, bi = (render_variant(issue63, m, opts=opts).html for m in MODES)
    first_sentence = cut_sentences(paper.abstract, 1)[0]
    assert paper.summary_zh not in en and paper.takeaways[0] not in en
    assert first_sentence in en
    assert paper.summary_zh in zh and paper.takeaways[0] in zh
    assert paper.summary_zh in bi and first_sentence in bi
    assert "Now accepted" in en and "新录用" in zh and "Now accepted" in bi and "新录用" in bi
    assert "新录用" not in en and "Now accepted" not in zh


def test_en_mode_falls_back_to_chinese_without_english_abstract():
    issue = make_issue(6, topics=("3DGS",), n_highlights=0, n_accepted=0)
    paper = issue.sections[0].papers[0]
    paper.abstract, paper.summary_zh = "", "只有中文摘要的论文。"
    html = render_variant(issue, "en").html
    assert "只有中文摘要的论文。" in html


def test_zh_mode_prefers_the_chinese_abstract_translation():
    issue = make_issue(6, topics=("3DGS",), n_highlights=0, n_accepted=0)
    paper = issue.sections[0].papers[0]
    paper.abstract_zh = "第一句中文翻译。第二句。第三句。第四句不应出现。"
    html = render_variant(issue, "zh").html
    assert "第一句中文翻译。第二句。第三句。" in html and "第四句不应出现" not in html


def test_subjects(issue63):
    subjects = {m: render_variant(issue63, m).subject for m in MODES}
    assert subjects["en"] == "Paper Digest 2024-12-05 · 63 papers, 5 accepted"
    assert subjects["zh"] == "论文速递 2024-12-05 · 63 篇论文，5 篇录用"
    assert subjects["bilingual"] == "Paper Digest 2024-12-05 · 63 papers, 5 accepted | 论文速递 · 63 篇论文，5 篇录用"


def test_venue_badges_and_previously_featured(issue63):
    html = render_variant(issue63, "en", opts=RenderOptions(html_budget_bytes=10**7)).html
    assert "NeurIPS 2024 · Spotlight" in html and "NeurIPS 2024 · Oral" in html
    assert "now accepted at NeurIPS 2024" in html
    zh = render_variant(issue63, "zh", opts=RenderOptions(html_budget_bytes=10**7)).html
    assert "现已被 NeurIPS 2024 · Spotlight 录用" in zh
    assert render.venue_badge(Venue(True, "ECCV", 2024, "datasets and benchmarks")) == (
        "ECCV 2024 · Datasets and Benchmarks"
    )
    assert render.venue_badge(Venue(True, None, None, None)) == "Accepted"
    assert render.venue_badge(Venue(False, "CVPR", 2024, None)) is None


def test_authors_shortened():
    issue = make_issue(6, topics=("3DGS",), n_highlights=0, n_accepted=0)
    paper = issue.sections[0].papers[0]
    paper.authors = [f"Author{i} Person" for i in range(10)]
    html = render_variant(issue, "en", opts=RenderOptions(max_authors=6)).html
    assert "Author5 Person\u00a0et\u00a0al." in html and "Author6 Person" not in html
    assert "Author5 Person\u00a0等" in render_variant(issue, "zh").html


# ---- topics filter ---------------------------------------------------------------------------------------


def test_topics_filter(issue63):
    v = render_variant(issue63, "en", frozenset({" nerf ", "元宇宙_虚拟人"}), RenderOptions(html_budget_bytes=10**7))
    shown = {s.topic for s in issue63.sections if f'id="t-{topic_slug(s.topic)}"' in v.html}
    assert shown == {"NeRF", "元宇宙/虚拟人"}
    for h in issue63.highlights:
        wanted = {"NeRF", "元宇宙/虚拟人"} & set(h.paper.topics)
        assert (h.paper.title in v.html) == bool(wanted)
    n_new = sum(len(s.papers) for s in issue63.sections if s.topic in shown)
    assert f"· {n_new} paper" in v.subject


def test_filter_to_nothing_renders_an_empty_issue(issue63):
    v = render_variant(issue63, "zh", frozenset({"牙齿修复x"}))
    assert "本期您关注的方向没有新论文。" in v.html and v.n_full == 0
    assert PH_UNSUBSCRIBE_URL in v.html


# ---- size budget -----------------------------------------------------------------------------------------


def mime_html_size(html: str, cte: str | None = None) -> int:
    """The HTML part as the stdlib mailer would send it, CRLF line ends on the wire, in `cte` (default: the
    encoding the message stage chooses for it, #12)."""
    msg = email.message.EmailMessage(policy=email.policy.SMTP)
    msg.set_content(html, subtype="html", charset="utf-8", cte=cte or transfer.choose(transfer.canonical(html)))
    return len(msg.as_bytes().split(b"\r\n\r\n", 1)[1])


@pytest.mark.parametrize("mode", MODES)
def test_budget_honoured_for_an_oversized_issue(big, big_variants, mode):
    v = big_variants[0][mode]
    token = "u_" + "Xy9" * 40  # a signed per-subscriber token: 122 characters
    long_values = {
        "NAME": "Maximiliane Anastasia von Hohenzollern-Sigmaringen",
        "UNSUBSCRIBE_URL": f"https://digest.example.org/unsubscribe?t={token}&list=daily",
        "PREFERENCES_URL": f"https://digest.example.org/preferences?t={token}",
    }
    personalised, _ = personalize(v, long_values)
    assert abs(v.html_encoded_size - mime_html_size(v.html)) <= v.html_encoded_size // 100
    assert mime_html_size(personalised) <= RenderOptions().html_budget_bytes
    assert v.html_encoded_size <= RenderOptions().html_budget_bytes
    assert not v.over_budget
    assert v.n_listed > 0 and v.n_hidden == 0
    assert v.n_full + v.n_listed == len(all_papers(big))
    more = "read the full issue online" if mode != "zh" else "在线阅读完整一期"
    assert more in v.html and big.archive_url + "#t-" in v.html
    for p in all_papers(big).values():
        assert squash(v.html).count(p.title) == 1
    # the budget is used, not wasted: one more full paper would not have fitted
    assert v.html_encoded_size > RenderOptions().html_budget_bytes - 4_000


def test_one_premailer_call_per_variant(big_variants):
    _, calls = big_variants
    assert calls == dict.fromkeys(MODES, 1)


def test_best_papers_kept_in_full(big, big_variants):
    v = big_variants[0]["bilingual"]
    highlight_ids = {h.paper.paper_id for h in big.highlights}
    html = v.html
    for s in big.sections:
        papers = [p for p in s.papers if p.paper_id not in highlight_ids]
        full = [p for p in papers if f">{p.title}</a></div>" in html]  # full blocks wrap the title in a div
        assert full, f"topic {s.topic} lost all its full papers"
        for p in papers:
            if p.venue.accepted:
                assert p in full, "accepted papers rank first"


def _reserve_as_encoded(cte: str, reserve: int) -> int:
    """The worst case of `reserve` bytes of personal values in the part's transfer encoding: non-ASCII bytes
    take 3 characters each in quoted-printable (=XX), 4 per 3 in base64."""
    return 3 * reserve if cte == transfer.QP else -(-4 * reserve // 3)


@pytest.mark.parametrize(("mode", "cte"), [("en", transfer.QP), ("zh", transfer.BASE64)])
def test_budget_keeps_the_per_subscriber_reserve_free(issue63, mode, cte):
    """The budget check counts `personalize_reserve_bytes` (as encoded) on top of the encoded HTML: an issue
    whose full HTML fits the budget only without that reserve is cut; with exactly the reserve free it goes out
    in full, byte for byte the same. English goes quoted-printable, Chinese base64: both reserves are pinned."""
    everything = render_variant(issue63, mode, opts=RenderOptions(html_budget_bytes=10**7))
    assert transfer.choose(transfer.canonical(everything.html)) == cte
    size, reserve = everything.html_encoded_size, RenderOptions().personalize_reserve_bytes
    assert (everything.n_listed, everything.n_hidden, size) == (0, 0, html_encoded_size(everything.html))
    exact_budget = size + _reserve_as_encoded(cte, reserve)

    exact = render_variant(issue63, mode, opts=RenderOptions(html_budget_bytes=exact_budget))
    assert (exact.n_listed, exact.over_budget, exact.html) == (0, False, everything.html)

    short = render_variant(issue63, mode, opts=RenderOptions(html_budget_bytes=exact_budget - 1))
    assert size <= exact_budget - 1  # without the reserve the whole issue would fit this budget ...
    assert short.n_full < everything.n_full and short.n_listed > 0  # ... with it, papers are cut to titles
    assert not short.over_budget
    assert short.html_encoded_size + _reserve_as_encoded(cte, reserve) <= exact_budget - 1
    # A smaller reserve leaves room for more: the reserve is what was cut for.
    roomy = render_variant(
        issue63, mode, opts=RenderOptions(html_budget_bytes=exact_budget - 1, personalize_reserve_bytes=0)
    )
    assert roomy.html == everything.html


def test_title_list_dropped_only_when_even_titles_do_not_fit(big):
    v = render_variant(big, "bilingual", opts=RenderOptions(html_budget_bytes=45_000))
    assert v.n_hidden > 0 and v.n_full == len(big.highlights)
    assert v.html_encoded_size <= 45_000
    assert "read the full issue online" in v.html


def test_archive_has_everything_uncut(big):
    page = render_archive(big)
    text = squash(page)
    for p in all_papers(big).values():
        assert text.count(p.title) == 1
        assert squash(p.abstract) in text
        for t in p.takeaways:
            assert t in text
        if p.summary_zh:
            assert p.summary_zh in text
        if p.abstract_zh:
            assert p.abstract_zh in text
    for s in big.sections:  # the email's "N more" links land on these anchors
        assert f'id="t-{topic_slug(s.topic)}"' in page
    assert "%%" not in page


def test_encoded_size_matches_mime():
    for n in (0, 1, 56, 57, 58, 1000, 65_432):
        part = email.mime.text.MIMEText("a" * n, "html", "utf-8")  # base64
        assert encoded_size(n) == len(part.get_payload().replace("\n", "\r\n")) or n == 0


# ---- premailer and email-safe HTML -----------------------------------------------------------------------


def client_css(html: str) -> str:
    return "\n".join(re.findall(r"<style[^>]*>(.*?)</style>", html, re.S))


def test_premailer_keeps_media_queries_and_dark_mode(issue63):
    html = render_variant(issue63, "bilingual").html
    css = client_css(html)
    assert "@media screen and (max-width:620px)" in css
    assert ".cd{padding:20px 16px 8px!important" in css
    assert "@media (prefers-color-scheme:dark)" in css
    assert ".cd{background:#171a21!important;color:#e3e6ea!important}" in css
    assert css.count("!important") >= 20
    assert "data-premailer" not in html
    # the inlinable rules were inlined and are not shipped twice
    assert ".kk{" not in css and 'class="kk" style="color:#2557a7' in html


def test_email_head_and_preheader(issue63):
    v = render_variant(issue63, "en")
    assert '<meta name="color-scheme" content="light dark">' in v.html
    assert '<meta name="supported-color-schemes" content="light dark">' in v.html
    assert 'style="display:none;max-height:0;overflow:hidden;mso-hide:all">' + v.preheader.split(" ")[0] in v.html
    assert v.preheader.startswith("63 new papers across 9 topics.")


@pytest.mark.parametrize("mode", MODES)
def test_no_flexbox_or_grid(issue63, mode):
    for page in (render_variant(issue63, mode).html, render_archive(issue63)):
        assert not re.search(r"display\s*:\s*(inline-)?(flex|grid)", page)
        assert "grid-template" not in page and "flex:" not in page


def test_font_stack_declared_once(issue63):
    html = render_variant(issue63, "bilingual").html
    outside_mso = re.sub(r"<!--\[if mso\]>.*?<!\[endif\]-->", "", html, flags=re.S)
    assert outside_mso.count("font-family") == 1
    assert html.count("PingFang SC") == 1 and "Noto Sans CJK SC" in html


def test_tables_for_layout(issue63):
    html = render_variant(issue63, "en").html
    assert 'role="presentation"' in html and "max-width:640px" in html


# ---- personalize -----------------------------------------------------------------------------------------


def test_personalize_substitutes_and_escapes(issue63):
    v = render_variant(issue63, "en")
    assert {PH_GREETING, PH_UNSUBSCRIBE_URL, PH_PREFERENCES_URL} <= {t for t in re.findall(r"%%\w+%%", v.html)}
    html, text = personalize(v, {**VALUES, "NAME": "<b>Ada & Co</b>"})
    assert "%%" not in html and "%%" not in text
    assert 'href="https://x.org/u?id=1&amp;t=2"' in html
    assert "Hi &lt;b&gt;Ada &amp; Co&lt;/b&gt;," in html
    assert "https://x.org/u?id=1&t=2" in text and "Hi <b>Ada & Co</b>," in text
    zh_html, _ = personalize(render_variant(issue63, "zh"), {**VALUES, "NAME": "张伟"})
    assert "张伟，你好！" in zh_html
    html, _ = personalize(v, {"%%GREETING%%": "Dear reader,", **{k: VALUES[k] for k in VALUES if k != "NAME"}})
    assert "Dear reader," in html


def test_personalize_rejects_unknown_and_missing(issue63):
    v = render_variant(issue63, "en")
    with pytest.raises(KeyError):
        personalize(v, {**VALUES, "UNSUBSCRIBE": "x"})
    with pytest.raises(ValueError):
        personalize(v, {"NAME": "Ada"})


# ---- text part -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_text_part_wrapped_with_numbered_references(big_variants, mode):
    text = big_variants[0][mode].text
    body, _, refs = text.rpartition("\n[1] ")
    for line in body.splitlines():
        assert render._text_width(line) <= 76 or "http" in line or "%%" in line, line
    numbers = [int(n) for n in re.findall(r"^\[(\d+)\] https?://", "[1] " + refs, re.M)]
    assert numbers == list(range(1, len(numbers) + 1))
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", body)}
    assert cited == set(numbers)
    assert PH_UNSUBSCRIBE_URL in text and PH_PREFERENCES_URL in text


def test_wrap_text_cjk():
    zh = "本文提出了一种新的三维场景表示方法，将几何与外观解耦，从而在稀疏视角下也能获得高质量的新视角合成结果。" * 3
    lines = wrap_text(zh, 40, "  ").splitlines()
    assert all(render._text_width(line) <= 41 for line in lines)  # closing punctuation may hang by one
    assert not any(line.strip()[0] in "，。、" for line in lines)
    mixed = "Recent advances in neural scene representations 使用 Gaussian Splatting 实现实时渲染 " * 4
    for line in wrap_text(mixed, 30).splitlines():
        assert render._text_width(line) <= 30
        assert not re.search(r"[a-z]$", line) or line.split()[-1] in mixed.split()
    assert wrap_text("https://example.org/" + "x" * 100, 20) == "https://example.org/" + "x" * 100


def test_cut_sentences():
    text = "We follow Kerbl et al. 2023 closely. It works, e.g. on DTU. Third one! Fourth? Fifth."
    assert cut_sentences(text, 2) == ("We follow Kerbl et al. 2023 closely. It works, e.g. on DTU.", True)
    assert cut_sentences(text, 9) == (text, False)
    assert cut_sentences("第一句。第二句！第三句？第四句。", 3) == ("第一句。第二句！第三句？", True)
    cut, more = cut_sentences("word " * 400, 3, max_chars=100)
    assert more and cut.endswith("…") and len(cut) <= 101


# ---- topics ----------------------------------------------------------------------------------------------


def test_topic_names():
    assert topic_names("3DGS") == ("3D Gaussian Splatting", "3D高斯泼溅")
    assert topic_names(" 3dgs ") == topic_names("3DGS")
    assert topic_names("元宇宙_虚拟人") == ("Metaverse / Virtual Humans", "元宇宙/虚拟人")
    assert topic_names("talking head generation")[1] == "说话人头像生成"
    assert topic_names("vision-transformer")[0] == "Vision Transformer"
    assert topic_names("医学图像") == ("Medical Imaging", "医学图像")
    assert topic_names("牙齿修复") == ("Dental Restoration", "牙齿修复")
    assert topic_names("point-cloud") == ("Point Cloud", "Point Cloud")
    assert topic_names("点云") == ("点云", "点云")
    assert topic_slug("元宇宙/虚拟人") == "metaverse-virtual-humans"
    assert re.fullmatch(r"topic-[0-9a-f]{8}", topic_slug("点云"))


def test_period_and_dates(issue63):
    assert render._period("2024-12-04T08:00:00+08:00", "2024-12-05T08:00:00+08:00") == (
        "12-04 08:00 – 12-05 08:00 UTC+8"
    )
    assert render._period("garbage", "x") == "garbage – x"
    assert render._date_title(date(2024, 12, 5), "zh") == "2024年12月5日 星期四"


def test_archive_url_from_options_or_none(big):
    bare = replace(big, archive_url="")
    v = render_variant(bare, "en", opts=RenderOptions(archive_url="https://d.example.org/{date}.html"))
    assert 'href="https://d.example.org/2024-12-05.html#t-3d-gaussian-splatting"' in v.html
    v = render_variant(bare, "zh")
    assert "本方向另有" in v.html and "#t-" not in v.html and "在线阅读" not in v.html
    assert v.html_encoded_size <= RenderOptions().html_budget_bytes


def test_duplicate_highlights_shown_once(issue63):
    doubled = replace(issue63, highlights=[*issue63.highlights, issue63.highlights[0]])
    v = render_variant(doubled, "en", opts=RenderOptions(html_budget_bytes=10**7))
    assert squash(v.html).count(issue63.highlights[0].paper.title) == 1


@pytest.mark.parametrize("mode", MODES)
def test_code_and_project_links_next_to_pdf(mode):
    """#12: "Code" / "Project" sit next to "PDF" in the HTML part, the text part and the archive page."""
    issue = make_issue(3)
    first = next(p for s in issue.sections for p in s.papers)
    first.code_url, first.project_url = "https://github.com/o/r", "https://o.github.io/r"
    variant = render_variant(issue, mode)
    code, project = ("代码", "项目主页") if mode == "zh" else ("Code", "Project")
    assert 'href="https://github.com/o/r"' in variant.html and f">{code}</a>" in variant.html
    assert 'href="https://o.github.io/r"' in variant.html and f">{project}</a>" in variant.html
    assert re.search(rf"{code} \[\d+\]", variant.text) and re.search(rf"{project} \[\d+\]", variant.text)
    assert "https://github.com/o/r" in variant.text
    page = render.render_archive(issue)
    assert 'href="https://github.com/o/r"' in page and 'href="https://o.github.io/r"' in page
    assert variant.html.count(f">{code}</a>") == 1  # papers without a link show none
