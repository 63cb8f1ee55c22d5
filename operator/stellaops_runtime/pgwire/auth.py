"""Password authentication for pgwire: cleartext, MD5 and SCRAM-SHA-256 (RFC 5802/7677).

SCRAM's password goes through SASLprep (RFC 4013) as PostgreSQL's own ``pg_saslprep`` does it:
a password that is not valid for SASLprep (a prohibited or unassigned character, bad
bidirectional text, nothing left after mapping) is used as its raw UTF-8 bytes, since that is
what the server hashed when the password was set. The server must prove it knows the password
(its ServerSignature in the final message); one that cannot is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from stellaops_runtime.pgwire.errors import OperationalError, UnsupportedAuthentication

MECHANISM = "SCRAM-SHA-256"
# PostgreSQL's default is 4096 (scram_iterations); PBKDF2 is one uninterruptible C call, ~0.5 s per
# million iterations here: a server asking for more is refused rather than obeyed past any timeout.
MAX_ITERATIONS = 1_000_000
# Above this no client is given the count: libpq computes any count in one uninterruptible call too
# (20,000,000 held psycopg.connect 10.7 s past connect_timeout=2), so handing such a server to
# psycopg (UnsupportedAuthentication) would move the hang there and keep the store on psycopg.
MAX_LIBPQ_ITERATIONS = 10_000_000


def md5_password(user: str, password: str, salt: bytes) -> bytes:
    """The MD5 PasswordMessage payload: 'md5' + md5(md5(password + user) + salt), NUL-terminated."""
    inner = hashlib.md5(password.encode() + user.encode()).hexdigest().encode()
    return b"md5" + hashlib.md5(inner + salt).hexdigest().encode() + b"\0"


def saslprep(password: str) -> bytes:
    """The bytes SCRAM hashes for this password, as PostgreSQL's pg_saslprep chooses them."""
    raw = password.encode()
    if password.isascii():
        # ASCII maps to itself; a control character makes it invalid, and then it is used raw:
        # either way the raw bytes.
        return raw
    prepared = _saslprep_strict(password)
    return raw if prepared is None else prepared.encode()


def _saslprep_strict(s: str) -> str | None:
    import stringprep  # only for a non-ASCII password: ~0.3 MB with unicodedata
    import unicodedata

    mapped = "".join(" " if stringprep.in_table_c12(c) else c for c in s if not stringprep.in_table_b1(c))
    norm = unicodedata.normalize("NFKC", mapped)
    if not norm:
        return None
    prohibited = (
        stringprep.in_table_c12,
        stringprep.in_table_c21,
        stringprep.in_table_c22,
        stringprep.in_table_c3,
        stringprep.in_table_c4,
        stringprep.in_table_c5,
        stringprep.in_table_c6,
        stringprep.in_table_c7,
        stringprep.in_table_c8,
        stringprep.in_table_c9,
        stringprep.in_table_a1,
    )
    if any(test(c) for c in norm for test in prohibited):
        return None
    if any(stringprep.in_table_d1(c) for c in norm):
        if any(stringprep.in_table_d2(c) for c in norm):
            return None
        if not (stringprep.in_table_d1(norm[0]) and stringprep.in_table_d1(norm[-1])):
            return None
    return norm


class Scram:
    """One SCRAM-SHA-256 exchange, without channel binding (gs2 header ``n,,``)."""

    def __init__(self, password: str, nonce: str | None = None, user: str = "") -> None:
        """``user`` stays empty against PostgreSQL (it takes the startup packet's, as libpq sends)."""
        self._password = saslprep(password)
        self._nonce = nonce or base64.b64encode(os.urandom(18)).decode()
        self._first_bare = f"n={user},r={self._nonce}"
        self._server_signature: bytes | None = None
        self.verified = False

    def first(self) -> bytes:
        """client-first-message."""
        return ("n,," + self._first_bare).encode()

    def final(self, server_first: bytes) -> bytes:
        """client-final-message for the server-first-message."""
        attrs = _attributes(server_first)
        nonce, salt_b64, iterations = attrs.get("r", ""), attrs.get("s"), attrs.get("i", "")
        if not nonce.startswith(self._nonce) or len(nonce) <= len(self._nonce):
            raise OperationalError("SCRAM: the server's nonce does not extend the client's")
        # ASCII digits only ('²' is a digit to isdigit, not to int), and few of them (int() refuses
        # more than 4300): anything else is as malformed as no count at all.
        digits = iterations.isascii() and iterations.isdigit() and len(iterations) <= 12
        if salt_b64 is None or not digits or int(iterations) < 1:
            raise OperationalError("SCRAM: malformed server-first-message")
        try:
            salt = base64.b64decode(salt_b64, validate=True)
        except ValueError:
            raise OperationalError("SCRAM: malformed salt") from None
        if int(iterations) > MAX_LIBPQ_ITERATIONS:
            raise OperationalError(
                f"SCRAM: the server asks for {iterations} PBKDF2 iterations: refused"
                f" (more than {MAX_LIBPQ_ITERATIONS}, which libpq would compute past any timeout)"
            )
        if int(iterations) > MAX_ITERATIONS:
            raise UnsupportedAuthentication(
                f"SCRAM: the server asks for {iterations} PBKDF2 iterations"
                f" (pgwire computes at most {MAX_ITERATIONS})"
            )
        salted = hashlib.pbkdf2_hmac("sha256", self._password, salt, int(iterations))
        client_key = _hmac(salted, b"Client Key")
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = f"c=biws,r={nonce}"
        auth_message = f"{self._first_bare},{server_first.decode()},{without_proof}".encode()
        signature = _hmac(stored_key, auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        self._server_signature = _hmac(_hmac(salted, b"Server Key"), auth_message)
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def check(self, server_final: bytes) -> None:
        """Verify the server-final-message; raises unless the server proved it knows the password."""
        attrs = _attributes(server_final)
        if "e" in attrs:
            raise OperationalError(f"SCRAM: the server reported an error: {attrs['e']}")
        try:
            got = base64.b64decode(attrs.get("v", ""), validate=True)
        except ValueError:
            got = b""
        if self._server_signature is None or not hmac.compare_digest(got, self._server_signature):
            raise OperationalError("SCRAM: the server's signature is wrong (it did not prove the password)")
        self.verified = True


def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


def _attributes(message: bytes) -> dict[str, str]:
    try:
        text = message.decode()
    except UnicodeDecodeError:
        raise OperationalError("SCRAM: the server's message is not UTF-8") from None
    out: dict[str, str] = {}
    for part in text.split(","):
        if len(part) >= 2 and part[1] == "=":
            out.setdefault(part[0], part[2:])
    return out
