"""No import cycles among the project's modules (the developers' guide asks for none).

A cycle works until someone imports the modules in the other order: then a
name is missing from a half-initialised module, at import time, on one node.
The test reads every module of ``stellaops_runtime`` with ``ast`` and builds
the graph of imports run when a module is loaded (module level, also inside
``try``/``if``; never under ``if TYPE_CHECKING`` or inside a function, which
run later). ``from package import submodule`` is an edge to the submodule. A
package's ``__init__`` importing its own modules is no cycle; a module that
imports a name from its own package's ``__init__`` while that ``__init__``
imports it is one. Every strongly connected component larger than one module
is printed.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "operator"
PACKAGE = "stellaops_runtime"


def _modules() -> dict[str, Path]:
    out = {}
    for p in (ROOT / PACKAGE).rglob("*.py"):
        parts = p.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _load_time_imports(body: list[ast.stmt], name: str, is_package: bool, out: set[str]) -> None:
    for node in body:
        if isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                _load_time_imports(node.body, name, is_package, out)
            _load_time_imports(node.orelse, name, is_package, out)
        elif isinstance(node, ast.Try):
            for part in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                _load_time_imports(part, name, is_package, out)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            out.update(f"{module}.{a.name}" for a in node.names)  # a submodule, or a name of module
            out.add(module + ".")  # the module itself, unless every name above is a submodule


def _graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        raw: set[str] = set()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        _load_time_imports(tree.body, name, path.name == "__init__.py", raw)
        named_submodules = {r for r in raw if not r.endswith(".") and r in mods}
        deps = set()
        for imp in raw:
            if imp.endswith("."):
                module = imp[:-1]
                # ``from pkg import a, b``: an edge to pkg only if some name is not a submodule
                names = {r for r in raw if r.startswith(module + ".") and not r.endswith(".")}
                direct = {r for r in names if r.rpartition(".")[0] == module}
                if direct and direct <= named_submodules:
                    continue
                imp = module
            while imp and imp not in mods:
                imp = imp.rpartition(".")[0]
            if imp and imp != name and imp.startswith(PACKAGE):
                deps.add(imp)
        graph[name] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of more than one module (iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        found.append(sorted(comp))
    return found


def test_the_modules_import_one_another_without_a_cycle() -> None:
    mods = _modules()
    assert len(mods) > 300, "the package's modules were not found"
    graph = _graph(mods)
    assert f"{PACKAGE}.agent.pipeline" in graph[f"{PACKAGE}.agent.runner"]
    assert f"{PACKAGE}.privacy.filter" in graph[f"{PACKAGE}.privacy"]
    cycles = _cycles(graph)
    assert cycles == [], "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_checker_sees_a_cycle(tmp_path: Path) -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(graph) == [["a", "b", "c"]]
    body = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import x.y\nimport z\n").body
    out: set[str] = set()
    _load_time_imports(body, "m", False, out)
    assert "x.y" not in out and "z" in out
    # A module importing a name from its own package's __init__, which imports that module.
    (tmp_path / "p.py").write_text("from stellaops_runtime.q import thing\n")
    (tmp_path / "q.py").write_text("from stellaops_runtime.p import other\n")
    mods = {f"{PACKAGE}.p": tmp_path / "p.py", f"{PACKAGE}.q": tmp_path / "q.py"}
    assert _cycles(_graph(mods)) == [[f"{PACKAGE}.p", f"{PACKAGE}.q"]]
