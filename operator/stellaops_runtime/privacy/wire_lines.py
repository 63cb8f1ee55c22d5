"""Passwords on lines that no key names: protocol commands and two configuration lines.

Why this exists: the key rules (``patterns``) need a name before a value (``password=x``), and the
client rules a client's name in the text. A traced ``write()`` of a socket or a file often has
neither: FTP's and POP3's ``PASS x`` (RFC 959, RFC 1939), IMAP's ``a1 LOGIN user x`` (RFC 9051; the
password as a literal too, ``{N+}`` then its line),
Redis's ``AUTH [user] x``, inline or as the RESP array every client library sends
(``*2\\r\\n$4\\r\\nAUTH\\r\\n$1\\r\\nx``; HELLO's ``AUTH user x`` too), a ``.pgpass`` line
(``host:port:database:user:x``), a ``.netrc`` entry's ``password`` and ``account`` (netrc_entries.py)
and redis.conf's ``requirepass x`` / ``masterauth x`` (P7's first
known limit, session 45, closed by RP7). Each is read only where its form is exact, so that
look-alikes stay: a protocol command only as a whole line ending in CRLF (Go's test summary
``PASS``, ``PASS tests/a.py`` have none); a ``.pgpass`` line only as a whole line of exactly five
fields with a port or ``*`` second (an IPv6 address has 8 groups or an empty one, /etc/passwd 7
fields, /etc/group 4); a redis.conf directive only at a line's start (``# requirepass x`` is a
comment). Possessive and anchored: linear in the text.

A SASL exchange's base64 answers too (RFC 4954 SMTP AUTH, RFC 5034 POP3, RFC 9051 IMAP AUTHENTICATE;
left by RP7): ``AUTH PLAIN <b64>`` and ``a1 AUTHENTICATE PLAIN|XOAUTH2|OAUTHBEARER <b64>`` lose the
initial response, ``AUTH LOGIN`` the password's line after it (the user's stays), a transcript the
line after the server's ``334 UGFzc3dvcmQ6`` ("Password:"), and a write of one base64 word and CRLF
alone loses it: a client library (Python's smtplib) writes the password's line by itself, and no
state joins two writes. Only a word that looks like base64 counts (a multiple of 4 long, mixed case
or a digit or padding, not all hex; alone, 8 characters at least): ``STARTTLS``, ``QUIT``, ``+OK``, an
HTTP chunk's size and a four-letter word (``Done``, ``True``) stay.
The lines may end in LF alone (a script piped into ``openssl s_client -crlf`` or ``nc -C``), and a
word written alone with no CRLF, or LF, goes when it decodes to a SASL answer: PLAIN's
``authzid\0user\0password`` or a bearer token's ``…\x01auth=…`` (XOAUTH2, OAUTHBEARER). Python's
imaplib writes AUTHENTICATE's answer and its CRLF apart (RP8); a path or a word decodes to neither.
``AUTH LOGIN``'s password line written alone with LF, and a write of the user's line then the
password's with no ``AUTH`` (a script writing each line apart), go when their base64 decodes to
printable ASCII (RP8's second known limit, session 46): most words (``Makefile``) decode to other bytes.
"""

from __future__ import annotations

import binascii
import re

