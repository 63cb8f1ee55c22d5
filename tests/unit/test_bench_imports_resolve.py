"""Every name a benchmark script imports from the package still exists there.

The benchmarks (bench/*.py) import the agent's modules by name and no test runs most of them, so
a module split that moves a name (sources/tetragon_grpc.py's channel options went to
sources/tetragon_channel.py) broke bench/grpc_memory_bench.py with an ImportError that only the
next person measuring would meet. Each ``from stellaops_runtime... import a, b`` and each
``import stellaops_runtime...`` in bench/ (at any depth of the file: most import inside a
function, after putting the right checkout on the path) is resolved here against this tree.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "stellaops_runtime"


def package_imports(source: str) -> list[tuple[str, str | None]]:
    """(module, name) for every import of the package in ``source``; name None: the module itself."""
    out: list[tuple[str, str | None]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] == PACKAGE:
                out += [(node.module, a.name) for a in node.names]
        elif isinstance(node, ast.Import):
            out += [(a.name, None) for a in node.names if a.name.split(".")[0] == PACKAGE]
    return out


def unresolved(module: str, name: str | None) -> str:
    """Why ``from module import name`` (or ``import module``) fails here ("" when it works)."""
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        return f"{module}: {e}"
    if name is None or name == "*" or hasattr(mod, name):
        return ""
    try:
        importlib.import_module(f"{module}.{name}")  # a submodule
    except ImportError:
        return f"{module} has no {name}"
    return ""


def test_the_reader_finds_nested_and_plain_imports() -> None:
    src = (
        "import os\nfrom stellaops_runtime.a import b, c\n"
        "def f():\n    import stellaops_runtime.d\n    from other import x\n"
        "    from stellaops_runtime.e import f as g\n"
    )
    assert package_imports(src) == [
        ("stellaops_runtime.a", "b"),
        ("stellaops_runtime.a", "c"),
        ("stellaops_runtime.d", None),
        ("stellaops_runtime.e", "f"),
    ]
    assert unresolved("stellaops_runtime.sources.tetragon_channel", "channel_options") == ""
    assert unresolved("stellaops_runtime.sources.tetragon_grpc", "NO_SUCH_NAME")


def test_every_bench_import_of_the_package_resolves() -> None:
    broken = [
        f"bench/{path.name}: {why}"
        for path in sorted((ROOT / "bench").glob("*.py"))
        for module, name in package_imports(path.read_text())
        if (why := unresolved(module, name))
    ]
    assert broken == []
