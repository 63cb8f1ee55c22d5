"""Passwords in traced write buffers that no key names: protocol lines and two configuration lines.

P7's first known limit (session 45): a socket write of FTP's or POP3's ``PASS x``, IMAP's ``a1 LOGIN
u x``, Redis's ``AUTH x`` (inline, or as the RESP array every client library sends), and a file
write of a ``.pgpass`` line or of redis.conf's ``requirepass x`` were stored whole. Each case runs
through the filter the agent uses, as a traced buffer argument of a write; the look-alikes after
them (test output, IPv6 addresses, /etc/passwd and /etc/group lines, comments) must stay.
"""

from __future__ import annotations

import pytest

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.privacy import PrivacyFilter
from tests.linear_cost import growth
from tests.privacy_events import written_buffer as _buffer

_PW = "Rp7-wire"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        # https://www.postgresql.org/docs/current/libpq-pgpass.html (hostname:port:database:username:password)
        (f"db.corp:5432:app:bob:{_PW}\n", _PW),
        (f"*:*:*:postgres:{_PW}", _PW),
        (f"localhost:5432:*:bob:{_PW}\\:x\nh2:6432:db:u:{_PW}2\n", f"{_PW}\\:x"),
        (f"h:5432:db:u:{_PW} with blanks\r\n", f"{_PW} with blanks"),
        # https://redis.io/docs/latest/operate/oss_and_stack/management/config-file/ (requirepass, masterauth)
        (f"bind 0.0.0.0\nrequirepass {_PW}\nport 6379\n", _PW),
        (f"  masterauth {_PW}\n", _PW),
        (f'REQUIREPASS "{_PW} x"\n', f'"{_PW} x"'),
        # RFC 959 / RFC 1939 (PASS), RFC 9051 (LOGIN), each line ending in CRLF
        (f"USER bob\r\nPASS {_PW}\r\n", _PW),
        (f"a001 LOGIN bob {_PW}\r\n", _PW),
        (f'a1 login "bob smith" "{_PW} x"\r\n', f'"{_PW} x"'),
        # https://redis.io/docs/latest/commands/auth/ inline and as RESP (a user first too; HELLO's AUTH)
        (f"AUTH {_PW}\r\n", _PW),
        (f"AUTH default {_PW}\r\n", f"default {_PW}"),
        (f"*2\r\n$4\r\nAUTH\r\n$8\r\n{_PW}\r\n*1\r\n$4\r\nPING\r\n", _PW),
        (f"*3\r\n$4\r\nauth\r\n$7\r\ndefault\r\n$8\r\n{_PW}\r\n", _PW),
        (f"*5\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$4\r\nAUTH\r\n$3\r\nbob\r\n$8\r\n{_PW}\r\n", _PW),
    ],
)
def test_a_password_line_in_a_traced_buffer_loses_its_password(text: str, secret: str) -> None:
    out = _buffer(text)
    assert out == text.replace(secret, "[REDACTED]", 1) or _PW not in out, out
    assert _PW not in out


@pytest.mark.parametrize(
    "text",
    [
        "PASS\n",  # Go's test summary
        "PASS\nok  \tpkg\t0.01s\n",
        "PASS tests/unit/a.py\n",  # without CRLF: no protocol line
        "2001:1234:5678:9abc:def0:1:2:3 host6\n",
        "fe80::1:2:3\n",
        "root:x:0:0:root:/root:/bin/bash\ndocker:x:999:bob\n",
        "system:serviceaccount:kube-system:default\n",
        "12:34:56\n",
        "# requirepass foobared\n",
        "requirepass\n",
        "AUTH\r\n",
        "*2\r\n$3\r\nGET\r\n$4\r\nAUTH\r\n",
        "a1 SELECT INBOX\r\n",
    ],
)
def test_look_alikes_stay(text: str) -> None:
    assert _buffer(text) == text


@pytest.mark.parametrize(
    "unit", ["a:1:b:c:", "requirepass ", "PASS x\r", 'a1 LOGIN "b', "$4\r\nAUTH\r\n$1\r\n", "*2\r\n"]
)
def test_its_cost_grows_linearly_with_a_hostile_field(unit: str) -> None:
    ratio = growth(PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 20)).redact_text, unit)
    assert ratio < 10, f"{unit!r}: 64 KiB costs {ratio:.1f}x the 16 KiB field"


@pytest.mark.parametrize(
    "text",
    [
        # RFC 9051 literals: a password sent as {N} (or LITERAL+'s {N+}, no wait for "+": one write);
        # the user as a literal too (RP8)
        f"a1 LOGIN bob {{{len(_PW)}+}}\r\n{_PW}\r\n",
        f"a1 LOGIN bob {{{len(_PW)}}}\r\n{_PW}\r\n",
        f'a1 LOGIN "bob" {{{len(_PW)}+}}\r\n{_PW}\r\n',
        f"a1 LOGIN {{3+}}\r\nbob {{{len(_PW)}+}}\r\n{_PW}\r\n",
    ],
)
def test_an_imap_login_password_sent_as_a_literal_loses_it(text: str) -> None:
    out = _buffer(text)
    assert _PW not in out and "bob" in out, out


def test_an_imap_literal_of_another_command_stays() -> None:
    text = "a2 APPEND INBOX {5+}\r\nhello\r\n"
    assert _buffer(text) == text
    pf = PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 20))
    assert growth(pf.redact_text, "a LOGIN {1+}\r\n") < 10