from stellaops_runtime.privacy.netrc_entries import netrc_spans

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
# a SASL mechanism after AUTH names no password (``AUTH LOGIN``: Redis's ``AUTH x`` is the rest)
_MECHANISMS = r"(?i:LOGIN|PLAIN|XOAUTH2|OAUTHBEARER|CRAM-MD5|DIGEST-MD5|SCRAM-SHA-[0-9]++(?:-PLUS)?+|NTLM)"
_NOT_A_MECHANISM = rf"(?!{_MECHANISMS}(?:[ ]|\r$))"
# a protocol command as a whole line ending in CRLF: PASS x; TAG LOGIN user x (a quoted user too);
# AUTH [user] x (the rest of the line)
_PROTOCOL = re.compile(
    r"(?m)^(?:(?i:PASS)[ ]|[!-~]{1,64}+[ ](?i:LOGIN)[ ](?:\"(?:[^\"\\\r\n]|\\.)*+\"|[^\s\"]++)[ ]"
    rf"|(?i:AUTH)[ ]{_NOT_A_MECHANISM})(?P<s>[^\r\n]++)\r$"
)
# IMAP's LOGIN with the password as a literal (RFC 9051 ``{N}``, LITERAL+'s ``{N+}``, one write): the
# line after it; the user quoted, an atom or a literal itself (RP8)
_LITERAL = r"\{[0-9]{1,5}+\+?+\}\r\n"
_LOGIN_LITERAL = re.compile(
    rf"(?m)^[!-~]{{1,64}}+[ ](?i:LOGIN)[ ](?:\"(?:[^\"\\\r\n]|\\.)*+\"|{_LITERAL}[^\r\n ]*+|[^\s\"{{]++)"
    rf"[ ]{_LITERAL}(?P<s>[^\r\n]++)"
)
# RESP: AUTH's one argument (an array of 2), or the second of two (AUTH user x; HELLO 3 AUTH user x)
_BULK = r"\$[0-9]{1,10}+\r\n"
_RESP_AUTH = re.compile(
    rf"(?:(?<![^\n])\*2\r\n\$4\r\n(?i:AUTH)\r\n{_BULK}|\$4\r\n(?i:AUTH)\r\n{_BULK}[^\r\n]*+\r\n{_BULK})"
    r"(?P<s>[^\r\n]++)"
)

# SMTP's and POP3's AUTH, IMAP's TAG AUTHENTICATE: the mechanism, its initial response or none
_SASL = re.compile(
    r"(?m)^(?:[!-~]{1,64}+[ ](?i:AUTHENTICATE)|(?i:AUTH))[ ](?P<m>(?i:LOGIN|PLAIN|XOAUTH2|OAUTHBEARER))"
    r"(?:[ ](?P<ir>[^\s]++))?[ \t]*+(?:\r?\n|\Z)"
)
_LINE = re.compile(r"(?P<s>[^\r\n]*+)\r?\n")
# anywhere else (``printf 'AUTH PLAIN <b64>\\r\\n'`` in a script, a line ending in CR alone): the
# initial response of PLAIN or a bearer mechanism, when it decodes to a SASL answer (_sasl_answer)
_SASL_ANYWHERE = re.compile(
    r"(?<![\w-])(?i:AUTH(?:ENTICATE)?+)[ \t]++(?i:PLAIN|XOAUTH2|OAUTHBEARER)[ \t]++(?P<s>[A-Za-z0-9+/]++=*+)"
)
# a transcript: the server's "Password:" prompt in base64, then the client's line (``C: ``, `` ~> ``)
_PROMPTED = re.compile(
    r"334[ -](?:UGFzc3dvcmQ6|cGFzc3dvcmQ6)[ \t]*+\r?\n[ \t]*+(?:[!-~]{1,3}+[ \t]++)?"
    r"(?P<s>[A-Za-z0-9+/]++=*+)[ \t]*+(?=\r?\n|$)"
)
_B64 = re.compile(r"[A-Za-z0-9+/]++={0,2}+")
# a write of one word and its line end, or none
_ALONE = re.compile(r"(?P<s>[A-Za-z0-9+/]++={0,2}+)[ \t]*+(?P<end>\r?\n)?+")
# a write of two such words on two lines: AUTH LOGIN's user and password with the command written
# apart (a script's ``printf '%s\n' "$U64" "$P64"`` into ``openssl s_client``: RP8's second known limit)
_PAIR = re.compile(
    r"(?P<u>[A-Za-z0-9+/]++={0,2}+)[ \t]*+\r?\n(?P<s>[A-Za-z0-9+/]++={0,2}+)[ \t]*+(?:\r?\n)?+"
)
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")
_TEXT = re.compile(rb"[\x20-\x7e]{3,}+")
_HEX = frozenset("0123456789abcdefABCDEF")


def _base64_like(word: str) -> bool:
    """Whether ``word`` looks like a base64 credential: not a protocol's command, a word or a hex size."""
    if len(word) < 4 or len(word) % 4 or not _B64.fullmatch(word) or _HEX.issuperset(word):
        return False
    if word.endswith("=") or "+" in word or "/" in word:
        return True
    return any(c.islower() for c in word) and any(c.isupper() or c.isdigit() for c in word)


