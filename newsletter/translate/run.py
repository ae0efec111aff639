"""Translate what the cache does not have: batches of papers per request, single papers when a batch answer is
unusable, and a stop when the endpoint keeps failing. Never raises for a translation problem: each paper left
untranslated is a warning naming it, and counted."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.config import TranslateSettings
from newsletter.db.models import Paper
from newsletter.translate.cache import Done, Item, lookup, source_hash, source_text
from newsletter.translate.client import BatchAnswer, ChatClient, Malformed, RequestFailed

log = logging.getLogger(__name__)
MAX_FAILURE_LINES = 50


@dataclass
class TranslateReport:
    papers: int = 0  # papers looked at
    nothing_to_translate: int = 0  # no Chinese summary or takeaways
    cached: int = 0  # translated before for this text and model
    translated: int = 0
    failed: int = 0  # asked, but no usable translation came
    skipped: int = 0  # not asked: the endpoint had failed max_failures requests in a row
    requests: int = 0  # HTTP requests, retries included
    batch_fallbacks: int = 0  # batch answers (partly) unusable: their papers were asked one by one
    failures: list[str] = field(default_factory=list)  # "<paper>: <why>", at most MAX_FAILURE_LINES

    def as_dict(self) -> dict:
        return dict(self.__dict__)

    def summary(self) -> str:
        return (
            f"translate: {self.papers} papers; {self.cached} cached, {self.translated} translated, "
            f"{self.failed} failed, {self.skipped} skipped, {self.nothing_to_translate} with nothing to translate; "
            f"{self.requests} requests"
        )


def paper_name(paper: Paper) -> str:
    if paper.arxiv_id:
        return paper.arxiv_id
    title = " ".join((paper.title or "").split())
    return f"paper {paper.id} ({title[:50]}{'…' if len(title) > 50 else ''})"


def pending(session: Session, paper_ids: list[int], model: str, report: TranslateReport) -> list[Item]:
    """The papers among `paper_ids` that have Chinese text without a cached translation by `model`."""
    papers = session.scalars(select(Paper).where(Paper.id.in_(paper_ids)).order_by(Paper.id)).all()
    report.papers += len(papers)
    hashes = {}
    for p in papers:
        h = source_hash(p.summary_zh, p.takeaways)
        if h is None:
            report.nothing_to_translate += 1
        else:
            hashes[p.id] = h
    cached = lookup(session, hashes, model)
    report.cached += len(cached)
    items = []
    for p in papers:
        if p.id in hashes and p.id not in cached:
            summary, takeaways = source_text(p.summary_zh, p.takeaways)
            items.append(Item(p.id, paper_name(p), summary, takeaways, hashes[p.id]))
    return items


def api_key(cfg: TranslateSettings) -> str | None:
    """The key from the environment variable `api_key_env` names (none for a local server without one)."""
    return os.environ.get(cfg.api_key_env, "").strip() or None


class _Run:
    """One run over the pending items: the client, the counts, and the consecutive-failure stop."""

    def __init__(self, cfg: TranslateSettings, client: ChatClient, save: Callable[[list[Done]], None],
                 report: TranslateReport) -> None:  # fmt: skip
        self.cfg, self.client, self.save, self.report = cfg, client, save, report
        self.failures_in_a_row = 0

    @property
    def stopped(self) -> bool:
        return self.failures_in_a_row >= self.cfg.max_failures

    def fail(self, items: list[Item], why: str) -> None:
        self.report.failed += len(items)
        for item in items:
            line = f"{item.name}: {why}"
            log.warning("translate: %s (left untranslated)", line)
            if len(self.report.failures) < MAX_FAILURE_LINES:
                self.report.failures.append(line)

    def ask(self, items: list[Item]) -> BatchAnswer | RequestFailed | Malformed:
        """One request: the answer, or the failure (counted towards the stop)."""
        try:
            answer = self.client.translate(items)
        except (RequestFailed, Malformed) as exc:
            self.failures_in_a_row += 1
            return exc
        self.failures_in_a_row = 0
        return answer

    def keep(self, done: list[Done]) -> None:
        if done:
            self.save(done)  # at once: a run stopped half-way keeps what it paid for
            self.report.translated += len(done)

    def batch(self, items: list[Item]) -> None:
        answer = self.ask(items)
        if isinstance(answer, RequestFailed):
            self.fail(items, str(answer))  # the endpoint failed: asking paper by paper would only cost more
            return
        if isinstance(answer, Malformed):
            retry = items
            why = {i.paper_id: str(answer) for i in items}
        else:
            self.keep(answer.done)
            retry = [i for i in items if i.paper_id in answer.rejected]
            why = answer.rejected
        if not retry:
            return
        if len(items) == 1:
            self.fail(retry, f"malformed answer: {why[retry[0].paper_id]}")
            return
        self.report.batch_fallbacks += 1
        log.info("translate: batch answer unusable for %d of %d papers; asking them one by one", len(retry), len(items))
        for n, item in enumerate(retry):
            if self.stopped:
                self.skip(retry[n:])
                break
            self.batch([item])

    def skip(self, items: list[Item]) -> None:
        self.report.skipped += len(items)
        if items:
            names = ", ".join(i.name for i in items[:20]) + (" ..." if len(items) > 20 else "")
            log.warning(
                "translate: endpoint failed %d requests in a row; not asked this run: %s",
                self.failures_in_a_row, names,
            )  # fmt: skip


def translate_items(
    items: list[Item],
    cfg: TranslateSettings,
    save: Callable[[list[Done]], None],
    report: TranslateReport | None = None,
    client: ChatClient | None = None,
) -> TranslateReport:
    """Translate `items` in batches of `cfg.batch_size`, calling `save` with each batch's translations."""
    report = report or TranslateReport()
    own = client is None
    client = client or ChatClient(cfg, api_key(cfg))
    run = _Run(cfg, client, save, report)
    before = client.requests
    try:
        for start in range(0, len(items), cfg.batch_size):
            chunk = items[start : start + cfg.batch_size]
            if run.stopped:
                run.skip(items[start:])
                break
            run.batch(chunk)
    finally:
        report.requests += client.requests - before
        if own:
            client.close()
    return report
