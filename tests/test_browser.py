"""The email in a real browser: headless Chromium at phone (375 px) and desktop (800 px) widths.

Checks that nothing overflows horizontally and that Chinese text is laid out (wrapped inside the viewport),
and saves screenshots under var/test-artifacts/ for a human to look at (light and dark colour scheme).
Skipped, with the reason, only when no Chromium binary can be found.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from newsletter.render.variant import personalize, render_archive, render_variant
from tests.issue_factory import make_issue

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[1] / "var" / "test-artifacts"
WIDTHS = (375, 800)
VALUES = {
    "NAME": "Ada",
    "UNSUBSCRIBE_URL": "https://digest.example.org/unsubscribe?t=abc",
    "PREFERENCES_URL": "https://digest.example.org/preferences?t=abc",
}

# Headless Chromium will not make a window narrower than 500 px (a 375 px screenshot is a crop of a 500 px
# layout), so the page is shown in an iframe of the exact width: a real 375 px viewport for its media queries.
# The probe runs in the harness once the frame has loaded and writes its numbers where --dump-dom prints them.
HARNESS = """<!DOCTYPE html><html><head><meta charset="utf-8">
<style>html,body{{margin:0;padding:0;background:#888}}iframe{{display:block;border:0}}</style></head>
<body><iframe id="f" width="{width}" height="{height}" srcdoc="{srcdoc}"></iframe>
<script>
document.getElementById('f').addEventListener('load', function () {{
  var doc = this.contentDocument, win = this.contentWindow, de = doc.documentElement;
  var zh = doc.querySelectorAll('[lang="zh-CN"] p, p[lang="zh-CN"]'), right = 0, tallest = 0;
  zh.forEach(function (el) {{
    var r = el.getBoundingClientRect();
    right = Math.max(right, r.right); tallest = Math.max(tallest, r.height);
  }});
  var card = doc.querySelector('.cd');
  var out = {{scrollWidth: de.scrollWidth, innerWidth: win.innerWidth, zhBlocks: zh.length,
             zhRight: right, zhTallest: tallest, height: de.scrollHeight,
             cardBackground: card ? win.getComputedStyle(card).backgroundColor : null}};
  var pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
}});
</script></body></html>"""


def find_chromium() -> str | None:
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome", "/usr/bin/chromium"):
        if name and (path := shutil.which(name)):
            return path
    return None


CHROMIUM = find_chromium()
requires_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium not found (apt-get install -y chromium fonts-noto-cjk, or set CHROMIUM=)"
)


def chromium(args: list[str], profile: Path) -> str:
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        *args,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


DARK = ["--force-dark-mode", "--blink-settings=preferredColorScheme=0"]  # prefers-color-scheme: dark


def harness(page: Path, width: int, height: int) -> Path:
    framed = page.with_name(f"{page.stem}-{width}.harness.html")
    framed.write_text(HARNESS.format(width=width, height=height, srcdoc=html.escape(page.read_text(), quote=True)))
    return framed


def measure(page: Path, width: int, profile: Path, dark: bool = False) -> dict:
    args = [*(DARK if dark else []), "--virtual-time-budget=5000", f"--window-size={max(width, 500)},900"]
    dom = chromium([*args, "--dump-dom", harness(page, width, 900).as_uri()], profile)
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom)
    assert found, "probe script did not run"
    return json.loads(html.unescape(found.group(1)))


def screenshot(page: Path, width: int, name: str, profile: Path, dark: bool = False) -> Path:
    """The top 2400 px of the page at `width` (the window is cropped to the frame)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    out = ARTIFACTS / name
    args = [*(DARK if dark else []), "--virtual-time-budget=5000", f"--window-size={width},2400"]
    chromium([*args, f"--screenshot={out}", harness(page, width, 2400).as_uri()], profile)
    assert out.exists() and out.stat().st_size > 10_000
    return out


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """The three language variants of a heavy day (budget-limited), personalised, plus the archive page."""
    root = tmp_path_factory.mktemp("email")
    issue = make_issue(90, long_summaries=True, n_accepted=6, n_highlights=4, seed=3)
    # Unbreakable runs that real upstream text has (URLs, long identifiers) must wrap, not widen the page.
    paper = issue.highlights[0].paper
    paper.title = "HyperLongIdentifierNetwork" * 4 + ": " + paper.title
    paper.abstract = (
        "Code: https://github.com/sajjad-sh33/ViT-P}{https://github.com/sajjad-sh33/ViT-P. " + paper.abstract
    )
    paper.authors = ["Maximiliane-Anastasia-Wilhelmina von Hohenzollern-Sigmaringen-Habsburg", *paper.authors]
    out = {}
    for mode in ("en", "zh", "bilingual"):
        html, _ = personalize(render_variant(issue, mode), VALUES)
        out[mode] = root / f"email-{mode}.html"
        out[mode].write_text(html)
    out["archive"] = root / "archive.html"
    out["archive"].write_text(render_archive(issue))
    return out


@requires_chromium
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("mode", ["en", "zh", "bilingual", "archive"])
def test_no_horizontal_overflow_and_chinese_laid_out(pages, mode, width, tmp_path):
    m = measure(pages[mode], width, tmp_path / "profile")
    assert m["innerWidth"] == width, m  # the window size took effect
    assert m["scrollWidth"] <= width, f"{mode} overflows at {width}px: {m}"
    if mode != "en":
        assert m["zhBlocks"] > 0
        assert 0 < m["zhRight"] <= width, m
        assert m["zhTallest"] > 40, m  # long summaries wrap onto several lines instead of overflowing
    name = f"{'archive' if mode == 'archive' else 'email-' + mode}-{width}.png"
    screenshot(pages[mode], width, name, tmp_path / "profile")


@requires_chromium
@pytest.mark.parametrize("width", WIDTHS)
def test_dark_mode(pages, width, tmp_path):
    light = measure(pages["bilingual"], width, tmp_path / "profile")
    dark = measure(pages["bilingual"], width, tmp_path / "profile", dark=True)
    assert light["cardBackground"] == "rgb(255, 255, 255)"
    assert dark["cardBackground"] == "rgb(23, 26, 33)", "the !important dark-mode rules did not apply"
    assert dark["scrollWidth"] <= width
    screenshot(pages["bilingual"], width, f"email-bilingual-{width}-dark.png", tmp_path / "profile", dark=True)


@requires_chromium
@pytest.mark.parametrize("mode", ["en", "bilingual"])
def test_readable_without_head_styles(pages, mode, tmp_path):
    """#12: paper styles are classes in the head now. A client that drops <style> (Gmail without style support)
    must still get a readable email: every link and title there, nothing wider than a 375 px phone."""
    full = pages[mode].read_text()
    stripped = re.sub(r"<style\b[^>]*>.*?</style>", "", full, flags=re.DOTALL)
    assert "<style" not in stripped and stripped.count("<a href=") == full.count("<a href=") > 20
    page = tmp_path / f"nostyle-{mode}.html"
    page.write_text(stripped)
    m = measure(page, 375, tmp_path / "profile")
    assert m["innerWidth"] == 375 and m["scrollWidth"] <= 375, m
    if mode == "bilingual":
        assert m["zhBlocks"] > 0 and 0 < m["zhRight"] <= 375, m
    assert m["height"] > 3000, m  # the papers are laid out as text, not collapsed or hidden
    screenshot(page, 375, f"email-{mode}-375-nostyle.png", tmp_path / "profile")


@pytest.fixture(scope="module")
def translated_pages(tmp_path_factory):
    """#11: English takeaways ([translate]) in the en and bilingual emails, one paper with an English summary
    standing in for a missing abstract, and a long unbreakable token in a translated takeaway."""
    root = tmp_path_factory.mktemp("translated")
    issue = make_issue(30, long_summaries=True, n_accepted=3, n_highlights=2, seed=4)
    papers = [h.paper for h in issue.highlights] + [p for s in issue.sections for p in s.papers]
    for p in papers:
        p.takeaways_en = [
            f"Decouples geometry from appearance, which improves novel-view quality by {k + 1}.4 dB with sparse inputs."
            for k in range(len(p.takeaways))
        ]
    token = next(p for p in papers if p.takeaways_en)  # the first paper shown with takeaways
    token.takeaways_en[0] = "Code: https://github.com/" + "x" * 90 + " " + token.takeaways_en[0]
    first = issue.sections[0].papers[0]
    first.abstract, first.summary_en = "", "A machine-translated summary standing in for the missing abstract. " * 3
    out = {}
    for mode in ("en", "bilingual"):
        html, _ = personalize(render_variant(issue, mode), VALUES)
        assert "Key takeaways (machine-translated)" in html and "x" * 90 in html
        out[mode] = root / f"email-{mode}-translated.html"
        out[mode].write_text(html)
    return out


@requires_chromium
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("mode", ["en", "bilingual"])
def test_english_takeaways_fit_the_phone_and_the_desktop(translated_pages, mode, width, tmp_path):
    m = measure(translated_pages[mode], width, tmp_path / "profile")
    assert m["innerWidth"] == width and m["scrollWidth"] <= width, f"{mode} overflows at {width}px: {m}"
    screenshot(translated_pages[mode], width, f"email-{mode}-translated-{width}.png", tmp_path / "profile")
