"""Input-kind detection and byte decoding."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from newsletter.ingest.parse.detect import decode_text, guess_kind

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
TEXT_FIXTURE = Path(__file__).parent / "fixtures" / "text" / "2025-06-02_3dgs.txt"

ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Blog</title>
<entry><title>NeRF</title><content type="html"><![CDATA[<h2>T</h2><p><strong>Authors:A</strong></p>]]></content></entry>
</feed>
"""
RSS = '<?xml version="1.0"?>\n<!-- generated -->\n<rss version="2.0"><channel><title>Blog</title></channel></rss>'
MARKDOWN_FRONT = "\n---\ntitle: NeRF\ndate: 2024-08-05 10:00:00\n---\n\n# 2024-08-05 更新\n\n## T\n\n**Authors:A**\n"
MARKDOWN_BARE = "# 2024-08-05 更新\n\n## Some Title\n\n**Authors:A, B**\n\nAbstract.\n\n## Other\n\n**Authors:C**\n"
HTML_PAGE = (
    '<!DOCTYPE html>\n<html lang="zh-CN"><head><meta charset="utf-8"><title>NeRF</title></head>'
    "<body><article><h1>2024-08-05 更新</h1><h2>T</h2><p><strong>Authors:A</strong></p></article></body></html>"
)
HTML_FRAGMENT = (
    "<blockquote><p>⚠️ 免责声明</p></blockquote><h1>2024-08-05 更新</h1><h2>T</h2>"
    "<p><strong>Authors:A</strong></p><p>Abstract.</p><p>## Raw **Authors:B** markdown left unrendered</p>"
)
TEXT = "⚠️ 免责声明\n2025-05-28 更新\nA Title\nAuthors:A, B\nAbstract.\n论文及项目相关链接\n点此查看论文截图\n"


# ---- guess_kind ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (ATOM.encode(), "feed"),
        (RSS.encode(), "feed"),
        (codecs.BOM_UTF8 + b"\n\n  " + ATOM.encode(), "feed"),
        (codecs.BOM_UTF16_LE + ATOM.replace("utf-8", "utf-16").encode("utf-16-le"), "feed"),
        (ATOM.replace("utf-8", "gb2312").replace("NeRF", "元宇宙/虚拟人").encode("gb2312"), "feed"),
        (ATOM.replace("\n", "\r\n").encode(), "feed"),
        (MARKDOWN_FRONT.encode(), "markdown"),
        (MARKDOWN_FRONT.replace("\n", "\r\n").encode("utf-8-sig"), "markdown"),
        (MARKDOWN_BARE.encode(), "markdown"),
        (TEXT.encode(), "text"),
        (TEXT.replace("\n", "\r\n").encode("utf-8-sig"), "text"),
        (TEXT.encode("gb18030"), "text"),
        (HTML_PAGE.encode(), "html"),
        (HTML_FRAGMENT.encode(), "html"),
    ],
    ids=[
        "atom",
        "rss",
        "atom-bom-whitespace",
        "atom-utf16",
        "atom-gb2312",
        "atom-crlf",
        "markdown-front-matter",
        "markdown-crlf-bom",
        "markdown-bare",
        "text",
        "text-crlf-bom",
        "text-gb18030",
        "html-page",
        "html-fragment-with-raw-markdown",
    ],
)
def test_guess_kind_from_content(data: bytes, kind: str):
    assert guess_kind(data) == kind


def test_content_beats_extension():
    assert guess_kind(ATOM.encode(), "digest.txt") == "feed"
    assert guess_kind(TEXT.encode(), "post.md") == "text"
    assert guess_kind(MARKDOWN_FRONT.encode(), "post.html") == "markdown"


def test_extension_breaks_a_tie():
    # One Markdown-style line and one plain-text line score the same: the extension decides.
    tied = b"**Authors:A**\nAuthors:B\n"
    assert guess_kind(tied, "x.md") == "markdown"
    assert guess_kind(tied, "x.txt") == "text"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"   \n\n",
        b"just some notes\nwith no digest in them\n",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00",
        b'<?xml version="1.0"?><urlset><url><loc>https://example.org/</loc></url></urlset>',
    ],
    ids=["empty", "blank", "prose", "png", "sitemap-xml"],
)
def test_unknown_content_is_a_clear_error(data: bytes):
    with pytest.raises(ValueError, match=r"x\.txt: "):
        guess_kind(data, "x.txt")


# ---- decode_text -----------------------------------------------------------------------------------


def test_decode_utf8_with_and_without_bom():
    assert decode_text("更新 ✓".encode()) == ("更新 ✓", None)
    assert decode_text("更新".encode("utf-8-sig")) == ("更新", None)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32"])
def test_decode_utf16_and_utf32_by_bom(encoding: str):
    data = "论文 paper".encode(encoding)
    if encoding == "utf-16-be":
        data = codecs.BOM_UTF16_BE + data
    assert decode_text(data) == ("论文 paper", None)


def test_decode_bomless_utf16():
    text, _ = decode_text('<?xml version="1.0"?><feed>论文</feed>'.encode("utf-16-le"))
    assert text == '<?xml version="1.0"?><feed>论文</feed>'


def test_decode_gb18030_fallback_warns():
    text, warning = decode_text("2025-05-28 更新\n论文及项目相关链接\n".encode("gb18030"))
    assert text == "2025-05-28 更新\n论文及项目相关链接\n"
    assert warning and "GB18030" in warning


def test_decode_honours_declared_encoding():
    data = '<?xml version="1.0" encoding="ISO-8859-1"?><feed><title>Café</title></feed>'.encode("latin-1")
    assert decode_text(data) == ('<?xml version="1.0" encoding="ISO-8859-1"?><feed><title>Café</title></feed>', None)


def test_decode_damaged_utf8_keeps_the_rest_and_warns():
    good = "视觉变换器的论文摘要与关键见解。" * 5
    data = good.encode() + b"\xff" + good.encode()
    text, warning = decode_text(data)
    assert text == good + "\ufffd" + good
    assert warning and "replaced" in warning


def test_decode_never_crashes_on_garbage():
    text, warning = decode_text(bytes(range(128, 256)) * 4)
    assert isinstance(text, str)
    assert warning


# ---- corpus ------------------------------------------------------------------------------------------

_EXPECTED = {"feeds": "feed", "markdown": "markdown", "text": "text"}


def _corpus_files() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    return sorted(p for folder in _EXPECTED for p in (CORPUS / folder).glob("*") if p.is_file())


@pytest.mark.corpus
@pytest.mark.skipif(not _corpus_files(), reason=f"shared corpus not found at {CORPUS}")
@pytest.mark.parametrize("path", _corpus_files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_corpus_kinds(path: Path):
    data = path.read_bytes()
    expected = _EXPECTED[path.parent.name]
    assert guess_kind(data) == expected  # content alone
    assert guess_kind(data, path.name) == expected
    assert decode_text(data)[1] is None


def test_fixture_is_text():
    assert guess_kind(TEXT_FIXTURE.read_bytes(), TEXT_FIXTURE.name) == "text"
