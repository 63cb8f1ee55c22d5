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
  unknown keywords); ``x-kubernetes-validations`` (CEL) is *not* evaluated
  here: ``cel_rules`` lists them so tests can check each one separately;
- ``metadata`` is checked by the API server, not the schema: it is left open.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import yaml


def load_crd(path: Path) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
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


def validator_for(crd: dict[str, Any], version: str | None = None) -> jsonschema.Draft4Validator:
    schema = to_json_schema(served_schema(crd, version))
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker())


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
