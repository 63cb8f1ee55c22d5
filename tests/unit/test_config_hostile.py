"""Hostile configuration documents only ever parse or raise ConfigError, with a short redacted message.

A seeded generator builds documents the way a broken or malicious ConfigMap
could: wrong types at every level, known keys (YAML and Python names,
deprecated names, probe settings) beside unknown ones, keys that are not
strings, deep nesting, NUL bytes, huge numbers, NaN and infinities, 10 MB
strings, and secrets in URLs. YAML files add anchors and aliases (shared and
self-referencing nodes, a "billion laughs" fan-out), tags PyYAML turns into
bytes, dates and sets, and integers too long for Python to convert.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.contracts.config import AgentConfig, ConfigError, load_config, parse_config
from stellaops_runtime.native.config import NativeConfig

SECRET = "Hunter2Secret"
HUGE = "9" * 10_000_000  # 10 MB
SECTIONS = parse_config({}).model_dump(by_alias=True)
PY_SECTIONS = parse_config({}).model_dump()
DEPRECATED = {"tetragon": ["timeoutSeconds"], "hotSymbols": ["windowSeconds"],
              "privacy": ["defaultPatterns", "symbolIdOnly"]}  # fmt: skip
PROBE_KEYS = [
    "".join(p if i == 0 else p.title() for i, p in enumerate(f.name.split("_")))
    for f in dataclasses.fields(NativeConfig)
]
STRINGS = [
    "", "x", "a\x00b", "\x00", "5", " 5", "5.0", "1e3", "30s", "1h30m", "-5s", "nan", "inf", "yes",
    "auto", "PROCESS_EXEC", "(", "[a-", "unix://", "h:99999999999999999999", "sqlite:///x.db",
    f"postgresql://user:{SECRET}@db/x", f"password={SECRET}", f"u:{SECRET}@tetragon:notaport",
    "\udcff", "é" * 100, "s" * 5000,
]  # fmt: skip


def _scalar(rng: random.Random) -> Any:
    return rng.choice([
        None, True, False, 0, 1, -1, 2**63, -(2**70), 10**400, 1.5, -0.0, math.nan, math.inf, -math.inf,
        1e308, rng.randint(-1000, 100_000), rng.random() * 1000, rng.choice(STRINGS),
        rng.choice(STRINGS) * rng.randint(1, 50),
    ])  # fmt: skip


def _key(rng: random.Random, known: list[str]) -> Any:
    r = rng.random()
    if r < 0.6 and known:
        return rng.choice(known)
    if r < 0.8:
        return rng.choice(STRINGS)
    return rng.choice([1, -1, None, True, 2.5, math.nan, (1, "a"), frozenset({1}), 10**400])


def _value(rng: random.Random, depth: int, known: list[str] | None = None) -> Any:
    r = rng.random()
    if depth <= 0 or r < 0.45:
        return _scalar(rng)
    if r < 0.65:
        return [_value(rng, depth - 1) for _ in range(rng.randint(0, 4))]
    if r < 0.7:  # deep nesting
        v: Any = rng.choice([[], {}, "x"])
        for _ in range(rng.randint(100, 1000)):
            v = [v] if rng.random() < 0.5 else {"k": v}
        return v
    n = rng.randint(0, 6)
    return {_key(rng, known or []): _value(rng, depth - 1, known) for _ in range(n)}


def _section(rng: random.Random, name: str) -> Any:
    own = SECTIONS.get(name)
    if not isinstance(own, dict) or rng.random() < 0.15:
        return _value(rng, 3)
    known = list(own) + list(PY_SECTIONS.get(name, {}) if isinstance(PY_SECTIONS.get(name), dict) else [])
    known += DEPRECATED.get(name, []) + (PROBE_KEYS if name == "native" else [])
    out: dict[Any, Any] = {}
    for _ in range(rng.randint(0, 8)):
        k = _key(rng, known)
        if k in ("allow", "deny") and rng.random() < 0.7:
            filters = ["namespaces", "podRegex", "binaryRegex", "eventTypes", "pod_regex"]
            out[k] = [_value(rng, 2, filters) for _ in range(rng.randint(0, 3))]
        elif k in ("uprobes", "usdt") and rng.random() < 0.7:
            out[k] = [_value(rng, 2, ["binary", "symbol", "provider", "name"]) for _ in range(3)]
        else:
            out[k] = _value(rng, 2)
    return out


def _document(rng: random.Random) -> Any:
    if rng.random() < 0.03:
        return _value(rng, 2)
    names = list(SECTIONS) + list(PY_SECTIONS) + ["kind", "unknown"]
    doc = {_key(rng, names): None for _ in range(rng.randint(0, 6))}
    return {k: _section(rng, k) if isinstance(k, str) else _value(rng, 2) for k in doc}


def _check(outcome: Any) -> None:
    """Parsed into an AgentConfig, or a ConfigError whose message is short and leaks no secret."""
    if isinstance(outcome, ConfigError):
        message = str(outcome)
        assert message and len(message) < 64_000, len(message)
        assert SECRET not in message, message
    else:
        assert isinstance(outcome, AgentConfig)


def _parse(doc: Any) -> Any:
    try:
        return parse_config(doc)
    except ConfigError as e:
        return e


def test_random_documents_parse_or_raise_config_error() -> None:
    rng = random.Random(20261203)
    outcomes = {"parsed": 0, "refused": 0}
    for _ in range(1500):
        result = _parse(_document(rng))
        _check(result)
        outcomes["parsed" if isinstance(result, AgentConfig) else "refused"] += 1
    assert outcomes["parsed"] > 20 and outcomes["refused"] > 1000, outcomes  # both paths were exercised


@pytest.mark.parametrize(
    "path",
    [
        ["nodeName"],
        ["tetragon", "address"],
        ["tetragon", "connectionTimeout"],
        ["hotSymbols", "aggregationWindowSeconds"],
        ["hotSymbols", "maxKeys"],
        ["hotSymbols", "minConfidenceThreshold"],
        ["hotSymbols", "enabled"],
        ["store", "url"],
        ["privacy", "extraPatterns", 0],
        ["tetragon", "allow", 0, "podRegex", 0],
        ["tetragon", "allow", 0, "eventTypes", 0],
        ["lifecycle", "enabled"],
        ["lifecycle", "runtime"],
        ["native", "syscalls", 0],
        ["native", "ratePerSecond"],
        ["native", "uprobes", 0, "binary"],
        ["native", HUGE],
        ["tetragon", HUGE],
        [HUGE],
    ],
    ids=lambda path: ".".join("HUGE" if p is HUGE else str(p) for p in path),
)
def test_a_10mb_value_or_key_is_handled_quickly(path: list[Any]) -> None:
    doc: Any = HUGE
    for p in reversed(path):
        doc = [doc] if isinstance(p, int) else {p: doc}
    if path[:2] == ["native", "uprobes"]:
        doc["native"]["uprobes"][0]["symbol"] = "f"
    start = time.monotonic()
    result = _parse(doc)
    _check(result)
    assert time.monotonic() - start < 5.0
    if isinstance(result, ConfigError):
        assert len(str(result)) < 1000


YAML_CASES = {
    "shared anchors": "privacy:\n  extraPatterns: &p ['a+', 'b+']\n  allowedNamespaces: *p\n",
    "self reference": "privacy:\n  extraPatterns: &r [*r]\n",
    "self referencing section": "tetragon: &t {allow: [*t]}\n",
    "billion laughs": (
        "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
        "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
        "tetragon: {allow: [{namespaces: *e}], deny: *e}\nprivacy: {extraPatterns: *e}\n"
    ),
    "binary string": "store:\n  url: !!binary c3FsaXRlOi8vL3guZGI=\n",
    "timestamp": "tetragon:\n  connectionTimeout: 2001-12-14t21:59:43.10-05:00\n",
    "set": "privacy:\n  extraPatterns: !!set {a: null}\n",
    "integer of 5000 digits": "hotSymbols:\n  maxKeys: " + "1" * 5000 + "\n",
    "float overflow": "tetragon:\n  connectionTimeout: 1e999\n",
    "non-string keys": "tetragon:\n  1: x\n  null: y\n  [1, 2]: z\n",
    "complex key": "? {a: 1}\n: x\n",
    "deep nesting": "tetragon: " + "[" * 1000 + "]" * 1000 + "\n",
    "NUL byte": 'nodeName: "a\\0b"\nstore:\n  url: "sqlite:///a\\0b"\n',
    "configmap with bad YAML": "kind: ConfigMap\ndata:\n  config.yaml: 'a: [b'\n",
    "configmap data list": "kind: ConfigMap\ndata: [1, 2]\n",
    "configmap with big int": "kind: ConfigMap\ndata:\n  c: 'x: " + "1" * 5000 + "'\n",
    "secret in bad YAML": f'store:\n  url: "postgresql://u:{SECRET}@db/x\n',
}


@pytest.mark.parametrize("name", sorted(YAML_CASES))
def test_hostile_yaml_files_parse_or_raise_config_error(tmp_path: Path, name: str) -> None:
    p = tmp_path / "config.yaml"
    p.write_text(YAML_CASES[name])
    try:
        result: Any = load_config(p)
    except ConfigError as e:
        result = e
    _check(result)
    if name == "shared anchors":
        assert isinstance(result, AgentConfig) and result.privacy.allowed_namespaces == ["a+", "b+"]
