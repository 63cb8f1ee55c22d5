"""Passwords on lines that no key names: protocol commands and two configuration lines.

Why this exists: the key rules (``patterns``) need a name before a value (``password=x``), and the
client rules a client's name in the text. A traced ``write()`` of a socket or a file often has
neither: FTP's and POP3's ``PASS x`` (RFC 959, RFC 1939), IMAP's ``a1 LOGIN user x`` (RFC 9051),
Redis's ``AUTH [user] x``, inline or as the RESP array every client library sends
(``*2\\r\\n$4\\r\\nAUTH\\r\\n$1\\r\\nx``; HELLO's ``AUTH user x`` too), a ``.pgpass`` line
(``host:port:database:user:x``) and redis.conf's ``requirepass x`` / ``masterauth x`` (P7's first
known limit, session 45, closed by RP7). Each is read only where its form is exact, so that
look-alikes stay: a protocol command only as a whole line ending in CRLF (Go's test summary
``PASS``, ``PASS tests/a.py`` have none); a ``.pgpass`` line only as a whole line of exactly five
fields with a port or ``*`` second (an IPv6 address has 8 groups or an empty one, /etc/passwd 7
fields, /etc/group 4); a redis.conf directive only at a line's start (``# requirepass x`` is a
comment). Possessive and anchored: linear in the text.
"""

from __future__ import annotations

import re

__all__ = ["wire_line_spans"]

# a .pgpass field: a backslash escapes ``:`` and ``\`` (the password's may hold blanks)
_FIELD = r"(?:[^\s:\\]|\\[^\r\n])++"
_PGPASS = re.compile(
    rf"(?m)^{_FIELD}:(?:[0-9]{{1,5}}+|\*):{_FIELD}:{_FIELD}:"
    r"(?P<s>(?:[^\r\n:\\]|\\[^\r\n])++)\r?$"
)
# redis.conf (and a sentinel's): the directive at a line's start, the value a word or quoted
_REDIS_CONF = re.compile(
    r"""(?mi)^[ \t]*+(?:requirepass|masterauth)[ \t]++"""
    r"""(?P<s>"(?:[^"\\\r\n]|\\.)*+"?|'[^'\r\n]*+'?|[^\s"']\S*+)"""
)
# a protocol command as a whole line ending in CRLF: PASS x; TAG LOGIN user x (a quoted user too);
# AUTH [user] x (the rest of the line)
_PROTOCOL = re.compile(
    r"(?m)^(?:(?i:PASS)[ ]|[!-~]{1,64}+[ ](?i:LOGIN)[ ](?:\"(?:[^\"\\\r\n]|\\.)*+\"|[^\s\"]++)[ ]"
    r"|(?i:AUTH)[ ])(?P<s>[^\r\n]++)\r$"
)
# RESP: AUTH's one argument (an array of 2), or the second of two (AUTH user x; HELLO 3 AUTH user x)
_BULK = r"\$[0-9]{1,10}+\r\n"
_RESP_AUTH = re.compile(
    rf"(?:(?<![^\n])\*2\r\n\$4\r\n(?i:AUTH)\r\n{_BULK}|\$4\r\n(?i:AUTH)\r\n{_BULK}[^\r\n]*+\r\n{_BULK})"
    r"(?P<s>[^\r\n]++)"
)


def wire_line_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, "password") of each password on such a line of ``text``."""
    out: list[tuple[int, int, str]] = []
    rxs: list[re.Pattern[str]] = []
    if text.count(":") >= 4:
        rxs.append(_PGPASS)
    low = text.lower()
    if "requirepass" in low or "masterauth" in low:
        rxs.append(_REDIS_CONF)
    if "\r" in text:
        rxs.append(_PROTOCOL)
        if "$4\r\n" in text:
            rxs.append(_RESP_AUTH)
    for rx in rxs:
        out.extend((*m.span("s"), "password") for m in rx.finditer(text))
    return out
