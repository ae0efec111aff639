"""Subscribers and addresses (#9, 2): non-ASCII addresses are sent properly (IDNA domains, SMTPUTF8 local parts)
or fail one recipient with a reason; subscriber files in any spreadsheet encoding import with names intact; a
name never makes a header line too long."""

from __future__ import annotations

import codecs
import logging
from email import message_from_string, policy
from email.utils import parseaddr

import pytest
from sqlalchemy import insert

from newsletter.db import session_scope
from newsletter.db.models import Subscriber
from newsletter.deliver import subscribers
from newsletter.deliver.ledger import prepare_ledger
from newsletter.deliver.message import MessageSettings, MessageTemplate, Person, assemble
from tests.cli_runner import invoke, one_line_error
from tests.smtp_server import SmtpServer
from tests.test_deliver import NAMES, ledger, make_issue, send, with_delivery
from tests.test_message import DATE, SMALL, build_message, header

PELE, BUECHER = "pelé@example.org", "user@bücher.example"
BUECHER_ASCII = "user@xn--bcher-kva.example"
MS = MessageSettings(from_addr="Paper Digest <digest@example.org>", base_url="https://digest.example.org")


def to_lines(raw: bytes) -> list[bytes]:
    """The To: header's physical lines (first line and continuations)."""
    lines = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(b"To:"))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith((b" ", b"\t"))), len(lines))
    return lines[start:end]


def parse(raw: bytes):
    """Headers may be UTF-8 (RFC 6532); the bodies are base64, so the whole message decodes as UTF-8."""
    return message_from_string(raw.decode("utf-8"), policy=policy.default)


def to_address(raw: bytes) -> str:
    return parse(raw)["To"].addresses[0].addr_spec


def prepared(settings, emails: list[str]) -> int:
    issue_id = make_issue(settings.database_url)
    with session_scope(settings.database_url) as s:
        for i, email in enumerate(emails):
            subscribers.add(s, email, NAMES[i % len(NAMES)], "zh")
    with session_scope(settings.database_url) as s:
        prepare_ledger(s, issue_id)
    return issue_id


# ---- sending ---------------------------------------------------------------------------------------------


def test_non_ascii_addresses_are_sent_with_idna_and_smtputf8(settings, caplog):
    settings = with_delivery(settings)
    issue_id = prepared(settings, ["ada@example.org", PELE, BUECHER])
    with caplog.at_level(logging.WARNING), SmtpServer(smtputf8=True) as server:
        report = send(settings, issue_id, server)
        received = {r.rcpt_tos[0]: r for r in server.handler.received}
    assert (report.sent, report.gave_up, report.bounced) == (3, 0, 0), report.errors
    assert set(received) == {"ada@example.org", PELE, BUECHER_ASCII}
    assert "SMTPUTF8" in received[PELE].mail_options  # only the UTF-8 local part needs the extension
    assert "SMTPUTF8" not in received[BUECHER_ASCII].mail_options
    assert to_address(received[PELE].data) == PELE  # a UTF-8 header (RFC 6532)
    assert to_address(received[BUECHER_ASCII].data) == BUECHER_ASCII and received[BUECHER_ASCII].data.isascii()
    assert not [r for r in caplog.records if r.exc_info], "no traceback"


def test_server_without_smtputf8_fails_that_recipient_once_with_a_reason(settings, caplog):
    settings = with_delivery(settings)
    issue_id = prepared(settings, ["ada@example.org", PELE, BUECHER])
    with caplog.at_level(logging.WARNING), SmtpServer(smtputf8=False) as server:
        report = send(settings, issue_id, server)
        rcpts = sorted(r.rcpt_tos[0] for r in server.handler.received)
    assert rcpts == ["ada@example.org", BUECHER_ASCII]  # the IDNA domain needs no extension
    rows = ledger(settings.database_url, issue_id)
    assert rows[PELE] == ("bounced", 1)  # at once, not five attempts
    assert any(PELE in e and "does not offer SMTPUTF8" in e for e in report.errors)
    with session_scope(settings.database_url) as s:
        assert subscribers.get(s, PELE).status == "active"  # the relay's limit, not the address's fault
    assert not [r for r in caplog.records if r.exc_info], "no traceback"


@pytest.mark.parametrize("email", [PELE, BUECHER])
def test_both_message_paths_build_non_ascii_addresses(email):
    person = Person(7, email, "Pelé")
    fast = assemble(MessageTemplate.build(SMALL, MS, 1, "2024-12-05"), person)
    ref = build_message(SMALL, person, MS, message_id="<x@example.org>", date_header=DATE)
    expected = email if email == PELE else BUECHER_ASCII
    for raw in (fast, ref):
        msg = parse(raw)
        assert msg["To"].addresses[0].addr_spec == expected and msg["To"].addresses[0].display_name == "Pelé"


# ---- names -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["x" * 3000, "Ada Lovelace " * 250, "张伟" * 1500])
def test_to_header_is_folded_and_limited_in_both_paths(name):
    person = Person(8, "long@example.org", name)
    fast = assemble(MessageTemplate.build(SMALL, MS, 1, "2024-12-05"), person)
    ref = build_message(SMALL, person, MS, message_id="<x@example.org>", date_header=DATE)
    assert max(len(line) for line in to_lines(fast)) <= 78
    assert max(len(line) for line in to_lines(ref)) <= 998
    for raw in (fast, ref):
        shown = parseaddr(header(raw, "To"))[0]  # strict RFC 2047 decoding (see tests.test_message.header)
        assert shown == " ".join(name.split())[: subscribers.NAME_MAX_CHARS - 1] + "…"


