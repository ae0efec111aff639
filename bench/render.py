"""Benchmark: rendering cost per subscriber for the largest real day, 1,000 subscribers over 6 variants.

Variants (language mode x topic selection) are rendered and CSS-inlined once each; per subscriber only the
greeting and the signed unsubscribe/preferences links are substituted. The figure is the marginal cost of one
more subscriber: (time for 1,000 subscribers - time for the variants alone) / 1,000, where the per-subscriber
work is what the send path does: make the two tokens and personalise the variant's HTML and text.
Figures: render_ms_per_subscriber=<x> (target <= 1 ms with premailer calls == number of variants), then papers
in full / listed per language mode on that day; last line: papers_in_full_busiest_day=<min over modes> (#12).

"For you" (#11): 10,000 subscribers with distinct interests (keywords from the day's titles, two seed papers from
earlier days in the store), ranked in batches of [delivery] batch_size as the sender does, each pick joined from
the variant's pre-rendered pieces and personalised: render_ms_per_subscriber_with_picks=<x> (target <= 1 ms; the
same run's figure without picks beside it), and every one of the 10,000 messages assembled to check its HTML part,
as encoded in the message, against the budget (largest printed; any over budget fails the run).
"""

from __future__ import annotations

import random
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import counting_premailer, largest_day_issue
from newsletter.db import session_scope
from newsletter.db.models import Paper
from newsletter.deliver import tokens
from newsletter.deliver.message import MessageSettings, MessageTemplate, Person, assemble
from newsletter.issue import recommend
from newsletter.pipeline import steps as pipeline
from newsletter.render import variant as render

N_SUBSCRIBERS = 1000
N_PICK_SUBSCRIBERS = 10_000
_WORD = re.compile(r"[A-Za-z][A-Za-z-]{3,}")


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


def distinct_interests(settings, issue, n: int) -> list[recommend.Interests]:
    """n different readers: 2-3 words of a title of the day as keywords, two other papers of the store as seeds."""
    rng = random.Random(11)
    featured = {p.arxiv_id for p in recommend.issue_papers(issue)}
    with session_scope(settings.database_url) as session:
        earlier = sorted(a for (a,) in session.query(Paper.arxiv_id) if a and a not in featured)
    titles = [p.title for p in recommend.issue_papers(issue)]
    out, seen = [], set()
    while len(out) < n:
        words = _WORD.findall(rng.choice(titles))
        keywords = " ".join(rng.sample(words, min(len(words), rng.randint(2, 3))))
        seeds = tuple(recommend.Seed(a) for a in sorted(rng.sample(earlier, 2)))
        if (keywords, seeds) not in seen:
            seen.add((keywords, seeds))
            out.append(recommend.Interests(keywords, seeds))
    return out


def _values(i: int, base_url: str) -> dict[str, str]:
    email = f"reader{i}@example.org"
    return {
        "NAME": f"Reader {i}",
        "UNSUBSCRIBE_URL": f"{base_url}/unsubscribe?token={tokens.make_token(i, 'unsubscribe', email)}",
        "PREFERENCES_URL": f"{base_url}/preferences?token={tokens.make_token(i, 'preferences', email)}",
    }


