"""Benchmark: rendering cost per subscriber for the largest real day, 1,000 subscribers over 6 variants.

Variants (language mode x topic selection) are rendered and CSS-inlined once each; per subscriber only the
greeting and the signed unsubscribe/preferences links are substituted. The figure is the marginal cost of one
more subscriber: (time for 1,000 subscribers - time for the variants alone) / 1,000, where the per-subscriber
work is what the send path does: make the two tokens and personalise the variant's HTML and text.
Figures: render_ms_per_subscriber=<x> (target <= 1 ms with premailer calls == number of variants), then papers
in full / listed per language mode on that day; last line: papers_in_full_busiest_day=<min over modes> (#12).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import counting_premailer, largest_day_issue
from newsletter.deliver import tokens
from newsletter.pipeline import steps as pipeline
from newsletter.render import variant as render

N_SUBSCRIBERS = 1000


def variants_for(issue) -> list[pipeline.VariantSpec]:
    topics = [s.topic for s in issue.sections]
    return [
        pipeline.VariantSpec("en", None),
        pipeline.VariantSpec("zh", None),
        pipeline.VariantSpec("bilingual", None),
        pipeline.VariantSpec("en", frozenset(topics[:1])),
        pipeline.VariantSpec("zh", frozenset(topics[1:3])),
        pipeline.VariantSpec("bilingual", frozenset(topics[:2])),
    ]


def render_all(issue, specs, opts):
    return [render.render_variant(issue, s.lang, s.topics, opts) for s in specs]


def personalise_all(variants, base_url: str) -> int:
    total = 0
    for i in range(N_SUBSCRIBERS):
        variant = variants[i % len(variants)]
        email = f"reader{i}@example.org"
        values = {
            "NAME": f"Reader {i}",
            "UNSUBSCRIBE_URL": f"{base_url}/unsubscribe?token={tokens.make_token(i, 'unsubscribe', email)}",
            "PREFERENCES_URL": f"{base_url}/preferences?token={tokens.make_token(i, 'preferences', email)}",
        }
        html, text = render.personalize(variant, values)
        total += len(html) + len(text)
    return total


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        found = largest_day_issue(Path(tmp))
        if found is None:
            sys.exit("corpus not found beside the repository (../shared/corpus)")
        settings, issue = found
        opts = pipeline.render_options(settings)
        specs = variants_for(issue)
        render_all(issue, specs[:1], opts)  # warm-up: template compilation, premailer import
        with counting_premailer() as calls:
            t0 = time.perf_counter()
            variants = render_all(issue, specs, opts)
            t_variants = time.perf_counter() - t0
        t1 = time.perf_counter()
        personalise_all(variants, pipeline.web_base_url(settings))
        t_subscribers = time.perf_counter() - t1
    largest = max(v.html_encoded_size for v in variants)
    print(
        f"issue {issue.issue_date}: {issue.n_papers} new papers, {len(issue.highlights)} highlights, "
        f"{len(issue.sections)} topics"
    )
    for spec, v in zip(specs, variants, strict=True):
        print(
            f"  variant {spec.key or 'all'}: html {v.html_encoded_size / 1024:.1f} KB as sent, "
            f"{v.n_full} full / {v.n_listed} listed"
        )
    print(f"variants: {len(specs)} rendered in {t_variants * 1000:.0f} ms; premailer calls: {calls.n}")
    print(f"largest HTML part as sent: {largest} bytes")
    print(f"{N_SUBSCRIBERS} subscribers personalised in {t_subscribers * 1000:.0f} ms")
    print(f"render_ms_per_subscriber={t_subscribers * 1000 / N_SUBSCRIBERS:.3f}")
    # #12: papers in full / listed on the busiest corpus day, per language mode (all topics); last line: the min.
    full = {}
    for spec, v in zip(specs, variants, strict=True):
        if spec.topics is None:
            full[spec.lang] = v.n_full
            print(f"busiest day {issue.issue_date} {spec.lang}: papers in full / listed: {v.n_full} / {v.n_listed}")
    print(f"papers_in_full_busiest_day={min(full.values())}")


if __name__ == "__main__":
    main()
