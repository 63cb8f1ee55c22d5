"""The password of SQL*Plus's ``CONNECT user/password@db`` in a script an Oracle client reads.

(And of Go's MySQL DSN ``user:password@tcp(host)/db``, a database logon with no scheme: below.)

Why this exists: the Oracle clients' rule (``cli_db_options``) reads ``user/password@db`` among
the client's own arguments, up to the end of its command (a line break, ``|``). The usual way to
keep the password off the command line is to give it inside the script instead:
``sqlplus -s /nolog <<EOF`` then ``connect scott/tiger@db``, or ``echo 'connect scott/tiger@db' |
sqlplus /nolog``; that line is past the command's end, and it was stored in clear.

In a text that names an Oracle client (``sqlplus``, ``rman``, ``dgmgrl``, SQLcl's ``sqlcl``),
every ``CONNECT`` (or ``CONN``, any case; starting a word, or after a written ``\\n``, ``\\r``,
``\\t``: ``printf 'set echo off\\nconnect …'``) followed by ``user/password`` loses the password, quoted
with its quotes (``"a b"``, ``\\"a b\\"`` in a ``sh -c`` script), or up to ``@``, a blank, ``;`` or a
quote. ``connect / as sysdba`` and ``connect scott@db`` (prompted) hold none.
"""

from __future__ import annotations

import re

__all__ = ["sql_connect_spans"]

_CONNECT = re.compile(
    r"""[cC](?:(?<![\w$-][cC])|(?<=\\[nrt][cC]))(?i:onn(?:ect)?)[ \t]++[A-Za-z0-9_$#."']++/"""
    r"""(?P<s>\\"(?:[^"\\\n]|\\(?!")[^\n])*+(?:\\"|\Z)|"[^"\n]*+(?:"|\Z)|[^\s@/;'"\\]++)"""
    r"""(?=[@\s;'"\\]|\Z)"""
)
_CLIENTS = ("sqlplus", "rman", "dgmgrl", "sqlcl")
# Go's MySQL driver DSN ``user:password@tcp(host:port)/db`` (``unix(…)`` too; github.com/go-sql-driver
# /mysql): no scheme, so the URL rule (connection_string) does not read it. The password (up to 128
# characters: each start reads a bounded stretch; an ``@`` in it too, as the driver reads the last
# one) runs to the ``@`` before the protocol (``tcp``, ``tcp6``, ``unix``) or before the ``/`` of a DSN
# naming none (``user:password@/db``); the user starts a word. A quote inside the password is one of
# its characters (``app:it's@tcp(db)/x``, an argument with no blank that Tetragon does not quote), not
# its first (the quote that opens an argument, ``"u:a b"``, is spaced_logons'), nor one next to a
# separator, which ends a value of compact JSON or a list (``{"image":"nginx:1.25","a":"@/x"}`` keeps
# its tag).
_GO_DSN = re.compile(
    r"""(?<![^\s'"=])[^\s:/@'"]++:(?!//)"""
    r"""(?P<s>[^\s'"](?:[^\s'"]|(?<![,;:=\[{(])['"](?![,;:=\]})])){0,127}?)@(?:(?:tcp6?+|unix)\(|/(?=[\w$]))"""
)


def sql_connect_spans(text: str) -> list[tuple[int, int, str]]:
    """Spans of each CONNECT password in a text naming an Oracle client, and of Go MySQL DSNs'."""
    out: list[tuple[int, int, str]] = []
    if "@tcp" in text or "@unix(" in text or "@/" in text:
        out.extend((*m.span("s"), "password") for m in _GO_DSN.finditer(text))
    low = text.lower()
    if "conn" in low and any(c in low for c in _CLIENTS):
        out.extend((*m.span("s"), "cli_option") for m in _CONNECT.finditer(text))
    return out
