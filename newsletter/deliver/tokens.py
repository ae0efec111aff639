"""HMAC-signed tokens for unsubscribe and preferences links.

A token is `<subscriber id>.<purpose>.<signature>`; the signature is HMAC-SHA256 over id, purpose and the
subscriber's email, keyed by NEWSLETTER_TOKEN_SECRET. Binding the email means a token stops working if the
address behind that id changes. Rotating the secret invalidates every link already sent, so list the old
secret in NEWSLETTER_TOKEN_SECRET_OLD (comma-separated) until those emails are stale (a few weeks): tokens
verify against the current and the old secrets, new ones are signed with the current one only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

PURPOSES = ("unsubscribe", "preferences")
DEV_SECRET = "dev-only-insecure-secret"  # used only when NEWSLETTER_TOKEN_SECRET is unset (local demo, tests)


class TokenError(ValueError):
    """Forged, tampered or malformed token. Deliberately says nothing about the subscriber."""


def secrets() -> list[bytes]:
    current = os.environ.get("NEWSLETTER_TOKEN_SECRET") or DEV_SECRET
    old = [s for s in os.environ.get("NEWSLETTER_TOKEN_SECRET_OLD", "").split(",") if s.strip()]
    return [s.strip().encode() for s in [current, *old]]


def _sign(secret: bytes, subscriber_id: int, purpose: str, email: str) -> str:
    msg = f"{subscriber_id}\x1f{purpose}\x1f{email}".encode()
    digest = hmac.new(secret, msg, hashlib.sha256).digest()[:18]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def make_token(subscriber_id: int, purpose: str, email: str) -> str:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}")
    return f"{subscriber_id}.{purpose[0]}.{_sign(secrets()[0], subscriber_id, purpose, email)}"


def parse_token(token: str) -> tuple[int, str, str]:
    """Split without verifying: (subscriber id, purpose, signature). Verification needs the stored email."""
    try:
        sid, short, sig = token.split(".")
        purpose = next(p for p in PURPOSES if p[0] == short)
        return int(sid), purpose, sig
    except (ValueError, StopIteration, AttributeError) as exc:
        raise TokenError("invalid token") from exc


def verify(token: str, email: str, purpose: str) -> bool:
    try:
        sid, got_purpose, sig = parse_token(token)
    except TokenError:
        return False
    if got_purpose != purpose:
        return False
    return any(hmac.compare_digest(sig, _sign(s, sid, purpose, email)) for s in secrets())
