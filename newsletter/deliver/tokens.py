"""HMAC-signed tokens for unsubscribe and preferences links, and expiring ones for sign-up confirmations.

A token is `<subscriber id>.<purpose>.<signature>`; the signature is HMAC-SHA256 over id, purpose and the
subscriber's email, keyed by NEWSLETTER_TOKEN_SECRET. Binding the email means a token stops working if the
address behind that id changes. Rotating the secret invalidates every link already sent, so list the old
secret in NEWSLETTER_TOKEN_SECRET_OLD (comma-separated) until those emails are stale (a few weeks): tokens
verify against the current and the old secrets, new ones are signed with the current one only.

Serving the links and sending over SMTP require secrets of at least 32 bytes (a blank one counts as none); only
the outbox, the embedded demo, runs on the development key, with a warning.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os

from newsletter.config import ConfigError

log = logging.getLogger(__name__)
PURPOSES = ("unsubscribe", "preferences")
SECRET_VAR, OLD_SECRETS_VAR = "NEWSLETTER_TOKEN_SECRET", "NEWSLETTER_TOKEN_SECRET_OLD"
MIN_SECRET_BYTES = 32  # HMAC-SHA256 key: 256 bits of the operator's randomness
# Published with the source, so it protects nothing: used only when NEWSLETTER_TOKEN_SECRET is unset, and then
# only for the outbox (the embedded demo) and tests; serving links or sending real mail refuses it.
DEV_SECRET = "dev-only-insecure-secret"


class TokenError(ValueError):
    """Forged, tampered or malformed token. Deliberately says nothing about the subscriber."""


def configured_secret() -> str | None:
    """NEWSLETTER_TOKEN_SECRET without surrounding whitespace; None when unset or blank."""
    return os.environ.get(SECRET_VAR, "").strip() or None


def old_secrets() -> list[str]:
    return [s.strip() for s in os.environ.get(OLD_SECRETS_VAR, "").split(",") if s.strip()]


def secrets() -> list[bytes]:
    return [s.encode() for s in [configured_secret() or DEV_SECRET, *old_secrets()]]


def secret_problem() -> str | None:
    """Why links signed now could be forged (no secret, a short one), or None. An old secret still verifies
    tokens, so a short one is as weak as a short current one."""
    if configured_secret() is None:
        return f"{SECRET_VAR} is not set (links are signed with the development key published in the source)"
    for var, value in [(SECRET_VAR, configured_secret() or ""), *((OLD_SECRETS_VAR, s) for s in old_secrets())]:
        if len(value.encode()) < MIN_SECRET_BYTES:
            return f"{var} holds a secret of {len(value.encode())} bytes, fewer than {MIN_SECRET_BYTES}"
    return None


def require_secret(action: str) -> None:
    """Refuse to `action` (serve the links, send real mail) when anyone could forge them: ConfigError, one line."""
    problem = secret_problem()
    if problem:
        raise ConfigError(
            f"{problem}: refusing to {action}. Set {SECRET_VAR} to at least {MIN_SECRET_BYTES} random bytes, "
            "e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )


def warn_if_dev_secret(where: str) -> None:
    """The embedded demo goes on without a secret, but says so loudly."""
    problem = secret_problem()
    if problem:
        log.warning(
            "WARNING: %s: anyone can forge the links written to %s. Fine for the demo, never for real subscribers "
            "(sending over SMTP and `serve` refuse it)",
            problem,
            where,
        )


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


# ---- confirmation links: bound to one sign-up request, and expiring -------------------------------------------

CONFIRM = "confirm"


def make_confirm_token(request_id: int, email: str, expires: int) -> str:
    """`<request id>.c.<expiry, Unix seconds>.<signature>`: the expiry is signed too, so it cannot be extended."""
    sig = _sign(secrets()[0], request_id, _confirm_purpose(expires), email)
    return f"{request_id}.c.{expires}.{sig}"


def _confirm_purpose(expires: int) -> str:
    return f"{CONFIRM}\x1f{expires}"


def parse_confirm_token(token: str) -> tuple[int, int, str]:
    """Split without verifying: (request id, expiry, signature)."""
    try:
        rid, short, expires, sig = token.split(".")
        if short != "c":
            raise ValueError(short)
        return int(rid), int(expires), sig
    except (ValueError, AttributeError) as exc:
        raise TokenError("invalid token") from exc


def verify_confirm(token: str, email: str) -> bool:
    """The signature only (one HMAC per secret); whether it has expired is the caller's question."""
    try:
        rid, expires, sig = parse_confirm_token(token)
    except TokenError:
        return False
    return any(hmac.compare_digest(sig, _sign(s, rid, _confirm_purpose(expires), email)) for s in secrets())
