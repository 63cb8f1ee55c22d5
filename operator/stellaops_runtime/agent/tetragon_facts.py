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
Tetragon's JSON export file as the source) runs one for its whole life (agent/runner.py). Every
``CHECK_SECONDS`` the ConfigMap's stamp and the stat identity of each node file the last read
covered are looked at (one stat each, on a worker thread: not per event, and never on the event
loop, which a hung node file system would stop); the files are read again (on a thread) when
one changed (a node file upgraded in place while the agent runs: its new build's tails and clones
are facts of that build, agent/unprobed.py hands them over again), or when the switch replaced the
facts. Nothing heavy is imported unless the ConfigMap names a ``binaryPath`` function.

Tetragon's uprobe stays on the file its policy was loaded with: a node file found replaced by a
look is a node-wide gap from the look before, until Tetragon is seen loading anew the policies
probing it (agent/node_file_gaps.py, marked by the outage marker: :func:`attach_node_file_gaps`;
the objects probing each file: agent/node_file_policies.py, read with the facts).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from stellaops_runtime.agent import node_file_digest
from stellaops_runtime.agent.node_file_gaps import NodeFileGaps, digests

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


Ident = tuple[int, int, int, int, int] | None  # a file's (device, inode, size, mtime, ctime); None: no file


def _ident(path: str) -> Ident:
    """The stat identity of a node file as its read resolves it (native/follow_files.py): an upgrade
    in place (``cp`` over it: same inode, new size or mtime) or by rename (a new inode) changes it."""
    from stellaops_runtime.native.follow_files import stat_path

    try:
        st = stat_path(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def idents(files: tuple[str, ...]) -> tuple[Ident, ...]:
    """:func:`_ident` of each of ``files`` (a read's), to compare with the next poll's."""
    return tuple(_ident(f) for f in files)


Read = tuple["Facts", tuple[str, ...], tuple[Ident, ...]]  # facts, the node files read, their identities


def read_facts(path: str, *, node_name: str, host_root: str, debug_files: bool = True) -> Read | None:
    """The split tails and entry clones of the probe ConfigMap's ``binaryPath`` functions in the
    node's files (under ``host_root``), as facts of ``host:<node_name>``, with those files' paths
    and identities taken before they were read (a file changed while read is read again at the
    next poll); none when the ConfigMap names no such function; None when it cannot be read (the
    probes' own read says why)."""
    from stellaops_runtime.native.config import NativeConfig, NativeConfigError
    from stellaops_runtime.native.policy_config import read_probe_config

    try:
        targets = read_probe_config(path, NativeConfig(), host_root=host_root).config.uprobes
    except (OSError, NativeConfigError):
        return None
    if not targets:
        return {}, (), ()
    from stellaops_runtime.native.host_tails import host_functions

    files = host_files(targets)
    before = idents(files)
    return host_functions(targets, node_name=node_name, debug_files=debug_files, room=0).facts, files, before


def host_files(targets: Any) -> tuple[str, ...]:
    """The node's files among ``targets`` (uprobe targets), as native/host_tails.py picks them."""
    from stellaops_runtime.native.follow_files import split_root
    from stellaops_runtime.native.host_tails import HOST_ROOTS

    return tuple(sorted({t.binary for t in targets if not t.root and split_root(t.binary)[0] in HOST_ROOTS}))


class TetragonFacts:
    """The facts of the probe ConfigMap at ``path``, kept current in ``pipeline.unprobed``."""

    def __init__(
        self,
        path: str,
        pipeline: Pipeline,
        *,
        debug_files: bool = True,
        host_root: str = DEFAULT_HOST_ROOT,
        gaps: NodeFileGaps | None = None,
    ) -> None:
        self.path = path
        self.pipeline = pipeline
        self.debug_files = debug_files
        self.host_root = host_root
        self._stamp: object = ()  # the ConfigMap's (mtime, size) at the last read; (): none yet
        self._files: tuple[str, ...] = ()  # the node files that read covered
        self._idents: tuple[Ident, ...] = ()  # their identities, taken before that read
        self._facts: object = None  # the set that read made current
        self._check_at = 0.0
        self._looked = 0  # wall ns just before the last look (or read) that took ``_idents``
        self._digest_left = 0  # bytes this poll may still read for replaced files' digests (poll sets it)
        self.gaps = gaps if gaps is not None else NodeFileGaps()  # a file replaced: the node unwatched

    async def poll(self, now: float) -> None:
        """Read the facts again when due and the ConfigMap, a node file it names (or the pipeline's
        set) changed."""
        if now < self._check_at:
            return
        self._check_at = now + CHECK_SECONDS
        self._digest_left = node_file_digest.MAX_BYTES  # bytes a poll reads for replaced files' digests
        looked = time.time_ns()
        stamp = _stamp(self.path)
        # the look on a thread, as the read: a node file system that hangs never holds the loop
        seen = await asyncio.to_thread(idents, self._files) if self._files else ()
        self._idents = await self._untouched(self._files, self._idents, seen)
        self.gaps.compare(self._files, self._idents, seen, self._looked)  # Tetragon's probe is on the old
        await self._reloaded()
        await self._digest_replaced()
        if stamp == self._stamp and self.pipeline.unprobed.current is self._facts and seen == self._idents:
            self._looked = looked
            return
        self._stamp = stamp
        read: Read | None = None
        if stamp is not None:
            read = await asyncio.to_thread(
                read_facts, self.path, node_name=self.pipeline.node_name, host_root=self.host_root,
                debug_files=self.debug_files,
            )  # fmt: skip
        if read is None:
            # The ConfigMap is the agent's copy of the policies, not Tetragon's: while it cannot be
            # read, Tetragon's probes stay on the files they were loaded with, so the looks go on at
            # the files last read (s47/rex: a file replaced meanwhile was the next read's baseline).
            self._idents, self._looked = seen, looked
            self._facts = self.pipeline.unprobed.replace({})
            return
        facts, files, ids = read
        was = dict(zip(self._files, seen, strict=False))  # replaced between this look and the read's
        common = [(f, was[f], i) for f, i in zip(files, ids, strict=False) if f in was]
        untouched = await self._untouched(
            [c[0] for c in common], [c[1] for c in common], [c[2] for c in common]
        )
        common = [(f, b, i) for (f, _, i), b in zip(common, untouched, strict=True)]
        self.gaps.compare([c[0] for c in common], [c[1] for c in common], [c[2] for c in common], looked)
        # ... or not the file this boot's first read found, by this agent or one before it (s47/rex);
        # the baseline's file is written on the thread too
        kept = await asyncio.to_thread(self.gaps.baseline.check, files, ids)
        self.gaps.kept_differ(kept, self._looked or self.gaps.started)
        await self._digest_replaced()
        self._files, self._idents, self._looked = files, ids, looked
        self._facts = self.pipeline.unprobed.replace(facts)
        from stellaops_runtime.agent.node_file_policies import read_probing

        self.gaps.probing = await asyncio.to_thread(read_probing, self.path, self.host_root)

    async def _untouched(
        self, files: Sequence[str], before: Sequence[Ident], after: Sequence[Ident]
    ) -> tuple[Ident, ...]:
        """``before`` with the files found touched only (their modification time moved, their bytes
        the kept ones: agent/node_file_digest.py) taken as ``after``: no replacement (the digest is
        taken on a thread, only when a modification time alone moved)."""
        if not any(
            b is not None and a is not None and b[:3] == a[:3] and b[3] != a[3]
            for b, a in zip(before, after, strict=False)
        ):
            return tuple(before)
        same = await asyncio.to_thread(self.gaps.baseline.touched, files, before, after)
        # a file waiting for its reload, touched since it was seen replaced: no new replacement
        waiting = await asyncio.to_thread(self.gaps.pending_touched, files, before, after)
        self.gaps.keep_touched(waiting)
        same |= set(waiting)
        return tuple(a if f in same else b for f, b, a in zip(files, before, after, strict=False))

    async def _digest_replaced(self) -> None:
        """The digest of each replaced file's identity seen (on a thread), while it waits for its
        reload: a touch of it then is no new replacement (``NodeFileGaps.pending_touched``)."""
        wanted = self.gaps.undigested()
        if wanted and self._digest_left > 0:
            found = await asyncio.to_thread(digests, wanted, self._digest_left)
            self._digest_left -= sum(s[2] for s, _ in found.values() if s[2] <= node_file_digest.MAX_BYTES)
            self.gaps.digested(found)

    async def _reloaded(self) -> None:
        """Replaced files whose policies Tetragon was seen loading anew: their gap ends, and the
        baseline (written on a thread) moves to the file Tetragon now probes."""
        moved = self.gaps.reloaded()
        if moved:
            await asyncio.to_thread(self.gaps.baseline.move, moved)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.poll(time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), CHECK_SECONDS)


