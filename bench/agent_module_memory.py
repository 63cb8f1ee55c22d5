"""What each module the agent imports at start-up holds (issue 13): the idle memory by package.

bench/agent_idle_breakdown.py reads the idle agent's mappings from outside; this
script says which imports the anonymous part is made of. In a fresh interpreter
it takes the agent's start-up path (the CLI's agent command, the runner, the
agent built from the default config, ``Pipeline.warm_up``, the HTTP endpoints'
modules) with tracemalloc on, and measures each module's *own* allocations
while its body runs (what its nested imports allocate is theirs): code objects,
functions, classes, tables built at import. Printed: the traced total, the
packages (ours by subpackage) by size, and our largest modules.

It measures Python's allocations, not RSS (allocator overhead and libraries'
own mappings are not in it); the idle agent's anonymous RSS above the
asyncio + rpc floor (``agent_idle_breakdown.py --floor``) is about this total. Usage::

    .venv/bin/python bench/agent_module_memory.py [--top 25]
"""

from __future__ import annotations

import argparse
import collections
import importlib.abc
import sys
import tracemalloc
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

_stack: list[list[Any]] = []  # [module name, traced bytes at its start, its nested imports' bytes]
_own: dict[str, int] = {}


class _Measured(importlib.abc.Loader):
    """A loader that measures the module body its inner loader runs."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self.inner.create_module(spec)  # type: ignore[no-any-return]

    def exec_module(self, module: ModuleType) -> None:
        _stack.append([module.__name__, tracemalloc.get_traced_memory()[0], 0])
        try:
            self.inner.exec_module(module)
        finally:
            name, start, nested = _stack.pop()
            total = tracemalloc.get_traced_memory()[0] - start
            _own[name] = _own.get(name, 0) + total - nested
            if _stack:
                _stack[-1][2] += total


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> ModuleSpec | None:
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _Measured(spec.loader)
                return spec  # type: ignore[no-any-return]
        return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    tracemalloc.start()
    sys.meta_path.insert(0, _Finder())
    start = tracemalloc.get_traced_memory()[0]
    from stellaops_runtime.cli import main as cli

    cli.build_parser(["agent"])
    from stellaops_runtime.agent.runner import Agent
    from stellaops_runtime.contracts.config import parse_config

    agent = Agent(parse_config({}), node_name="n")
    agent.pipeline.warm_up()
    import stellaops_runtime.agent.http  # noqa: F401  # the endpoints' modules, imported as serving starts

    total = tracemalloc.get_traced_memory()[0] - start
    packages: collections.Counter[str] = collections.Counter()
    for name, size in _own.items():
        parts = name.split(".")
        packages[".".join(parts[:2]) if parts[0] == "stellaops_runtime" else parts[0]] += size
    bodies = sum(_own.values()) / 1e6
    print(f"traced since start: {total / 1e6:.2f} MB; in {len(_own)} module bodies: {bodies:.2f} MB")
    for pkg, size in packages.most_common(args.top):
        print(f"{size / 1e6:7.2f} MB  {pkg}")
    print("our largest modules:")
    ours = sorted(((s, n) for n, s in _own.items() if n.startswith("stellaops_runtime")), reverse=True)
    for size, name in ours[: args.top]:
        print(f"{size / 1e3:7.1f} kB  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
