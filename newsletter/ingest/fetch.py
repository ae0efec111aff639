"""HTTP fetching: conditional GET, timeouts, bounded retries with backoff, a User-Agent naming the project, and
a cap on the decoded size of a body (`[fetch] max_payload_mb`): the body is streamed and the read stops at the
cap, so a small gzip answer that inflates to gigabytes costs at most the cap in memory."""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import httpx

from newsletter import retry
from newsletter.config import FetchSettings

RETRY_STATUSES = {429, 500, 502, 503, 504}


@dataclass
class FetchResult:
    url: str
    status: int | None  # None when no HTTP answer came at all
    body: bytes = b""
    etag: str | None = None
    last_modified: str | None = None
    error: str | None = None
    attempts: int = 1

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    @property
    def ok(self) -> bool:
        answered = self.status is not None and (self.status == 304 or 200 <= self.status < 300)
        return answered and self.error is None  # a 200 whose body was refused (over the cap) is no success


def payload_limit(settings: FetchSettings) -> tuple[int, float]:
    """(limit in bytes, limit in MB) from `[fetch] max_payload_mb`; MB = 10**6 bytes."""
    return int(settings.max_payload_mb * 1_000_000), settings.max_payload_mb


def over_limit_message(limit_mb: float) -> str:
    return f"payload over {limit_mb:g} MB"


def _headers(settings: FetchSettings, etag: str | None, last_modified: str | None) -> dict[str, str]:
    headers = {
        "User-Agent": settings.user_agent,
        "Accept": "application/atom+xml, application/xml;q=0.9, */*;q=0.1",
        "Accept-Encoding": "gzip, deflate",  # what _read_capped inflates with a bound (not br, not zstd)
    }
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    return headers


def fetch(
    url: str,
    settings: FetchSettings,
    etag: str | None = None,
    last_modified: str | None = None,
    client: httpx.Client | None = None,
    sleep=time.sleep,
) -> FetchResult:
    """GET `url`; 304 is success with nothing new. Retries only transient failures (network, 429, 5xx)."""
    own = client is None
    client = client or httpx.Client(timeout=settings.timeout, follow_redirects=True)
    try:
        return _fetch_with_retries(client, url, settings, _headers(settings, etag, last_modified), sleep)
    finally:
        if own:
            client.close()


def _fetch_with_retries(client, url, settings, headers, sleep) -> FetchResult:
    """Retry while there is no answer, or a 429/5xx; the last answer stands when the tries run out."""
    tries = 0

    def attempt() -> FetchResult:
        nonlocal tries
        tries += 1
        result = _fetch_once(client, url, headers, payload_limit(settings)[0])
        result.attempts = tries
        return result

    def transient(result: FetchResult) -> bool:
        return result.status is None or result.status in RETRY_STATUSES

    backoff = retry.Backoff(settings.retries + 1, settings.backoff)
    return retry.call(attempt, backoff, retry_result=transient, sleep=sleep)


def _fetch_once(client: httpx.Client, url: str, headers: dict[str, str], limit: int) -> FetchResult:
    try:
        with client.stream("GET", url, headers=headers) as resp:
            error = None if resp.status_code < 400 else f"HTTP {resp.status_code} {resp.reason_phrase}"
            body = b""
            if resp.status_code == 200:
                body, error = _read_capped(resp, limit)
            return FetchResult(
                url,
                resp.status_code,
                body=body,
                etag=resp.headers.get("ETag"),
                last_modified=resp.headers.get("Last-Modified"),
                error=error,
            )
    except httpx.TimeoutException as exc:
        return FetchResult(url, None, error=f"timeout: {exc or type(exc).__name__}")
    except httpx.HTTPError as exc:
        return FetchResult(url, None, error=f"{type(exc).__name__}: {exc}")


RAW_CHUNK = 64 * 1024
OUT_CHUNK = 1024 * 1024  # at most this much inflated per decompress call


def _read_capped(resp: httpx.Response, limit: int) -> tuple[bytes, str | None]:
    """The decoded body, or (b"", "payload over N MB") as soon as more than `limit` bytes came out of the
    decoder; the rest is never read. We inflate ourselves, with a bound per call (httpx's decoder would inflate
    a whole network chunk at once: 64 KB of gzip can be 64 MB), so memory stays near the cap."""
    encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("identity", "", "gzip", "x-gzip", "deflate"):
        return b"", f"unsupported Content-Encoding {encoding!r}"
    chunks: list[bytes] = []
    size = 0
    inflate = _Inflater(encoding) if encoding not in ("identity", "") else None
    try:
        for raw in resp.iter_raw(RAW_CHUNK):
            for piece in inflate.feed(raw) if inflate else (raw,):
                size += len(piece)
                if size > limit:
                    chunks.clear()
                    return b"", over_limit_message(limit / 1_000_000)
                chunks.append(piece)
    except zlib.error as exc:
        return b"", f"body does not decode as {encoding}: {exc}"
    return b"".join(chunks), None


class _Inflater:
    """gzip (several members too) or deflate (zlib-wrapped or raw), inflated OUT_CHUNK bytes at a time."""

    def __init__(self, encoding: str):
        self.encoding = encoding
        self.obj: zlib._Decompress | None = None

    def _new(self, first: bytes) -> zlib._Decompress:
        if self.encoding != "deflate":
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        wrapped = len(first) >= 2 and first[0] & 0x0F == 8 and (first[0] << 8 | first[1]) % 31 == 0
        return zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)

    def feed(self, data: bytes) -> Iterator[bytes]:
        while True:
            if self.obj is None or self.obj.eof:
                if not data or (self.obj is not None and self.encoding == "deflate"):
                    return  # bytes after a deflate stream are ignored, as browsers do
                self.obj = self._new(data)  # gzip: the next member
            out = self.obj.decompress(data, OUT_CHUNK)
            if out:
                yield out
            data = self.obj.unused_data if self.obj.eof else self.obj.unconsumed_tail
            if not data and not self.obj.eof and len(out) < OUT_CHUNK:
                return  # all input consumed and nothing left buffered: wait for the next network chunk
