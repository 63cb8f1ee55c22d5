"""A RuntimeObserver's privacy pattern is valid or not whatever the process's recursion limit.

Python's ``re`` recurses once per nested group, so whether ``"(" * 500 +
")" * 500`` compiles depended on the recursion limit and the stack depth of
the process that checked it: ``InvalidRegex`` at the default limit (1000),
valid once a library raised it (celpy's ``Environment`` sets 2500, which made
``test_operator_observer_stalled.py``'s recursion case fail whenever a test
using celpy ran first in the same worker). The operator and each agent could
then disagree about the same pattern. Groups nested deeper than
``MAX_GROUP_DEPTH`` are now refused before ``re`` is asked, and patterns at
the cap compile even from deep in a stack.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator

import pytest

from stellaops_runtime.contracts.crds import SpecError, parse_observer_spec
from stellaops_runtime.contracts.regex_depth import MAX_GROUP_DEPTH, group_depth

SPEC = {
    "agent": {"image": "ghcr.io/stellaops/stellaops-runtime:0.1.0"},
    "store": {"secretRef": {"name": "stellaops-store", "key": "url"}},
}


def _nested(depth: int) -> str:
    return "(" * depth + "a" + ")" * depth


@pytest.fixture(params=[1000, 2500], ids=["default-limit", "celpy-limit"])
def recursion_limit(request: pytest.FixtureRequest) -> Iterator[int]:
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(request.param)
    re.purge()
    try:
        yield request.param
    finally:
        sys.setrecursionlimit(before)


@pytest.mark.usefixtures("recursion_limit")
def test_too_deep_a_pattern_is_invalid_regex_at_any_recursion_limit() -> None:
    with pytest.raises(SpecError) as e:
        parse_observer_spec(SPEC | {"privacy": {"extraPatterns": ["ok", "(" * 500 + ")" * 500]}})
    assert e.value.reason == "InvalidRegex"
    assert e.value.message == (
        f"spec.privacy.extraPatterns[1] nests groups 500 deep, at most {MAX_GROUP_DEPTH}"
    )


def test_a_pattern_at_the_cap_compiles_even_deep_in_a_stack() -> None:
    def deep(n: int) -> None:
        if n:
            deep(n - 1)
            return
        re.purge()
        parse_observer_spec(SPEC | {"privacy": {"extraPatterns": [_nested(MAX_GROUP_DEPTH)]}})

    deep(sys.getrecursionlimit() // 2)  # half the stack already used: still valid


@pytest.mark.parametrize(
    ("pattern", "depth"),
    [
        ("(a(b)c)", 2),
        (r"\(\(\(x", 0),  # escaped
        ("[(((]x", 0),  # in a class
        ("[]((]x(y)", 1),  # "]" first in a class is a member
        ("[^]((]x", 0),
        (r"[\]((]x", 0),  # an escaped "]" does not end the class
        ("(?:(?P<n>a)|(?=b))", 2),
    ],
)
def test_group_depth_counts_only_real_groups(pattern: str, depth: int) -> None:
    re.compile(pattern)  # each is a real pattern
    assert group_depth(pattern) == depth


def test_the_agent_refuses_what_the_operator_refuses_whatever_its_recursion_limit() -> None:
    """The agent's own config check (contracts/config_base.check_regexes) used to depend on the
    recursion limit like the operator's did: a pattern the operator refused could pass in an agent
    (or the reverse), so the operator and the agents disagreed on a privacy pattern."""
    from stellaops_runtime.contracts.config_base import check_regexes

    too_deep = _nested(MAX_GROUP_DEPTH + 1)
    limit = sys.getrecursionlimit()
    try:
        for new_limit in (limit, 5000):
            sys.setrecursionlimit(new_limit)
            re.purge()
            with pytest.raises(ValueError, match="nests groups"):
                check_regexes([too_deep])
            assert check_regexes([_nested(MAX_GROUP_DEPTH)]) == [_nested(MAX_GROUP_DEPTH)]
    finally:
        sys.setrecursionlimit(limit)
