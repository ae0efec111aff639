"""SMTP with STARTTLS, with implicit TLS (`smtps://`) and with AUTH PLAIN / AUTH LOGIN, against a real server.

The server is aiosmtpd (tests/smtp_server.py) with a certificate issued by a throwaway CA made here with
`cryptography`; the client is the configured transport (`NEWSLETTER_SMTP_URL`), exactly as `newsletter send`
builds it, trusting that CA through the URL's `?cafile=` option. The server requires TLS before AUTH and AUTH
before MAIL, and records, per accepted message, whether its session was encrypted and authenticated: a
message that arrived any other way fails the test. An untrusted certificate and a wrong password must each be
one clear line, with nothing sent and nothing marked sent.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import subprocess
import sys
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from newsletter.config import Settings
from newsletter.pipeline.send import send_date
from tests.conftest import ROOT, TEST_TOKEN_SECRET
from tests.smtp_server import FaultyHandler, SmtpServer
from tests.test_deliver import DAY, add_subscribers, ledger, make_issue, with_delivery

# Implicit TLS: aiosmtpd counts only STARTTLS as TLS for AUTH and warns; the session is encrypted (recorded).
pytestmark = [
    pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning"),
    pytest.mark.usefixtures("token_secret"),  # sending over SMTP requires a real link secret
]

USER = "digest@example.org"
PASSWORD = "s3cret p@ss:w/rd%"  # every character that must be percent-encoded in the URL
WRONG = "not-the-Passw0rd"
MECHANISMS = ("PLAIN", "LOGIN")


# ---- a throwaway CA and a server certificate for 127.0.0.1 ----------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca_file: Path  # what the client trusts (PEM)
    cert_file: Path  # server certificate + key (PEM), for 127.0.0.1 only
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    """A CA (CA:TRUE, keyCertSign) and a leaf for IP 127.0.0.1 (serverAuth), valid for a day."""
    folder = tmp_path_factory.mktemp("pki")
    now = datetime.now(UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("paper-digest test CA"))
        .issuer_name(_name("paper-digest test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pki = Pki(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    pki.ca_file.write_bytes(_pem(ca))
    pki.cert_file.write_bytes(_pem(leaf))
    pki.key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return pki


def _usage(cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign, key_cert_sign=cert_sign, crl_sign=cert_sign, content_commitment=False,
        key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
        decipher_only=False,
    )  # fmt: skip


# ---- the server side: who authenticated how, and over what ----------------------------------------------


def encrypted(server) -> bool:
    """Whether this aiosmtpd session runs over TLS (after STARTTLS, or from the first byte)."""
    return server.transport.get_extra_info("ssl_object") is not None


@dataclass
class Authenticator:
    """aiosmtpd `authenticator=`: accepts USER/PASSWORD and records (mechanism, login, accepted, over TLS)."""

    attempts: list[tuple[str, str, bool, bool]] = field(default_factory=list)

    def __call__(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data == (USER.encode(), PASSWORD.encode())
        login = auth_data.login.decode() if isinstance(auth_data, LoginPassword) else ""
        self.attempts.append((mechanism, login, ok, encrypted(server)))
        return AuthResult(success=ok, handled=False)


@dataclass
class RecordingHandler(FaultyHandler):
    """Accepts every message and notes, per message, whether its session was encrypted and authenticated."""

    sessions: list[tuple[bool, bool]] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope):
        self.sessions.append((encrypted(server), bool(session.authenticated)))
        return await super().handle_DATA(server, session, envelope)


def tls_server(pki: Pki, mode: str, auth: Authenticator, exclude: tuple[str, ...] = ()) -> SmtpServer:
    """STARTTLS required before anything (mode "starttls"), or TLS from the first byte (mode "ssl"); AUTH
    required before MAIL. The authenticator and the handler record whether each session was encrypted."""
    options = {"authenticator": auth, "auth_required": True, "auth_exclude_mechanism": list(exclude)}
    if mode == "starttls":
        options.update(tls_context=pki.server_context(), require_starttls=True)
    else:  # aiosmtpd counts only STARTTLS as "TLS" for AUTH: the session is TLS from its first byte here
        options.update(ssl_context=pki.server_context(), auth_require_tls=False)
    return SmtpServer(RecordingHandler(), **options)


def smtp_url(server: SmtpServer, mode: str, pki: Pki | None, password: str = PASSWORD, host="127.0.0.1") -> str:
    scheme, query = ("smtps", "") if mode == "ssl" else ("smtp", "tls=starttls&")
    query += "timeout=10" + (f"&cafile={quote(str(pki.ca_file))}" if pki else "")
    return f"{scheme}://{quote(USER, safe='')}:{quote(password, safe='')}@{host}:{server.port}?{query}"


def prepared(settings: Settings, n: int) -> tuple[Settings, int, list[str]]:
    """An issue of DAY and n subscribers; batches of 4, so n > 4 takes several connections (several logins)."""
    settings = with_delivery(settings, batch_size=4)
    issue_id = make_issue(settings.database_url)
    return settings, issue_id, add_subscribers(settings.database_url, n)


# ---- tests ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", MECHANISMS)
@pytest.mark.parametrize("mode", ["starttls", "ssl"])
def test_tls_and_auth_deliver_every_message(pki, sqlite_settings, monkeypatch, mode, mechanism):
    """The server offers one AUTH mechanism (the other excluded), so the client must speak exactly that one."""
    settings, issue_id, emails = prepared(sqlite_settings, 6)
    auth = Authenticator()
    other = tuple(m for m in MECHANISMS if m != mechanism)
    with tls_server(pki, mode, auth, exclude=other) as server:
        monkeypatch.setenv("NEWSLETTER_SMTP_URL", smtp_url(server, mode, pki))
        report = send_date(settings, DAY)  # the configured transport, as `newsletter send` uses it
        counts = server.counts()
        sessions = server.handler.sessions
    assert (report.sent, report.ok) == (6, True), report.summary()
    assert counts == dict.fromkeys(emails, 1)
    assert sessions == [(True, True)] * 6  # every message over TLS, in an authenticated session
    assert auth.attempts == [(mechanism, USER, True, True)] * 2  # one login per batch connection, over TLS
    assert {status for status, _ in ledger(settings.database_url, issue_id).values()} == {"sent"}


@pytest.mark.parametrize(
    ("mode", "host", "trusted", "reason"),
    [
        ("starttls", "127.0.0.1", False, "unable to get local issuer certificate"),
        ("ssl", "127.0.0.1", False, "unable to get local issuer certificate"),
        ("ssl", "localhost", True, "Hostname mismatch"),  # the CA is trusted, the name is not the certificate's
    ],
)
def test_an_untrusted_certificate_stops_the_run_before_anything_is_sent(
    pki, sqlite_settings, monkeypatch, mode, host, trusted, reason
):
    """Verification is on by default (the system's CA store does not know our CA) and checks the host name."""
    settings, issue_id, _ = prepared(sqlite_settings, 3)
    auth = Authenticator()
    with tls_server(pki, mode, auth) as server:
        monkeypatch.setenv("NEWSLETTER_SMTP_URL", smtp_url(server, mode, pki if trusted else None, host=host))
        report = send_date(settings, DAY)
        assert server.counts() == {}
    assert auth.attempts == []  # the password never reached a server we could not verify
    assert report.sent == 0 and report.reconnects == 0  # not retried: a retry cannot fix it
    assert report.stopped.startswith("transport unusable: smtp ") and f"certificate not trusted: {reason}" in (
        report.stopped
    )
    assert {status for status, _ in ledger(settings.database_url, issue_id).values()} == {"pending"}


def _cli(settings: Settings, url: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(
        PYTHONPATH=str(ROOT),  # this checkout, not whatever `newsletter` is installed
        NEWSLETTER_CONFIG=str(ROOT / "newsletter.toml"),
        NEWSLETTER_DATABASE_URL=settings.database_url,
        NEWSLETTER_SMTP_URL=url,
        NEWSLETTER_TOKEN_SECRET=TEST_TOKEN_SECRET,
    )
    command = [sys.executable, "-m", "newsletter", "send", "--date", DAY.isoformat(), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args", [(), ("--test-recipient", "proof@example.org")], ids=["send", "test-copy"])
def test_a_wrong_password_is_one_clear_line_and_nothing_is_sent(pki, sqlite_settings, args):
    """`newsletter send` with a wrong password: exit 1, one line naming the refusal (never the password), no
    traceback, and every ledger row still pending (the test copy bypasses the ledger: still nothing sent)."""
    settings, issue_id, _ = prepared(sqlite_settings, 3)
    auth = Authenticator()
    with tls_server(pki, "starttls", auth) as server:
        proc = _cli(settings, smtp_url(server, "starttls", pki, password=WRONG), *args)
        assert server.counts() == {}
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert "Traceback" not in output and WRONG not in output
    [line] = [line for line in output.splitlines() if "authentication refused" in line]
    assert f"smtp {USER}@127.0.0.1:{server.port} (tls=starttls): authentication refused: 535" in line
    assert auth.attempts and all(not ok and tls for _, _, ok, tls in auth.attempts)
    rows = ledger(settings.database_url, issue_id)
    assert [status for status, _ in rows.values()] == ([] if args else ["pending"] * 3)


def test_cafile_is_read_from_the_url():
    from newsletter.deliver.transport import SmtpTransport, parse_smtp_url

    cfg = parse_smtp_url("smtps://h?cafile=%2Fetc%2Frelay-ca.pem")
    assert cfg.cafile == "/etc/relay-ca.pem" and parse_smtp_url("smtps://h").cafile is None
    assert replace(cfg, cafile=None) == parse_smtp_url("smtps://h")
    with pytest.raises(FileNotFoundError):  # the file is really used, not ignored
        SmtpTransport(cfg).ssl_context  # noqa: B018
