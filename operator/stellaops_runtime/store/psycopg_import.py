"""psycopg imported without ``importlib.metadata``: ~1.5 MB of every agent on PostgreSQL (issue 13).

psycopg and psycopg-binary each read their own version when imported (their ``version.py``:
``__version__ = metadata.version(...)``). That one string, which the agent never reads, loads
``importlib.metadata`` and with it email's parser, ``zipfile``, ``csv`` and ``importlib.resources``
(32 modules) and scans ``sys.path`` for distributions: 1.5 MB of the idle agent's RSS, held for
its whole life (docs/benchmarks.md, "Sixteenth pass").

:func:`load` imports psycopg with each of those two ``version`` modules stood in for by one
holding the same ``__version__``, read from the ``Version:`` line of the package's own
``*.dist-info/METADATA`` (the file ``metadata.version`` reads). It is done only when that is
unambiguous: the package installed in a directory holding exactly one ``dist-info`` of its
distribution, with a version in it. Otherwise, or when psycopg was already imported, psycopg
imports as it always does. The stand-in is also set as the package's ``version`` attribute, as
an import of the real module would. tests/unit/test_psycopg_import.py pins what this relies on:
each ``version.py`` binds ``__version__`` alone, from ``metadata.version`` of that distribution,
and the stand-ins' versions are the ones ``importlib.metadata`` gives.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import types
from typing import Any

# (package, its distribution's name as in the dist-info directory's name)
PACKAGES = (("psycopg", "psycopg"), ("psycopg_binary", "psycopg_binary"))
MAX_HEADER_BYTES = 64 * 1024  # METADATA's headers come first; the long description follows them
_VERSION = re.compile(r"^Version:[ \t]*(\S+)[ \t]*$", re.MULTILINE)


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def dist_version(site: str, dist: str) -> str | None:
    """The ``Version:`` of the one ``<dist>-*.dist-info`` in ``site``, or None (none, several, unreadable)."""
    try:
        names = os.listdir(site)
    except OSError:
        return None
    infos = [n for n in names if n.endswith(".dist-info") and _normal(n.split("-", 1)[0]) == _normal(dist)]
    if len(infos) != 1:
        return None
    try:
        with open(os.path.join(site, infos[0], "METADATA"), "rb") as f:
            head = f.read(MAX_HEADER_BYTES).decode("utf-8", "replace")
    except OSError:
        return None
    head = head.replace("\r\n", "\n").split("\n\n", 1)[0]  # the headers end at the first blank line
    found = _VERSION.search(head)
    return found.group(1) if found else None


def stand_in(package: str, dist: str) -> types.ModuleType | None:
    """The stand-in for ``<package>.version``, or None when the version is not unambiguous."""
    try:
        spec = importlib.util.find_spec(package)  # a top-level package: found, not imported
    except (ImportError, ValueError):
        return None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if len(locations) != 1:
        return None
    version = dist_version(os.path.dirname(locations[0]), dist)
    if version is None:
        return None
    module = types.ModuleType(f"{package}.version", f"{package}'s version, read from its dist-info")
    module.__version__ = version  # type: ignore[attr-defined]
    module.__file__ = os.path.join(locations[0], "version.py")
    return module


def load() -> Any:
    """Import psycopg (see the module docstring) and return it."""
    if "psycopg" in sys.modules:
        import psycopg

        return psycopg
    placed: dict[str, types.ModuleType] = {}
    for package, dist in PACKAGES:
        name = f"{package}.version"
        if name not in sys.modules and (module := stand_in(package, dist)) is not None:
            sys.modules[name] = placed[package] = module
    try:
        import psycopg
    except BaseException:
        for package in placed:  # leave no stand-in behind a failed import
            sys.modules.pop(f"{package}.version", None)
        raise
    for package, module in placed.items():
        parent = sys.modules.get(package)
        if parent is not None and sys.modules.get(f"{package}.version") is module:
            vars(parent)["version"] = module
    return psycopg
