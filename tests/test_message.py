"""Messages: headers, encodings, and the fast splicing path checked against EmailMessage and personalize()."""

from __future__ import annotations

import random
import re
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from email.headerregistry import Address, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.utils import parseaddr, parsedate_to_datetime

import pytest

from newsletter.config import DeliverySettings, Settings, WebSettings
from newsletter.deliver.message import (
    MessageSettings,
    MessageTemplate,
    Person,
    _static_extra_headers,
    assemble,
    canonical_text,
    display_name,
    list_unsubscribe,
    mail_address,
    make_message_id,
    personal_values,
)
from newsletter.deliver.tokens import verify
from newsletter.render import transfer
from newsletter.render.variant import (
    PH_GREETING,
    PH_PREFERENCES_URL,
    PH_UNSUBSCRIBE_URL,
    RenderedVariant,
    personalize,
    render_variant,
)
from tests.issue_factory import make_issue

MS = MessageSettings(
    from_addr="Paper Digest <digest@example.org>",
    reply_to="Lab <lab@example.org>",
    base_url="https://digest.example.org",
)
DATE = "Thu, 05 Dec 2024 00:00:00 +0000"


# ---- the reference: the same message built with email.message.EmailMessage (~5 ms, several times assemble()) ----


class _UrlListHeader(UnstructuredHeader):
    """List-Unsubscribe for EmailMessage. The stdlib folder turns a URL longer than a line into RFC 2047
    encoded-words, which no client decodes inside <...> (RFC 2369 forbids it); fold after the commas instead."""

    def fold(self, *, policy) -> str:
        return f"{self.name}: " + str(self).replace(", ", "," + policy.linesep + " ") + policy.linesep


_REGISTRY = HeaderRegistry()
_REGISTRY.map_to_type("list-unsubscribe", _UrlListHeader)
_REFERENCE_POLICY = policy.SMTP.clone(header_factory=_REGISTRY)


def _address(name: str, email: str) -> Address:
    # By parts: Address(addr_spec=...) refuses a non-ASCII local part even under a UTF-8 policy.
    local, _, domain = mail_address(email).rpartition("@")
    return Address(display_name=display_name(name), username=local, domain=domain)


def build_message(variant, recipient, ms: MessageSettings, *, message_id: str, date_header: str) -> bytes:
    """What `assemble()` must be equivalent to."""
    personal = personal_values(ms, variant.lang, recipient)
    html, text = personalize(variant, personal.values())
    utf8 = not mail_address(recipient.email).isascii()  # SMTPUTF8: the header carries the address in UTF-8
    msg = EmailMessage(policy=_REFERENCE_POLICY.clone(utf8=True) if utf8 else _REFERENCE_POLICY)
    msg["Date"] = date_header
    msg["From"] = ms.from_addr
    msg["To"] = _address(recipient.name, recipient.email)
    msg["Subject"] = variant.subject
    msg["Message-ID"] = message_id
    if ms.reply_to:
        msg["Reply-To"] = ms.reply_to
    for name, value in _static_extra_headers(ms):
        msg[name] = value
    msg["List-Unsubscribe"] = list_unsubscribe(ms, personal)
    # Each part in the encoding the fast path chose for the variant (#12): by the size of its static content.
    msg.set_content(text, subtype="plain", charset="utf-8", cte=transfer.choose(transfer.canonical(variant.text)))
    msg.add_alternative(html, subtype="html", charset="utf-8", cte=transfer.choose(transfer.canonical(variant.html)))
    return msg.as_bytes()


PEOPLE = [
    Person(1, "a@example.com"),
    Person(2, "ada@example.com", "Ada"),
    Person(3, "zhang@example.com", "张伟"),
    Person(4, "obrien@example.com", 'O"Brien, <Sean> & Sons'),
    Person(5, "long@example.com", "Maximiliana Alexandrovna Konstantinopolskaya-Wolfeschlegelsteinhausen"),
    Person(60, "mixed@example.com", "李 Lovelace 雷"),
    Person(789, "e@example.com", "欧阳" * 40),
    Person(1234, "f@example.com", "Fé"),
]
HEADERS = ["Date", "From", "To", "Reply-To", "Subject", "Message-ID", "List-Id", "List-Unsubscribe",
           "List-Unsubscribe-Post", "Precedence", "Auto-Submitted", "MIME-Version"]  # fmt: skip


