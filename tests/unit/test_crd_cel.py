"""The CRDs' CEL rules, run by a real CEL engine, say what the operator's Python reading says.

A real API server evaluates every ``x-kubernetes-validations`` rule with
cel-go; our realkube API server is too old for CEL, so cel-python (a dev
dependency; ``matches`` runs on RE2 there as in cel-go) plays it here
(tests/crd_schema.py ``cel_violations``), next to the OpenAPI schema with its
patterns matched by RE2 as Go's regexp does. Each test below:

- compiles every rule and checks it calls only functions cel-python has, so a
  rule cel-python cannot run fails here instead of going untested;
- checks every string literal is one cel-go parses (cel-python takes more);
- checks every string and list a rule reads is bounded (maxLength, maxItems,
  maxProperties), and so is every list a rule sits in: an unbounded one makes
  the API server refuse the CRD itself ("estimated rule cost exceeds budget").
- estimates each rule's cost as the API server does (tests/crd_cel_cost.py follows
  cel-go's coster: ``matches``, ``in`` over a list, ``all``/``exists``, ``bytes``...)
  and checks each rule and each CRD's sum stay under the API server's limits.

tests/unit/test_crd_cel_agreement.py runs the rules on hostile values against the operator.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterator
from typing import Any

import pytest
from crd_cel_cost import estimated_cost
from crd_schema import cel_holds, cel_program, served_schema, validator_for
from test_crds import KINDS, ROOT
from test_crds import crd as load_kind

# Functions a rule may call: CEL's standard ones that cel-python 0.5 has. Kubernetes adds its
# libraries (strings ext: indexOf, lowerAscii, split, ...; lists, regex find, url, quantity);
# cel-python has none of them, so a rule using one must get its own test before it is listed here.
CEL_PYTHON_FUNCTIONS = {"has", "size", "matches", "startsWith", "endsWith", "contains", "bytes", "int"}
CEL_PYTHON_FUNCTIONS |= {"all", "exists"}  # macros


def _rules() -> Iterator[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    """(kind, schema path, schema node, rule) for every rule of every CRD."""

    def walk(kind: str, node: Any, path: str) -> Iterator[tuple[str, str, dict[str, Any], dict[str, Any]]]:
        if not isinstance(node, dict):
            return
        for rule in node.get("x-kubernetes-validations") or ():
            yield kind, path or ".", node, rule
        for name, sub in (node.get("properties") or {}).items():
            yield from walk(kind, sub, f"{path}.{name}")
        if isinstance(node.get("items"), dict):
            yield from walk(kind, node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            yield from walk(kind, node["additionalProperties"], f"{path}{{}}")

    for kind in sorted(KINDS):
        yield from walk(kind, served_schema(crd(kind)), "")


@functools.cache
def crd(kind: str) -> dict[str, Any]:
    return load_kind(kind)


@functools.cache
def validator(kind: str) -> Any:
    return validator_for(crd(kind))


RULES = list(_rules())


@pytest.mark.parametrize(("kind", "path", "rule"), [(k, p, r["rule"]) for k, p, _, r in RULES])
def test_every_rule_compiles_and_uses_only_functions_cel_python_runs(kind: str, path: str, rule: str) -> None:
    cel_program(rule)  # raises CELParseError when it does not compile
    bare = re.sub(r"'([^'\\]|\\.)*'", "''", rule)  # string literals hold no calls
    called = set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(", bare))
    assert called <= CEL_PYTHON_FUNCTIONS, f"{kind} {path}: {rule!r} calls {called - CEL_PYTHON_FUNCTIONS}"


def test_every_rule_has_a_message_the_api_server_takes() -> None:
    """A message is required non-blank and on one line (apiextensions refuses a line break)."""
    for kind, path, _, rule in RULES:
        message = rule.get("message") or ""
        assert message.strip() and "\n" not in message, f"{kind} {path}: {rule['rule']!r}: {message!r}"
        assert set(rule) == {"rule", "message"}, f"{kind} {path}: {sorted(rule)}"


# The escapes cel-go's parser takes in a quoted (not raw) string literal. cel-python also takes
# others (it read '\.' as a regex escape), which a real API server refuses as "invalid escape sequence".
_CEL_ESCAPES = re.compile(
    r"\\([abfnrtv\\'\"`?]|x[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|[0-3][0-7]{2})"
)


@pytest.mark.parametrize(("kind", "path", "rule"), [(k, p, r["rule"]) for k, p, _, r in RULES])
def test_every_string_literal_is_one_cel_go_parses(kind: str, path: str, rule: str) -> None:
    for raw, body in re.findall(r"(\b[rR])?'((?:[^'\\]|\\.)*)'", rule):
        if raw:
            continue
        leftover = _CEL_ESCAPES.sub("", body)
        assert "\\" not in leftover, f"{kind} {path}: {body!r} holds an escape cel-go refuses"


def test_the_escape_check_catches_what_cel_python_lets_through() -> None:
    leftover = _CEL_ESCAPES.sub("", "^[^/]+\\.sock$")
    assert "\\" in leftover and cel_holds("self.matches('^a\\.b$')", "a.b")  # cel-python took it
    assert "\\" not in _CEL_ESCAPES.sub("", "a\\x00b\\nc\\\\d")


# ---------------------------------------------------------------- bounded for the cost estimator


def _unbounded(node: dict[str, Any], path: str) -> Iterator[str]:
    """Strings without maxLength (or enum), lists without maxItems, maps without maxProperties."""
    kind = node.get("type")
    if kind == "string" and "maxLength" not in node and "enum" not in node and "format" not in node:
        yield path
    if kind == "array":
        if "maxItems" not in node:
            yield path
        yield from _unbounded(node.get("items") or {}, f"{path}[]")
    if kind == "object":
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            if "maxProperties" not in node:
                yield path
            yield from _unbounded(extra, f"{path}{{}}")
        for name, sub in (node.get("properties") or {}).items():
            yield from _unbounded(sub, f"{path}.{name}")


def _enclosing_lists(schema: dict[str, Any], target: str) -> Iterator[tuple[str, dict[str, Any]]]:
    node, path = schema, ""
    for part in re.findall(r"\.[^.\[{]+|\[\]|\{\}", target):
        if part == "[]":
            yield path, node
            node = node["items"]
        elif part == "{}":
            yield path, node
            node = node["additionalProperties"]
        else:
            node = node["properties"][part[1:]]
        path += part


@pytest.mark.parametrize(("kind", "path", "rule"), [(k, p, r["rule"]) for k, p, _, r in RULES])
def test_what_every_rule_reads_is_bounded(kind: str, path: str, rule: str) -> None:
    node = next(n for k, p, n, r in RULES if (k, p, r["rule"]) == (kind, path, rule))
    if node.get("type") == "object":  # the rule reads the fields it names
        names = set(re.findall(r"self\.([A-Za-z_][A-Za-z0-9_]*)\b(?!\s*\()", rule))
        reads = [node["properties"][name] for name in sorted(names)]
    else:
        reads = [node]
    unbounded = [p for n in reads for p in _unbounded(n, path)]
    lists = [
        p
        for p, n in _enclosing_lists(served_schema(crd(kind)), path)
        if ("maxItems" if n.get("type") == "array" else "maxProperties") not in n
    ]
    assert not unbounded and not lists, f"{kind} {rule!r}: unbounded {unbounded}, in unbounded lists {lists}"


# Kubernetes' limits on the estimated cost of a CRD's rules (apiextensions-apiserver): per rule, and the
# sum over the CRD of each rule's cost times how many times it can run (the lists it sits in).
PER_RULE_COST_LIMIT, PER_CRD_COST_LIMIT = 10_000_000, 100_000_000


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_estimated_rule_costs_stay_under_the_api_servers_limits(kind: str) -> None:
    schema, total = served_schema(crd(kind)), 0
    for k, path, node, rule in RULES:
        if k != kind:
            continue
        cost = estimated_cost(rule["rule"], node)
        assert cost <= PER_RULE_COST_LIMIT, f"{path}: {rule['rule']!r} costs about {cost}"
        runs = math.prod(
            n.get("maxItems", n.get("maxProperties", 1)) for _, n in _enclosing_lists(schema, path)
        )
        total += cost * runs
    assert total <= PER_CRD_COST_LIMIT


def test_the_docs_cost_figures_hold() -> None:
    """docs/operator.md: the dearest rule under 150,000, no CRD's sum over 300,000."""
    schemas = {kind: served_schema(crd(kind)) for kind in KINDS}
    costs = [
        (
            kind,
            estimated_cost(rule["rule"], node),
            math.prod(
                n.get("maxItems", n.get("maxProperties", 1)) for _, n in _enclosing_lists(schemas[kind], path)
            ),
        )
        for kind, path, node, rule in RULES
    ]
    assert max(c for _, c, _ in costs) < 150_000
    assert all(sum(c * r for k, c, r in costs if k == kind) <= 300_000 for kind in KINDS)
    text = " ".join((ROOT / "docs" / "operator.md").read_text().split())
    assert "under 150,000 of the 10,000,000" in text and "more than 300,000 of its 100,000,000" in text


