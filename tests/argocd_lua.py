"""Run the shipped Argo CD health scripts (manifests/gitops/argocd/) the way Argo CD does.

Shared by the health-check tests of the operator's kinds
(tests/unit/test_argocd_health.py) and of the agents' ObservationNodes
(tests/unit/test_argocd_node_health.py). Argo CD runs a health script in
gopher-lua (Lua 5.1) with only the base, table, package and a reduced os
library opened (util/lua/lua.go in argoproj/argo-cd), sets the global ``obj``
to the live object, and reads the table the chunk returns: ``status`` must be
one of its health codes, or the resource shows ``Unknown``. ``argo_lua``
builds the same sandbox in lupa's Lua 5.1 (string, math, io, debug and
coroutine removed, strings without their method table), so a script that
calls ``string.format`` fails here as it would in Argo CD.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml
from lupa import lua51

ROOT = Path(__file__).resolve().parents[1]
ARGO = ROOT / "manifests" / "gitops" / "argocd"
PREFIX = "resource.customizations.health."
# Argo CD's health codes (gitops-engine pkg/health): anything else becomes Unknown
ARGO_CODES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}


def configmap() -> dict[str, Any]:
    return yaml.safe_load((ARGO / "argocd-cm-health.yaml").read_text())


@functools.cache
def scripts() -> dict[str, str]:
    """Kind -> Lua script, from the ConfigMap patch."""
    return {k.removeprefix(PREFIX + "stellaops.io_"): v for k, v in configmap()["data"].items()}


def to_lua(lua: Any, value: Any) -> Any:
    """A JSON value as Argo CD hands it to Lua (maps and lists both become tables)."""
    if isinstance(value, dict):
        t = lua.table()
        for k, v in value.items():
            t[k] = to_lua(lua, v)
        return t
    if isinstance(value, list):
        t = lua.table()
        for i, v in enumerate(value, 1):
            t[i] = to_lua(lua, v)
        return t
    return value


def argo_lua() -> Any:
    lua = lua51.LuaRuntime(unpack_returned_tuples=False, register_eval=False, register_builtins=False)
    lua.execute(
        'debug.setmetatable("", nil) '
        "string = nil math = nil io = nil debug = nil coroutine = nil os = nil python = nil"
    )
    return lua


def health(kind: str, obj: Any) -> dict[str, Any]:
    """Run the shipped script for ``kind`` on ``obj`` the way Argo CD does; the returned table as a dict."""
    lua = argo_lua()
    lua.globals().obj = to_lua(lua, obj)
    result = lua.execute(scripts()[kind])
    assert lua.eval("type")(result) == "table", f"{kind}: the script returned {result!r}, not a table"
    out = dict(result.items())
    assert set(out) == {"status", "message"}, out
    assert out["status"] in ARGO_CODES and isinstance(out["message"], str), out
    return out
