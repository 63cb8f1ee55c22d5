"""pgwire's SCRAM-SHA-256 and SASLprep: RFC 7677's test vector, and a server that cannot prove itself."""

from __future__ import annotations

import pytest

from stellaops_runtime import pgwire
from stellaops_runtime.pgwire.auth import Scram, md5_password, saslprep

NONCE = "rOprNGfwEbeRWgbNEkqO"
SERVER_FIRST = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
CLIENT_FINAL = (
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def test_rfc7677_vector() -> None:
    s = Scram("pencil", nonce=NONCE, user="user")
    assert s.first() == b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    assert s.final(SERVER_FIRST) == CLIENT_FINAL
    s.check(SERVER_FINAL)
    assert s.verified


def test_a_server_that_cannot_prove_the_password_is_refused() -> None:
    s = Scram("pencil", nonce=NONCE, user="user")
    s.final(SERVER_FIRST)
    with pytest.raises(pgwire.OperationalError, match="signature is wrong"):
        s.check(b"v=" + b"A" * 44)
    assert not s.verified
    with pytest.raises(pgwire.OperationalError, match="signature is wrong"):
        s.check(b"")
    with pytest.raises(pgwire.OperationalError, match="server reported an error"):
        s.check(b"e=invalid-proof")


def test_a_server_nonce_that_does_not_extend_ours_is_refused() -> None:
    with pytest.raises(pgwire.OperationalError, match="nonce"):
        Scram("pencil", nonce=NONCE).final(b"r=someoneelse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
    with pytest.raises(pgwire.OperationalError, match="nonce"):
        Scram("pencil", nonce=NONCE).final(b"r=" + NONCE.encode() + b",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
    with pytest.raises(pgwire.OperationalError, match="malformed"):
        Scram("pencil", nonce=NONCE).final(b"r=" + NONCE.encode() + b"x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0")


@pytest.mark.parametrize(
    ("password", "prepared"),
    [
        ("pencil", b"pencil"),
        ("a\x07b", b"a\x07b"),  # a control character: invalid, used raw (as PostgreSQL does)
        ("I\u00adX", b"IX"),  # soft hyphen: mapped to nothing
        ("a\u2002b", b"a b"),  # a non-ASCII space: a space
        ("\u2168", b"IX"),  # NFKC: ROMAN NUMERAL NINE
        ("\u00aa", b"a"),  # NFKC: FEMININE ORDINAL INDICATOR
        ("\u0627\u0031", "\u0627\u0031".encode()),  # RandAL first, not last: invalid -> raw
        ("\u0627\u0031\u0628", "\u0627\u0031\u0628".encode()),  # RandAL first and last: valid
        ("\u00ad", "\u00ad".encode()),  # nothing left after mapping: raw
        ("\U000e0001x", "\U000e0001x".encode()),  # a prohibited tagging character: raw
    ],
)
def test_saslprep_as_postgresql(password: str, prepared: bytes) -> None:
    assert saslprep(password) == prepared


def test_md5_payload() -> None:
    # md5(md5('secret' + 'alice') + salt), as PostgreSQL's pg_md5_encrypt computes it
    import hashlib

    inner = hashlib.md5(b"secretalice").hexdigest().encode()
    assert md5_password("alice", "secret", b"\x01\x02\x03\x04") == (
        b"md5" + hashlib.md5(inner + b"\x01\x02\x03\x04").hexdigest().encode() + b"\0"
    )
