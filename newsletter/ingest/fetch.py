"""HTTP fetching: conditional GET, timeouts, bounded retries with backoff, a User-Agent naming the project."""

from __future__ import annotations

import time
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
        return self.status is not None and (self.status == 304 or 200 <= self.status < 300)


def _headers(settings: FetchSettings, etag: str | None, last_modified: str | None) -> dict[str, str]:
    headers = {
        "User-Agent": settings.user_agent,
        "Accept": "application/atom+xml, application/xml;q=0.9, */*;q=0.1",
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
        result = _fetch_once(client, url, headers)
        result.attempts = tries
        return result

    def transient(result: FetchResult) -> bool:
        return result.status is None or result.status in RETRY_STATUSES

    backoff = retry.Backoff(settings.retries + 1, settings.backoff)
    return retry.call(attempt, backoff, retry_result=transient, sleep=sleep)


def _fetch_once(client: httpx.Client, url: str, headers: dict[str, str]) -> FetchResult:
    try:
        resp = client.get(url, headers=headers)
    except httpx.TimeoutException as exc:
        return FetchResult(url, None, error=f"timeout: {exc or type(exc).__name__}")
    except httpx.HTTPError as exc:
        return FetchResult(url, None, error=f"{type(exc).__name__}: {exc}")
    error = None if resp.status_code < 400 else f"HTTP {resp.status_code} {resp.reason_phrase}"
    return FetchResult(
        url,
        resp.status_code,
        body=resp.content if resp.status_code == 200 else b"",
        etag=resp.headers.get("ETag"),
        last_modified=resp.headers.get("Last-Modified"),
        error=error,
    )
