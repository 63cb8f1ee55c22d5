"""The source switch's BCC probes, re-done for functions named by PURL: configure, reload, report.

Split from agent/source_switch.py (``SourceSwitch`` mixes this in; see its
docstring for the guarantees of a reload). While the probes run, the PURL
functions of the probe ConfigMap are resolved in every running container
(``containers``: the lifecycle registry's records), their targets added to the
probes' uprobes (native/purl_wiring.py), and each file's PURL told to package
attribution. The switch looks every ``RELOAD_CHECK_SECONDS`` whether the
ConfigMap file or the running containers changed and reloads the probes, at
most once every ``RELOAD_MIN_SECONDS``. After each load the per-function
results go to ``stats.purl_functions`` (the ObservationNode's list).

With a pod view (agent/pod_view.py) a policy's functions are attached only in
the containers of pods it selects at EbpfDeep, and a change of which
containers those are (a label, a new pod) reloads the probes like a change of
containers does; the files probed and the policies they serve go to the
pipeline's pod selection (``NativeSelection.purl_owners``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from stellaops_runtime.agent.source_switch_config import config_stamp, mark_purl, read_probe_config

if TYPE_CHECKING:
    from stellaops_runtime.agent.pipeline import Pipeline
    from stellaops_runtime.agent.source_switch_stats import SwitchStats
    from stellaops_runtime.contracts.config_node import NativeSourceConfig
    from stellaops_runtime.native.config import NativeConfig
    from stellaops_runtime.native.policy_config import PurlFunction
    from stellaops_runtime.native.purl_wiring import PurlWiring
    from stellaops_runtime.native.source import NativeProbeSource

log = logging.getLogger(__name__)

RELOAD_CHECK_SECONDS = 1.0  # while BCC runs: how often containers and the ConfigMap are looked at
RELOAD_MIN_SECONDS = 5.0  # at most one reload of the probes this often (a reload compiles them again)
# ... and for a probed file replaced in its container (which the container itself can do at will)
REPLACED_RELOAD_SECONDS = 60.0
MAX_PROBED_FILES = 65_536  # (image, file) -> PURL entries kept for package attribution
# (image, file) -> JAR entries kept: at most 4 MiB of a hostile database's 4,096-byte JAR paths
MAX_PROBED_JARS = 1_024


class ProbeReloads:
    """The PURL part of ``SourceSwitch`` (its attributes are the switch's)."""

    native_cfg: NativeSourceConfig
    stats: SwitchStats
    pipeline: Pipeline
    bcc: NativeProbeSource | None
    containers: Callable[[], Iterable[Any]]
    purl: PurlWiring | None
    _purl_functions: list[PurlFunction]
    _config_stamp: tuple[int, int] | None
    _reloaded_at: float
    _load_since_ns: int
    _marked: tuple[int, int]
    _selection_policies: tuple[Any, ...] = ()  # the probe ConfigMap's policies as last configured
    config: Any  # the agent's AgentConfig
    host_root = "/proc/1/root"  # the node's root as the agent reaches it (policy_config.DEFAULT_HOST_ROOT)
    _facts_watch: Any = None  # agent/tetragon_facts.py TetragonFacts, made at the first Tetragon tick
    node_file_gaps: Any = None  # ... with the agent's record of node files replaced (agent/node_file_gaps.py)
    _host_files: tuple[tuple[str, ...], tuple[Any, ...]] = ((), ())  # node files last read, identities

    if TYPE_CHECKING:  # the switch's own, used by a reload

        def _open_gap(self, from_ns: int) -> None: ...
        def _note_load(self) -> None: ...
        async def _look_up_cgroups(self) -> None: ...
        async def _stop_active(self) -> None: ...
        def _boundary(self, kind: str, native: NativeConfig | None = None) -> None: ...
        def _start(self, run: Any) -> None: ...

    def _probe_config(self) -> NativeConfig:
        """The agent's ``native`` probe settings plus what the operator's probe ConfigMap asks for."""
        base, self._purl_functions, self._config_stamp = read_probe_config(self.native_cfg, self.stats)
        return base

    async def _configure(self) -> NativeConfig:
        """The probes' configuration: ``_probe_config`` and the PURL functions' targets (sets ``purl``).

        The previous ``purl`` wiring is closed: call it only once the probes using it have stopped.
        """
        base = self._probe_config()
        debug = self.bcc.debug_files if self.bcc is not None else True  # symbols.debugFiles: tails too
        own = base.uprobes  # binaryPath functions, the agent's own uprobes: files of the node
        wiring = None
        records: list[Any] = []
        if self._purl_functions:
            from stellaops_runtime.native.purl_wiring import running, wire

            records = list(self.containers())
            containers = running(records)
            self._selection_policies = self._read_selection_policies()
            selects = self._purl_selects(records)
            wiring = await asyncio.to_thread(
                wire, self._purl_functions, containers, base, selects=selects, debug_files=debug
            )
            base = wiring.config
            n = sum(len(f.symbols) for f in self._purl_functions)
            log.info(
                "%d function(s) named by purl in %d running container(s): %d uprobe target(s)",
                n, len(containers), len(wiring.plan.targets()),
            )  # fmt: skip
        host: dict[tuple[str, str, str], tuple[str, str]] = {}
        self._host_files = ((), ())
        if own:  # their tails in the node's files as facts; their entry clones probed where room is left
            base, host = await asyncio.to_thread(self._host_functions, own, base, debug)
        if wiring is not None:
            self._note_probed(wiring, {r.container_id: r.image_digest for r in records}, host)
        else:
            self.pipeline.unprobed.replace(host)  # agent/unprobed.py: swapped whole
        self._set_wiring(wiring)
        if (sel := self.pipeline.native_selection) is not None:
            sel.purl_owners = wiring.owners() if wiring is not None else None  # swapped whole
        return base

    def _host_functions(
        self, own: tuple[Any, ...], cfg: NativeConfig, debug: bool
    ) -> tuple[NativeConfig, dict[tuple[str, str, str], tuple[str, str]]]:
        """``cfg`` with the entry clones of ``own``'s functions in the node's files added (as many as
        MAX_UPROBE_TARGETS leaves room for, after the PURL functions' targets), and the facts of
        ``host:<node>``: their split tails and the clones left out (native/host_tails.py)."""
        import dataclasses

        from stellaops_runtime.agent.tetragon_facts import host_files, idents
        from stellaops_runtime.native.config import MAX_UPROBE_TARGETS
        from stellaops_runtime.native.host_tails import host_functions

        files = host_files(own)
        self._host_files = (files, idents(files))  # before the read: a change meanwhile reloads again
        got = host_functions(
            own, node_name=self.pipeline.node_name, debug_files=debug,
            room=max(0, MAX_UPROBE_TARGETS - len(cfg.uprobes)), periods=cfg.uprobe_periods,
        )  # fmt: skip
        if got.clones:
            cfg = dataclasses.replace(
                cfg, uprobes=cfg.uprobes + got.clones, uprobe_periods=cfg.uprobe_periods + got.periods
            )
        return cfg, got.facts

    async def _tetragon_facts(self, now: float) -> None:
        """While Tetragon is the source: the split tails and entry clones of the probe ConfigMap's
        ``binaryPath`` functions, which its TracingPolicies do not name, as facts of ``host:<node>``
        (agent/tetragon_facts.py), read again when the ConfigMap changes or a configure of the
        BCC probes replaced them."""
        path = self.native_cfg.probe_config_file
        if not path:
            return
        if self._facts_watch is None:
            from stellaops_runtime.agent.tetragon_facts import TetragonFacts

            self._facts_watch = TetragonFacts(
                path, self.pipeline, debug_files=self.config.symbols.debug_files, host_root=self.host_root,
                gaps=self.node_file_gaps,
            )  # fmt: skip
        await self._facts_watch.poll(now)

    def _read_selection_policies(self) -> tuple[Any, ...]:
        sel = self.pipeline.native_selection
        if sel is None or sel.view is None:
            return ()
        from stellaops_runtime.agent.native_selection import load_policies
        from stellaops_runtime.native.config import NativeConfigError

        try:
            return load_policies(self.native_cfg.probe_config_file, host_root=sel.host_root)
        except (OSError, NativeConfigError):  # read_probe_config logged it; the pipeline's copy stands in
            return sel.policies

    def _purl_selects(self, records: list[Any]) -> Callable[[str, str], bool] | None:
        """Which containers each policy's functions go to, with a pod view (None: every container)."""
        sel = self.pipeline.native_selection
        view = sel.view if sel is not None else None
        if view is None:
            return None
        from stellaops_runtime.agent.native_selection import purl_selects

        pods = {r.container_id: (r.pod_uid, r.pod_namespace, r.pod_name) for r in records}
        return purl_selects(self._selection_policies, view, pods)

    def watch_registry(self, lifecycle: Any) -> None:
        """Resolve PURL functions in the containers of ``lifecycle``'s registry (agent/lifecycle_part.py)."""
        self.containers = lambda: lifecycle.observer.registry.records() if lifecycle.observer else ()

    def _reload_wanted(self) -> bool:
        """Whether the ConfigMap changed, or (with PURL functions) the running containers did."""
        if config_stamp(self.native_cfg.probe_config_file) != self._config_stamp:
            return True
        if self._host_upgraded() and time.monotonic() - self._reloaded_at >= REPLACED_RELOAD_SECONDS:
            return True
        if not self._purl_functions:
            return False
        replaced = self.bcc is not None and self.bcc.stats.reload_wanted  # a probed file replaced in
        if replaced and time.monotonic() - self._reloaded_at >= REPLACED_RELOAD_SECONDS:  # its container
            return True  # resolved anew (native/follow.py); a gap meanwhile
        from stellaops_runtime.native.purl_wiring import running

        records = list(self.containers())
        now = tuple(running(records))
        if now != (self.purl.containers if self.purl is not None else ()):
            return True
        if self.purl is None:
            return False
        if self.purl.selection is None and self._purl_selects(records) is None:
            return False
        from stellaops_runtime.native.purl_wiring import selection_of

        if self.purl.selection is not None and not self._selection_policies:
            self._selection_policies = self._read_selection_policies()
        return selection_of(self._purl_functions, now, self._purl_selects(records)) != self.purl.selection

    def _host_upgraded(self) -> bool:
        """Whether a node file of the ``binaryPath`` functions changed since the probes' load (its
        stat identity: agent/tetragon_facts.py): upgraded in place, its new build's tails and clones
        are read at a reload (a file rewritten at its inode is a gap until then: native/follow.py)."""
        files, seen = self._host_files
        if not files:
            return False
        from stellaops_runtime.agent.tetragon_facts import idents

        return idents(files) != seen

    async def _reload_bcc(self) -> None:
        """BCC to BCC with a new configuration: the old probes end before the new attach (a gap between)."""
        assert self.bcc is not None
        log.info("probe ConfigMap or running containers changed: reloading the BCC probes")
        at = time.time_ns()
        self._open_gap(at)
        await self._look_up_cgroups()  # the old load's, if no tick did yet
        await self._stop_active()
        self._note_load()  # the old load counted its functions until it detached (the switch back's Overlap)
        self._load_since_ns = at
        cfg = await self._configure()
        self.bcc.cfg = cfg
        self._boundary("bcc", cfg)
        self.stats.probe_reloads += 1
        self._reloaded_at = time.monotonic()
        self._start(self.bcc.run)

    def _set_wiring(self, wiring: PurlWiring | None) -> None:
        old, self.purl = self.purl, wiring
        if old is not None:
            old.close()
        b = self.bcc.stats if self.bcc is not None else None
        self._marked = (b.connects, b.connect_failures) if b is not None else (0, 0)  # the next load marks
        if wiring is None:  # else the last entries stay until the new probes' load says otherwise
            self.stats.purl_functions, self.stats.purl_functions_omitted = [], 0

    def _note_probed(
        self, wiring: PurlWiring, digests: dict[str, str], host: dict[tuple[str, str, str], tuple[str, str]]
    ) -> None:
        """Tell package attribution the PURL of each probed file, kept after its container stops; and the
        pipeline the tails left unprobed, the PURL functions' and ``host``'s (native/host_tails.py)."""
        att = self.pipeline.attribution
        if att is not None:
            known = {**att.probed, **wiring.probed(digests)}
            att.probed = known if len(known) <= MAX_PROBED_FILES else wiring.probed(digests)  # swapped whole
            jars = {**att.probed_jars, **wiring.probed_jars(digests)}  # kept as long: the container may stop
            att.probed_jars = jars if len(jars) <= MAX_PROBED_JARS else wiring.probed_jars(digests)
        self.pipeline.unprobed.replace({**host, **wiring.unprobed(digests)})  # agent/unprobed.py

    def _mark_purl(self, b: NativeProbeSource) -> None:
        """After each load (or failed load) of the probes: which PURL functions are attached."""
        self._marked = mark_purl(self.purl, b.stats, self._marked, self.stats)
