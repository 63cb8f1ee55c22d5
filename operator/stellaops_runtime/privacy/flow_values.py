"""Where an unquoted secret value inside a flow map or a bracket ends: before the collection's closers.

The key rules' value runs to whitespace (key_rules.WIDE_VALUE), so in a YAML flow map, JSON written
without quotes or Go's ``map[…]`` it took the collection's closing characters with it: ``{ password :
x}`` lost its ``}``, and ``{password: x, user: y}`` its comma, after which the mapping rule read ``user:
y`` as the rest of the value (s48 reviewers). A plain scalar in a YAML flow collection holds none of
``,[]{}``; :func:`flow_value_end` leaves the trailing ones of a value whose line opens a ``{`` or ``[``
before it that is not closed there. Elsewhere a trailing brace is the value's (``--password=ab}``).
rule_scan.py applies it to each default rule's match.
"""

from __future__ import annotations

__all__ = ["flow_value_end"]

_CLOSERS = ",]}"
# what a quoted, block, bracketed or substituted value starts with: its own end is its form's
_OWN_FORM = "\"'[{|>\\$("
# how far back on its line an opening bracket is looked for
_LOOK_BACK = 512


def flow_value_end(text: str, start: int, end: int) -> int:
    """``end``, or before the trailing ``,``/``]``/``}`` of ``text[start:end]`` when it is inside a flow."""
    if end - start < 2 or text[end - 1] not in _CLOSERS or text[start] in _OWN_FORM:
        return end
    low = max(0, start - _LOOK_BACK)
    line = text.rfind("\n", low, start) + 1 or low
    opened = text.count("{", line, start) > text.count("}", line, start)
    if not opened and text.count("[", line, start) <= text.count("]", line, start):
        return end
    cut = end
    while cut - 1 > start and text[cut - 1] in _CLOSERS:
        cut -= 1
    return end if "\n" in text[start:cut] else cut