def parse(raw: bytes):
    return message_from_bytes(raw, policy=policy.default)


def header(raw: bytes, name: str) -> str | None:
    """A header decoded strictly by RFC 2047: whitespace between adjacent encoded-words is dropped (the default
    policy's address parser keeps it, so a long Chinese name split into several words would show spaces)."""
    value = message_from_bytes(raw)[name]  # compat32: the raw, unfolded text
    return None if value is None else str(make_header(decode_header(value)))


def variant(html: str, text: str, subject: str = "论文速递 2024-12-05 · 3 篇论文", lang: str = "zh") -> RenderedVariant:
    return RenderedVariant(lang, None, subject, "", html, text, html_encoded_size=0, n_full=0, n_listed=0)


SMALL = variant(
    f'<html><body><p>{PH_GREETING}</p><p>高斯泼溅</p><a href="{PH_UNSUBSCRIBE_URL}">退订</a>'
    f'<a href="{PH_PREFERENCES_URL}">设置</a></body></html>',
    f"{PH_GREETING}\n高斯泼溅\n退订 {PH_UNSUBSCRIBE_URL}\n设置 {PH_PREFERENCES_URL}\n",
)


@pytest.fixture(scope="module")
def rendered() -> dict[str, RenderedVariant]:
    issue = make_issue(40, long_summaries=True, seed=3)
    return {mode: render_variant(issue, mode) for mode in ("en", "zh", "bilingual")}


def expected_parts(v: RenderedVariant, person: Person) -> tuple[str, str]:
    """What the parts must decode to: personalize()'s output in canonical (CRLF) form."""
    html, text = personalize(v, personal_values(MS, v.lang, person).values())
    return canonical_text(text), canonical_text(html)


def decoded_parts(msg) -> list[tuple[str, str]]:
    return [(p.get_content_type(), p.get_payload(decode=True).decode("utf-8")) for p in msg.iter_parts()]


# ---- headers ---------------------------------------------------------------------------------------------


def test_headers(rendered):
    v = rendered["bilingual"]
    template = MessageTemplate.build(v, MS, 12, "2024-12-05")
    person = PEOPLE[1]
    msg = parse(assemble(template, person, date_header=DATE))
    assert str(msg["From"]) == "Paper Digest <digest@example.org>"
    assert str(msg["Reply-To"]) == "Lab <lab@example.org>"
    assert msg["To"].addresses[0].display_name == "Ada" and msg["To"].addresses[0].addr_spec == "ada@example.com"
    assert msg["Subject"] == v.subject
    assert parsedate_to_datetime(msg["Date"]).isoformat() == "2024-12-05T00:00:00+00:00"
    assert re.fullmatch(r"<issue-12\.sub-2\.[0-9a-f]{10}@example\.org>", msg["Message-ID"])
    assert msg["List-Id"] == "Paper Digest <digest.example.org>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Precedence"] == "bulk" and msg["Auto-Submitted"] == "auto-generated"
    assert msg["MIME-Version"] == "1.0"
    # The one-click URL only: no mailto alternative (nothing would read that mailbox).
    [https] = re.fullmatch(r"<(https://[^>]+)>", msg["List-Unsubscribe"]).groups()
    token = https.removeprefix("https://digest.example.org/unsubscribe?token=")
    assert token != https and verify(token, "ada@example.com", "unsubscribe")
    body = msg.get_body(("html",)).get_content()
    assert f'href="{https}"' in body and "Hi Ada," in body
    prefs = re.search(r'href="(https://digest\.example\.org/preferences\?token=([^"]+))"', body)
    assert prefs and verify(prefs.group(2), "ada@example.com", "preferences")


