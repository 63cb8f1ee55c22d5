"""How deep a regular expression's groups nest: one verdict on every pattern, whatever the process.

Python's ``re`` recurses once per nested group, so whether a deep pattern compiles depends on the
process's recursion limit and stack depth (a library may raise the limit: celpy sets 2500). The
operator (contracts/crd_validation.py) and the agent (contracts/config_base.py) must agree on
which privacy patterns are valid, so both refuse patterns nested deeper than a fixed cap, far below
where ``re`` gives up. Imported by the agent: standard library only.
"""

from __future__ import annotations

# Python's re recurses once per nested group: whether a deep pattern compiles depends on the
# process's recursion limit and stack depth (a library may raise the limit: celpy sets 2500), so
# the same pattern could be valid here and raise RecursionError in an agent. A fixed cap, far below
# where re gives up, makes the verdict the same everywhere.
MAX_GROUP_DEPTH = 100


def group_depth(pattern: str) -> int:
    """How deep ``pattern``'s groups nest (escapes and character classes do not count)."""
    depth = deepest = 0
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if c == "[":  # a class: up to the first unescaped "]" that is not its first member
            i += 1
            if i < n and pattern[i] == "^":
                i += 1
            if i < n and pattern[i] == "]":
                i += 1
            while i < n and pattern[i] != "]":
                i += 2 if pattern[i] == "\\" else 1
        elif c == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif c == ")":
            depth = max(0, depth - 1)
        i += 1
    return deepest
