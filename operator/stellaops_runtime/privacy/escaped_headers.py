"""A credential header written as one shell word, with an escaped blank before its colon.

Why this exists: a header with a blank before its colon reaches the server as written, and servers
that trim the name read it (``-H "X-Api-Key : a b"``, redactor.py's quoted-header pass). Written as
one shell word instead, its blanks escaped (``-H X-Api-Key\\ :\\ a\\ b``, or ``\\\\ `` in a script
inside a script), no key rule saw a separator: their ``\\s*`` before the colon does not read a
backslash, so the value was stored in clear. Here a header name ending in a credential word
(key_words.py, as shell_words.CREDENTIAL_WORD) or ``Authorization``/``Proxy-Authorization``, then
one or more escaped blanks and the colon, loses the rest of its shell word: escaped blanks and
characters go with it, an unescaped blank or a quote ends it. A header without an escaped blank
before its colon is the key rules' (unchanged).

Each start is a word's start; the name is read once (at most 64 characters, then checked whole),
the value to the word's end: linear in the text.
"""

from __future__ import annotations

import re

from stellaops_runtime.privacy.shell_words import CREDENTIAL_WORD

__all__ = ["escaped_header_spans"]

_HEADER = re.compile(
    r"""(?<![^\s"'=])(?P<n>[\w-]{1,64}+)(?:\\++[ \t])++:(?:\\++[ \t])*+"""
    r"""(?P<s>(?:[^\s\\"']|\\++[^\n"'])++)"""
)
_CREDENTIAL_NAME = re.compile(rf"(?:{CREDENTIAL_WORD}|(?i:authorization))\Z")


def escaped_header_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, rule) of each credential header's value after an escaped blank and its colon."""
    if "\\ :" not in text and "\\\t:" not in text:
        return []
    out: list[tuple[int, int, str]] = []
    for m in _HEADER.finditer(text):
        if _CREDENTIAL_NAME.search(m["n"]):
            rule = "authorization_header" if m["n"].lower().endswith("authorization") else "password"
            out.append((*m.span("s"), rule))
    return out
