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
from bisect import bisect_right
from collections.abc import Callable

from stellaops_runtime.contracts.lookalike import dropped, fold

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


def _shifted(points: list[int], shifts: list[int]) -> Callable[[int], int]:
    """``i`` plus the shift of the last point at or before it (0 before the first)."""

    def at(i: int) -> int:
        k = bisect_right(points, i)
        return i + (shifts[k - 1] if k else 0)

    return at


def reading_with_origins(text: str) -> tuple[str, Callable[[int], int]]:
    """:func:`reading` of ``text``, and where each offset of the reading stands in ``text``.

    The second maps an offset of the reading to the offset in ``text`` of the character (or escape)
    it was read from; the reading's length maps to ``text``'s. Folding keeps one character for one,
    or drops an invisible one; decoding reads an escape as one character: both keep the order, so a
    range of the reading maps to the range of ``text`` it was read from (privacy/reading_union.py).
    """
    folded = fold(text)
    fold_points: list[int] = []
    fold_shifts: list[int] = []
    if folded is not text and len(folded) != len(text):
        for k, pos in enumerate(dropped(text)):
            point = pos - k  # the folded offset of the character after it
            if fold_points and fold_points[-1] == point:
                fold_shifts[-1] = k + 1
            else:
                fold_points.append(point)
                fold_shifts.append(k + 1)
    read_points: list[int] = []
    read_shifts: list[int] = []
    pieces: list[str] = []
    last = 0
    if any(mark in folded for mark in _MARKS):
        shift = 0
        for m in _ESCAPE.finditer(folded):
            ch = _decode(m)
            if ch == m[0]:
                continue
            pieces.append(folded[last : m.start()])
            pieces.append(ch)
            last = m.end()
            shift += len(m[0]) - 1
            read_points.append(m.start() - (shift - (len(m[0]) - 1)) + 1)
            read_shifts.append(shift)
    read = "".join(pieces) + folded[last:] if pieces else folded
    to_folded = _shifted(read_points, read_shifts)
    to_text = _shifted(fold_points, fold_shifts)
    return read, lambda i: to_text(to_folded(i))