def attach_node_file_gaps(agent: Any) -> None:
    """A probed node file replaced is a gap (agent/node_file_gaps.py): one record of it, fed by the
    agent's own :class:`TetragonFacts` or the source switch's (``node_file_gaps``), marked by the
    outage marker (agent/outages.py) and bounding the watch record's claim (agent/watch_record_attach.py)."""
    if not agent.config.native.probe_config_file:
        return
    from stellaops_runtime.agent.node_file_baseline import baseline_path

    gaps = NodeFileGaps(baseline_path(agent.config.store.spool_path))  # kept for the next agent
    policies = getattr(agent.outages, "policies", None)  # agent/policy_load_gaps.py: its reloads end it
    gaps.reloads = getattr(policies, "reloads", None)
    if agent.tetragon_facts is not None:
        agent.tetragon_facts.gaps = gaps
    if hasattr(agent.source, "watch_registry"):  # the switch makes its own at its first Tetragon tick
        agent.source.node_file_gaps = gaps
    agent.outages.node_files = gaps


def make_tetragon_facts(config: Any, source: Any, pipeline: Pipeline) -> TetragonFacts | None:
    """The agent's own :class:`TetragonFacts` when it has a probe ConfigMap and no source switch
    (which polls its own while Tetragon runs: ``watch_registry`` is the switch's)."""
    path = config.native.probe_config_file
    if not path or hasattr(source, "watch_registry"):
        return None
    return TetragonFacts(path, pipeline, debug_files=config.symbols.debug_files)