def test_long_name_is_refused_by_add_and_cut_by_import(db_url):
    with session_scope(db_url) as s, pytest.raises(subscribers.SubscriberError, match="name is 3,000 characters"):
        subscribers.add(s, "long@example.org", "x" * 3000)
    csv = "email,name,language,topics\nlong@example.org," + "y" * 3000 + ",en,\n"
    with session_scope(db_url) as s:
        report = subscribers.import_csv(s, csv)
    assert report.added == 1 and report.notes == ["row 2: long@example.org: name cut from 3,000 to 100 characters"]
    with session_scope(db_url) as s:
        assert subscribers.get(s, "long@example.org").name == "y" * 100


def test_a_name_stored_before_the_limit_still_gives_a_short_to_line(settings):
    """Rows written before the limit existed: the send path limits the header itself."""
    settings = with_delivery(settings)
    issue_id = make_issue(settings.database_url)
    with session_scope(settings.database_url) as s:
        # 200: the column's length on PostgreSQL (SQLite took the 3,000 characters of the report)
        s.execute(insert(Subscriber).values(**_raw_subscriber("old@example.org", "Q" * 200)))
    with session_scope(settings.database_url) as s:
        prepare_ledger(s, issue_id)
    with SmtpServer() as server:
        report = send(settings, issue_id, server)
        [received] = server.handler.received
    assert report.sent == 1
    assert max(len(line) for line in to_lines(received.data)) <= 78


def _raw_subscriber(email: str, name: str) -> dict:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    return {"email": email, "name": name, "language": "en", "topics": None, "status": "active",
            "created_at": now, "updated_at": now}  # fmt: skip


# ---- CSV encodings ---------------------------------------------------------------------------------------

PEOPLE_CSV = (
    "email,name,language,topics\n"
    "zhang@example.org,张伟,zh,3DGS\n"
    "li@example.org,李娜,bilingual,\n"
    "wang@example.org,欧阳 Lovelace,zh,NeRF;3DGS\n"
)
WESTERN_CSV = "email,name,language,topics\njose@example.org,José Peña Müller,en,\nfr@example.org,François Çelik,en,\n"


@pytest.mark.parametrize(
    ("data", "encoding", "csv"),
    [
        (PEOPLE_CSV.encode("gb18030"), "gb18030 (detected)", PEOPLE_CSV),
        (WESTERN_CSV.encode("latin-1"), "cp1252 (detected)", WESTERN_CSV),
        (codecs.BOM_UTF16_LE + PEOPLE_CSV.encode("utf-16-le"), "utf-16 (byte-order mark)", PEOPLE_CSV),
        (PEOPLE_CSV.encode("utf-8-sig"), "utf-8 (byte-order mark)", PEOPLE_CSV),
        (PEOPLE_CSV.replace("\n", "\r\n").encode(), "utf-8", PEOPLE_CSV),
    ],
    ids=["gb18030", "latin-1", "utf-16-bom", "utf-8-bom", "utf-8-crlf"],
)
def test_csv_in_any_spreadsheet_encoding_imports_names_intact(db_url, tmp_path, data, encoding, csv):
    path = tmp_path / "people.csv"
    path.write_bytes(data)
    with session_scope(db_url) as s:
        report = subscribers.import_file(s, path)
    assert report.encoding == encoding and report.rejected == []
    expected = {line.split(",")[0]: line.split(",")[1] for line in csv.splitlines()[1:]}
    with session_scope(db_url) as s:
        assert {sub.email: sub.name for sub in subscribers.active(s)} == expected


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8, "not a text file"),
        (b"PK\x03\x04\x14\x00\x06\x00" + bytes(range(256)) * 8, "an .xlsx workbook?"),
        (b"email,name\x00\x01\x02,language,topics\n", "not a text file (control characters)"),
    ],
    ids=["png", "xlsx", "nul-bytes"],
)
def test_binary_file_is_one_line(db_url, tmp_path, settings, data, reason):
    path = tmp_path / "people.csv"
    path.write_bytes(data)
    result = invoke("subscribers", "import", str(path), NEWSLETTER_DATABASE_URL=settings.database_url)
    assert result.exit_code == 1
    err = one_line_error(result)
    assert f"error: {path}: " in err and reason in err


def test_cli_import_says_which_encoding_it_used(tmp_path, settings):
    path = tmp_path / "people.csv"
    path.write_bytes(PEOPLE_CSV.encode("gb18030"))
    env = {"NEWSLETTER_DATABASE_URL": settings.database_url}
    first = invoke("subscribers", "import", str(path), **env)
    assert first.exit_code == 0 and "3 added" in first.output
    again = invoke("subscribers", "import", str(path), "--encoding", "gb18030", **env)
    out = " ".join(again.output.split())
    assert again.exit_code == 0 and "3 unchanged" in out and "(read as gb18030)" in out  # same names: no update