def _sasl_answer(word: str) -> bool:
    """Whether base64 ``word`` decodes to a SASL answer holding a secret: PLAIN's three fields
    (RFC 4616: ``authzid\\0user\\0password``) or a bearer token's ``\\x01auth=`` (XOAUTH2, RFC 7628)."""
    if len(word) < 8:
        return False
    try:  # (a long bearer token cut by maxArgumentBytes: its whole quanta)
        raw = binascii.a2b_base64(word[: len(word) // 4 * 4])
    except binascii.Error:
        return False
    if b"\x01auth=" in raw:
        return True
    fields = raw.split(b"\0")
    return len(fields) == 3 and all(fields[1:]) and not _CONTROL.search(raw.replace(b"\0", b""))


def _decodes_to_text(word: str) -> bool:
    """Whether base64 ``word`` decodes to printable ASCII, as a user's name or a password does
    (``Makefile``, ``ReadFile`` and most words decode to other bytes; a few, ``Pygments``, do not)."""
    try:
        raw = binascii.a2b_base64(word)
    except binascii.Error:
        return False
    return _TEXT.fullmatch(raw) is not None


def _sasl_spans(text: str, low: str) -> list[tuple[int, int, str]]:
    out: list[tuple[int, int, str]] = []
    alone = _ALONE.fullmatch(text)
    if alone is not None:  # one answer's line written alone (smtplib), or with no CRLF (imaplib)
        word = alone["s"]
        # (8 characters at least: base64 of a password of 4 or more; ``Done``, ``True`` stay)
        # (with LF alone, RP8's left-alone: a script's line into ``nc -C``, when it decodes to text)
        lined = alone["end"] == "\r\n" or (alone["end"] == "\n" and _decodes_to_text(word))
        if (lined and len(word) >= 8 and _base64_like(word)) or _sasl_answer(word):
            out.append((*alone.span("s"), "password"))
        return out
    pair = _PAIR.fullmatch(text)
    if pair is not None:  # LOGIN's user line, then its password line, both base64 of text
        if len(pair["s"]) >= 8 and all(_base64_like(pair[g]) and _decodes_to_text(pair[g]) for g in "us"):
            out.append((*pair.span("s"), "password"))
        return out
    if "auth" not in low and "334" not in text:
        return out
    for m in _SASL.finditer(text):
        login = m["m"].upper() == "LOGIN"
        ir = m["ir"]
        if ir is not None and not (login and _B64.fullmatch(ir) and len(ir) % 4 == 0):
            out.append((*m.span("ir"), "password"))  # PLAIN's or a token's; LOGIN's user stays
            continue
        pos = m.end()
        for i in range(2 if login and ir is None else 1):  # LOGIN: the user's line, then the password's
            line = _LINE.match(text, pos)
            if line is None or not _base64_like(line["s"]):
                break
            if not login or i == 1 or ir is not None:
                out.append((*line.span("s"), "password"))
            pos = line.end()
    out.extend((*m.span("s"), "password") for m in _SASL_ANYWHERE.finditer(text) if _sasl_answer(m["s"]))
    if "334" in text:
        out.extend((*m.span("s"), "password") for m in _PROMPTED.finditer(text))
    return out


def wire_line_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, "password") of each password on such a line of ``text``."""
    out: list[tuple[int, int, str]] = []
    rxs: list[re.Pattern[str]] = []
    if text.count(":") >= 4:
        rxs.append(_PGPASS)
    low = text.lower()
    if "requirepass" in low or "masterauth" in low:
        rxs.append(_REDIS_CONF)
    if ("password" in text or "account" in text) and ("machine" in text or "default" in text):
        out.extend(netrc_spans(text))  # a .netrc entry's password and account (netrc_entries.py)
    out.extend(_sasl_spans(text, low))
    if "\r" in text:
        rxs.append(_PROTOCOL)
        if "$4\r\n" in text:
            rxs.append(_RESP_AUTH)
        if "}\r\n" in text:
            rxs.append(_LOGIN_LITERAL)
    for rx in rxs:
        out.extend((*m.span("s"), "password") for m in rx.finditer(text))
    return out
