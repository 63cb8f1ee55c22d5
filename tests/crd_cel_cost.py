"""The cost a Kubernetes API server estimates for a CRD's CEL rule, before it accepts the CRD.

The API server refuses a whole CRD when one rule's estimated worst-case cost
exceeds 10,000,000, or the sum over its rules (each times how many times it can
run: the maxItems/maxProperties of the lists and maps it sits in) exceeds
100,000,000 (apiextensions-apiserver, "estimated rule cost exceeds budget").
The estimate is cel-go's static coster (checker/cost.go) with the sizes the
schema bounds (maxLength, maxItems, maxProperties). This module follows its
rules for what our rules use, on cel-python's parse tree, as upper bounds:

- a literal costs 0, an identifier 1, a field select on an object 1, a
  presence test (``has``) 1 plus its operand; a list literal 10 plus its items;
- ``&&``, ``||``: both sides; ``c ? a : b``: c plus the dearer branch;
- ``x.matches(re)``: ceil(0.1 * (size(x) + 1)) * ceil(0.25 * size(re));
- ``x.startsWith(p)``/``endsWith``: ceil(0.1 * size(p)); ``contains``:
  ceil(0.1 * size(x)) * ceil(0.1 * size(p));
- ``e in list``: the list's size; ``e in map``: 1; ``==``, ``!=``, ``<``...:
  ceil(0.1 * the smaller operand's size), 1 for numbers;
- ``bytes(s)``: ceil(0.1 * size(s)), a result up to 4 * size(s) bytes;
- ``l.all(v, p)``/``exists``: the range, plus size(l) * (the loop's
  condition and step: 2 + 1 + p for all, 3 + 1 + p for exists), plus 1;
- any other call: 1 plus its arguments.

Sizes: ``self`` and the fields it reaches take the schema's bounds; an
iteration variable takes the items' (or, over a map, the keys') bounds; a
string literal its length. Anything else is unknown and costs as the API
server's estimator would take it: unbounded (a test then fails, as the CRD would).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

UNBOUNDED = 2**63  # what an unknown size becomes: any product with it is over every limit


@dataclass(frozen=True)
class Est:
    cost: int
    size: int | None = None  # a string's characters, a list's items, a map's entries; None: not sized
    schema: dict[str, Any] | None = None  # the schema node the value is, when it is one
    item_size: int | None = None  # a list literal's longest item


_COMPARISONS = {f"relation_{op}" for op in ("eq", "ne", "lt", "le", "gt", "ge")}


def _ceil(x: float) -> int:
    return math.ceil(x)


def _schema_size(node: dict[str, Any] | None) -> int | None:
    if not node:
        return None
    kind = node.get("type")
    if kind == "string":
        if "maxLength" in node:
            return int(node["maxLength"])
        if "enum" in node:
            return max(len(str(e)) for e in node["enum"])
        return UNBOUNDED
    if kind == "array":
        return int(node.get("maxItems", UNBOUNDED))
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        return int(node.get("maxProperties", UNBOUNDED))
    return 1 if kind in ("integer", "number", "boolean") else None


def _sized(size: int | None) -> int:
    return UNBOUNDED if size is None else size


def _literal(token: str) -> Est:
    text = str(token)
    if text[:1] in "'\"" or text[:2].lower() in ("r'", 'r"'):
        body = text[1:] if text[0] in "rR" else text
        quote = 3 if body[:3] in ("'''", '"""') else 1
        raw = body[quote:-quote]
        if text[0] not in "rR":
            raw = raw.encode("latin-1", "backslashreplace").decode("unicode_escape")
        return Est(0, len(raw))
    return Est(0, 1)


