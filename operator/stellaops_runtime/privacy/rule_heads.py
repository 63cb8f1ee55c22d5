"""A default rule's head: what each of its alternatives reads before its secret group.

Why this exists: ``rule_scan`` finds each rule's leftmost match by that rule's own search. A match
the scan then passes over (another rule's match started before it and covers its start) was read
whole for nothing, and a rule whose match runs far (a PEM key's body to the end of a cut text) read
the rest of the field again after each of many short matches of another rule: quadratic
(``password=x-----BEGIN RSA PRIVATE KEY----- `` repeated). A rule's head is the alternation of the
parts of its alternatives before the item holding their secret group (``-----BEGIN … KEY-----`` for a
PEM key): wherever the rule matches, its head matches too (a prefix of the path the rule took), so
the head's leftmost match from a position is the first place the rule may start, found without
reading any value. The scan then tries the rule itself only where it would take its match
(test_privacy_rule_scan.py).
"""

from __future__ import annotations


def _alternatives(regex: str) -> list[tuple[str, int | None]]:
    """``regex``'s top-level alternatives, each with where the item holding its first named group starts."""
    out: list[tuple[str, int | None]] = []
    begin = 0
    cut: int | None = None
    opened: list[int] = []  # where each group still open starts
    i = 0
    size = len(regex)
    while i < size:
        ch = regex[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "[":  # a class: ``]`` first (after ``^``) is a character, ``\\`` escapes one
            j = i + 1
            if j < size and regex[j] == "^":
                j += 1
            if j < size and regex[j] == "]":
                j += 1
            while j < size and regex[j] != "]":
                j += 2 if regex[j] == "\\" else 1
            i = j + 1
            continue
        if ch == "(":
            if cut is None and regex.startswith("(?P<", i):
                cut = (opened[0] if opened else i) - begin
            opened.append(i)
        elif ch == ")":
            if opened:
                opened.pop()
        elif ch == "|" and not opened:
            out.append((regex[begin:i], cut))
            begin = i + 1
            cut = None
        i += 1
    out.append((regex[begin:], cut))
    return out


def head_regex(regex: str) -> str | None:
    """The alternation of each alternative's part before its secret group; None if one has none.

    An alternative without a named group is its own head. None (no head: the rule is read whole
    wherever it is searched) when an alternative's secret group is its first item, or when a
    ``(?#`` comment or verbose mode's ``#`` could hide a parenthesis.
    """
    if "(?#" in regex or "(?x" in regex:
        return None
    heads = []
    for alternative, cut in _alternatives(regex):
        head = alternative if cut is None else alternative[:cut]
        if not head:
            return None
        heads.append(head)
    return "|".join(heads)
