"""A rendered variant + one subscriber -> the exact bytes handed to the SMTP server.

`MessageTemplate.build()` pre-encodes everything static once per variant; `assemble()` encodes only the
personal runs per subscriber (measured in bench/send.py; tests/test_message.py compares every message with the
stdlib `EmailMessage` path). Layout, headers and the encoding argument: docs/architecture.md ("Messages in detail").
"""

from __future__ import annotations

import binascii
import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email import policy
from email.utils import format_datetime, formataddr, parseaddr
from functools import cached_property
from typing import Protocol

from email_validator import EmailNotValidError, validate_email
from markupsafe import escape

from newsletter.config import Settings
from newsletter.deliver.subscribers import NAME_MAX_CHARS
from newsletter.deliver.tokens import make_token
from newsletter.render import transfer
from newsletter.render.variant import PLACEHOLDERS, RenderedVariant, greeting

DEFAULT_FROM = "Paper Digest <digest@example.org>"
DEFAULT_BASE_URL = "http://127.0.0.1:8000"
ONE_CLICK = "List-Unsubscribe=One-Click"
CRLF = b"\r\n"
_LINE_BYTES = 57  # 57 input bytes -> one 76-character base64 line
_PH_RE = re.compile("|".join(re.escape(t) for t in PLACEHOLDERS.values()))
_TOKEN_NAME = {token: name for name, token in PLACEHOLDERS.items()}
_EOL = re.compile(r"\r\n|\r|\n")
_CTRL = re.compile(r"[\x00-\x1f\x7f]+")
_DISPLAY_FOLD = 72  # an ASCII display name longer than this is written as encoded-words, which fold


class Recipient(Protocol):
    """What a message needs of a subscriber (a `models.Subscriber` qualifies)."""

    id: int
    email: str
    name: str


@dataclass(frozen=True)
class Person:
    """A recipient outside the subscriber table (test copies)."""

    id: int
    email: str
    name: str = ""


@dataclass(frozen=True)
class MessageSettings:
    """The sender identity and link base, from `[delivery]` and `[web]`."""

    from_addr: str = DEFAULT_FROM
    reply_to: str | None = None
    base_url: str = DEFAULT_BASE_URL
    list_id: str | None = None  # default: "<From display name> <local.domain>" of From

    @classmethod
    def from_settings(cls, settings: Settings) -> MessageSettings:
        delivery = settings.delivery  # validated at load: one address each, no line breaks
        return cls(
            from_addr=delivery.from_addr,
            reply_to=delivery.reply_to,
            base_url=settings.web.base_url,
            list_id=delivery.list_id,
        )

    # cached: parseaddr costs ~0.1 ms, and these are read for every message
    @cached_property
    def from_email(self) -> str:
        return parseaddr(self.from_addr)[1]

    @cached_property
    def domain(self) -> str:
        return self.from_email.rpartition("@")[2] or "localhost"

    @cached_property
    def list_id_header(self) -> str:
        if self.list_id:
            return self.list_id
        name, addr = parseaddr(self.from_addr)
        local, _, domain = addr.partition("@")
        return f"{_one_line(name) or 'Paper Digest'} <{local}.{domain}>"


def _one_line(text: str | None) -> str:
    """No control characters (a newline in a name would inject a header), single spaces."""
    return " ".join(_CTRL.sub(" ", text or "").split())


def make_message_id(issue_id: int, issue_date: date | str, subscriber_id: int, email: str, domain: str) -> str:
    """`<issue-12.sub-34.1a2b3c4d5e@example.org>`: the same for a given delivery on every run. The hash binds the
    issue date and address, so a fresh database reusing ids never collides with ids already in inboxes."""
    digest = hashlib.sha256(f"{issue_id}|{issue_date}|{subscriber_id}|{email}".encode()).hexdigest()[:10]
    return f"<issue-{issue_id}.sub-{subscriber_id}.{digest}@{domain}>"


@dataclass(frozen=True)
class Personal:
    """Per-subscriber values: placeholder values and the unsubscribe token for the headers."""

    greeting: str
    unsubscribe_url: str
    preferences_url: str
    unsubscribe_token: str

    def values(self) -> dict[str, str]:
        """As `render.personalize()` takes them."""
        return {
            "GREETING": self.greeting,
            "UNSUBSCRIBE_URL": self.unsubscribe_url,
            "PREFERENCES_URL": self.preferences_url,
        }


