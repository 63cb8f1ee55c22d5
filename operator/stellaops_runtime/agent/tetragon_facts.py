"""While Tetragon is the source: the ``binaryPath`` functions' tails and clones as "probed in part" facts.

Why this module exists: the operator renders a ``binaryPath`` function into a Tetragon uprobe by
symbol (controller/render_policy.py; Tetragon's uprobe takes ``symbols``, ``offsets`` or
``addrs``, and the operator cannot read the node's file), so a split tail (``f.part.0``, called
directly by callers that inlined the head) or an entry clone (``f.isra.0``, ``f.constprop.0``,
which gcc -O2 may compile a static function into only) is never probed, and an answer about the
host image said "not observed" while it ran. The agent reads the probe ConfigMap's ``binaryPath``
files itself (the same ConfigMap the operator renders the policies into) and hands every tail and
clone to the pipeline as an ``unprobed`` fact of ``host:<node>`` (native/host_tails.py,
agent/unprobed.py): the answers say unknown, naming them.

The source switch polls one :class:`TetragonFacts` while Tetragon runs (its BCC probes have their
own facts: agent/source_switch_purl.py); an agent without the switch (``native.enabled: false``, or
Tetragon's JSON export file as the source) runs one for its whole life (agent/runner.py). The
ConfigMap's stamp is looked at every ``CHECK_SECONDS``; the files are read again (on a thread) when
it changed, or when the switch replaced the facts. Nothing heavy is imported unless the ConfigMap
names a ``binaryPath`` function.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stellaops_runtime.agent.pipeline import Pipeline
    from stellaops_runtime.agent.unprobed import Facts

CHECK_SECONDS = 1.0
DEFAULT_HOST_ROOT = "/proc/1/root"  # native/policy_config.py DEFAULT_HOST_ROOT (a test checks)


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)  # a mounted ConfigMap is a symlink swapped on update: follow it
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def read_facts(path: str, *, node_name: str, host_root: str, debug_files: bool = True) -> Facts:
    """The split tails and entry clones of the probe ConfigMap's ``binaryPath`` functions in the
    node's files (under ``host_root``), as facts of ``host:<node_name>``; none when the ConfigMap
    cannot be read (the probes' own read says why) or names no such function."""
    from stellaops_runtime.native.config import NativeConfig, NativeConfigError
    from stellaops_runtime.native.policy_config import read_probe_config

    try:
        targets = read_probe_config(path, NativeConfig(), host_root=host_root).config.uprobes
    except (OSError, NativeConfigError):
        return {}
    if not targets:
        return {}
    from stellaops_runtime.native.host_tails import host_functions

    return host_functions(targets, node_name=node_name, debug_files=debug_files, room=0).facts


class TetragonFacts:
    """The facts of the probe ConfigMap at ``path``, kept current in ``pipeline.unprobed``."""

    def __init__(
        self, path: str, pipeline: Pipeline, *, debug_files: bool = True, host_root: str = DEFAULT_HOST_ROOT
    ) -> None:
        self.path = path
        self.pipeline = pipeline
        self.debug_files = debug_files
        self.host_root = host_root
        self._stamp: object = ()  # the ConfigMap's (mtime, size) at the last read; (): none yet
        self._facts: object = None  # the set that read made current
        self._check_at = 0.0

    async def poll(self, now: float) -> None:
        """Read the facts again when due and the ConfigMap (or the pipeline's set) changed."""
        if now < self._check_at:
            return
        self._check_at = now + CHECK_SECONDS
        stamp = _stamp(self.path)
        if stamp == self._stamp and self.pipeline.unprobed.current is self._facts:
            return
        self._stamp = stamp
        facts: Facts = {}
        if stamp is not None:
            facts = await asyncio.to_thread(
                read_facts, self.path, node_name=self.pipeline.node_name, host_root=self.host_root,
                debug_files=self.debug_files,
            )  # fmt: skip
        self._facts = self.pipeline.unprobed.replace(facts)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.poll(time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), CHECK_SECONDS)


def make_tetragon_facts(config: Any, source: Any, pipeline: Pipeline) -> TetragonFacts | None:
    """The agent's own :class:`TetragonFacts` when it has a probe ConfigMap and no source switch
    (which polls its own while Tetragon runs: ``watch_registry`` is the switch's)."""
    path = config.native.probe_config_file
    if not path or hasattr(source, "watch_registry"):
        return None
    return TetragonFacts(path, pipeline, debug_files=config.symbols.debug_files)
