"""Key names written with escapes, read as the characters they stand for.

Every rule looks for a key by its letters (``password``, ``api_key``,
``PGPASSWORD``) and its separator (``=``, ``:``). A key that reaches the agent
escaped kept its value whole: a URL or a form body percent-encodes
(``?pass%77ord=S3cret``, ``api%5Fkey=S3cret``, ``password%3DS3cret``, twice
through two layers: ``pass%2577ord=``), a JSON or JavaScript string writes
``\\u0077``, C and shell strings ``\\x77``, HTML ``&#119;`` or ``&#x77;``.

:func:`decode_key_escapes` replaces such an escape only when it stands for a
character a key or its separator is made of (an ASCII letter or digit, ``_``,
``-``, ``.``, ``=``, ``:``). The others stay escaped: a ``%20`` or ``%26`` inside
a value decoded to a space or an ``&`` would end the value early and leave the
rest of a secret behind. :func:`reading` is the text as the rules read it:
look-alikes folded (``lookalike.fold``), then these escapes decoded.

Both the privacy filter (``privacy/redactor.py``) and the message redaction
(``redact.py``) run their rules on the text, then on its reading when it
differs; a secret found only in the reading is kept in that reading
(``password=[REDACTED]``), else the text keeps its characters.
"""

from __future__ import annotations

import re

from stellaops_runtime.contracts.lookalike import fold

# What a key name and its separator are made of: an escape of anything else stays.
_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.=:")

# ``%XX`` (``%25`` before it any number of times: ``%2577`` is ``%77`` encoded again),
# ``\\u00XX`` (``\\\\u`` too: JSON inside a JSON string), ``\\xXX``, ``&#N;`` and ``&#xX;``.
_ESCAPE = re.compile(
    r"%(?:25)*(?P<pct>[0-9A-Fa-f]{2})"
    r"|(?<!\\)\\+u00(?P<u>[0-9A-Fa-f]{2})"  # from the first backslash of a run only: linear
    r"|(?<!\\)\\+x(?P<x>[0-9A-Fa-f]{2})"
    r"|&#(?:[xX]0*(?P<hx>[0-9A-Fa-f]{1,2})|0*(?P<dec>[0-9]{1,3}));"
)
# Whether a text may hold one (a C-speed check before the regex).
_MARKS = ("%", "\\", "&#")


def _decode(m: re.Match[str]) -> str:
    dec = m["dec"]
    code = int(dec) if dec is not None else int(m["pct"] or m["u"] or m["x"] or m["hx"], 16)
    ch = chr(code) if code < 128 else ""
    return ch if ch in _KEY_CHARS and ch else m[0]


def decode_key_escapes(text: str) -> str:
    """``text`` with the escapes of key characters decoded (the text itself when it holds none)."""
    if not any(mark in text for mark in _MARKS):
        return text
    return _ESCAPE.sub(_decode, text)


def reading(text: str, *, keep_spaces: bool = False) -> str:
    """``text`` as the rules read it: look-alikes folded, escaped key characters decoded.

    ``keep_spaces``: its Unicode spaces stay (``lookalike.fold``).
    """
    return decode_key_escapes(fold(text, keep_spaces=keep_spaces))
