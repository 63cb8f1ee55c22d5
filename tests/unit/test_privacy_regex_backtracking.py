"""privacy.extraPatterns that can take exponential time are refused by the agent and the operator alike.

A user pattern such as ``(\\w+\\s?)+=secret`` backtracks in 2^n ways on a field
that almost matches; ``re`` holds the GIL meanwhile, so one crafted command
line of 60 characters stopped the whole agent (tests/e2e/test_privacy_regex_e2e.py).
"""

from __future__ import annotations

import re
import time

import pytest

from stellaops_runtime.contracts.config import ConfigError, PrivacyConfig, parse_config
from stellaops_runtime.contracts.crds import SpecError, parse_observer_spec
from stellaops_runtime.contracts.regex_backtracking import backtracking_risk
from stellaops_runtime.privacy import PrivacyFilter

REFUSED = [
    r"(\w+\s?)+=secret",
    r"(a+)+b",
    r"(a*)*",
    r"(?:a|aa)+b",
    r"(?:a?a)+",
    r"(.*,)*x",
    r"(?:--|-)+x",
    r"((ab)*c)*",
    r"(?:[a-z]+\.)+com",
    r"(?:a{1,3}){1,50}",
    r"(?=(a+)+)b",
    r"(?:(a|b)+c)+",
    r"(?i:(?:ab|AC)+)",
]
# The smallest RuntimeObserver spec the operator accepts.
SPEC = {
    "agent": {"image": "ghcr.io/stellaops/stellaops-runtime:0.1.0"},
    "store": {"secretRef": {"name": "stellaops-store", "key": "url"}},
}
ACCEPTED = [
    r"token=\S+",
    r"internal-token-[a-z0-9]+",
    r"(?:\d{1,3}\.){3}\d{1,3}",
    r"(?:foo|bar)+",
    r"(?:[a-z]++\.)+com",
    r"(?>a+)+",
    r"secret=(?P<secret>\w+)",
    r"(?:ab){2,}",
    r"x(?:[0-9a-f]{2})+",
    r"(?:\d[ -]*+){13,16}",
    r"(?:[0-9A-Za-z+/]{4})*",
    r"(a)?b",
]


@pytest.mark.parametrize("pattern", REFUSED)
def test_a_pattern_that_can_backtrack_exponentially_is_refused_everywhere(pattern: str) -> None:
    assert backtracking_risk(pattern)
    with pytest.raises(ConfigError, match="exponential time"):
        parse_config({"privacy": {"extraPatterns": ["ok", pattern]}})
    with pytest.raises(SpecError) as e:
        parse_observer_spec(SPEC | {"privacy": {"extraPatterns": ["ok", pattern]}})
    assert e.value.reason == "InvalidRegex" and "extraPatterns[1]" in e.value.message
    assert "possessive" in e.value.message


@pytest.mark.parametrize("pattern", ACCEPTED)
def test_a_pattern_without_nested_backtracking_is_accepted(pattern: str) -> None:
    assert backtracking_risk(pattern) == ""
    assert parse_config({"privacy": {"extraPatterns": [pattern]}}).privacy.extra_patterns == [pattern]
    parse_observer_spec(SPEC | {"privacy": {"extraPatterns": [pattern]}})


def test_the_possessive_rewrite_redacts_and_stays_fast_on_the_text_that_froze_the_agent() -> None:
    pf = PrivacyFilter(PrivacyConfig(extraPatterns=[r"(?:\w++\s?+)+=(?P<secret>\S+)"]))
    start = time.perf_counter()
    assert pf.filter_field("a" * 4000 + "!") == "a" * 4000 + "!"
    assert time.perf_counter() - start < 5  # exponential: never ends; this takes milliseconds
    assert pf.filter_field("db pw=Xy7") == "db pw=[REDACTED]"


def test_a_pattern_that_does_not_compile_is_reported_as_such() -> None:
    assert backtracking_risk("(a+") == ""
    with pytest.raises(ConfigError, match="invalid regular expression"):
        parse_config({"privacy": {"extraPatterns": ["(a+"]}})
    assert re.compile(r"(?>a+)+")  # the accepted rewrites compile on this Python