def personal_values(ms: MessageSettings, lang: str, recipient: Recipient) -> Personal:
    unsubscribe = make_token(recipient.id, "unsubscribe", recipient.email)
    preferences = make_token(recipient.id, "preferences", recipient.email)
    return Personal(
        greeting=greeting(lang, _one_line(recipient.name)),
        unsubscribe_url=f"{ms.base_url}/unsubscribe?token={unsubscribe}",
        preferences_url=f"{ms.base_url}/preferences?token={preferences}",
        unsubscribe_token=unsubscribe,
    )


def list_unsubscribe(ms: MessageSettings, personal: Personal) -> str:
    """The one-click URL only (module docstring: why no mailto)."""
    return f"<{personal.unsubscribe_url}>"


def canonical_text(text: str) -> str:
    """CRLF line breaks and a final line break, as base64-encoded text must be (and EmailMessage makes it)."""
    text = _EOL.sub("\r\n", text)
    return text if text.endswith("\r\n") else text + "\r\n"


# ---- headers -----------------------------------------------------------------------------------------------

_POLICY = policy.SMTP  # headers folded and RFC 2047-encoded as EmailMessage does it


def mail_address(email: str) -> str:
    """The address as SMTP and the To: header carry it: an internationalised domain in IDNA form (A-labels,
    `user@xn--bcher-kva.example`), the local part as written. A non-ASCII local part (`pelé@example.org`)
    stays UTF-8: only a server offering SMTPUTF8 (RFC 6531) takes it, and the header is then UTF-8 (RFC 6532)."""
    local, _, domain = email.rpartition("@")
    if domain.isascii():
        return email
    try:
        return f"{local}@{validate_email(email, check_deliverability=False).ascii_domain}"
    except EmailNotValidError:
        return email  # stored before validation existed: the transport reports it per recipient


def display_name(name: str | None) -> str:
    """One line, at most NAME_MAX_CHARS: a header line has 998 octets at most (RFC 5322), whatever is stored."""
    name = _one_line(name)
    return name if len(name) <= NAME_MAX_CHARS else name[: NAME_MAX_CHARS - 1] + "…"


def _static_extra_headers(ms: MessageSettings) -> list[tuple[str, str]]:
    return [
        ("List-Id", ms.list_id_header),
        ("List-Unsubscribe-Post", ONE_CLICK),
        ("Precedence", "bulk"),
        ("Auto-Submitted", "auto-generated"),
        ("X-Auto-Response-Suppress", "OOF, AutoReply"),
    ]


# ---- fast path: a template per variant, spliced per subscriber -------------------------------------------


def _b64_lines(data: bytes) -> bytes:
    """base64 in 76-character lines, each ending in CRLF."""
    if not data:
        return b""
    b2a = binascii.b2a_base64
    return b"".join(b2a(data[i : i + _LINE_BYTES], newline=False) + CRLF for i in range(0, len(data), _LINE_BYTES))


@dataclass
class _Segment:
    """Static bytes between two placeholders, pre-encoded for each head length h (0, 1, 2): `encoded[h]` is
    raw[h : h + 3k] in base64 lines, `tail[h]` the 0-2 bytes left over (they join the next personalised run).
    `encoded[h]` is None when the segment is shorter than h (it then stays entirely in the personalised run)."""

    raw: bytes
    encoded: list[bytes | None] = field(default_factory=list)
    tail: list[bytes] = field(default_factory=list)

    @classmethod
    def of(cls, raw: bytes) -> _Segment:
        seg = cls(raw)
        for h in range(3):
            if len(raw) < h:
                seg.encoded.append(None)
                seg.tail.append(b"")
                continue
            end = h + (len(raw) - h) // 3 * 3
            seg.encoded.append(_b64_lines(raw[h:end]))
            seg.tail.append(raw[end:])
        return seg


def _split(text: str) -> tuple[list[bytes], list[str]]:
    """Canonical text split around its placeholders: (static pieces, placeholder names between them)."""
    text = canonical_text(text)
    pieces, slots, pos = [], [], 0
    for m in _PH_RE.finditer(text):
        pieces.append(text[pos : m.start()])
        slots.append(_TOKEN_NAME[m.group()])
        pos = m.end()
    pieces.append(text[pos:])
    return [p.encode("utf-8") for p in pieces], slots


