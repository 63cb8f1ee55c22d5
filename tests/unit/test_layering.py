"""The layers of docs/architecture.md ("Layering"), checked on the code.

A module imports only from its own layer or the layers before it:

0. plain data: ``contracts/``, the generated ``wire/`` code, ``image.py`` (the
   release's image name), the package's ``__init__`` (its version) and
   ``canonical/resolution.py`` (what resolving a frame gave);
1. pure transforms: ``adapter/``, ``privacy/``, ``hotsymbols/`` and the naming
   modules of ``canonical/`` (demangling, Go/Rust/C++ names, function IDs);
2. edges, which touch files, sockets, databases or the kernel: ``sources/``,
   ``store/``, ``replay/``, ``evidence/`` (answers read from the store),
   ``witness/``, ``attribution/``, ``lifecycle/``, ``native/``, ``kube/``, the
   rest of ``canonical/`` (ELF and procfs readers) and ``regular_file.py``;
3. wiring and lifecycles: ``agent/``, ``cli/``, ``controller/``.

The imports read are those run when a module loads (tests/unit/
test_no_import_cycles.py builds the graph). :data:`EXCEPTIONS` lists the
imports that break the rule today, each with its reason; the test fails when
a new one appears, and when a listed one is gone (so the list stays true).
"""

from __future__ import annotations

from tests.unit.test_no_import_cycles import PACKAGE, _graph, _modules

PLAIN_DATA = {"contracts", "wire"}
PLAIN_MODULES = {"", "image", "canonical.resolution"}
TRANSFORMS = {"adapter", "privacy", "hotsymbols"}
NAMING = {
    "demangle",
    "demangle_types",
    "function_id",
    "cxx_gnu",
    "cxxfilt",
    "gonames",
    "namedecor",
    "rustcrates",
}
WIRING = {"agent", "cli", "controller"}

EXCEPTIONS = {
    # The config model reads its own file (--config): through the one reader of user-named
    # files, which refuses FIFOs and devices (regular_file.py).
    ("contracts.config", "regular_file"),
    # The lifecycle observer's metric families use the agent's constructors (agent/
    # metric_families.py over agent/prometheus_core.py, which keeps prometheus-client's
    # package __init__ out of every node's agent).
    ("lifecycle.metrics", "agent.metric_families"),
}


def layer(module: str) -> int:
    rel = module.removeprefix(PACKAGE).lstrip(".")
    top, _, rest = rel.partition(".")
    if top in PLAIN_DATA or rel in PLAIN_MODULES:
        return 0
    if top in TRANSFORMS or (top == "canonical" and rest in NAMING):
        return 1
    if top in WIRING:
        return 3
    return 2


def _violations() -> set[tuple[str, str]]:
    short = len(PACKAGE) + 1
    out = set()
    for module, deps in _graph(_modules()).items():
        for dep in deps:
            if layer(dep) > layer(module):
                out.add((module[short:], dep[short:]))
    return out


def test_every_module_imports_only_from_its_layer_or_before() -> None:
    found = _violations()
    new = sorted(found - EXCEPTIONS)
    assert not new, "imports of a later layer (docs/architecture.md, Layering):\n" + "\n".join(
        f"{a} -> {b}" for a, b in new
    )
    gone = sorted(EXCEPTIONS - found)
    assert not gone, f"listed exceptions no longer found (remove them): {gone}"


def test_the_layers_are_read_as_documented() -> None:
    assert layer(f"{PACKAGE}.contracts.config") == 0 and layer(PACKAGE) == 0
    assert layer(f"{PACKAGE}.canonical.demangle") == 1 and layer(f"{PACKAGE}.privacy.filter") == 1
    assert layer(f"{PACKAGE}.canonical.binary") == 2 and layer(f"{PACKAGE}.store.ledger") == 2
    assert layer(f"{PACKAGE}.agent.runner") == 3 and layer(f"{PACKAGE}.cli.query") == 3
