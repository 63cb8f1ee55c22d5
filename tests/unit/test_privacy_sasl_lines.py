"""A SASL exchange's base64 credentials in a traced write: SMTP's and POP3's AUTH, IMAP's AUTHENTICATE.

Left by RP7 (session 45): ``AUTH LOGIN`` then the user's and the password's base64 lines, ``AUTH PLAIN``
then its base64 answer, IMAP's ``a1 AUTHENTICATE PLAIN <base64>`` (RFC 4959's initial response) and a
transcript of the exchange (swaks, a client's debug output: the server's ``334 UGFzc3dvcmQ6``,
"Password:", then the answer) were stored, and so was the password line a client library writes
alone (Python's smtplib writes ``AUTH LOGIN <user>`` and then the password's line by itself: no
state joins two writes). Each case runs through the filter the agent uses, as a traced buffer of a
write; the look-alikes (a protocol's one-word commands, HTTP chunk sizes, one word without CRLF)
stay. RFC 4954 (SMTP AUTH), RFC 5034 (POP3 SASL), RFC 9051 (IMAP AUTHENTICATE), RFC 4616 (PLAIN).
"""

from __future__ import annotations

import base64
import imaplib
import socket
import threading

import pytest

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.privacy import PrivacyFilter
from tests.linear_cost import growth
from tests.privacy_events import written_buffer as _buffer


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


_PW = _b64("P8-sasl-pw")  # UDgtc2FzbC1wdw==
_USER = _b64("bob@corp.example")
_PLAIN = _b64("\0bob\0P8-sasl-pw")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the whole exchange in one write (a script, a pipelining client)
        # (LOGIN's user, inline or on its own line, stays)
        (f"AUTH LOGIN\r\n{_USER}\r\n{_PW}\r\n", f"AUTH LOGIN\r\n{_USER}\r\n[REDACTED]\r\n"),
        (
            f"EHLO me\r\nauth login {_USER}\r\n{_PW}\r\nQUIT\r\n",
            f"EHLO me\r\nauth login {_USER}\r\n[REDACTED]\r\nQUIT\r\n",
        ),
        (f"AUTH PLAIN\r\n{_PLAIN}\r\n", "AUTH PLAIN\r\n[REDACTED]\r\n"),
        (f"a1 AUTHENTICATE PLAIN {_PLAIN}\r\n", "a1 AUTHENTICATE PLAIN [REDACTED]\r\n"),
        (f"a1 AUTHENTICATE PLAIN\r\n{_PLAIN}\r\n", "a1 AUTHENTICATE PLAIN\r\n[REDACTED]\r\n"),
        (f"A2 authenticate XOAUTH2 {_PW}\r\n", "A2 authenticate XOAUTH2 [REDACTED]\r\n"),
        # the password's line written alone (smtplib, after AUTH LOGIN <user>)
        (f"{_PW}\r\n", "[REDACTED]\r\n"),
        (f"{_PLAIN}\r\n", "[REDACTED]\r\n"),
        # a transcript: the server's prompt "Password:" (or "password:") in base64, then the answer
        (
            f" ~> AUTH LOGIN\n<~  334 VXNlcm5hbWU6\n ~> {_USER}\n<~  334 UGFzc3dvcmQ6\n ~> {_PW}\n"
            "<~  235 ok\n",
            f" ~> AUTH LOGIN\n<~  334 VXNlcm5hbWU6\n ~> {_USER}\n<~  334 UGFzc3dvcmQ6\n ~> [REDACTED]\n"
            "<~  235 ok\n",
        ),
        (f"S: 334 cGFzc3dvcmQ6\r\nC: {_PW}\r\n", "S: 334 cGFzc3dvcmQ6\r\nC: [REDACTED]\r\n"),
    ],
)
def test_a_sasl_answer_in_a_traced_buffer_loses_its_base64(text: str, expected: str) -> None:
    assert _buffer(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "STARTTLS\r\n",  # one-word commands: upper case, no digit
        "QUIT\r\n",
        "NOOP\r\n",
        "+OK\r\n",
        "1a2f\r\n",  # an HTTP chunk's size (hex, short)
        "a8\r\n",
        "password\r\n",  # one lower-case word
        f"{_PW}",  # no line end: a word, no protocol line (with LF: test_a_login_password_line_with_lf…)
        f"hello {_PW}\r\n",  # two words
        "AUTH LOGIN\r\nQUIT\r\n",  # no base64 answer
        "EHLO me\r\nMAIL FROM:<a@b>\r\n",
        "334 VXNlcm5hbWU6\r\n",  # the server's prompt
    ],
)
def test_look_alikes_stay(text: str) -> None:
    assert _buffer(text) == text


