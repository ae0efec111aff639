"""Content-Transfer-Encoding of a text part, chosen by encoded size (#12).

base64 carries 3 bytes in 4 characters whatever they are; quoted-printable carries ASCII as is and each
non-ASCII byte in 3 characters. Mostly-ASCII English HTML is about a quarter smaller in quoted-printable,
CJK-heavy parts smaller in base64. The render stage sizes the HTML budget with the encoding the message stage
will use: both call `choose` / `encoded_size` here.
"""

from __future__ import annotations

import binascii

BASE64 = "base64"
QP = "quoted-printable"
_MAX_LINE = 76


def canonical(text: str) -> bytes:
    """UTF-8 with CRLF line breaks, as RFC 2045 wants text before encoding."""
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def base64_size(n_bytes: int, line_len: int = _MAX_LINE) -> int:
    """Size of `n_bytes` as a base64 MIME body: 4 chars per 3 bytes, CRLF after every line."""
    chars = 4 * ((n_bytes + 2) // 3)
    return chars + 2 * (-(-chars // line_len))


def qp_encode(data: bytes) -> bytes:
    """Quoted-printable with CRLF line breaks, lines of at most 76 characters, ending in a line break (a soft
    one when the data does not end in one), and no line starting with "." (SMTP would dot-stuff it)."""
    if not data:
        return b""
    out = binascii.b2a_qp(data, istext=True).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if not out.endswith(b"\r\n"):
        out += b"=\r\n"
    if b"\r\n." in out or out.startswith(b"."):
        out = b"\r\n".join(_no_leading_dot(line) for line in out.split(b"\r\n"))
    return out


def _no_leading_dot(line: bytes) -> bytes:
    """The line with a leading "." escaped, re-broken (softly) when that makes it longer than 76."""
    if not line.startswith(b"."):
        return line
    line = b"=2E" + line[1:]
    if len(line) <= _MAX_LINE:
        return line
    cut = _MAX_LINE - 1
    while b"=" in line[cut - 2 : cut]:  # never split an =XX escape
        cut -= 1
    return line[:cut] + b"=\r\n" + _no_leading_dot(line[cut:])


def choose(data: bytes) -> str:
    """The smaller encoding for these bytes."""
    return QP if len(qp_encode(data)) < base64_size(len(data)) else BASE64


def encoded_size(data: bytes, cte: str | None = None) -> int:
    """Size of `data` as a MIME body in `cte` (default: the smaller of the two)."""
    b64 = base64_size(len(data))
    if cte == BASE64:
        return b64
    qp = len(qp_encode(data))
    return qp if cte == QP else min(qp, b64)