@dataclass
class _QpBody:
    """One quoted-printable part split around its placeholders. Every encoded piece ends its own line (a soft
    break when the piece does not end in a line break), so pieces splice without re-encoding their neighbours."""

    segments: list[bytes]  # static pieces, encoded
    slots: list[str]
    cte: str = transfer.QP

    def encode(self, values: dict[str, bytes], out: list[bytes]) -> None:
        """Append this body's quoted-printable lines for one subscriber's `values` to `out`."""
        last = b""
        for i, seg in enumerate(self.segments):
            if i:
                value = transfer.qp_encode(values[self.slots[i - 1]])
                out.append(value)
                last = value or last
            out.append(seg)
            last = seg or last
        # The CRLF before the boundary belongs to the boundary: a final hard line break needs one more line.
        if last and not last.endswith(b"=\r\n"):
            out.append(b"=\r\n")


@dataclass
class _Body:
    """One base64 part split around its placeholders: segments[0] slot[0] segments[1] ... segments[-1]."""

    segments: list[_Segment]
    slots: list[str]  # placeholder names ("GREETING", ...)
    cte: str = transfer.BASE64

    @classmethod
    def of(cls, text: str) -> _Body | _QpBody:
        """The part in the smaller transfer encoding for its content (render sized the budget the same way)."""
        pieces, slots = _split(text)
        if transfer.choose(transfer.canonical(text)) == transfer.QP:
            return _QpBody([transfer.qp_encode(p) for p in pieces], slots)
        return cls([_Segment.of(p) for p in pieces], slots)

    def encode(self, values: dict[str, bytes], out: list[bytes]) -> None:
        """Append this body's base64 lines for one subscriber's `values` to `out`."""
        carry = b""
        for i, seg in enumerate(self.segments):
            if i:
                carry += values[self.slots[i - 1]]
            h = -len(carry) % 3  # bytes of this segment needed to complete carry's last group
            encoded = seg.encoded[h]
            if encoded is None:  # a segment of 0-1 bytes: it simply joins the run
                carry += seg.raw
                continue
            if carry:
                out.append(_b64_lines(carry + seg.raw[:h]))
            out.append(encoded)
            carry = seg.tail[h]
        if carry:
            out.append(_b64_lines(carry))


def _part_head(boundary: str, subtype: str, cte: str = transfer.BASE64) -> bytes:
    return (
        f'--{boundary}\r\nContent-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: {cte}\r\n\r\n'
    ).encode("ascii")


def _fold(name: str, value: str) -> bytes:
    """One header as EmailMessage writes it: RFC 2047-encoded where not ASCII, folded, CRLF. (Through the header
    object: `policy.fold()` on a plain string leaves a short non-ASCII value unencoded.)"""
    return _POLICY.header_factory(name, value).fold(policy=_POLICY).encode("ascii")


def _encoded_words(text: str, max_bytes: int = 45) -> str:
    """RFC 2047 base64 encoded-words of at most 75 characters (45 bytes), split between characters, joined by
    folding whitespace (the whitespace between adjacent encoded-words is not part of the decoded text)."""
    words, chunk = [], b""
    for ch in text:
        b = ch.encode("utf-8")
        if len(chunk) + len(b) > max_bytes:
            words.append(chunk)
            chunk = b""
        chunk += b
    words.append(chunk)
    return "\r\n ".join(f"=?utf-8?b?{binascii.b2a_base64(w, newline=False).decode('ascii')}?=" for w in words)


def _to_header(name: str, email: str) -> bytes:
    """`To: name <email>`, every line within 78 characters; the stdlib folder gives the same result but costs
    ~1 ms for a long name. A long ASCII name becomes encoded-words too: they fold anywhere (a name without
    spaces would otherwise make one line as long as itself). UTF-8 only for a non-ASCII local part (SMTPUTF8)."""
    name, email = display_name(name), mail_address(email)
    if not name:
        return f"To: {email}\r\n".encode()
    display = formataddr((name, "x@x"))[:-6] if name.isascii() else ""
    if not display or len(display) > _DISPLAY_FOLD:
        display = _encoded_words(name)
    sep = " " if len(display.rpartition("\n")[2]) + len(email) < 70 else "\r\n "  # fold before a long address
    return f"To: {display}{sep}<{email}>\r\n".encode()


