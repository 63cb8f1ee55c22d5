"""A reading's redactions put back onto the text's own characters, for the text's rules to add theirs.

The filter redacts a text in its reading (``contracts/escapes.py``: look-alikes folded, escaped key
names decoded) when that finds a secret, and kept that reading. But a reading also changes where a
value ends: every Unicode space becomes a plain space, which ends a key's or a flag's value, while in
the text itself it does not (``DBPASS=a<NBSP>SECRET`` is one shell word, one value). The reading took
``a`` and kept ``SECRET``.

:func:`with_original_characters` gives the text with the reading's markers where the reading
redacted and the text's own characters elsewhere; the redactor runs its passes on that too, so the
field loses what either reading covers (a marker followed by the rest of a word is read as a value:
``DBPASS=[REDACTED]<NBSP>SECRET`` loses the rest). The redacted reading is the reading with ranges
replaced by ``[REDACTED]`` (or dropped after one): its pieces between markers are found in the
reading in order, and each is mapped back through the reading's origins. A piece found early (inside
a secret that also holds it) only moves which original characters stand around a marker: read again
they are the same piece, so the result never keeps more than the redacted reading did.

hostile_text.py puts a field's U+FFFD back the same way when a space stood in for them (the field held
both other stand-ins): they got spaces for good.
"""

from __future__ import annotations

from collections.abc import Callable

from stellaops_runtime.privacy.base import REDACTED


def with_original_characters(
    text: str, read: str, origin: Callable[[int], int], redacted_read: str
) -> str | None:
    """``text`` with a marker wherever ``redacted_read`` (``read`` redacted) has one; None if unmatched.

    ``origin`` maps an offset of ``read`` to ``text``'s (``escapes.reading_with_origins``).
    """
    chunks = redacted_read.split(REDACTED)
    if len(chunks) < 2:
        return None
    last = len(chunks) - 1
    pieces: list[str] = []
    pos = 0
    for i, chunk in enumerate(chunks):
        if i == 0:
            if not read.startswith(chunk):
                return None
            start = 0
        elif i == last:
            start = len(read) - len(chunk)
            if start < pos or not read.endswith(chunk):
                return None
        else:
            start = read.find(chunk, pos)
            if start < 0:
                return None
        end = start + len(chunk)
        if chunk:
            pieces.append(text[0 if i == 0 else origin(start) : len(text) if i == last else origin(end)])
        else:
            pieces.append("")
        pos = end
    return REDACTED.join(pieces)


def count_new(counts: dict[str, int] | None, seen: dict[str, int], new: int) -> None:
    """Add to ``counts`` at most ``new`` of the rules' ``seen`` counts, in their order.

    The second pass over the marked text counts a marker it takes with the rest of its word again
    (``DBPASS=[REDACTED]<NBSP>b``): only as many hits as it added markers are new secrets.
    """
    if counts is None:
        return
    for name, n in seen.items():
        if new <= 0:
            return
        add = min(n, new)
        counts[name] = counts.get(name, 0) + add
        new -= add
