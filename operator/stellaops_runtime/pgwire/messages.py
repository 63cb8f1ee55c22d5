"""Encoding and decoding of PostgreSQL frontend/backend protocol 3.0 messages: bytes only, no I/O.

Written from the protocol documentation ("Message Formats" in the PostgreSQL manual). Every
backend message is a type byte and a big-endian int32 length that counts itself; a length under 4
or over :data:`MAX_LENGTH` (1 GiB, PostgreSQL's own bound on a message) is a protocol violation,
reported as :class:`ProtocolViolation` so the connection can be marked broken, never a huge
allocation or a wait for bytes that will not come.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

PROTOCOL_3_0 = 196608
SSL_REQUEST_CODE = 80877103
CANCEL_REQUEST_CODE = 80877102
MAX_LENGTH = 1 << 30

_I = struct.Struct("!i")
_H = struct.Struct("!h")
_UH = struct.Struct("!H")  # Parse's and Bind's counts: unsigned, as the server reads them
MAX_PARAMETERS = 65535
_II = struct.Struct("!ii")
_CI = struct.Struct("!ci")
_HEADER = struct.Struct("!ci")


class ProtocolViolation(Exception):
    """The server sent bytes that are not a valid message here."""


# -- frontend messages ---------------------------------------------------------------------------


def startup(params: dict[str, str]) -> bytes:
    body = b"".join(_cstr(k) + _cstr(v) for k, v in params.items()) + b"\0"
    return _I.pack(len(body) + 8) + _I.pack(PROTOCOL_3_0) + body


def ssl_request() -> bytes:
    return _II.pack(8, SSL_REQUEST_CODE)


def cancel_request(pid: int, key: bytes) -> bytes:
    return _II.pack(12 + len(key), CANCEL_REQUEST_CODE) + _I.pack(pid) + key


def password(data: bytes) -> bytes:
    """PasswordMessage (also SASLInitialResponse's and SASLResponse's type 'p')."""
    return _msg(b"p", data)


def sasl_initial(mechanism: str, data: bytes) -> bytes:
    return _msg(b"p", _cstr(mechanism) + _I.pack(len(data)) + data)


def parse(sql: str, oids: Sequence[int]) -> bytes:
    body = b"\0" + _cstr(sql) + _UH.pack(len(oids)) + b"".join(_I.pack(o) for o in oids)
    return _msg(b"P", body)


def bind(values: Sequence[bytes | None]) -> bytes:
    """Bind the unnamed statement to the unnamed portal: text parameters, text results."""
    parts = [b"\0\0\0\0", _UH.pack(len(values))]
    for v in values:
        if v is None:
            parts.append(b"\xff\xff\xff\xff")
        else:
            parts.append(_I.pack(len(v)))
            parts.append(v)
    parts.append(b"\0\0")
    return _msg(b"B", b"".join(parts))


DESCRIBE_PORTAL = b"D\0\0\0\x06P\0"
EXECUTE = b"E\0\0\0\x09\0\0\0\0\0"
SYNC = b"S\0\0\0\x04"
TERMINATE = b"X\0\0\0\x04"
COPY_DONE = b"c\0\0\0\x04"


def query(sql: str) -> bytes:
    return _msg(b"Q", _cstr(sql))


def copy_data(data: bytes) -> bytes:
    return _CI.pack(b"d", len(data) + 4) + data


def copy_fail(reason: str) -> bytes:
    """CopyFail: ``reason`` is any exception's text (a lone surrogate of a surrogateescape-decoded
    path included), which must not keep the COPY from being ended."""
    return _msg(b"f", reason.replace("\0", " ").encode("utf-8", "backslashreplace") + b"\0")


def _msg(kind: bytes, body: bytes) -> bytes:
    return _CI.pack(kind, len(body) + 4) + body


def _cstr(s: str) -> bytes:
    b = s.encode()
    if b"\0" in b:
        raise ValueError("a NUL character cannot be sent in a protocol string")
    return b + b"\0"


# -- backend messages ----------------------------------------------------------------------------


def header(data: bytes) -> tuple[bytes, int]:
    """A backend message's type byte and the length of its body (after the 5-byte header)."""
    kind, length = _HEADER.unpack(data)
    if length < 4 or length > MAX_LENGTH:
        raise ProtocolViolation(f"message {kind!r} with invalid length {length}")
    return kind, length - 4


