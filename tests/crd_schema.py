"""Validate objects against a CustomResourceDefinition's OpenAPI v3 schema with jsonschema.

The API server validates custom resources against ``openAPIV3Schema``; kmock
does not, so tests do it here. The OpenAPI v3 subset Kubernetes uses maps onto
JSON Schema draft 4 (boolean ``exclusiveMinimum``) with a few translations:

- ``nullable: true`` allows ``null`` as well;
- an object with ``properties`` and neither ``additionalProperties`` nor
  ``x-kubernetes-preserve-unknown-fields`` rejects unknown fields: the API
  server would prune them silently, and kubectl's strict field validation
  rejects them, so a rendered object must not carry any;
- ``x-kubernetes-list-type: set`` means unique items (``uniqueItems``);
- ``x-kubernetes-int-or-string`` (with its ``anyOf``) and the other
  ``x-kubernetes-*`` markers are kept as they are (jsonschema ignores
  unknown keywords); ``x-kubernetes-validations`` (CEL) is evaluated apart,
  by ``cel_violations`` with cel-python, and listed by ``cel_rules``;
- ``pattern`` is matched with RE2 (google-re2), as the API server's Go
  regexp does, not with Python's ``re``: their ``$`` differ (Python's also
  matches before a trailing newline, so ``re`` passed ``"name\n"`` where
  the API server refuses it);
- ``metadata`` is checked by the API server, not the schema: it is left open.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import re2
import yaml
from jsonschema.exceptions import ValidationError


def load_crd(path: Path) -> dict[str, Any]:
    """The file's one CustomResourceDefinition (a copy: the caller may change it)."""
    return copy.deepcopy(_load_crd(path, path.stat().st_mtime_ns))


@functools.cache
def _load_crd(path: Path, mtime_ns: int) -> dict[str, Any]:
    # Read once per file and version: test modules load the same CRDs ~60 times at import, in
    # every xdist worker's collection; libyaml's loader builds the same objects as safe_load.
    docs = [d for d in yaml.load_all(path.read_text(), Loader=yaml.CSafeLoader) if d]
    crds = [d for d in docs if d.get("kind") == "CustomResourceDefinition"]
    assert len(crds) == 1, f"{path}: expected one CustomResourceDefinition, found {len(crds)}"
    return crds[0]


def served_schema(crd: dict[str, Any], version: str | None = None) -> dict[str, Any]:
    versions = crd["spec"]["versions"]
    chosen = (
        [v for v in versions if v["name"] == version] if version else [v for v in versions if v["storage"]]
    )
    assert len(chosen) == 1
    return chosen[0]["schema"]["openAPIV3Schema"]


def _translate(node: Any, *, top: bool = False) -> Any:
    if isinstance(node, list):
        return [_translate(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _translate(v) for k, v in node.items() if k != "properties"}
    if "properties" in node:
        out["properties"] = {
            k: ({"type": "object"} if top and k == "metadata" else _translate(v))
            for k, v in node["properties"].items()
        }
        if "additionalProperties" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    if node.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    if node.get("nullable") and "type" in node:
        out["type"] = [node["type"], "null"]
    return out


def to_json_schema(openapi: dict[str, Any]) -> dict[str, Any]:
    schema = _translate(copy.deepcopy(openapi), top=True)
    schema["$schema"] = "http://json-schema.org/draft-04/schema#"
    return schema


def _re2_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    """``pattern`` as the API server matches it: Go's regexp, whose syntax and ``$`` RE2 shares."""
    if validator.is_type(instance, "string") and not re2.search(pattern, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


_ApiServerDraft4 = jsonschema.validators.extend(jsonschema.Draft4Validator, {"pattern": _re2_pattern})


def validator_for(crd: dict[str, Any], version: str | None = None) -> jsonschema.Draft4Validator:
    schema = to_json_schema(served_schema(crd, version))
    jsonschema.Draft4Validator.check_schema(schema)
    validator: jsonschema.Draft4Validator = _ApiServerDraft4(
        schema, format_checker=jsonschema.FormatChecker()
    )
    return validator


def errors(validator: jsonschema.Draft4Validator, obj: Any) -> list[str]:
    """Every schema violation of ``obj`` as ``path: message`` (empty when valid)."""
    return sorted(
        f"{'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
        for e in validator.iter_errors(obj)
    )


def cel_rules(node: Any, path: str = "") -> Iterator[tuple[str, str, str]]:
    """Every ``x-kubernetes-validations`` rule as (schema path, rule, message)."""
    if isinstance(node, dict):
        for rule in node.get("x-kubernetes-validations") or ():
            yield path or ".", rule["rule"], rule.get("message", "")
        for key, value in node.items():
            if key == "properties":
                for name, sub in value.items():
                    yield from cel_rules(sub, f"{path}.{name}")
            elif key == "items":
                yield from cel_rules(value, f"{path}[]")
            elif key in ("additionalProperties",):
                yield from cel_rules(value, f"{path}{{}}")


@functools.cache
def cel_program(rule: str) -> Any:
    """``rule`` compiled by cel-python (a CELParseError when it does not compile)."""
    import celpy  # the test extra of pyproject.toml, as tests/unit/test_kstatus.py uses it

    env = celpy.Environment()
    return env.program(env.compile(rule))


def cel_holds(rule: str, value: Any) -> bool:
    """Whether ``rule`` is true with ``self`` bound to ``value``; an evaluation error is a refusal,
    as the API server reports it as an invalid value."""
    return _cel_holds(rule, json.dumps(value, sort_keys=True))


@functools.lru_cache(maxsize=65536)
def _cel_holds(rule: str, value_json: str) -> bool:
    import celpy

    try:
        result = cel_program(rule).evaluate({"self": celpy.json_to_cel(json.loads(value_json))})
    except celpy.CELEvalError:
        return False
    return not isinstance(result, celpy.CELEvalError) and result is not None and bool(result)


def cel_violations(schema: dict[str, Any], value: Any, path: str = "") -> list[str]:
    """Every ``x-kubernetes-validations`` rule of ``schema`` that ``value`` breaks, as ``path: message``,
    walking the object as the API server does (a rule runs where its field is present)."""
    if value is None:
        return []
    out = [
        f"{path or '(root)'}: {r.get('message') or r['rule']}"
        for r in schema.get("x-kubernetes-validations") or ()
        if not cel_holds(r["rule"], value)
    ]
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key, sub_value in value.items():
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                out += cel_violations(sub, sub_value, f"{path}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            out += cel_violations(schema["items"], item, f"{path}[{i}]")
    return out
