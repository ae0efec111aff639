"""Markdown digests: Hexo post sources and the raw Markdown that failed to render inside HTML."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from newsletter.ingest.parse.digest_markdown import (
    bullet_items,
    marker_kind,
    parse_digest_markdown,
    parse_raw_markdown,
    split_authors,
)
from newsletter.ingest.parse.post_file import parse_markdown_post, read_front_matter

FIXTURES = Path(__file__).parent / "fixtures" / "parse"


def post(name: str):
    return parse_markdown_post((FIXTURES / name).read_text(encoding="utf-8"), name)


def test_markdown_post_identity_and_papers():
    p = post("2024-12-07_元宇宙_虚拟人.md")
    assert p.topic == "元宇宙/虚拟人"  # from the tags, not the file name
    assert p.post_date == date(2024, 12, 7)
    assert p.heading_date == date(2024, 12, 7)
    assert p.key == "2024-12-07/元宇宙/虚拟人"
    assert p.skipped_headings == ["摘要："]  # a "## " heading in the LLM notes
    first, second = p.papers
    assert first.title == "PBDyG: Position Based Dynamic Gaussians for Motion-Aware Clothed Human Avatars"
    assert first.authors == ["Shota Sasaki", "Jane Wu", "Ko Nishino"]
    assert first.abstract.startswith("This paper introduces") and first.abstract.endswith("physical simulation.")
    assert (first.arxiv_id, first.arxiv_version) == ("2412.04433", "v1")
    assert first.comment == "Project page: https://example.org/pbdyg, 8 pages"
    assert first.summary_zh == "新型衣饰人体模型可通过多视角RGB视频学习。"
    assert first.takeaways == [
        "提出基于多视角RGB视频学习的衣饰人体模型。",
        "使用物理模拟实现运动依赖的衣物变形。",
        "模型包括3D高斯衣物和SMPL骨骼。",
    ]
    assert first.screenshots == ["https://picx.zhimg.com/v2-p1.jpg", "https://picx.zhimg.com/v2-p2.jpg"]
    assert not first.unrendered
    # The heading after a zero-width-space line is still a paper; "要点:" marker; wrapped bullet.
    assert second.title == "Avatars from a Single Image"
    assert second.comment == ""
    assert second.summary_zh == "从单张图像生成化身。"
    assert second.takeaways == ["单张图像即可。", "生成可驱动的化身，且保持身份。"]
    assert second.screenshots == ["https://pica.zhimg.com/v2-p3.jpg"]


def test_empty_markdown_post():
    p = post("2024-05-06_3DGS.md")
    assert p.papers == []
    assert p.key == "2024-05-06/3DGS"
    assert p.heading_date == date(2024, 5, 6)


def _md(front: str, body: str = "# 2024-03-02 更新\n") -> str:
    return f"---\n{front}---\n\n{body}"


@pytest.mark.parametrize(
    ("front", "filename", "topic"),
    [
        ("title: NeRF\ntags:\n  - Paper\n  - 3DGS\n", "2024-03-01_NeRF.md", "3DGS"),  # tags win, Paper ignored
        ("title: 'Talking Head Generation'\n", "2024-03-01_x.md", "Talking Head Generation"),  # then the title
        ("author: K\n", "2024-03-01_元宇宙_虚拟人.md", "元宇宙/虚拟人"),  # then the file name, known "_"
        ("author: K\n", "2024-03-01_Some_Topic.md", "Some_Topic"),  # an unknown "_" is kept
        ("tags: [GAN, Paper]\n", "2024-03-01_x.md", "GAN"),  # inline list
    ],
)
def test_topic_precedence(front, filename, topic):
    assert parse_markdown_post(_md(front), filename).topic == topic


def test_date_precedence_and_heading_mismatch():
    text = _md("title: NeRF\ndate: 2024-03-05 10:00:00\n")
    by_file = parse_markdown_post(text, "2024-03-01_NeRF.md")
    assert by_file.post_date == date(2024, 3, 1)
    assert by_file.heading_date == date(2024, 3, 2)
    assert by_file.warnings == ["heading date 2024-03-02 differs from post date 2024-03-01"]
    assert parse_markdown_post(text, "NeRF.md").post_date == date(2024, 3, 5)  # front matter date
    no_date = _md("title: NeRF\n")
    assert parse_markdown_post(no_date, "NeRF.md").post_date == date(2024, 3, 2)  # heading date
    with pytest.raises(ValueError, match="no date"):
        parse_markdown_post(_md("title: NeRF\n", "no heading\n"), "NeRF.md")


def test_front_matter_reader():
    meta, body = read_front_matter(
        '\n---\ntitle: "A: B"\ndate: 2024-01-24 10:34:37\ncategories: Paper\ntags:\n    - GAN\n'
        "    - 'LLM'\ntoc:\ndescription: a --- b\n---\n\n# body\n"
    )
    assert meta["title"] == "A: B"
    assert meta["date"] == "2024-01-24 10:34:37"
    assert meta["tags"] == ["GAN", "LLM"]
    assert meta["toc"] == ""
    assert meta["description"] == "a --- b"
    assert body == "\n# body\n"
    assert read_front_matter("# no front matter\n") == ({}, "# no front matter\n")


@pytest.mark.parametrize(
    ("front", "problem"),
    [
        # What the hand-written reader turned into topics: "- NeRF", "*i", '"NeRF'.
        ("title: NeRF\ntags: - NeRF\n", "not valid YAML: sequence entries are not allowed here (line 3)"),
        ("title: NeRF\ntags:\n  - *i\n", "not valid YAML: found undefined alias 'i' (line 4)"),
        ('title: "NeRF\n', "not valid YAML"),
        ("tags:\n  - NeRF\n  a: b\n", "not valid YAML"),
        # Valid YAML of the wrong shape: a list where text belongs, a nested list, a mapping.
        ("title: [NeRF, 3DGS]\n", "`title` must be text, not a list"),
        ("date:\n  - 2024-03-01\n", "`date` must be text, not a list"),
        ("title: NeRF\ntags:\n  - - NeRF\n", "`tags` must be text or a list of text, not a list"),
        ("tags: {a: b}\n", "`tags` must be text or a list of text, not a mapping"),
        ("- NeRF\n- 3DGS\n", "must be `key: value` lines"),
        # Text that is not a topic.
        ("tags:\n  - '*i'\n", "tag '*i' is not a topic"),
        ("tags: ['NeRF', '- NeRF']\n", "tag '- NeRF' is not a topic"),
        ("title: '#NeRF'\n", "title '#NeRF' is not a topic"),
    ],
)
def test_broken_front_matter_rejects_the_post_naming_the_file(front, problem):
    with pytest.raises(ValueError, match="front matter") as info:
        parse_markdown_post(_md(front), "2024-03-01_NeRF.md")
    assert str(info.value).startswith("2024-03-01_NeRF.md: front matter") and problem in str(info.value)


def test_front_matter_values_stay_text():
    """No YAML typing: a date stays the text written, "No" stays a topic, not False."""
    meta, _ = read_front_matter(_md("title: No\ndate: 2024-03-05T10:00:00+08:00\ntags: [2024, 'on']\ncover:\n"))
    assert meta == {"title": "No", "date": "2024-03-05T10:00:00+08:00", "tags": ["2024", "on"], "cover": ""}
    assert parse_markdown_post(_md("title: No\n"), "x.md").topic == "No"


def test_repeated_markdown_digest():
    block = (
        "## T1\n**Authors:A**\n\nx\n\n[PDF](http://arxiv.org/abs/2401.00001v1) \n\n"
        "## T2\n**Authors:B**\n\ny\n\n[PDF](http://arxiv.org/abs/2401.00002v1) \n\n"
    )
    body = parse_digest_markdown(f"# 2024-01-24 更新\n\n{block}# 2024-01-24 更新\n\n{block}")
    assert [(p.arxiv_id, p.dup_in_entry) for p in body.papers] == [
        ("2401.00001", False),
        ("2401.00002", False),
        ("2401.00001", True),
        ("2401.00002", True),
    ]


def test_markdown_never_yields_markup():
    text = (
        "# 2024-01-24 更新\n\n## Title <script>alert('x')</script>\n**Authors:A <b>B</b>, C**\n\n"
        "Abstract &lt;script&gt;alert(1)&lt;/script&gt; <style>p{}</style>end.\n\n"
        "[PDF](javascript:alert(1)) c\n\n**Summary**\n总结<img src=x onerror=alert(1)>。\n\n"
        '**Key Takeaways**\n- 一<script>alert(2)</script>\n\n<img src="javascript:alert(3)">\n'
    )
    (paper,) = parse_digest_markdown(text).papers
    assert paper.title == "Title"
    assert paper.authors == ["A B", "C"]
    assert paper.abstract == "Abstract end."
    assert paper.pdf_url is None and paper.arxiv_id is None
    assert paper.summary_zh == "总结 。"
    assert paper.takeaways == ["一"]
    assert paper.screenshots == []


# ---- raw Markdown (line breaks lost) ----------------------------------------------------------------


def test_raw_markdown_run():
    text = (
        "\u200b    ## GridFormer: Point-Grid Transformer for Surface Reconstruction**Authors:Shengtao Li, Ge Gao,"
        " Ming Gu**Implicit neural networks. [PDF](http://arxiv.org/abs/2401.02292v1) 13 pages,   4 figures"
        "**Summary:**隐式神经网络。**Key Takeaways:**- 一。- 二。- 三。**[ChatPaperFree](https://x.y/z)**"
        "## Next Paper**Authors:Z**Abs.[PDF](http://arxiv.org/abs/2401.00003v2)"
    )
    warnings: list[str] = []
    papers, section = parse_raw_markdown(text, warnings)
    assert [p.arxiv_id for p in papers] == ["2401.02292", "2401.00003"]
    grid = papers[0]
    assert grid.unrendered and grid.title == "GridFormer: Point-Grid Transformer for Surface Reconstruction"
    assert grid.authors == ["Shengtao Li", "Ge Gao", "Ming Gu"]
    assert grid.comment == "13 pages, 4 figures"
    assert grid.summary_zh == "隐式神经网络。"
    assert grid.takeaways == ["一。", "二。", "三。"]
    assert papers[1].comment == "" and section == "after_pdf"


# ---- helpers -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("Summary", "summary"),
        ("摘要：", "summary"),
        ("Key Takeaways:", "takeaways"),
        ("关键见解", "takeaways"),
        ("主要要点", "takeaways"),
        ("论文及项目相关链接", "links"),
        ("点此查看论文截图", "shots"),
        ("[ChatPaperFree](https://huggingface.co/spaces/Kedreamix/ChatPaperFree)", "chat"),
        ("作者", None),
        ("A very long sentence that happens to mention Summary somewhere", None),
    ],
)
def test_marker_kind(text, kind):
    assert marker_kind(text) == kind


def test_bullets_and_authors():
    assert bullet_items("• a\n• b\nc") == ["a", "b c"]
    assert bullet_items("1. 甲\n2. 乙") == ["甲", "乙"]
    assert bullet_items("no bullets here", strict=True) == []
    assert bullet_items("- 一。- 二。* 三") == ["一。", "二。", "三"]
    assert split_authors("Authors:A,  B ，C;D") == ["A", "B", "C", "D"]
