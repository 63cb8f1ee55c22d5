"""npm packages: ``package.json`` ``name`` and ``version``.

A file belongs to the nearest enclosing directory whose ``package.json`` has
both; a ``package.json`` without them (``{"type": "module"}`` marker files
inside packages) is not a package and the search goes on upwards.
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class NpmPackage:
    name: str  # "@scope/name" or "name"
    version: str


def parse_package_json(data: bytes, *, origin: str) -> NpmPackage | None:
    """The package, ``None`` for a marker file without name/version; ``ValueError`` if not a JSON object."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:  # deep nesting: RecursionError
        raise ValueError(f"{origin}: not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{origin}: not a JSON object")
    name, version = doc.get("name"), doc.get("version")
    if not (isinstance(name, str) and isinstance(version, str) and name and version):
        return None
    if name.startswith("@") and name.count("/") != 1:
        raise ValueError(f"{origin}: scoped name {name!r} is not '@scope/name'")
    return NpmPackage(name, version)
