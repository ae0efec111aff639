"""Real data through ingest -> issue -> render: the largest corpus day fits the budget, the archive has it all."""

from __future__ import annotations

import pytest
from markupsafe import escape

from bench.common import largest_day_issue
from newsletter.pipeline.steps import render_options
from newsletter.render import variant as render
from tests.conftest import corpus_or_skip

pytestmark = pytest.mark.corpus


@pytest.fixture(scope="module")
def real_day(tmp_path_factory):
    corpus_or_skip()
    return largest_day_issue(tmp_path_factory.mktemp("corpus-render"))


@pytest.mark.parametrize("mode", ["en", "zh", "bilingual"])
def test_largest_day_fits_the_budget_with_overflow_link(real_day, mode):
    settings, issue = real_day
    opts = render_options(settings)
    variant = render.render_variant(issue, mode, None, opts)
    assert variant.html_encoded_size <= opts.html_budget_bytes
    assert variant.n_full + variant.n_listed + variant.n_hidden == issue.n_papers + len(issue.highlights)
    assert variant.n_listed > 0, "a 60-90 paper day cannot fit in full: some papers must be listed"
    assert f"{issue.archive_url}#t-" in variant.html  # "N more — read the full issue online"


def test_archive_page_has_every_paper(real_day):
    settings, issue = real_day
    page = render.render_archive(issue, render_options(settings))
    for section in issue.sections:
        for paper in section.papers:
            assert f'id="p{paper.paper_id}"' in page
            assert str(escape(paper.title)) in page


@pytest.mark.parametrize("mode", ["en", "zh", "bilingual"])
def test_html_part_as_sent_fits_the_budget(real_day, mode):
    """Measured in the assembled message itself (base64 lines, CRLF, real links and name substituted)."""
    from newsletter.pipeline import steps as pipeline

    settings, issue = real_day
    _variant, _html, _text, eml = pipeline.preview_step(settings, issue, pipeline.VariantSpec(mode, None))
    head = eml.index(b"Content-Type: text/html")
    body = eml[eml.index(b"\r\n\r\n", head) + 4 :]
    body = body[: body.index(b"\r\n--")]
    assert len(body) <= render_options(settings).html_budget_bytes


# Papers in full on the busiest corpus day before #12 (measured on main at 0d2d114 with the same corpus).
FULL_BEFORE = {"en": 30, "zh": 18, "bilingual": 18}


@pytest.mark.parametrize("mode", ["en", "zh", "bilingual"])
def test_busiest_day_shows_twice_the_papers_in_full(real_day, mode):
    """#12: twice the papers in full within the unchanged budget, nothing lost (the rest stay linked titles)."""
    settings, issue = real_day
    opts = render_options(settings)
    variant = render.render_variant(issue, mode, None, opts)
    assert variant.n_full >= 2 * FULL_BEFORE[mode], (variant.n_full, variant.n_listed)
    assert variant.n_hidden == 0 and variant.n_full + variant.n_listed == issue.n_papers + len(issue.highlights)
    assert variant.html_encoded_size <= opts.html_budget_bytes