@pytest.mark.parametrize(
    "unit",
    [
        *("AUTH LOGIN\r\n", "a AUTHENTICATE PLAIN\r\n", "334 UGFzc3dvcmQ6\n", "QUJD\r\n"),
        "334 UGFzc3dvcmQ6\nC: ",
        # LF alone; a lone word decoded; an initial response anywhere
        *("AUTH LOGIN\n", "AUTH PLAIN QUJD \n", "QUJD", "AGJvYgBQ", "x AUTH PLAIN AGJvYgBQ "),
    ],
)
def test_its_cost_grows_linearly_with_a_hostile_field(unit: str) -> None:
    pf = PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 17))
    assert growth(pf.filter_field, unit) < 10, unit


class _Recording:
    """A socket whose every sendall is one traced write (as Tetragon's write() probe sees it)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.writes: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self._sock.sendall(data)

    def __getattr__(self, name: str) -> object:
        return getattr(self._sock, name)


def _imap_server(listener: socket.socket) -> None:
    """Greets, answers CAPABILITY, asks for the AUTHENTICATE answer, then accepts it (RFC 9051)."""
    conn, _ = listener.accept()
    with conn, conn.makefile("rb") as rf:
        conn.sendall(b"* OK ready\r\n")
        for line in rf:
            tag = line.split(b" ", 1)[0]
            if b"CAPABILITY" in line.upper():
                conn.sendall(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2\r\n" + tag + b" OK done\r\n")
            elif b"AUTHENTICATE" in line.upper():
                conn.sendall(b"+ \r\n")
                rf.readline()  # the answer, then its CRLF
                conn.sendall(tag + b" OK authenticated\r\n")
            elif b"LOGOUT" in line.upper():
                conn.sendall(b"* BYE\r\n" + tag + b" OK bye\r\n")
                return


@pytest.mark.parametrize(
    ("mechanism", "answer"),
    [
        ("PLAIN", "\0bob\0P8-imap-pw"),
        ("XOAUTH2", "user=bob@corp.example\1auth=Bearer ya29.P8-imap-token\1\1"),
        ("OAUTHBEARER", "n,a=bob@corp.example,\1auth=Bearer ya29.P8-imap-token\1\1"),
    ],
)
def test_imaplibs_authenticate_answer_written_without_its_crlf_loses_its_base64(
    mechanism: str, answer: str
) -> None:
    # Python's imaplib sends the AUTHENTICATE answer and its CRLF as two writes (imaplib._command:
    # send(literal); send(CRLF)): the base64 word arrives alone, with no CRLF (Gmail's XOAUTH2 path)
    listener = socket.create_server(("127.0.0.1", 0))
    server = threading.Thread(target=_imap_server, args=(listener,), daemon=True)
    server.start()
    client = imaplib.IMAP4("127.0.0.1", listener.getsockname()[1], timeout=5)
    rec = _Recording(client.sock)
    client.sock = rec  # type: ignore[assignment]
    client.authenticate(mechanism, lambda _challenge: answer)
    client.logout()
    server.join(5)
    listener.close()
    sent = _b64(answer)
    assert sent.encode() in rec.writes  # the word is written alone
    for write in rec.writes:
        assert sent not in _buffer(write.decode())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # LF only: a script piping the exchange into `openssl s_client -crlf` or `nc -C`
        (f"AUTH PLAIN {_PLAIN}\n", "AUTH PLAIN [REDACTED]\n"),
        (f"a1 AUTHENTICATE PLAIN {_PLAIN}\n", "a1 AUTHENTICATE PLAIN [REDACTED]\n"),
        (
            f"EHLO x\nAUTH LOGIN\n{_USER}\n{_PW}\nQUIT\n",
            f"EHLO x\nAUTH LOGIN\n{_USER}\n[REDACTED]\nQUIT\n",
        ),
        (f"AUTH LOGIN {_USER}\n{_PW}\n", f"AUTH LOGIN {_USER}\n[REDACTED]\n"),
        # a blank before the line's end
        (f"AUTH PLAIN {_PLAIN} \r\n", "AUTH PLAIN [REDACTED] \r\n"),
        # the initial response anywhere else, when it decodes to a SASL answer
        (f"AUTH PLAIN {_PLAIN}\r", "AUTH PLAIN [REDACTED]\r"),
        (f"printf 'AUTH PLAIN {_PLAIN}\\r\\n'", "printf 'AUTH PLAIN [REDACTED]\\r\\n'"),
        # a SASL PLAIN or bearer answer alone, whatever ends it
        (_PLAIN, "[REDACTED]"),
        (f"{_PLAIN}\n", "[REDACTED]\n"),
    ],
)
def test_a_sasl_answer_framed_otherwise_loses_its_base64(text: str, expected: str) -> None:
    assert _buffer(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "/usr/local/bin/python3",  # a path is base64's alphabet: it decodes to no SASL answer
        "/usr/bin/ls\n",
        # a four-letter word and CRLF written alone (a line a server or a program prints): base64 of
        # a password of 3 characters at most
        *("Done\r\n", "True\r\n", "None\r\n", "Main\r\n"),
        "ReadFile",  # a function's name, 8 letters
        "Done\n",
        _b64("hello world"),  # base64 of no credential
        "Makefile\n",  # a word with LF alone that decodes to no text
        "ReadFile\nMakefile\n",
    ],
)
def test_a_lone_word_that_decodes_to_no_sasl_answer_stays(text: str) -> None:
    assert _buffer(text) == text


def test_a_long_bearer_answer_cut_by_the_argument_limit_still_goes() -> None:
    # an Entra ID access token (a JWT of ~2 KB) as XOAUTH2: its base64 passes maxArgumentBytes
    token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9." + "P8cut" * 600
    word = _b64(f"user=bob@corp.example\1auth=Bearer {token}\1\1")
    pf = PrivacyFilter(PrivacyConfig(max_argument_bytes=1001))
    out = pf.filter_field(word)
    assert out.startswith("[REDACTED]") and "dXNlcj1ib2" not in out, out[:80]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # LOGIN's password line alone with LF (a script's printf into ``nc -C`` or ``openssl s_client
        # -crlf``, one write per line): RP8's second known limit, kept before
        (f"{_PW}\n", "[REDACTED]\n"),
        (f"{_b64('hunter2!')}\n", "[REDACTED]\n"),
        # the user's line and the password's in one write with no AUTH (the command written apart)
        (f"{_USER}\r\n{_PW}\r\n", f"{_USER}\r\n[REDACTED]\r\n"),
        (f"{_USER}\n{_PW}\n", f"{_USER}\n[REDACTED]\n"),
        (f"{_b64('bob')}\n{_PW}", f"{_b64('bob')}\n[REDACTED]"),
    ],
)
def test_a_login_password_line_with_lf_or_after_the_users_line_loses_it(text: str, expected: str) -> None:
    assert _buffer(text) == expected


def test_a_word_decoding_to_text_by_chance_is_taken_too() -> None:
    # the price of the LF-alone rule: a few words decode to printable ASCII (``Pygments``, ``endsWith``
    # of ~160,000 words in Python's library and a dictionary, 9 took): over-redaction of a lone line
    assert _buffer("Pygments\n") == "[REDACTED]\n"
    assert _buffer("Pygments\nextra words\n") == "Pygments\nextra words\n"


def test_the_two_line_form_costs_linearly() -> None:
    pf = PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 17))
    for unit in ("QUJD", "QUJD\n", "QUJDRA==", "QUJD\r\nQUJD"):
        assert growth(pf.filter_field, unit) < 10, unit
