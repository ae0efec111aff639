"""The plain-text (2025 layout) digest parser, on a hand-made fixture and on the real corpus."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest

from newsletter.ingest.parse.common import cjk_share, looks_like_llm_error, norm_ws
from newsletter.ingest.parse.digest_text import parse_digest_text, parse_text_post, topic_from_slug

FIXTURE = Path(__file__).parent / "fixtures" / "text" / "2025-06-02_3dgs.txt"
CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"


@pytest.fixture(scope="module")
def post():
    return parse_text_post(FIXTURE.read_text(encoding="utf-8"), FIXTURE.name)


# ---- fixture -----------------------------------------------------------------------------------------


def test_post_identity(post):
    assert post.topic == "3DGS"
    assert post.post_date == date(2025, 6, 2)  # the file name wins over the heading
    assert post.heading_date == date(2025, 6, 1)
    assert "heading date 2025-06-01 differs from post date 2025-06-02" in post.warnings
    assert post.key == "2025-06-02/3DGS"


def test_every_paper_found_and_header_skipped(post):
    assert [p.title for p in post.papers] == [
        "SplatFlow: Learning Multi-frame Optical Flow via Gaussian Splatting",
        "Dynamic Scenes with Sparse Gaussians",
        "Gaussian Avatars in the Wild",
        "FastGS: Training 3DGS in One Minute",
    ]
    assert [p.authors for p in post.papers] == [
        ["Alice Zhang", "Bob Li", "Carol Wang"],
        ["Dan Chen"],
        ["Eve Liu", "Frank Zhou"],
        ["Grace Wu", "Henry Xu"],
    ]
    assert all(p.arxiv_id is None and p.pdf_url is None for p in post.papers)  # the link is lost in a copy


def test_no_pdf_line_and_english_headings(post):
    paper = post.papers[0]
    assert paper.comment is None
    # Abstract and translation each span two lines.
    assert norm_ws(paper.abstract) == (
        "We present SplatFlow, a method that lifts optical flow estimation to 3D Gaussians. It is fast and accurate."
    )
    assert "我们提出了SplatFlow" in paper.abstract_zh and "该方法快速且准确" in paper.abstract_zh
    assert paper.summary_zh == "本文提出SplatFlow,利用高斯溅射进行多帧光流估计,速度快且精度高。"
    assert paper.takeaways == ["SplatFlow将光流估计提升到三维高斯表示。", "方法在多个基准上取得了领先结果。"]


def test_chinese_headings_comment_and_wrapped_bullet(post):
    paper = post.papers[1]
    assert paper.comment == "Accepted to “CVPR 2025”, 12 pages"
    assert paper.summary_zh == "本文提出使用稀疏高斯对动态场景进行高效建模。"
    assert paper.takeaways == [
        "稀疏高斯可以高效表示动态场景,并显著降低内存占用。",
        "在真实数据集上验证了方法的有效性。",
    ]
    assert paper.abstract.startswith("Dynamic scenes are hard.")
    assert paper.abstract_zh == "动态场景很难建模。我们提出稀疏高斯来高效地建模它们。"


def test_error_text_bare_pdf_and_missing_translation(post):
    paper = post.papers[2]
    assert paper.comment is None  # a bare "PDF" line has no comment
    assert paper.summary_zh is None
    assert post.warnings == [
        "Gaussian Avatars in the Wild: LLM error text instead of a summary",
        "heading date 2025-06-01 differs from post date 2025-06-02",
    ]
    assert paper.abstract_zh is None
    assert paper.abstract == "We reconstruct avatars from in-the-wild videos with Gaussian splatting."
    assert paper.takeaways == ["从野外视频重建高斯头像。"]


def test_missing_summary_and_takeaways(post):
    paper = post.papers[3]
    assert paper.comment == "8 pages, 4 figures"
    assert paper.summary_zh is None and paper.takeaways == []
    # The abstract ends in a bare URL: the translation on the next line must not be glued onto it.
    assert paper.abstract == "Training 3DGS is slow. We make it fast. Code: https://github.com/example/fastgs"
    assert paper.abstract_zh == "训练3DGS很慢。我们让它变快。代码: https://github.com/example/fastgs"


def test_windows_line_endings_bom_and_trailing_whitespace(post):
    text = FIXTURE.read_text(encoding="utf-8")
    messy = "\ufeff" + "\r\n".join(line + " \t" for line in text.split("\n"))
    assert parse_text_post(messy, FIXTURE.name).papers == post.papers


def test_paragraphs_separated_by_blank_lines():
    text = (
        "A Title\nAuthors:A B\nFirst paragraph.\n\nSecond paragraph, wrapped\nover two lines.\n\n"
        "第一段。\n\n第二段,\n换行。\nSummary\n总结。\n"
    )
    paper = parse_digest_text(text).papers[0]
    assert paper.abstract == "First paragraph.\n\nSecond paragraph, wrapped over two lines."
    assert paper.abstract_zh == "第一段。\n\n第二段,换行。"
    assert paper.summary_zh == "总结。"


def test_only_translation_is_not_taken_for_the_abstract():
    body = parse_digest_text("Title\nAuthors:A\n只有中文翻译,包含ViT和CLIP等术语。\n论文及项目相关链接\n")
    paper = body.papers[0]
    assert paper.abstract == "" and paper.abstract_zh == "只有中文翻译,包含ViT和CLIP等术语。"
    assert body.warnings == ["Title: no English abstract"]


def test_missing_title_line_is_reported():
    body = parse_digest_text("2025-05-28 更新\nAuthors:A, B\nAbstract.\n")
    assert body.papers[0].title == ""
    assert body.papers[0].authors == ["A", "B"]
    assert body.warnings == ["paper with authors 'A, B': no title line before the Authors line"]


def test_summary_without_heading_after_links_block():
    body = parse_digest_text("T\nAuthors:A\nAbs.\n论文及项目相关链接\nPDF 5 pages\n这是总结。\n")
    assert body.papers[0].comment == "5 pages"
    assert body.papers[0].summary_zh == "这是总结。"


def test_bullets_without_takeaways_heading_are_still_takeaways():
    body = parse_digest_text("T\nAuthors:A\nAbs.\n论文及项目相关链接\nSummary\n总结。\n- 要点一\n- 要点二\n")
    assert body.papers[0].summary_zh == "总结。"
    assert body.papers[0].takeaways == ["要点一", "要点二"]


def test_hard_wrapped_lines_are_joined():
    body = parse_digest_text(
        "T\nAuthors:A\nWe propose a mask-\nbased method for\nsegmentation.\n本文提出一种基于\n掩膜的方法。\n"
    )
    assert body.papers[0].abstract == "We propose a mask-based method for segmentation."
    assert body.papers[0].abstract_zh == "本文提出一种基于掩膜的方法。"


def test_date_from_heading_when_file_name_has_none():
    post = parse_text_post("2025-05-28 更新\nT\nAuthors:A\nAbs.\n", "/tmp/some dir/vision-transformer.txt")
    assert post.post_date == date(2025, 5, 28) and post.topic == "Vision Transformer"


def test_no_date_anywhere_is_an_error():
    with pytest.raises(ValueError, match="no date"):
        parse_text_post("T\nAuthors:A\nAbs.\n", "nerf.txt")


def test_empty_digest_has_no_papers():
    body = parse_digest_text("⚠️ 免责声明\n2025-05-28 更新\n")
    assert body.papers == [] and body.heading_date == date(2025, 5, 28)


@pytest.mark.parametrize(
    ("slug", "topic"),
    [
        ("vision-transformer", "Vision Transformer"),
        ("3dgs", "3DGS"),
        ("nerf", "NeRF"),
        ("talking-head-generation", "Talking Head Generation"),
        ("Talking Head Generation", "Talking Head Generation"),
        ("diffusion-models", "Diffusion Models"),
        ("llm", "LLM"),
        ("gan", "GAN"),
        ("元宇宙_虚拟人", "元宇宙/虚拟人"),
        ("3d-reconstruction", "3D reconstruction"),
        ("牙齿修复", "牙齿修复"),
        ("image-editing", "Image Editing"),
    ],
)
def test_topic_from_slug(slug, topic):
    assert topic_from_slug(slug) == topic


# ---- corpus ------------------------------------------------------------------------------------------

_AUTHORS_LINE = re.compile(r"^Authors\s*:")
_PDF_LINE = re.compile(r"^PDF(?:\s+(.*))?$")


def _corpus_files() -> list[Path]:
    return sorted((CORPUS / "text").glob("*.txt")) if (CORPUS / "text").is_dir() else []


def _raw_segments(lines: list[str]) -> list[tuple[int, list[str]]]:
    """Per paper, read independently of the parser: (Authors line index, lines up to the next title)."""
    starts = [i for i, line in enumerate(lines) if _AUTHORS_LINE.match(line)]
    return [(a, lines[a : b - 1]) for a, b in zip(starts, [*starts[1:], len(lines) + 1], strict=True)]


def _after(segment: list[str], headings: set[str]) -> list[str]:
    """Non-empty lines between one of `headings` and the next known heading."""
    stops = {"论文及项目相关链接", "Summary", "摘要", "Key Takeaways", "关键见解", "点此查看论文截图"}
    out, inside = [], False
    for line in segment:
        if line in stops:
            inside = line in headings
        elif inside and line:
            out.append(line)
    return out


@pytest.mark.corpus
@pytest.mark.skipif(not _corpus_files(), reason=f"corpus of plain-text digests not found at {CORPUS / 'text'}")
@pytest.mark.parametrize("path", _corpus_files(), ids=lambda p: p.name)
def test_corpus_parses_completely(path: Path):
    text = path.read_text(encoding="utf-8-sig")
    lines = [line.strip() for line in text.splitlines()]
    post = parse_text_post(text, path.name)
    segments = _raw_segments(lines)

    assert post.heading_date is not None
    assert len(post.papers) == len(segments) > 0  # one paper per Authors line
    # Every "PDF ..." line is the comment of the paper it sits in, in order.
    pdf_lines = [m for m in map(_PDF_LINE.match, lines) if m]
    with_pdf = [p for p, (_, seg) in zip(post.papers, segments, strict=True) if any(map(_PDF_LINE.match, seg))]
    assert [p.comment for p in with_pdf] == [norm_ws(m.group(1)) or None for m in pdf_lines]
    for paper, (authors_at, segment) in zip(post.papers, segments, strict=True):
        _check_paper_against_text(paper, segment, title_line=next(x for x in reversed(lines[:authors_at]) if x))


def _check_paper_against_text(paper, segment: list[str], title_line: str) -> None:
    """Each field is present whenever the text has it, and holds that text."""
    assert paper.title == norm_ws(title_line)
    if norm_ws(segment[0].partition(":")[2]):
        assert paper.authors and all(paper.authors)
    links_at = segment.index("论文及项目相关链接") if "论文及项目相关链接" in segment else len(segment)
    before_links = [x for x in segment[1:links_at] if x]
    if any(cjk_share(x) < 0.1 for x in before_links):
        assert paper.abstract and cjk_share(paper.abstract) < 0.1
    if any(cjk_share(x) > 0.3 for x in before_links):
        assert paper.abstract_zh and cjk_share(paper.abstract_zh) > 0.3
    summary = _after(segment, {"Summary", "摘要"})
    if summary and not looks_like_llm_error(summary[0]):
        assert _squash(paper.summary_zh) == _squash("".join(summary))
    bullets = [x for x in _after(segment, {"Key Takeaways", "关键见解"}) if x.startswith("- ")]
    assert len(paper.takeaways) == len(bullets)
    assert all(_squash(t).startswith(_squash(x[2:])) for x, t in zip(bullets, paper.takeaways, strict=True))


def _squash(text: str | None) -> str:
    """Text without any whitespace: paragraph joining may differ, the words may not."""
    return re.sub(r"\s+", "", text or "")
