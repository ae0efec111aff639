"""The feed-content HTML parser on hand-made fixtures: one per layout and per upstream defect."""

from __future__ import annotations

import dataclasses
from datetime import date
from pathlib import Path

import pytest

from newsletter.ingest.parse.digest_html import parse_digest_html

FIXTURES = Path(__file__).parent / "fixtures" / "parse"


def parse(name: str):
    return parse_digest_html((FIXTURES / name).read_text(encoding="utf-8"))


# ---- 2024 layout -------------------------------------------------------------------------------------


def test_2024_layout_fields():
    body = parse("digest_2024.html")
    assert body.heading_date == date(2024, 12, 5)
    first, second = body.papers
    assert first.title == "Sparse Voxel Fields for Fast Rendering"  # runs of spaces collapsed
    assert first.authors == ["Alice Zhang", "Bob Li", "Carol Wang"]
    assert (
        first.abstract
        == "We present sparse voxel fields, a fast representation for novel view synthesis. It renders in real time."
    )
    assert first.abstract_zh is None  # no translation in 2024 posts
    assert (first.arxiv_id, first.arxiv_version) == ("2412.00001", "v2")
    assert first.abs_url == "https://arxiv.org/abs/2412.00001"
    assert first.pdf_url == "http://arxiv.org/abs/2412.00001v2"  # as upstream wrote it
    assert first.comment == "Accepted to “CVPR 2025”, 12 pages, 5 figures"  # smart quotes kept, spaces collapsed
    assert first.summary_zh == "稀疏体素场实现实时新视角合成。"
    assert first.takeaways == ["稀疏体素场是一种快速表示。", "可以实时渲染。", "在三个基准上领先。"]
    assert first.screenshots == ["https://picx.zhimg.com/v2-aaaa.jpg", "https://pica.zhimg.com/v2-bbbb.jpg"]
    assert not first.unrendered and not first.dup_in_entry
    # Chinese marker names, indented summary, <ol> takeaways, empty comment.
    assert second.summary_zh == "音频驱动的说话人头像生成。"
    assert second.takeaways == ["音频驱动。", "保持身份。"]
    assert second.comment == ""
    assert second.abstract == "Audio-driven talking heads. Project page: https://example.org/th."
    assert second.screenshots == ["https://pic1.zhimg.com/v2-cccc.jpg"]


def test_headings_that_are_not_papers_are_skipped():
    body = parse("digest_2024.html")
    # They sit in the LLM notes; "Paper:1" is followed by an "Authors:" list item, "Paper:2" by a
    # "<strong>Authors</strong>: ..." line of the LLM's.
    assert body.skipped_headings == ["摘要：", "Paper:1", "Paper:2"]
    assert [p.title for p in body.papers] == ["Sparse Voxel Fields for Fast Rendering", "Talking Heads from Audio"]


def test_llm_notes_do_not_leak_into_the_paper():
    first = parse("digest_2024.html").papers[0]
    assert "LLM 笔记里的要点，不是本文的要点。" not in first.takeaways
    assert "背景介绍" not in first.summary_zh


# ---- 2025 layout -------------------------------------------------------------------------------------


def test_2025_layout_translation_links_marker_and_heading_markers():
    body = parse("digest_2025.html")
    assert body.heading_date == date(2025, 5, 28)
    assert [p.arxiv_id for p in body.papers] == ["2505.20001", "2505.20002", "2505.20003"]
    first, second, third = body.papers
    assert first.abstract.startswith("Image segmentation remains")
    assert (
        first.abstract_zh == "图像分割仍是计算机视觉中的一项具有挑战性的任务。我们引入了ViT-P，这是一种两阶段分割框架。"
    )
    assert first.comment == ""
    assert first.summary_zh == "本文介绍了一种名为ViT-P的两阶段图像分割框架。"
    assert first.takeaways == ["ViT-P将掩膜生成与分类解耦。", "第二阶段使用基于ViT的点分类模型。"]
    assert first.screenshots == ["https://picx.zhimg.com/v2-1111.jpg", "https://picx.zhimg.com/v2-2222.jpg"]
    # Two-paragraph abstract and translation; 摘要 / 关键见解 as headings.
    assert second.abstract.split("\n\n") == [
        "Prompt learning has emerged as a powerful paradigm.",
        "Extensive evaluations on 11 benchmarks show that DiSa outperforms prior methods.",
    ]
    assert second.abstract_zh.split("\n\n") == [
        "提示学习已经成为一种强大的范式。",
        "在11个基准上的广泛评估表明DiSa优于现有方法。",
    ]
    assert second.comment == "Accepted at the 31st ACM SIGKDD Conference (KDD 2025)"
    assert second.summary_zh == "我们提出DiSa，一种方向性显著性感知提示学习框架。"
    assert len(second.takeaways) == 3
    assert third.arxiv_version == "v2"
    assert third.comment.startswith("Accepted by IEEE ISBI 2025 (Selected for oral presentation); 2025/4/15 (v2)")
    assert third.summary_zh == "本文提出MeDiVLAD，用于肺部超声严重程度评分。"
    assert body.skipped_headings == []