def fields(body: bytes) -> dict[str, str]:
    """ErrorResponse/NoticeResponse: field type byte -> value."""
    out: dict[str, str] = {}
    pos = 0
    while pos < len(body) and body[pos] != 0:
        end = body.find(b"\0", pos + 1)
        if end < 0:
            raise ProtocolViolation("unterminated error field")
        out[chr(body[pos])] = body[pos + 1 : end].decode("utf-8", "replace")
        pos = end + 1
    return out


def auth_request(body: bytes) -> tuple[int, bytes]:
    """Authentication*: the request code and the rest of its body."""
    if len(body) < 4:
        raise ProtocolViolation("short authentication request")
    return _I.unpack_from(body)[0], body[4:]


def parameter_status(body: bytes) -> tuple[str, str]:
    parts = body.split(b"\0")
    if len(parts) != 3:
        raise ProtocolViolation("malformed ParameterStatus")
    return parts[0].decode("utf-8", "replace"), parts[1].decode("utf-8", "replace")


def backend_key(body: bytes) -> tuple[int, bytes]:
    """BackendKeyData: the backend's pid and its secret key (4 bytes in 3.0, longer in 3.2)."""
    if len(body) < 8:
        raise ProtocolViolation("short BackendKeyData")
    return _I.unpack_from(body)[0], body[4:]


def row_description(body: bytes) -> list[tuple[str, int]]:
    """RowDescription: (column name, type OID) per column."""
    try:
        (n,) = _H.unpack_from(body)
        pos = 2
        cols = []
        for _ in range(n):
            end = body.index(b"\0", pos)
            name = body[pos:end].decode("utf-8", "replace")
            (oid,) = _I.unpack_from(body, end + 7)
            cols.append((name, oid & 0xFFFFFFFF))
            pos = end + 19
    except (struct.error, ValueError) as e:
        raise ProtocolViolation(f"malformed RowDescription: {e}") from None
    if pos != len(body):
        raise ProtocolViolation("malformed RowDescription: trailing bytes")
    return cols


def data_row(body: bytes) -> list[bytes | None]:
    """DataRow: each column's bytes (text format), None for NULL."""
    try:
        (n,) = _H.unpack_from(body)
        pos = 2
        out: list[bytes | None] = []
        unpack = _I.unpack_from
        for _ in range(n):
            (length,) = unpack(body, pos)
            pos += 4
            if length == -1:
                out.append(None)
                continue
            if length < 0 or pos + length > len(body):
                raise ProtocolViolation("malformed DataRow: bad column length")
            out.append(body[pos : pos + length])
            pos += length
    except struct.error:
        raise ProtocolViolation("malformed DataRow: truncated") from None
    if pos != len(body):
        raise ProtocolViolation("malformed DataRow: trailing bytes")
    return out


def command_tag(body: bytes) -> tuple[str, int]:
    """CommandComplete: the tag and its row count (-1 when the tag has none)."""
    tag = body.rstrip(b"\0").decode("ascii", "replace")
    last = tag.rsplit(" ", 1)[-1]
    counted = {"INSERT", "UPDATE", "DELETE", "SELECT", "MOVE", "FETCH", "COPY", "MERGE"}
    if tag.split(" ", 1)[0] in counted and last.isdigit():
        return tag, int(last)
    return tag, -1


def copy_in_response(body: bytes) -> tuple[int, int]:
    """CopyInResponse: the overall format (0 text, 1 binary) and the number of columns."""
    if len(body) < 3:
        raise ProtocolViolation("short CopyInResponse")
    return body[0], _H.unpack_from(body, 1)[0]
