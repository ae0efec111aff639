"""Benchmark: what English takeaways ([translate], #11) cost on the busiest real day of the corpus.

1. Requests: the day's papers are translated through the real client and cache against a local fake
   chat-completions server (tests/chat_server.py, real HTTP): requests at batch_size 8, then a second run
   (cached: zero requests).
2. Input size: Chinese characters per paper (summary + takeaways), the text a model reads.
3. Room in the email: papers in full per language mode without and with English takeaways. The fake server's
   English is short, so for this figure each takeaway gets synthetic English 3.5 times as long as its Chinese
   (a typical ratio for technical Chinese -> English; an estimate, not a model's output).
Last line: papers_in_full_busiest_day_translated=<min over en and bilingual>.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import largest_day_issue
from newsletter.config import TranslateSettings
from newsletter.pipeline import steps as pipeline
from newsletter.render import variant as render
from tests.chat_server import ChatServer

EN_PER_ZH = 3.5
WORDS = ["the", "method", "improves", "reconstruction", "quality", "under", "sparse", "views", "and",
         "reduces", "memory", "on", "benchmarks"]  # fmt: skip


def synthetic_english(n_chars: int) -> str:
    out, i = [], 0
    while sum(len(w) + 1 for w in out) < n_chars:
        out.append(WORDS[i % len(WORDS)])
        i += 1
    return " ".join(out).capitalize() + "."


def papers_of(issue):
    return [h.paper for h in issue.highlights] + [p for s in issue.sections for p in s.papers]


def in_full(issue, opts) -> dict[str, tuple[int, int]]:
    variants = {m: render.render_variant(issue, m, None, opts) for m in ("en", "bilingual", "zh")}
    return {m: (v.n_full, v.n_listed) for m, v in variants.items()}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, ChatServer() as chat:
        found = largest_day_issue(Path(tmp))
        if found is None:
            sys.exit("corpus not found beside the repository (../shared/corpus)")
        settings, issue = found
        cfg = TranslateSettings(enabled=True, base_url=chat.base_url, model="fake", batch_size=8, timeout=30)
        settings = replace(settings, translate=cfg)
        first = pipeline.translate_step(settings, issue.issue_id)
        second = pipeline.translate_step(settings, issue.issue_id)
        translated, _ = pipeline.build_step(settings, pipeline.period_for(settings, issue.issue_date))
        opts = pipeline.render_options(settings)
        before = in_full(issue, opts)
        for p in papers_of(translated):
            if p.takeaways_en:
                p.takeaways_en = [synthetic_english(int(len(t) * EN_PER_ZH)) for t in p.takeaways]
        after = in_full(translated, opts)

    papers = papers_of(issue)
    chars = [len(p.summary_zh or "") + sum(map(len, p.takeaways)) for p in papers if p.summary_zh or p.takeaways]
    print(f"issue {issue.issue_date}: {len(papers)} papers, {len(chars)} with Chinese summary or takeaways")
    print(f"Chinese characters per paper: mean {sum(chars) / len(chars):.0f}, max {max(chars)}; day {sum(chars)}")
    print(f"first run: {first['translated']} translated in {first['requests']} requests (batch_size 8)")
    print(f"second run: {second['cached']} cached, {second['requests']} requests")
    for mode in ("en", "bilingual", "zh"):
        (f0, l0), (f1, l1) = before[mode], after[mode]
        print(f"{mode}: papers in full / listed without translation {f0} / {l0}, with English takeaways {f1} / {l1}")
    print(f"papers_in_full_busiest_day_translated={min(after['en'][0], after['bilingual'][0])}")


if __name__ == "__main__":
    main()
