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

import pytest

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.contracts.events import Argument, EventKind, ProcessInfo, RuntimeCallEvent
from stellaops_runtime.privacy import PrivacyFilter
from tests.linear_cost import growth


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


_PW = _b64("P8-sasl-pw")  # UDgtc2FzbC1wdw==
_USER = _b64("bob@corp.example")
_PLAIN = _b64("\0bob\0P8-sasl-pw")


def _buffer(text: str) -> str:
    ev = RuntimeCallEvent(
        kind=EventKind.KPROBE,
        timestamp_ns=1,
        node_name="n",
        process=ProcessInfo(pid=7, exec_id="e1", binary="/usr/bin/app"),
        function_name="sys_write",
        arguments=[Argument(label="buf", type="bytes_arg", value=text)],
    )
    PrivacyFilter(PrivacyConfig()).apply(ev)
    return ev.arguments[0].value


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
        f"{_PW}",  # no CRLF: a word, no protocol line
        f"{_PW}\n",
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
    ["AUTH LOGIN\r\n", "a AUTHENTICATE PLAIN\r\n", "334 UGFzc3dvcmQ6\n", "QUJD\r\n", "334 UGFzc3dvcmQ6\nC: "],
)
def test_its_cost_grows_linearly_with_a_hostile_field(unit: str) -> None:
    pf = PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 17))
    assert growth(pf.filter_field, unit) < 10, unit
