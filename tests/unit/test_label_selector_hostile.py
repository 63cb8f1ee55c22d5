"""A selector whose ``operator`` is not a string is a SelectorError, not a TypeError.

``parse_selector`` (contracts/label_selector.py) reads the podSelector and
namespaceSelector of each probe ConfigMap entry in the agent
(agent/native_selection_policies.py), where an entry that cannot be read
must select nothing and cost the other entries nothing (docs/operator.md,
"Pod selection on native nodes"). An ``operator`` that was a list or an
object (a hand-edited ConfigMap) raised TypeError ("unhashable type") from
the membership test, which the per-entry guard does not catch: the good
entries around it were lost with it.
"""

from __future__ import annotations

from typing import Any

import pytest

from stellaops_runtime.agent.native_selection_policies import parse_policies
from stellaops_runtime.contracts.label_selector import SelectorError, parse_selector


@pytest.mark.parametrize("operator", [["In"], {"op": "In"}, None, 5, "in"])
def test_an_operator_that_is_not_one_of_the_four_strings_is_a_selector_error(operator: Any) -> None:
    with pytest.raises(SelectorError, match=r"matchExpressions\[0\]\.operator"):
        parse_selector({"matchExpressions": [{"key": "app", "operator": operator, "values": ["web"]}]})


def test_a_bad_entry_costs_the_others_nothing() -> None:
    good = {
        "kind": "ObservationPolicy",
        "namespace": "shop",
        "podSelector": {"matchLabels": {"stellaops.io/observe": "true"}},
    }
    bad = good | {"podSelector": {"matchExpressions": [{"key": "app", "operator": ["In"], "values": ["x"]}]}}
    kept, messages = parse_policies({"a/shop/bad": bad, "b/shop/good": good})
    assert [p.key for p in kept] == ["b/shop/good"]
    assert len(messages) == 1 and "a/shop/bad" in messages[0] and "operator" in messages[0]
