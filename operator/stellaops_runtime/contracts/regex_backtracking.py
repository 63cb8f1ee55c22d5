"""Which configured regular expressions can take exponential time: refused before any text meets them.

``privacy.extraPatterns`` run on every argument field an event brings, text a
workload chooses. Python's ``re`` backtracks, and a repetition that can match
the same text in many ways (``(\\w+\\s?)+=secret``: the inner ``\\w+`` splits a
run of letters in 2^n ways) takes exponential time on a field that almost
matches: 60 characters are enough to never finish. ``re`` holds the GIL while it
matches, so the whole agent stopped: no event counted, no ``/metrics``, no
``/readyz`` answer, no exit on SIGTERM. The operator (contracts/crd_validation.py)
and the agent (contracts/config_base.py) therefore refuse such a pattern, with
the same verdict from :func:`backtracking_risk`.

What is refused, inside a repetition that may repeat 10 times or more (``+``, ``*``,
``{2,}``, ``{1,64}``) that can backtrack:

- a repetition of variable length (``+``, ``*``, ``?``, ``{1,3}``), at any depth;
- an alternation whose branches can start with the same character, or whose
  start the check cannot tell (a class like ``\\w``, ``.``, an empty branch).

A possessive repetition (``++``, ``*+``, ``?+``, ``{1,3}+``) or an atomic group
(``(?>...)``), Python 3.11+, never gives back what it took, so nothing inside
one is refused: ``(?:[a-z]++\\.)+`` is accepted where ``(?:[a-z]+\\.)+`` is not.
The check errs towards refusing (``(?:ab?)+`` is safe but refused); the message
says how to write it possessively. Not detected: adjacent repetitions over the
same characters (``\\w+\\w+=``), which cost polynomial time, bounded by
``privacy.maxArgumentBytes`` (docs/privacy.md).

Standard library only (the agent imports it).
"""

from __future__ import annotations

from typing import Any

try:  # Python 3.11+: the parser moved under re
    from re import _constants as C  # type: ignore[attr-defined]
    from re import _parser as P  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - older layouts
    import sre_constants as C  # type: ignore[no-redef]
    import sre_parse as P  # type: ignore[no-redef]

# A repetition of at most this many times or more counts as one that can multiply paths.
WIDE_REPEAT = 10
# Character ranges wider than this are taken as "any character" by the start check.
_MAX_RANGE = 1024

_REPEATS = (C.MAX_REPEAT, C.MIN_REPEAT)

# Why a pattern is refused and how to write it instead (the agent's config check and the
# operator's InvalidRegex condition say the same).
BACKTRACKING_ADVICE = (
    "can take exponential time on a crafted argument ({why}); make the inner repetition "
    "possessive (++, *+, ?+) or atomic ((?>...))"
)


def backtracking_risk(pattern: str) -> str:
    """Why ``pattern`` can take exponential time ("" when it cannot, or does not compile)."""
    try:
        tree = P.parse(pattern)
    except Exception:  # the compile check reports a pattern that does not parse
        return ""
    return _walk(list(tree), inside=False)


def _walk(items: list[tuple[Any, Any]], *, inside: bool) -> str:
    """The first risky construct of ``items``; ``inside``: they are in a wide repetition."""
    for op, av in items:
        why = ""
        if op in _REPEATS:
            lo, hi, body = av
            if inside and lo != hi:
                why = "a repetition of variable length inside another repetition"
            else:
                wide = hi == C.MAXREPEAT or hi >= WIDE_REPEAT
                why = _walk(list(body), inside=inside or wide)
        elif op is C.SUBPATTERN:
            why = _walk(list(av[3]), inside=inside)
        elif op is C.BRANCH:
            alternatives = [list(a) for a in av[1]]
            if inside and _overlap(alternatives):
                why = "an alternation inside a repetition whose branches can start alike"
            else:
                why = next((w for a in alternatives if (w := _walk(a, inside=inside))), "")
        elif op in (C.ASSERT, C.ASSERT_NOT):
            why = _walk(list(av[1]), inside=inside)
        elif op is C.GROUPREF_EXISTS:
            why = _walk(list(av[1]), inside=inside) or (_walk(list(av[2]), inside=inside) if av[2] else "")
        # POSSESSIVE_REPEAT and ATOMIC_GROUP never backtrack into what they matched: not entered.
        if why:
            return why
    return ""


def _overlap(alternatives: list[list[tuple[Any, Any]]]) -> bool:
    """Whether two alternatives may start with the same character (or a start is unknown)."""
    seen: set[int] = set()
    for alt in alternatives:
        first = _first(alt)
        if first is None or first & seen:
            return True
        seen |= first
    return False


def _first(items: list[tuple[Any, Any]]) -> set[int] | None:
    """The characters ``items`` can start with, case-folded; None when not known or possibly empty."""
    if not items:
        return None
    op, av = items[0]
    if op is C.LITERAL:
        return _folded({av})
    if op is C.IN:
        chars: set[int] = set()
        for kind, value in av:
            if kind is C.LITERAL:
                chars.add(value)
            elif kind is C.RANGE and value[1] - value[0] <= _MAX_RANGE:
                chars.update(range(value[0], value[1] + 1))
            else:  # NEGATE, CATEGORY (\w, \d, \s), a wide range
                return None
        return _folded(chars)
    if op is C.SUBPATTERN:
        return _first(list(av[3]))
    if op in (*_REPEATS, C.POSSESSIVE_REPEAT) and av[0] >= 1:
        return _first(list(av[2]))
    if op is C.BRANCH:
        out: set[int] = set()
        for alt in av[1]:
            f = _first(list(alt))
            if f is None:
                return None
            out |= f
        return out
    return None


def _folded(chars: set[int]) -> set[int]:
    """``chars`` with both cases of each letter (a pattern may be case-insensitive)."""
    out = set(chars)
    for c in chars:
        ch = chr(c)
        out.add(ord(ch.lower()[0]))
        out.add(ord(ch.upper()[0]))
    return out
