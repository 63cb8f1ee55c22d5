"""The password of a URL or a Go MySQL DSN when it holds a blank, inside quotes.

Why this exists: the URL rule (``connection_string``, patterns.py) and the Go DSN rule
(``sql_connect``) read a password up to whitespace, as a command line splits words. A password
holding a space is one argument all the same: Tetragon wraps it in plain quotes
(``"app:pa ss@tcp(db:3306)/x"``, ``"--db-url=postgres://u:pa ss@db/x"``), a script quotes it
(``-dsn 'app:pa ss@unix(/s)/x'``), and drivers read it (libpq, Go's MySQL driver take the
characters up to the last ``@`` before the host). Both rules found no password there, and it was
stored in clear.

Here, inside a quote that opens an argument or a value (after a blank, ``=``, ``[``, ``(``, ``,``,
``{``, a JSON key's ``:``, ``$'…'``; maybe escaped in a ``sh -c`` script, ``'\\''…``; maybe after
a ``--flag=`` or an environment assignment ``NAME=`` inside it, ``-e "DATABASE_URL=postgres://…"``),
a ``user:password`` whose password holds a blank and ends at an ``@`` that starts the host (a URL:
``scheme://user:pw@host``, ``jdbc:`` before the scheme too, then ``/``, ``?``, ``#``, the quote or
the end; a Go DSN: ``@tcp(``, ``@tcp6(``, ``@unix(``, ``@/db``)
loses the password, its ``@`` characters and the other kind of quote too (the last ``@`` before the
host ends it; ``"app:pa ss'x@tcp(db)/x"``); inside a plain ``"``, a backslash escape is one
character of the password (``"app:a\\"b c@tcp(db)/x"``), as a shell and JSON read it. A password
without a blank is left to the two rules above; one that starts with a blank is prose after a
colon (``"note: a b@/x"``), not a password. A quoted URL cut inside such a password (no ``@host``
left) loses the rest of the text from the password on. Each start reads at most 256 characters of user and
128 of password, and stops at the next quote: linear in the text.
"""

from __future__ import annotations

import re

__all__ = ["spaced_logon_spans"]

# A quote opening an argument or a JSON value (escaped inside a shell string too; after a quote, a
# single-quoted script's ``'\\''``; after ``$``, bash's ANSI-C ``$'…'``), a flag or an environment
# assignment glued to it maybe.
# (Group ``d``: the quote is a plain ``"``, inside which a backslash escapes the next character.)
_OPEN = (
    r"""(?<![^\s=\[(,{:'$])\\*+(?P<q>["'])(?:(?<!\\")(?<=")(?P<d>))?+"""
    r"""(?:--?[\w-]{1,32}=|[A-Za-z_][\w.]{0,63}+=)?+"""
)
# A password's character: any but a line end, a backslash and the quote that opened the argument (the
# other quote is a character of it: ``"app:pa ss'x@tcp(db)/x"``); a URL's, no ``/`` either. Inside a
# plain ``"`` (group ``d``), a backslash and the character it escapes are one (``"app:a\\"b c@…"``,
# ``\\\\``), as a shell and JSON read them; in ``'…'`` a backslash escapes nothing, and inside an
# escaped ``\\"`` the escaped quote closes it.
# (A group: a quantifier after it repeats the look-ahead with the character.)
_DSN_CHAR = r"""(?:(?!(?P=q))[^\n\\]|(?(d)\\[^\n]|(?!)))"""
_URL_CHAR = r"""(?:(?!(?P=q))[^\n\\/]|(?(d)\\[^\n/]|(?!)))"""
_USER = r"""[^\s:/@'"\\]{0,256}+:"""
_GO_DSN = re.compile(
    rf"""{_OPEN}{_USER}(?!//)(?P<s>(?!\s){_DSN_CHAR}{_DSN_CHAR}{{0,127}}?)@(?:(?:tcp6?+|unix)\(|/(?=[\w$]))"""
)
_URL = re.compile(
    rf"""{_OPEN}(?:jdbc:)?+[A-Za-z][A-Za-z0-9+.-]{{0,31}}+://{_USER}"""
    rf"""(?P<s>(?!\s){_URL_CHAR}{_URL_CHAR}{{0,127}}?)@[^\s'"\\/@?#]++(?=[/?#'"\\]|\Z)"""
)

# The same URL cut by ``privacy.maxArgumentBytes`` inside its password (filter.py truncates before the
# rules run): no ``@host`` is left, so the password runs to the text's end (``@`` in it too). Only on
# a cut text (an unclosed quote ending a whole one, ``"dial http://db:5432 timeout``, is no password);
# a backslash the cut parted from what it escaped ends it too.
# A run stops at the quote that opened it, and each start is a quote: only the last start of each
# kind of quote can reach the end (each character is read by at most one run of each kind).
_URL_CUT = re.compile(
    rf"""{_OPEN}(?:jdbc:)?+[A-Za-z][A-Za-z0-9+.-]{{0,31}}+://{_USER}(?P<s>(?!\s){_URL_CHAR}{_URL_CHAR}*+\\?+)\Z"""
)


def spaced_logon_spans(text: str, *, cut: bool = False) -> list[tuple[int, int, str]]:
    """(start, end, rule) of each quoted URL's or Go DSN's password that holds a blank; ``cut``:
    the text was truncated at its end (a URL's password may run to it)."""
    if ":" not in text or not ('"' in text or "'" in text):
        return []
    rules = [(_URL, "connection_string"), (_GO_DSN, "password")] if "@" in text else []
    if cut and "://" in text:  # (a cut URL may have lost every ``@``)
        rules.append((_URL_CUT, "connection_string"))
    out: list[tuple[int, int, str]] = []
    for rx, rule in rules:
        for m in rx.finditer(text):
            s, e = m.span("s")
            if " " in text[s:e] or "\t" in text[s:e]:
                out.append((s, e, rule))
    return out
