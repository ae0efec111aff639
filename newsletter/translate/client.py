"""An OpenAI-compatible chat-completions client that translates a batch of papers per request.

The request carries the papers as JSON (`{"papers": [{"id", "summary", "takeaways"}]}`) and asks for the same
shape back in English. Every answer is validated against what was sent: the same ids, a summary where there was
one, the same number of takeaways, English (not the Chinese echoed back), of sane length. Upstream text and the
model's answer are both untrusted: they only ever become plain text.

One request never takes longer than `[translate] timeout`, retries included (tenacity, `retry.call(within=)`):
network errors, timeouts, 429 and 5xx are retried while time is left; any other 4xx is final.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass

import httpx

from newsletter import retry
from newsletter.config import TranslateSettings
from newsletter.translate.cache import Done, Item

RETRY_STATUSES = {408, 409, 429, 500, 502, 503, 504}
SYSTEM_PROMPT = (
    "You translate Chinese summaries of research papers into English for researchers. "
    'The user sends JSON {"papers": [{"id": ..., "summary": ..., "takeaways": [...]}]}. '
    'Answer with JSON only, of the same shape: {"papers": [{"id": ..., "summary": ..., "takeaways": [...]}]}, '
    "one object per paper with the same id, the summary translated (null where it is null), and exactly as many "
    "takeaways as were sent, in the same order, each translated. Write concise, natural technical English. Keep "
    "method names, numbers, units, abbreviations and formulas as they are. Add nothing, omit nothing."
)
_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL | re.IGNORECASE)
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_WS = re.compile(r"\s+")


class RequestFailed(Exception):
    """No usable HTTP answer: timeout, network error, 4xx/5xx. The message is one line for the log."""


class Malformed(Exception):
    """An answer came, but not the JSON asked for (or not for these papers)."""


@dataclass
class BatchAnswer:
    done: list[Done]  # validated translations
    rejected: dict[int, str]  # paper_id -> why its part of the answer was unusable


class ChatClient:
    """One HTTP client per run; `translate(items)` is one chat-completions request (plus retries)."""

    def __init__(self, cfg: TranslateSettings, api_key: str | None = None, sleep=time.sleep) -> None:
        self.cfg = cfg
        self.sleep = sleep
        self.requests = 0  # HTTP requests made, retries included
        headers = {"Content-Type": "application/json", "User-Agent": "paper-digest/0.1 (translate)"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.http = httpx.Client(base_url=cfg.base_url, headers=headers, timeout=cfg.timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> ChatClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- one request ---------------------------------------------------------------------------------------

    def translate(self, items: list[Item]) -> BatchAnswer:
        """Translate `items` in one request. RequestFailed: no usable answer; Malformed: the answer as a whole
        is unusable. Items missing or invalid in an otherwise good answer are in `rejected`."""
        ids = {str(i + 1): item for i, item in enumerate(items)}
        content = self._complete(_request_body(self.cfg, ids))
        return _parse_answer(content, ids)

    def _complete(self, body: dict) -> str:
        deadline = time.monotonic() + self.cfg.timeout

        def attempt() -> httpx.Response | Exception:
            left = deadline - time.monotonic()
            if left <= 0:
                return httpx.TimeoutException("no time left")
            self.requests += 1
            try:
                return self.http.post("/chat/completions", json=body, timeout=left)
            except httpx.HTTPError as exc:  # timeouts included: retried while time is left
                return exc

        def transient(outcome: httpx.Response | Exception) -> bool:
            return isinstance(outcome, Exception) or outcome.status_code in RETRY_STATUSES

        backoff = retry.Backoff(self.cfg.retries + 1, self.cfg.backoff)
        outcome = retry.call(attempt, backoff, retry_result=transient, sleep=self.sleep, within=self.cfg.timeout)
        if isinstance(outcome, httpx.TimeoutException):
            raise RequestFailed(f"no answer within {self.cfg.timeout:g}s")
        if isinstance(outcome, Exception):
            raise RequestFailed(f"{type(outcome).__name__}: {outcome}")
        if outcome.status_code >= 400:
            raise RequestFailed(f"HTTP {outcome.status_code} {outcome.reason_phrase}: {_snippet(outcome.text)}")
        return _message_content(outcome)


def _snippet(text: str, n: int = 160) -> str:
    return _WS.sub(" ", text).strip()[:n]


def _request_body(cfg: TranslateSettings, ids: dict[str, Item]) -> dict:
    papers = [{"id": key, "summary": item.summary, "takeaways": item.takeaways} for key, item in ids.items()]
    body = {
        "model": cfg.model,
        "temperature": cfg.temperature,
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": json.dumps({"papers": papers}, ensure_ascii=False)},
        ],
    }
    if cfg.json_mode:
        body["response_format"] = {"type": "json_object"}
    return body


def _message_content(resp: httpx.Response) -> str:
    try:
        content = resp.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise Malformed(f"not a chat-completions answer: {_snippet(resp.text)}") from None
    if not isinstance(content, str) or not content.strip():
        raise Malformed("empty message content")
    return content


# ---- validating the answer -------------------------------------------------------------------------------


def _parse_answer(content: str, ids: dict[str, Item]) -> BatchAnswer:
    fenced = _FENCE.match(content)
    try:
        data = json.loads(fenced.group(1) if fenced else content)
    except ValueError:
        raise Malformed(f"the answer is not JSON: {_snippet(content, 80)}") from None
    papers = data.get("papers") if isinstance(data, dict) else data
    if isinstance(papers, dict) and len(ids) == 1:  # one paper answered as one object
        papers = [papers]
    if not isinstance(papers, list):
        raise Malformed('the answer has no "papers" list')
    answered: dict[str, dict] = {}
    for entry in papers:
        if isinstance(entry, dict) and str(entry.get("id")) in ids:
            answered.setdefault(str(entry.get("id")), entry)
    if not answered:
        raise Malformed("the answer names none of the papers sent")
    done, rejected = [], {}
    for key, item in ids.items():
        entry = answered.get(key)
        try:
            if entry is None:
                raise Malformed("missing from the answer")
            done.append(_validate(entry, item))
        except Malformed as exc:
            rejected[item.paper_id] = str(exc)
    return BatchAnswer(done, rejected)


def _validate(entry: dict, item: Item) -> Done:
    summary = None
    if item.summary:
        summary = _english(entry.get("summary"), item.summary, "summary")
    takeaways = entry.get("takeaways")
    if not isinstance(takeaways, list):
        takeaways = [] if not item.takeaways and takeaways is None else takeaways
    if not isinstance(takeaways, list) or len(takeaways) != len(item.takeaways):
        got = len(takeaways) if isinstance(takeaways, list) else "no list"
        raise Malformed(f"{len(item.takeaways)} takeaways sent, {got} answered")
    out = [
        _english(t, src, f"takeaway {i + 1}") for i, (t, src) in enumerate(zip(takeaways, item.takeaways, strict=True))
    ]
    return Done(item, summary, out)


def _english(value: object, source: str, what: str) -> str:
    """Plain, single-spaced English text of a sane length for its source, or Malformed."""
    if not isinstance(value, str):
        raise Malformed(f"{what}: not text")
    text = _WS.sub(" ", _CONTROL.sub(" ", value)).strip()
    if not text:
        raise Malformed(f"{what}: empty")
    if len(_CJK.findall(text)) > len(_LATIN.findall(text)):
        raise Malformed(f"{what}: not English")
    if len(text) > 8 * len(source) + 200:  # a runaway answer, not a translation
        raise Malformed(f"{what}: {len(text)} characters for {len(source)}")
    return text