def pick_all(settings, issue, variants, readers, base_url: str, batch: int):
    """What the send path does per batch for subscribers with interests: rank the batch, join each pick from its
    variant's pieces, make the tokens, personalise (the pick included). Each batch is also personalised without
    picks, interleaved, so both figures see the same machine load. Returns (picks, s with picks, s without)."""
    import numpy as np

    with session_scope(settings.database_url) as session:
        ranker = recommend.ranker_for(session, issue, readers)
    fys = [v.foryou for v in variants]
    masks = [np.array([str(p.paper_id) in fy.items for p in ranker.papers], dtype=bool) for fy in fys]
    picks: list[tuple[str, str]] = []
    t_with = t_without = 0.0
    cpu_with = cpu_without = 0.0  # CPU time too: on a shared, overloaded machine wall time mostly measures waiting
    for start in range(0, len(readers), batch):
        chunk = list(range(start, min(start + batch, len(readers))))
        t0, c0 = time.perf_counter(), time.process_time()
        for i in chunk:
            render.personalize(variants[i % len(fys)], _values(i, base_url))
        t1, c1 = time.perf_counter(), time.process_time()
        ranked = ranker.rank([readers[i] for i in chunk], 5, [masks[i % len(fys)] for i in chunk])
        for i, found in zip(chunk, ranked, strict=True):
            fy = fys[i % len(fys)]
            pick = fy.pick([(p.paper_id, p.reason) for p in found])
            render.personalize(fy if pick[0] else variants[i % len(fys)], _values(i, base_url), pick)
            picks.append(pick)
        t2, c2 = time.perf_counter(), time.process_time()
        t_without, t_with = t_without + (t1 - t0), t_with + (t2 - t1)
        cpu_without, cpu_with = cpu_without + (c1 - c0), cpu_with + (c2 - c1)
    n = len(readers)
    print(f"CPU ms per subscriber: {cpu_with * 1000 / n:.3f} with picks, {cpu_without * 1000 / n:.3f} without")
    return picks, t_with, t_without


def html_part_size(eml: bytes) -> int:
    rest = eml.partition(b"Content-Type: text/html")[2]
    body = rest.split(b"\r\n\r\n", 1)[1]
    return len(body[: body.index(b"--=_pd_")])


def check_budget(settings, issue, variants, picks, budget: int) -> tuple[int, int]:
    """Assemble every message as the sender would; (largest HTML part as encoded, how many over budget)."""
    ms = MessageSettings.from_settings(settings)
    plain = [MessageTemplate.build(v, ms, issue.issue_id or 1, issue.issue_date) for v in variants]
    with_pick = [MessageTemplate.build(v.foryou, ms, issue.issue_id or 1, issue.issue_date) for v in variants]
    largest, over = 0, 0
    for i, pick in enumerate(picks):
        person = Person(i, f"reader{i}@example.org", f"Reader {i}")
        k = i % len(variants)
        eml = assemble(with_pick[k], person, pick=pick) if pick[0] else assemble(plain[k], person)
        size = html_part_size(eml)
        largest, over = max(largest, size), over + (size > budget)
    return largest, over


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
        readers = distinct_interests(settings, issue, N_PICK_SUBSCRIBERS)
        picks, t_picks, t_plain = pick_all(
            settings, issue, variants, readers, pipeline.web_base_url(settings), settings.delivery.batch_size
        )
        largest_sent, n_over = check_budget(settings, issue, variants, picks, opts.html_budget_bytes)
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
    n_with = sum(1 for p in picks if p[0])
    print(
        f"For you: {N_PICK_SUBSCRIBERS} subscribers with distinct interests ({n_with} got a pick) ranked and "
        f"personalised in {t_picks * 1000:.0f} ms; the same subscribers without picks (interleaved): "
        f"{t_plain * 1000:.0f} ms = {t_plain * 1000 / N_PICK_SUBSCRIBERS:.3f} ms each; "
        "papers in full with room for a pick: "
        + ", ".join(f"{s.key or 'all'} {v.foryou.n_full}/{v.n_full}" for s, v in zip(specs, variants, strict=True))
    )
    print(f"largest HTML part as sent with a pick: {largest_sent} bytes; over the budget: {n_over}")
    print(f"render_ms_per_subscriber_with_picks={t_picks * 1000 / N_PICK_SUBSCRIBERS:.3f}")
    if n_over:
        sys.exit(f"{n_over} message(s) over the {opts.html_budget_bytes}-byte budget")
    # #12: papers in full / listed on the busiest corpus day, per language mode (all topics); last line: the min.
    full = {}
    for spec, v in zip(specs, variants, strict=True):
        if spec.topics is None:
            full[spec.lang] = v.n_full
            print(f"busiest day {issue.issue_date} {spec.lang}: papers in full / listed: {v.n_full} / {v.n_listed}")
    print(f"papers_in_full_busiest_day={min(full.values())}")


if __name__ == "__main__":
    main()
