"""What two readings of one text redacted, joined: the text loses what either covers.

The filter redacts a text in its reading (``contracts/escapes.py``: look-alikes folded, escaped key
names decoded) when that finds a secret, and kept that reading. But a reading also changes where a
value ends: every Unicode space becomes a plain space, which ends a key's or a flag's value, while in
the text itself it does not (``DBPASS=a<NBSP>SECRET`` is one shell word, one value). The reading took
``a`` and kept ``SECRET``. The redactor now also redacts the reading with its Unicode spaces kept
(one character for one: the two readings have the same offsets) and keeps the union of both
(:func:`union`).

A redacted text is the text with ranges replaced by ``[REDACTED]`` (or dropped right after one):
:func:`covered` finds its pieces between markers in the text, in order, the first at the start and
the last at the end, each as early as it stands, and gives the ranges between them. A piece that also
stands inside a secret before its own place is found there: the ranges then miss a copy of that
piece's text, which the output shows anyway; nothing else.

hostile_text.py puts a field's U+FFFD back the same way when a space stood in for them (the field held
both other stand-ins): they got spaces for good (:func:`with_original_characters`).
"""

from __future__ import annotations

from stellaops_runtime.privacy.base import REDACTED


def covered(text: str, redacted: str) -> list[tuple[int, int]] | None:
    """The ranges of ``text`` that ``redacted`` (``text`` redacted) replaced or dropped; None if unmatched."""
    chunks = redacted.split(REDACTED)
    if len(chunks) < 2:
        return None
    last = len(chunks) - 1
    out: list[tuple[int, int]] = []
    pos = 0
    for i, chunk in enumerate(chunks):
        if i == 0:
            if not text.startswith(chunk):
                return None
            start = 0
        elif i == last:
            start = len(text) - len(chunk)
            if start < pos or not text.endswith(chunk):
                return None
        else:
            start = text.find(chunk, pos)
            if start < 0:
                return None
        if i:
            out.append((pos, start))
        pos = start + len(chunk)
    return out


def _rebuild(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` with each of the sorted, disjoint ``spans`` replaced by one marker."""
    pieces: list[str] = []
    last = 0
    for start, end in spans:
        pieces.append(text[last:start])
        pieces.append(REDACTED)
        last = end
    pieces.append(text[last:])
    return "".join(pieces)


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(end, out[-1][1]))
        else:
            out.append((start, end))
    return out


def union(text: str, first: str, other: str, second: str) -> str | None:
    """``text`` losing what ``first`` (it redacted) or ``second`` (``other`` redacted) covers.

    ``other`` is aligned with ``text`` (one character for one). None when ``second`` covers nothing
    ``first`` does not, or either is not such a redaction.
    """
    # a first reading that redacted nothing covers nothing (a secret only the other reading finds: the
    # text's own lines ended by a lone CR, ``x\rdb.password S``: s51 RP)
    a = [] if first == text else covered(text, first)
    b = covered(other, second)
    if a is None or b is None:
        return None
    both = _merged(a + b)
    if sum(e - s for s, e in both) == sum(e - s for s, e in _merged(a)):
        return None
    return _rebuild(text, both)


def with_original_characters(text: str, separated: str, redacted: str) -> str | None:
    """``text`` with a marker where ``redacted`` (``separated``, aligned with it, redacted) has one."""
    spans = covered(separated, redacted)
    return None if spans is None else _rebuild(text, spans)


def count_new(counts: dict[str, int] | None, seen: dict[str, int], new: int) -> None:
    """Add to ``counts`` at most ``new`` of the rules' ``seen`` counts, in their order.

    The second reading counts again a secret the first one counted (``DBPASS=a<NBSP>b``, taken whole):
    only as many hits as the union added markers are new secrets.
    """
    if counts is None:
        return
    for name, n in seen.items():
        if new <= 0:
            return
        add = min(n, new)
        counts[name] = counts.get(name, 0) + add
        new -= add