@dataclass
class MessageTemplate:
    """Everything about a message that is the same for every subscriber of one variant of one issue."""

    # Hand-written on purpose (#8): assemble() costs 0.07-0.15 ms for a 127 KB digest against 34-108 ms with
    # build_message() (same machine, same message); send_vs_raw_smtp >= 0.95 rests on it. Checked against
    # build_message() by tests/test_message.py: test_assembled_message_matches_the_reference and
    # test_splicing_is_exact_for_any_layout.

    lang: str
    issue_id: int
    issue_date: date | str
    ms: MessageSettings
    headers: bytes  # static headers through the first part's head
    text: _Body | _QpBody
    between: bytes  # end of text part, head of the HTML part
    html: _Body | _QpBody
    closing: bytes

    @classmethod
    def build(
        cls,
        variant: RenderedVariant,
        ms: MessageSettings,
        issue_id: int,
        issue_date: date | str,
        lang: str | None = None,
    ) -> MessageTemplate:
        """`variant`: anything with subject, html and text (a stored `IssueVariant` too, with `lang` given)."""
        text, html = _Body.of(variant.text), _Body.of(variant.html)
        boundary = "=_pd_" + hashlib.sha256((variant.html + variant.text).encode("utf-8")).hexdigest()[:24]
        headers = [_fold("From", ms.from_addr), _fold("Subject", variant.subject)]
        if ms.reply_to:
            headers.append(_fold("Reply-To", ms.reply_to))
        headers += [_fold(n, v) for n, v in _static_extra_headers(ms)]
        headers.append(b"MIME-Version: 1.0\r\n")
        headers.append(f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'.encode("ascii"))
        return cls(
            lang=lang or variant.lang,
            issue_id=issue_id,
            issue_date=issue_date,
            ms=ms,
            headers=b"".join(headers) + _part_head(boundary, "plain", text.cte),
            text=text,
            between=_part_head(boundary, "html", html.cte),
            html=html,
            closing=f"--{boundary}--\r\n".encode("ascii"),
        )

    def message_id(self, recipient: Recipient) -> str:
        return make_message_id(self.issue_id, self.issue_date, recipient.id, recipient.email, self.ms.domain)


_date_cache: tuple[int, str] = (0, "")


def _now_header() -> str:
    """The Date header value, formatted once per second (it is the same for every message in that second)."""
    global _date_cache
    now = datetime.now(UTC).replace(microsecond=0)
    second = int(now.timestamp())
    if _date_cache[0] != second:
        _date_cache = (second, format_datetime(now))
    return _date_cache[1]


def assemble(
    template: MessageTemplate,
    recipient: Recipient,
    *,
    message_id: str | None = None,
    date_header: str | None = None,
    pick: tuple[str, str] = ("", ""),
) -> bytes:
    """The message for one recipient: per-recipient headers + the template's pre-encoded static parts with the
    personalised runs encoded in between. Semantically identical to the EmailMessage reference (tested).
    `pick`: the (html, text) of a "For you" pick, for a template built from a variant's `ForYou` rendering (#11):
    markup, spliced in as is."""
    personal = personal_values(template.ms, template.lang, recipient)
    values = personal.values()
    text_values = {k: v.encode("utf-8") for k, v in values.items()}
    html_values = {k: str(escape(v)).encode("utf-8") for k, v in values.items()}
    text_values["FORYOU"], html_values["FORYOU"] = pick[1].encode("utf-8"), pick[0].encode("utf-8")
    mid = message_id or template.message_id(recipient)
    out = [
        f"Date: {date_header or _now_header()}\r\n".encode("ascii"),
        _to_header(recipient.name, recipient.email),
        f"Message-ID: {mid}\r\n".encode("ascii"),
        _fold_list_unsubscribe(list_unsubscribe(template.ms, personal)),
        template.headers,
    ]
    template.text.encode(text_values, out)
    out.append(template.between)
    template.html.encode(html_values, out)
    out.append(template.closing)
    return b"".join(out)


def _fold_list_unsubscribe(value: str) -> bytes:
    """`List-Unsubscribe: <https://...>`; a list of URLs is folded after each comma, never inside a URL."""
    return ("List-Unsubscribe: " + value.replace(", ", ",\r\n ") + "\r\n").encode("ascii")
