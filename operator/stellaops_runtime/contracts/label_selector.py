"""Kubernetes LabelSelector semantics, validated, for inputs the agent did not write itself.

The agent applies a policy's ``podSelector`` and ``namespaceSelector`` to the
pods of its node (agent/native_selection.py) from the probe ConfigMap file, a
file it reads but cannot trust to have the shape the operator wrote: a value
of the wrong type must not widen a selection (``"values": "web"`` tested with
``in`` would match every substring of ``web``). So a selector is parsed once
into plain requirements, and anything Kubernetes would refuse is a
``SelectorError`` naming the field:

- ``matchLabels``: a mapping of string to string;
- ``matchExpressions``: a list of ``{key, operator, values}`` with operator
  ``In`` / ``NotIn`` (a non-empty list of strings) or ``Exists`` /
  ``DoesNotExist`` (no values);
- keys and values without NUL, bounded in length and number.

Matching follows Kubernetes: every requirement must hold (AND), an empty
selector selects everything, ``NotIn`` and ``DoesNotExist`` hold for a label
that is absent. A missing selector (``None``) is the caller's to interpret
(``parse_selector`` returns ``None`` for it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_REQUIREMENTS = 256  # matchLabels entries plus matchExpressions
MAX_VALUES = 256  # values of one In / NotIn requirement
MAX_TEXT = 317  # a label key is at most 253 + 1 + 63 characters; a value at most 63
_WITH_VALUES = frozenset({"In", "NotIn"})
_WITHOUT_VALUES = frozenset({"Exists", "DoesNotExist"})


class SelectorError(ValueError):
    """A selector Kubernetes would refuse; the message names the field."""


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    operator: str  # In, NotIn, Exists, DoesNotExist (matchLabels entries become In with one value)
    values: frozenset[str] = frozenset()

    def holds(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        op = self.operator
        if op == "In":
            return value is not None and value in self.values
        if op == "NotIn":
            return value is None or value not in self.values
        if op == "Exists":
            return value is not None
        return value is None  # DoesNotExist (parse_selector admits no other operator)


@dataclass(frozen=True, slots=True)
class Selector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether every requirement holds for ``labels`` (an empty selector matches everything)."""
        return all(r.holds(labels) for r in self.requirements)


def _text(v: Any, where: str) -> str:
    if not isinstance(v, str):
        raise SelectorError(f"{where}: expected a string, got {type(v).__name__}")
    if "\x00" in v or len(v) > MAX_TEXT:
        raise SelectorError(f"{where}: contains NUL or is longer than {MAX_TEXT} characters")
    return v


def parse_selector(obj: Any, *, where: str = "selector") -> Selector | None:
    """The selector ``obj`` describes, ``None`` for ``None``; raises SelectorError for anything else."""
    if obj is None:
        return None
    if not isinstance(obj, Mapping):
        raise SelectorError(f"{where}: expected a mapping, got {type(obj).__name__}")
    unknown = sorted(str(k)[:64] for k in obj if k not in ("matchLabels", "matchExpressions"))
    if unknown:
        raise SelectorError(f"{where}: unknown field(s) {', '.join(unknown)}")
    labels = obj.get("matchLabels") or {}
    exprs = obj.get("matchExpressions") or []
    if not isinstance(labels, Mapping):
        raise SelectorError(f"{where}.matchLabels: expected a mapping, got {type(labels).__name__}")
    if not isinstance(exprs, list):
        raise SelectorError(f"{where}.matchExpressions: expected a list, got {type(exprs).__name__}")
    if len(labels) + len(exprs) > MAX_REQUIREMENTS:
        raise SelectorError(f"{where}: more than {MAX_REQUIREMENTS} requirements")
    reqs: list[Requirement] = []
    for key, value in labels.items():
        k = _text(key, f"{where}.matchLabels key")
        reqs.append(Requirement(k, "In", frozenset({_text(value, f"{where}.matchLabels[{k[:64]}]")})))
    for i, e in enumerate(exprs):
        at = f"{where}.matchExpressions[{i}]"
        if not isinstance(e, Mapping):
            raise SelectorError(f"{at}: expected a mapping, got {type(e).__name__}")
        key = _text(e.get("key"), f"{at}.key")
        op = e.get("operator")
        op = op if isinstance(op, str) else ""  # a list or object is unhashable: no TypeError, just refused
        values = e.get("values")
        if op in _WITH_VALUES:
            if not isinstance(values, list) or not values or len(values) > MAX_VALUES:
                raise SelectorError(f"{at}.values: {op} needs a list of 1 to {MAX_VALUES} strings")
            reqs.append(Requirement(key, op, frozenset(_text(v, f"{at}.values") for v in values)))
        elif op in _WITHOUT_VALUES:
            if values:  # null or [] only, as the API server requires
                raise SelectorError(f"{at}.values: {op} takes no values")
            reqs.append(Requirement(key, op))
        else:
            shown = str(e.get("operator"))[:32]
            raise SelectorError(f"{at}.operator: {shown!r} is not In, NotIn, Exists or DoesNotExist")
    return Selector(tuple(reqs))