# ---- defects -----------------------------------------------------------------------------------------


def test_unclosed_lists_do_not_swallow_later_papers():
    body = parse("unclosed_lists.html")
    assert [p.arxiv_id for p in body.papers] == ["2411.00011", "2411.00012", "2411.00013"]
    first, second, third = body.papers
    assert first.takeaways == ["要点一。", "要点二。"]
    assert first.screenshots == ["https://picx.zhimg.com/v2-a1.jpg"]
    assert second.title == "Second Paper Nested Inside the List"
    assert second.takeaways == ["甲。", "乙。", "丙。"]
    assert second.screenshots == ["https://picx.zhimg.com/v2-b1.jpg", "https://picx.zhimg.com/v2-b2.jpg"]
    assert third.takeaways == ["第一条。", "第二条。"]  # "<br>• " bullets inside one paragraph
    assert third.comment == "Project page: https://example.org/c"


def test_unrendered_markdown_inside_html():
    body = parse("unrendered.html")
    assert [(p.arxiv_id, p.unrendered) for p in body.papers] == [
        ("2401.00021", False),
        ("2401.15636", True),
        ("2401.13974", True),
        ("2401.00022", False),
    ]
    raw = body.papers[1]
    assert raw.title == "FreeStyle: Free Lunch for Text-guided Style Transfer using Diffusion Models"
    assert raw.authors == ["Feihong He", "Gang Li", "Lingyu Si"]
    assert raw.pdf_url == "http://arxiv.org/abs/2401.15636v1"
    assert (
        raw.comment
        == "Published in Computer Graphics Forum (Jan 2024): https://onlinelibrary.wiley.com/doi/10.1111/cgf.15000"
    )
    assert raw.summary_zh == "无需优化即可完成风格迁移。"
    assert len(raw.takeaways) == 3  # "Motion- and View-Change" is not a bullet
    assert raw.screenshots == ["https://picx.zhimg.com/v2-u1.jpg", "https://pica.zhimg.com/v2-u2.jpg"]
    boot = body.papers[2]
    assert boot.arxiv_version == "v2" and boot.comment == ""
    assert boot.summary_zh == "BootPIG 利用预训练模型。"
    assert boot.takeaways == ["提出 BootPIG 架构。", "训练仅需一小时。"]
    assert boot.screenshots == ["https://picx.zhimg.com/v2-u3.jpg"]
    # The rendered neighbours keep their own fields.
    assert body.papers[0].screenshots == ["https://picx.zhimg.com/v2-r1.jpg"]
    assert body.papers[3].comment == "4 pages"


def test_unquoted_translation_paragraph():
    html = (
        "<h1>2025-05-28 更新</h1><h2>T</h2><p><strong>Authors:A</strong></p><p>English abstract.</p>"
        "<p>中文翻译的摘要，没有放在引用块里。</p><p><strong>论文及项目相关链接</strong></p>"
        '<p><a href="http://arxiv.org/abs/2505.00001v1">PDF</a> </p>'
    )
    (paper,) = parse_digest_html(html).papers
    assert (paper.abstract, paper.abstract_zh) == ("English abstract.", "中文翻译的摘要，没有放在引用块里。")


