"""The default rules run each by its own regex, finding the matches their one alternation would.

Why this exists: the default rules a field's trigger words select used to run as one Python regex,
an alternation of them all (``base.compile_patterns``). Python's ``re`` pays, at each step of an
alternative, for the capture groups of the alternatives ahead of it, so on some hostile fields the
alternation cost quadratic time where every rule alone is linear (``authorization `` then 64 KiB of
``psw=``: 22-45x the cost of its first 16 KiB, 53-73 ms), and a combination of rules had to be
compiled (50-130 ms each), so it was compiled off the filtering thread and the whole set ran
meanwhile: the cost depended on the process's history.

Now each rule is compiled alone, once per process (:func:`default_rules`, at the first filter with
the default rules: the agent's start-up), and :func:`sub_rules` emulates the alternation: a search
of the alternation from a position gives the leftmost position where any alternative matches and,
there, the first alternative (in rule order) that does. Each rule's own ``search(text, pos)`` gives
its leftmost match from ``pos``, with the same groups (the same regex text, the same flags), so the
least start, ties going to the earlier rule, is the alternation's match. Whether a regex matches at
a position does not depend on where its search began (a lookbehind sees the text before ``pos``;
``\\A`` and ``^`` are the text's real start), so a rule's match found from an earlier position
stays its leftmost match from any later position up to its start: after the scan moves on, only
the rules whose match starts before the new position search again, from there. No rule tries a
position twice, so a field costs at most what each of its rules costs alone over it.
tests/unit/test_privacy_rule_scan.py compares the two on the privacy corpora and hostile fields.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Sequence

from stellaops_runtime.privacy.base import REDACTED, CompiledPatterns, compile_patterns
from stellaops_runtime.privacy.patterns import DEFAULT_PATTERNS

_RULES: list[tuple[CompiledPatterns, ...]] = []
_LOCK = threading.Lock()


def default_rules() -> tuple[CompiledPatterns, ...]:
    """Each default rule compiled alone (``DEFAULT_PATTERNS``' order), by the first caller: ~40 ms."""
    if not _RULES:
        with _LOCK:
            if not _RULES:
                _RULES.append(tuple(compile_patterns((p,)) for p in DEFAULT_PATTERNS))
    return _RULES[0]


def selected(rules: Sequence[CompiledPatterns], mask: int) -> list[CompiledPatterns]:
    """The rules of ``mask`` (bit ``i``: ``rules[i]``), in their order."""
    out = []
    i = 0
    while mask:
        if mask & 1:
            out.append(rules[i])
        mask >>= 1
        i += 1
    return out


def sub_rules(
    rules: Sequence[CompiledPatterns], text: str, *, counts: dict[str, int] | None, pos: int = 0
) -> tuple[str, int]:
    """Replace the secret group of every (validated) match of ``rules`` as their alternation would.

    The same loop as ``engine.sub_compiled`` over the alternation of ``rules``: a match its rule's
    validator rejects takes nothing and the search goes on from the character after its start; a
    span that is exactly ``[REDACTED]`` (or overlaps the last replacement) is left, uncounted; an
    empty match moves the search one character on.
    """
    # (start of the rule's leftmost match from the last position it searched from, rule, match)
    heap = []
    for i, cp in enumerate(rules):
        m = cp.regex.search(text, pos)
        if m is not None:
            heap.append((m.start(), i, m))
    if not heap:
        return text, 0
    heapq.heapify(heap)
    size = len(text)
    out: list[str] = []
    last = 0
    hits = 0
    at = pos
    while heap:
        while heap[0][0] < at:  # this rule's match starts before the scan's position: search again
            i = heap[0][1]
            m = rules[i].regex.search(text, at)
            if m is None:
                heapq.heappop(heap)
                if not heap:
                    break
            else:
                heapq.heapreplace(heap, (m.start(), i, m))
        if not heap:
            break
        _, i, m = heap[0]
        group = m.lastgroup
        name, whole, validate = rules[i].groups[group]  # type: ignore[index]
        start, end = m.span() if whole else m.span(group)  # type: ignore[arg-type]
        nxt = m.end() if m.end() > m.start() else m.end() + 1
        if end > start >= last and text[start:end] != REDACTED:
            if validate is not None and not validate(text[start:end]):
                at = m.start() + 1
                continue
            out.append(text[last:start])
            out.append(REDACTED)
            last = end
            hits += 1
            if counts is not None:
                counts[name] += 1
        if nxt > size:
            break
        at = nxt
    if not hits:
        return text, 0
    out.append(text[last:])
    return "".join(out), hits
