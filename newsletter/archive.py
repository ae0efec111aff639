"""The raw archive: every fetched or read payload, stored content-addressed, for replays and backfills."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def archive_path(root: str | Path, digest: str) -> Path:
    return Path(root) / digest[:2] / digest


def store_payload(root: str | Path, data: bytes) -> str:
    """Write `data` under its sha256 (once: same bytes, same file) and return the digest."""
    digest = sha256_hex(data)
    path = archive_path(root, digest)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}.{uuid.uuid4().hex}")  # unique per writer, threads included
        tmp.write_bytes(data)
        os.replace(tmp, path)  # atomic: a crash never leaves a half-written payload under its hash
    return digest


def load_payload(root: str | Path, digest: str) -> bytes:
    data = archive_path(root, digest).read_bytes()
    if sha256_hex(data) != digest:
        raise ValueError(f"raw archive is corrupt: {digest} does not match its content")
    return data