def test_heading_rendered_but_body_raw():
    html = (
        "<h1>2024-01-30 更新</h1><h2>Half Rendered Paper</h2>"
        "<p>**Authors:Ann One, Ben Two**Abstract. [PDF](http://arxiv.org/abs/2401.00031v1) 5 pages"
        "**Summary**总结。**Key Takeaways**- 一。- 二。</p>"
    )
    (paper,) = parse_digest_html(html).papers
    assert (paper.title, paper.authors, paper.unrendered) == ("Half Rendered Paper", ["Ann One", "Ben Two"], True)
    assert (paper.arxiv_id, paper.comment, paper.summary_zh, paper.takeaways) == (
        "2401.00031",
        "5 pages",
        "总结。",
        ["一。", "二。"],
    )


def test_repeated_digest_flags_the_second_copy():
    body = parse("repeated_digest.html")
    got = [(p.arxiv_id, p.unrendered, p.dup_in_entry) for p in body.papers]
    assert got == [
        ("2404.02152", False, False),
        ("2404.01053", True, False),
        ("2404.00524", False, False),
        ("2404.02152", False, True),
        ("2404.01053", False, False),  # first *rendered* copy: the unrendered one does not count
        ("2404.00524", False, True),
    ]
    assert body.papers[3].summary_zh == "总结一（第二次生成）。"  # the copy is still returned in full
    assert body.warnings == ["2 paper(s) repeated inside the post (digest pasted twice)"]


def test_empty_post_is_an_empty_digest_not_an_error():
    body = parse("empty_post.html")
    assert body.papers == []
    assert body.heading_date == date(2024, 5, 6)
    assert body.warnings == []


def test_empty_html():
    assert parse_digest_html("").papers == []
    assert parse_digest_html("   \n").heading_date is None


def test_llm_error_text_is_not_a_summary():
    body = parse("llm_errors.html")
    summaries = [p.summary_zh for p in body.papers]
    assert summaries == [
        None,
        None,
        None,
        None,
        "本文指出现有方法在误差累积（error accumulation）方面存在问题，并提出新方法。",
    ]
    assert body.warnings == [
        f"{title!r}: LLM error text instead of a summary"
        for title in (
            "Paper With an Error Instead of a Summary",
            "Paper With an Apology Instead of a Summary",
            "Paper With a Bare Error",
        )
    ]
    assert body.papers[3].takeaways == ["一。", "二。"]  # no summary, takeaways still read


# ---- security ----------------------------------------------------------------------------------------


def _all_text(paper) -> str:
    values = []
    for value in dataclasses.asdict(paper).values():
        values.extend(value if isinstance(value, list) else [value])
    return "\n".join(str(v) for v in values if v is not None)


def test_markup_and_scripts_never_reach_a_record():
    body = parse("hostile.html")
    assert len(body.papers) == 2
    text = "\n".join(_all_text(p) for p in body.papers)
    for bad in ("xss", "alert", "<script", "document.write", "display:none", "color:red", "javascript:", "data:", "<"):
        assert bad not in text, bad
    first, second = body.papers
    assert first.title == "Safe Title"
    assert first.authors == ["Ann One", "Ben Two"]
    assert first.abstract == "Abstract with a link."
    assert first.summary_zh == "总结。"
    assert first.takeaways == ["要点一。"]
    assert first.pdf_url is None and first.arxiv_id is None  # a javascript: link is no link
    assert first.screenshots == ["https://picx.zhimg.com/v2-ok.jpg"]  # only http(s) images
    assert second.title == "Second Paper"
    assert second.pdf_url == "https://arxiv.org/abs/2412.00042v1"


@pytest.mark.parametrize(
    "html",
    [
        "<h1>2024-01-01 更新</h1><h2>T</h2><p><strong>Authors:A</strong></p><p>x</p>"
        '<p><a href="JavaScript:alert(1)">PDF</a> c</p>',
        "<h1>2024-01-01 更新</h1><h2>T</h2><p><strong>Authors:A</strong></p><p>x</p>"
        '<p><a href=" vbscript:msgbox(1)">PDF</a> c</p>',
    ],
)
def test_only_http_links(html):
    (paper,) = parse_digest_html(html).papers
    assert paper.pdf_url is None and paper.comment == "c"
