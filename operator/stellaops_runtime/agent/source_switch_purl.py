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
MAX_PROBED_FILES = 65_536  # (image, file) -> PURL entries kept for package attribution


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
    _marked: tuple[int, int]

    if TYPE_CHECKING:  # the switch's own, used by a reload

        def _open_gap(self, from_ns: int) -> None: ...
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
        wiring = None
        if self._purl_functions:
            from stellaops_runtime.native.purl_wiring import running, wire

            records = list(self.containers())
            containers = running(records)
            wiring = await asyncio.to_thread(wire, self._purl_functions, containers, base)
            self._note_probed(wiring, {r.container_id: r.image_digest for r in records})
            base = wiring.config
            n = sum(len(f.symbols) for f in self._purl_functions)
            log.info(
                "%d function(s) named by purl in %d running container(s): %d uprobe target(s)",
                n, len(containers), len(wiring.plan.targets()),
            )  # fmt: skip
        self._set_wiring(wiring)
        return base

    def watch_registry(self, lifecycle: Any) -> None:
        """Resolve PURL functions in the containers of ``lifecycle``'s registry (agent/lifecycle_part.py)."""
        self.containers = lambda: lifecycle.observer.registry.records() if lifecycle.observer else ()

    def _reload_wanted(self) -> bool:
        """Whether the ConfigMap changed, or (with PURL functions) the running containers did."""
        if config_stamp(self.native_cfg.probe_config_file) != self._config_stamp:
            return True
        if not self._purl_functions:
            return False
        from stellaops_runtime.native.purl_wiring import running

        have = self.purl.containers if self.purl is not None else ()
        return tuple(running(self.containers())) != have

    async def _reload_bcc(self) -> None:
        """BCC to BCC with a new configuration: the old probes end before the new attach (a gap between)."""
        assert self.bcc is not None
        log.info("probe ConfigMap or running containers changed: reloading the BCC probes")
        self._open_gap(time.time_ns())
        await self._stop_active()
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

    def _note_probed(self, wiring: PurlWiring, digests: dict[str, str]) -> None:
        """Tell package attribution the PURL of each probed file, kept after its container stops."""
        att = self.pipeline.attribution
        if att is not None:
            known = {**att.probed, **wiring.probed(digests)}
            att.probed = known if len(known) <= MAX_PROBED_FILES else wiring.probed(digests)  # swapped whole

    def _mark_purl(self, b: NativeProbeSource) -> None:
        """After each load (or failed load) of the probes: which PURL functions are attached."""
        self._marked = mark_purl(self.purl, b.stats, self._marked, self.stats)
