"""The password a PowerShell script turns into a SecureString from plain text.

Why this exists: ``ConvertTo-SecureString 'P@ss' -AsPlainText -Force`` is how a PowerShell
script (``pwsh -c``, ``powershell -Command``) makes a credential from a password it holds, and
the password is a bare string literal: no key names it, so it was stored in clear. Here the
literal given to ``ConvertTo-SecureString`` (any case, PowerShell's names are not case-sensitive)
goes with its quotes: positional or after ``-String`` (``-String:``), after the other switches
(``-AsPlainText -Force``) and the value of ``-Key``/``-SecureKey`` or a prefix of either
(``-Key $k 'enc'``, ``-K $k 'enc'``: the encrypted standard string the key decrypts), in
parentheses (``ConvertTo-SecureString ('P@ss')``), a bare word (``ConvertTo-SecureString P@ss``:
a string in PowerShell's argument mode), or piped into it (``'P@ss' | ConvertTo-SecureString …``).
Without ``-AsPlainText`` the literal is an encrypted standard string, which the same user's key
decrypts: it goes too. A variable (``$env:PW``) is no text of a secret and stays.

Each start reads a bounded stretch: the switches and one literal (to its quote, the end of its
line or of the text), or, for a piped literal, at most 512 characters back: linear in the text.
"""

from __future__ import annotations

import re

__all__ = ["secure_string_spans"]

# A PowerShell string literal: '…' ('' inside), "…" (`" inside; a backslash is a character), "…"
# escaped in a shell string; a cut one runs to the text's end.
_LITERAL = r"""'(?:[^'\n]|'')*+(?:'|\Z)|"(?:[^"`\n]|`[^\n])*+(?:"|\Z)|\\++"[^"\\\n]*+(?:\\++"|\Z)"""
# A bare word, which PowerShell's argument mode reads as a string (``ConvertTo-SecureString P@ss``,
# ``pwsh -Command`` joining its arguments): not a variable, a switch, an expression or a type.
_BARE = r"""[^\s$(\-'"`@{}\[\];|&)\\#<>,][^\s;|&)"'`\\}<>,]*+"""
# A parenthesised expression nesting up to three deep (``(Get-Content (Join-Path (pwd) k))``): each
# level at most 4 runs of up to 64 characters or inner levels, possessive, so a start reads at most
# ~1 KiB, once.
_PAREN0 = r"\([^()\n]{0,64}+\)"
_PAREN1 = rf"\((?:[^()\n]{{1,64}}+|{_PAREN0}){{0,4}}+\)"
_PAREN2 = rf"\((?:[^()\n]{{1,64}}+|{_PAREN1}){{0,4}}+\)"
# The value of ``-Key``/``-SecureKey`` (a byte array or a SecureString): a variable, a parenthesised
# or ``@(…)`` expression (:data:`_PAREN2`), a list of numbers, or the marker a key rule of the regex
# pass left there (``-Key [REDACTED] 'enc'`` inside ``pwsh -c "…"``).
_KEY_VALUE = rf"""(?::[ \t]*+|[ \t]++)(?:\$[\w:]++|\[REDACTED\]|@?+{_PAREN2}|[\d,]++)"""
# ``-Key``/``-SecureKey`` or any prefix PowerShell reads as one of them (``-K``, ``-Ke``, ``-Se``…;
# ``-S`` alone is ambiguous with ``-String``).
_KEY_NAME = r"(?i:k(?:ey?+)?+|se(?:c(?:u(?:r(?:e(?:k(?:ey?+)?+)?+)?+)?+)?+)?+)"
_FORWARD = re.compile(
    r"(?i:convertto-securestring)"
    rf"(?:[ \t]++-(?:{_KEY_NAME}(?![\w-]){_KEY_VALUE}|(?!(?i:string)(?![\w-]))[\w-]++))*+[ \t]++"
    rf"(?:-(?i:string)(?::[ \t]*+|[ \t]++))?(?:\([ \t]*+(?P<p>{_LITERAL})|(?P<s>{_LITERAL}|{_BARE}))"
)
# The cheap check before the regexes, in any case (``ConvertTo-SEcureString`` runs all the same).
_NAMED = re.compile(r"(?i:securestring)")
_PIPED = re.compile(r"\|[ \t]*+(?i:convertto-securestring)")
_BACK = 512  # how far back a piped literal may open


def secure_string_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, "password") of each literal given to ``ConvertTo-SecureString``."""
    if _NAMED.search(text) is None:
        return []
    out = [(*m.span("p" if m["p"] is not None else "s"), "password") for m in _FORWARD.finditer(text)]
    for m in _PIPED.finditer(text):
        window = text[max(0, m.start() - _BACK) : m.start()]  # (a bounded slice: linear)
        end = m.start() - (len(window) - len(window.rstrip(" \t")))
        if end > 0 and text[end - 1] in "'\"":
            q, lo = text[end - 1], max(0, end - _BACK)
            opening = text.rfind(q, lo, end - 1)
            # a quote doubled inside the literal is one character of it (``'it''s'``): look further
            # back, each step left of the last (at most _BACK characters in all)
            while opening > lo and text[opening - 1] == q:
                further = text.rfind(q, lo, opening - 1)
                if further < 0:  # (the opening past the window: the part within it goes still)
                    break
                opening = further
            if opening >= 0:
                out.append((opening, end, "password"))
    return out