def test_the_cost_estimate_follows_cel_go() -> None:
    """Hand-computed by cel-go's checker/cost.go rules (tests/crd_cel_cost.py says which)."""
    node = {"type": "string", "maxLength": 1000}
    # self 1, matches ceil(0.1 * 1001) * ceil(0.25 * 6)
    assert estimated_cost("self.matches('^abcd$')", node) == 1 + 101 * 2
    parent = {"type": "object", "properties": {"a": node}}
    # has: 1 + self 1; self.a: self 1 + select 1; matches ceil(0.1 * 1001) * ceil(0.25 * 5)
    assert estimated_cost("has(self.a) && self.a.matches(r'[0-9]')", parent) == 2 + 2 + 101 * 2
    names = {"type": "array", "maxItems": 10, "items": {"type": "string", "maxLength": 64}}
    # range 1, result 1, 10 * (condition 2 + step's accumulator 1 + s 1 + list 10 + 'in' over 2 items)
    assert estimated_cost("self.all(s, s in ['a', 'b'])", names) == 1 + 1 + 10 * (2 + 1 + 1 + 10 + 2)
    # startsWith: ceil(0.1 * 7); size(bytes(self)) <= 114: bytes ceil(0.1 * 1000), size 1, <= 1
    assert estimated_cost("self.startsWith('unix://')", node) == 1 + 1
    assert estimated_cost("size(bytes(self)) <= 114", node) == 1 + 100 + 1 + 1
    # the syscall rule: every one of 256 names against the operator's list, the dearest rule we have
    syscalls = next(r for _, p, _, r in RULES if p == ".spec.syscalls")["rule"]
    listed = syscalls.count("'")
    assert estimated_cost(syscalls, {**names, "maxItems": 256}) == 2 + 256 * (4 + 10 + listed // 2)
    # what counting only `matches` called free: the same rule over 30,000 names would refuse the CRD
    assert estimated_cost(syscalls, {**names, "maxItems": 30_000}) > PER_RULE_COST_LIMIT