class _Coster:
    def __init__(self, schema: dict[str, Any]) -> None:
        self.vars: dict[str, dict[str, Any] | None] = {"self": schema}

    def cost(self, tree: Any) -> Est:
        data = tree.data
        kids = tree.children
        if data in ("expr",):
            if len(kids) == 1:
                return self.cost(kids[0])
            c, a, b = (self.cost(k) for k in kids)
            return Est(c.cost + max(a.cost, b.cost), max(_sized(a.size), _sized(b.size)))
        if data in ("conditionalor", "conditionaland"):
            if len(kids) == 1:
                return self.cost(kids[0])
            return Est(sum(self.cost(k).cost for k in kids), 1)
        if data in ("relation", "addition", "multiplication", "unary", "member", "primary"):
            if len(kids) == 1:
                return self.cost(kids[0])
            return self._operator(kids)
        if data == "paren_expr":
            return self.cost(kids[0])
        if data == "member_dot":
            target = self.cost(kids[0])
            sub = (target.schema or {}).get("properties", {}).get(str(kids[1]))
            return Est(target.cost + 1, _schema_size(sub), sub)
        if data == "member_dot_arg":
            return self._method(kids[0], str(kids[1]), kids[2].children if len(kids) > 2 else [])
        if data == "ident_arg":
            return self._function(str(kids[0]), kids[1].children if len(kids) > 1 else [])
        if data == "ident":
            node = self.vars.get(str(kids[0]))
            return Est(1, _schema_size(node), node)
        if data == "literal":
            return _literal(kids[0])
        if data == "list_lit":
            items = [self.cost(k) for k in (kids[0].children if kids else [])]
            longest = max((_sized(i.size) for i in items), default=0)
            return Est(10 + sum(i.cost for i in items), len(items), None, longest)
        raise NotImplementedError(f"cost of {data} is not modelled: add it before a rule uses it")

    def _operator(self, kids: list[Any]) -> Est:
        op, rhs_tree = kids
        if op.data == "unary_not" or op.data == "unary_neg":
            return Est(1 + self.cost(rhs_tree).cost, 1)
        (lhs_tree,) = op.children
        lhs, rhs = self.cost(lhs_tree), self.cost(rhs_tree)
        args = lhs.cost + rhs.cost
        if op.data == "relation_in":
            is_map = (rhs.schema or {}).get("type") == "object"
            return Est(args + (1 if is_map else _sized(rhs.size)), 1)
        if op.data in (
            "relation_eq",
            "relation_ne",
            "relation_lt",
            "relation_le",
            "relation_gt",
            "relation_ge",
        ):
            return Est(args + max(1, _ceil(0.1 * min(_sized(lhs.size), _sized(rhs.size)))), 1)
        return Est(args + 1, 1)

    def _method(self, target_tree: Any, name: str, arg_trees: list[Any]) -> Est:
        if name == "exists_one":
            raise NotImplementedError("exists_one's step is a conditional: model it before a rule uses it")
        if name in ("all", "exists"):
            var, pred = arg_trees
            rng = self.cost(target_tree)
            var_name = str(var.find_data("ident").__next__().children[0])
            node = rng.schema or {}
            if rng.item_size is not None:  # a list literal: its items' own sizes
                item: dict[str, Any] | None = {"type": "string", "maxLength": rng.item_size}
            elif node.get("type") == "array":
                item = node.get("items")
            else:  # a map's keys: the estimator knows no bound for them
                item = {"type": "string"}
            saved = self.vars.get(var_name)
            self.vars[var_name] = item
            body = self.cost(pred)
            self.vars[var_name] = saved
            step = (2 if name == "all" else 3) + 1 + body.cost
            return Est(rng.cost + _sized(rng.size) * step + 1, 1)
        target = self.cost(target_tree)
        args = [self.cost(a) for a in arg_trees]
        base = target.cost + sum(a.cost for a in args)
        if name == "matches":
            return Est(base + _ceil(0.1 * (_sized(target.size) + 1)) * _ceil(0.25 * _sized(args[0].size)), 1)
        if name in ("startsWith", "endsWith"):
            return Est(base + _ceil(0.1 * _sized(args[0].size)), 1)
        if name == "contains":
            return Est(base + _ceil(0.1 * _sized(target.size)) * _ceil(0.1 * _sized(args[0].size)), 1)
        return Est(base + 1, None)

    def _function(self, name: str, arg_trees: list[Any]) -> Est:
        if name == "has":
            (arg,) = arg_trees
            select = next(arg.find_data("member_dot"))
            return Est(1 + self.cost(select.children[0]).cost, 1)
        args = [self.cost(a) for a in arg_trees]
        base = sum(a.cost for a in args)
        if name == "bytes":
            return Est(base + _ceil(0.1 * _sized(args[0].size)), 4 * _sized(args[0].size))
        if name == "size":
            return Est(base + 1, 1)
        return Est(base + 1, None)


def estimated_cost(rule: str, schema: dict[str, Any]) -> int:
    """cel-go's estimated worst-case cost of ``rule`` with ``self`` the value of ``schema``."""
    import celpy

    env = celpy.Environment()
    return _Coster(schema).cost(env.compile(rule)).cost
