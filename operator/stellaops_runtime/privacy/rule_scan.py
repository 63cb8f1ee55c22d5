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
start twice.

A match the scan passed over (another rule's match began before it and covered its start) was read
for nothing, and a rule whose match runs far (a PEM key's body, to the end of a cut text) would read
the rest of the field again after each short match of another rule: ``password=x-----BEGIN RSA
PRIVATE KEY----- `` repeated cost 12x for 4x the text. So a rule passed over once looks only for
where it may start (its head, ``rule_heads.py``) and is tried itself at such a place only when no
rule may start before it: where the alternation tried it too.
tests/unit/test_privacy_rule_scan.py compares the two on the privacy corpora and hostile fields.
"""

from __future__ import annotations

import dataclasses
import heapq
import re
import threading
from collections.abc import Sequence

from stellaops_runtime.contracts.value_lines import value_end
from stellaops_runtime.privacy.base import REDACTED, CompiledPatterns, SecretPattern, compile_patterns
from stellaops_runtime.privacy.flow_values import flow_value_end
from stellaops_runtime.privacy.patterns import DEFAULT_PATTERNS
from stellaops_runtime.privacy.rule_heads import head_regex

_RULES: list[tuple[CompiledPatterns, ...]] = []
_LOCK = threading.Lock()


def compile_rule(pattern: SecretPattern) -> CompiledPatterns:
    """One rule compiled alone, with its head (``rule_heads``) when it has one."""
    cp = compile_patterns((pattern,))
    head = head_regex(pattern.regex)
    return cp if head is None else dataclasses.replace(cp, head=re.compile(head, re.ASCII))


def default_rules() -> tuple[CompiledPatterns, ...]:
    """Each default rule compiled alone (``DEFAULT_PATTERNS``' order), by the first caller: ~70 ms."""
    if not _RULES:
        with _LOCK:
            if not _RULES:
                _RULES.append(tuple(compile_rule(p) for p in DEFAULT_PATTERNS))
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
    # (where the rule's next match starts, rule, the match), or (where its head matched: the first
    # place it may start, rule, None); each rule at most once
    heap: list[tuple[int, int, re.Match[str] | None]] = []
    for i, cp in enumerate(rules):
        m = cp.regex.search(text, pos)
        if m is not None:
            heap.append((m.start(), i, m))
    if not heap:
        return text, 0
    heapq.heapify(heap)
    heads = [False] * len(rules)  # the rule was passed over: it looks for its head from then on
    size = len(text)
    out: list[str] = []
    last = 0
    hits = 0
    at = pos
    taken = -1  # the rule whose match the scan took last
    while heap:
        start, i, m = heap[0]
        if start < at or m is None:
            cp = rules[i]
            if start < at:  # the scan passed this start: look again from the scan's position
                if i != taken and cp.head is not None:
                    heads[i] = True  # its match was read for nothing
                frm = at
            else:  # no rule may start before this head: the rule itself, there
                m = cp.regex.match(text, start)
                if m is not None:
                    heapq.heapreplace(heap, (start, i, m))
                    continue
                frm = start + 1
            found: tuple[int, int, re.Match[str] | None] | None = None
            if frm <= size:
                if heads[i]:
                    h = cp.head.search(text, frm)  # type: ignore[union-attr]
                    found = None if h is None else (h.start(), i, None)
                else:
                    m = cp.regex.search(text, frm)
                    found = None if m is None else (m.start(), i, m)
            if found is None:
                heapq.heappop(heap)
            else:
                heapq.heapreplace(heap, found)
            continue
        taken = i
        group = m.lastgroup
        name, whole, validate = rules[i].groups[group]  # type: ignore[index]
        start, end = m.span() if whole else m.span(group)  # type: ignore[arg-type]
        end = flow_value_end(text, start, end)  # ``{password: x}`` keeps its ``}`` (flow_values.py)
        nxt = m.end() if m.end() > m.start() else m.end() + 1
        if end > start >= last and text[start:end] != REDACTED:
            if validate is not None and not validate(text[start:end]):
                at = m.start() + 1
                continue
            # a value whose key starts its line goes on over the lines indented below it (value_lines.py)
            end = value_end(text, start, end)
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