@pytest.mark.parametrize(
    "subject",
    [
        "论文速递 2024-12-05 · 3 篇论文",  # short: the stdlib leaves this raw unless told otherwise
        "Paper Digest 2024-12-05 · 95 papers, 17 accepted | 论文速递 · 95 篇论文，17 篇录用",
        "Paper Digest 2024-12-05 - 9 papers",
    ],
)
def test_subject_is_rfc2047_encoded_and_decodes(subject):
    raw = assemble(MessageTemplate.build(variant(SMALL.html, SMALL.text, subject), MS, 1, "2024-12-05"), PEOPLE[0])
    assert raw.isascii()
    header = raw.split(b"\r\nSubject: ", 1)[1].split(b"\r\n", 1)[0]
    assert (b"=?utf-8?" in header) == (not subject.isascii())
    assert parse(raw)["Subject"] == subject
    for line in raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        assert len(line) <= 78 or line.startswith((b"To:", b"List-Unsubscribe:", b" ")), line


def test_message_id_is_stable_across_runs():
    # A literal: a hash seed or a clock in it would show here (and in inboxes, as "new" messages on a re-send).
    assert make_message_id(7, "2024-12-05", 42, "ada@example.com", "example.org") == (
        "<issue-7.sub-42.e0c73539b2@example.org>"
    )
    ids = {
        parse(assemble(MessageTemplate.build(SMALL, MS, 7, "2024-12-05"), PEOPLE[1]))["Message-ID"] for _ in range(3)
    }
    assert ids == {make_message_id(7, "2024-12-05", 2, "ada@example.com", "example.org")}
    # ... and it differs per subscriber, issue and date.
    assert (
        len({make_message_id(7, d, s, "x@y.z", "example.org") for d in ("2024-12-05", "2024-12-06") for s in (1, 2)})
        == 4
    )


def test_settings_from_config():
    settings = Settings(
        delivery=DeliverySettings(**{"from": "论文速递 <news@lab.example.edu>", "reply_to": "pi@lab.example.edu"}),
        web=WebSettings(base_url="https://digest.lab.example.edu/"),
    )
    ms = MessageSettings.from_settings(settings)
    assert ms.from_email == "news@lab.example.edu" and ms.domain == "lab.example.edu"
    assert ms.base_url == "https://digest.lab.example.edu"
    assert ms.list_id_header == "论文速递 <news.lab.example.edu>"
    msg = parse(assemble(MessageTemplate.build(SMALL, ms, 1, "2024-12-05"), PEOPLE[2]))
    assert msg["From"].addresses[0].display_name == "论文速递" and msg["Reply-To"] == "pi@lab.example.edu"
    assert msg["List-Id"] == "论文速递 <news.lab.example.edu>"
    assert MessageSettings.from_settings(Settings()).base_url == "http://127.0.0.1:8000"


def test_a_name_cannot_inject_headers():
    evil = Person(9, "eve@example.com", "Eve\r\nBcc: victim@example.com\nX-Evil: 1")
    raw = assemble(MessageTemplate.build(SMALL, MS, 1, "2024-12-05"), evil)
    msg = parse(raw)
    assert msg["Bcc"] is None and msg["X-Evil"] is None
    assert msg["To"].addresses[0].addr_spec == "eve@example.com"
    assert "Bcc: victim@example.com X-Evil: 1" in msg["To"].addresses[0].display_name


# ---- body: layout, encodings, equality with the reference --------------------------------------------------


def test_layout_and_encoding(rendered):
    raw = assemble(MessageTemplate.build(rendered["zh"], MS, 3, "2024-12-05"), PEOPLE[2])
    assert raw.isascii() and b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only
    assert b"\r\n." not in raw  # nothing for SMTP to dot-stuff
    msg = parse(raw)
    assert msg.get_content_type() == "multipart/alternative" and not msg.defects
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    for p in parts:
        assert p["Content-Transfer-Encoding"] == "base64" and p.get_content_charset() == "utf-8" and not p.defects
    body = raw.split(b"\r\n\r\n", 1)[1]
    assert max(len(line) for line in body.split(b"\r\n")) <= 76
    # The HTML part as sent is render's size estimate plus the CRLF line breaks and personal values (< 1%).
    html_part = raw.split(b'Content-Type: text/html; charset="utf-8"', 1)[1]
    assert rendered["zh"].html_encoded_size < len(html_part) < rendered["zh"].html_encoded_size * 1.01


