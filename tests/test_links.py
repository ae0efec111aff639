"""Code / project link extraction: unit cases and precision / recall against hand-written labels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from newsletter.registry.links import PaperLinks, extract_links

LABELS = Path(__file__).parent / "fixtures" / "links_labelled.jsonl"


@pytest.mark.parametrize(
    ("abstract", "comment", "expected"),
    [
        ("Code: https://github.com/a/b.", "", PaperLinks("https://github.com/a/b", None)),
        (r"see \url{https://x.github.io/p/}.", "", PaperLinks(None, "https://x.github.io/p")),
        (r"\href{https://y.github.io}{https://y.github.io}.", "", PaperLinks(None, "https://y.github.io")),
        ("data: https://huggingface.co/datasets/o/d,", "", PaperLinks()),
        ("", "Accepted (https://neurips.cc/virtual/2024/poster/1)", PaperLinks()),
        ("", "See https://arxiv.org/abs/2401.00001", PaperLinks()),
        (
            "Project page: https://lab.example.org/p (code: github.com/o/r)",
            "",
            PaperLinks("https://github.com/o/r", "https://lab.example.org/p"),
        ),
        ("Awesome list: https://github.com/o/Awesome-Things.", "", PaperLinks()),
        ("Our dataset (https://github.com/o/data)", "", PaperLinks()),
        (
            "https://www.youtube.com/watch?v=x",
            "Project page: https://z.github.io",
            PaperLinks(None, "https://z.github.io"),
        ),
    ],
)
def test_extract_links_cases(abstract, comment, expected):
    assert extract_links(abstract, comment) == expected


def _score(kind: str) -> tuple[float, float, int]:
    tp = fp = fn = 0
    for line in LABELS.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        got = getattr(extract_links(row["abstract"], row["comment"]), kind)
        want = row[kind]
        if got and want and got.casefold() == want.casefold():
            tp += 1
        else:
            fp += bool(got)
            fn += bool(want)
    return tp / max(tp + fp, 1), tp / max(tp + fn, 1), tp + fn


@pytest.mark.parametrize("kind", ["code_url", "project_url"])
def test_precision_and_recall_on_labelled_corpus_texts(kind):
    """135 real abstracts/comments (tests/fixtures/links_labelled.jsonl), labelled by reading them."""
    precision, recall, positives = _score(kind)
    assert positives >= 30
    assert precision >= 0.95, precision
    assert recall >= 0.9, recall