@pytest.mark.parametrize("mode", ["en", "zh", "bilingual"])
def test_assembled_message_matches_the_reference(rendered, mode):
    v = rendered[mode]
    template = MessageTemplate.build(v, MS, 5, "2024-12-05")
    for person in PEOPLE:
        mid = template.message_id(person)
        fast_raw = assemble(template, person, date_header=DATE)
        ref_raw = build_message(v, person, MS, message_id=mid, date_header=DATE)
        for name in HEADERS:
            assert header(fast_raw, name) == header(ref_raw, name), name
        assert parseaddr(header(fast_raw, "To")) == (person.name, person.email)
        fast, ref = parse(fast_raw), parse(ref_raw)
        assert fast.get_content_type() == ref.get_content_type() == "multipart/alternative"
        assert decoded_parts(fast) == decoded_parts(ref)
        text, html = expected_parts(v, person)
        assert decoded_parts(fast) == [("text/plain", text), ("text/html", html)]


def test_splicing_is_exact_for_any_layout():
    """Placeholders anywhere (start, end, adjacent, repeated), segments of every length mod 3, values of every
    length mod 3, 1-3 byte characters: the decoded parts are always exactly personalize()'s output."""
    rng = random.Random(20241205)
    alphabet = ["a", "é", "论", "😀", "\n", " ", "<", "&"]
    tokens = [PH_GREETING, PH_UNSUBSCRIBE_URL, PH_PREFERENCES_URL]
    people = [*PEOPLE, Person(1, "b@example.com", "Bo"), Person(22, "c@example.com", "Ca")]

    def body() -> str:
        pieces = []
        for _ in range(rng.randint(0, 6)):
            pieces.append("".join(rng.choice(alphabet) for _ in range(rng.choice([0, 1, 2, 3, 4, 5, 57, 58, 200]))))
            pieces.append(rng.choice(tokens))
        pieces.append("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 9))))
        return "".join(pieces)

    for case in range(300):
        v = variant(body(), body(), lang=rng.choice(["en", "zh", "bilingual"]))
        template = MessageTemplate.build(v, MS, case, "2024-12-05")
        person = rng.choice(people)
        msg = parse(assemble(template, person))
        text, html = expected_parts(v, person)
        assert decoded_parts(msg) == [("text/plain", text), ("text/html", html)], case


def test_template_works_from_a_stored_variant():
    """`IssueVariant` rows (subject, html, text, no lang) work too, the language coming from the variant key."""

    class Stored:
        subject, html, text = SMALL.subject, SMALL.html, SMALL.text

    msg = parse(assemble(MessageTemplate.build(Stored(), MS, 1, "2024-12-05", lang="zh"), PEOPLE[2]))
    assert "张伟，你好！" in msg.get_body(("plain",)).get_content()


def test_transfer_encoding_is_chosen_per_part_by_size(rendered):
    """#12: English HTML goes quoted-printable, Chinese base64; either way lines <= 76, nothing to dot-stuff,
    and the HTML part as sent is render's size estimate plus the personal values."""
    for mode, expected in (("en", "quoted-printable"), ("zh", "base64")):
        raw = assemble(MessageTemplate.build(rendered[mode], MS, 3, "2024-12-05"), PEOPLE[2])
        assert raw.isascii() and b"\r\n." not in raw
        parts = list(parse(raw).iter_parts())
        assert parts[1]["Content-Transfer-Encoding"] == expected, mode
        body = raw.split(b"\r\n\r\n", 1)[1]
        assert max(len(line) for line in body.split(b"\r\n")) <= 76
        html_part = raw.split(b'Content-Type: text/html; charset="utf-8"', 1)[1]
        assert rendered[mode].html_encoded_size < len(html_part) < rendered[mode].html_encoded_size * 1.02


def test_quoted_printable_never_starts_a_line_with_a_dot():
    data = ("x" * 74 + ". " + "." * 200 + "\n.start\n").encode()
    encoded = transfer.qp_encode(transfer.canonical(data.decode()))
    assert b"\r\n." not in encoded and not encoded.startswith(b".")
    assert max(len(line) for line in encoded.split(b"\r\n")) <= 76
    import quopri

    assert quopri.decodestring(encoded) == transfer.canonical(data.decode())
