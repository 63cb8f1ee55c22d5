"""The source switch's view for the agent: its stats (what the runner, readiness and the
ObservationNode read) and its metric families. Split from agent/source_switch.py."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from stellaops_runtime.contracts.posture import Posture

if TYPE_CHECKING:
    from prometheus_client.core import Metric

    from stellaops_runtime.agent.source_switch import SourceSwitch

TETRAGON = "tetragon"
BCC = "bcc"


class SwitchStats:
    """What the agent reads from any source (``connects``, ``connected``, ``received``, ``last_error``),
    for both sources together, plus the switch's own state."""

    def __init__(self, switch: SourceSwitch) -> None:
        self._s = switch
        self.switches: Counter[str] = Counter()  # "tetragon_to_bcc" | "bcc_to_tetragon"
        self.native_posture: Posture | None = None  # detect.py's answer (None: not asked yet)
        self.native_why = ""  # what the native posture lacks (posture None: why BCC cannot run here)
        self.probe_config_errors = 0  # probe ConfigMap files that could not be read
        self.probe_reloads = 0  # BCC probes reloaded for a new container set or a changed ConfigMap
        # Functions named by PURL: one entry per policy function (contracts/purl_status.py), while BCC runs.
        self.purl_functions: list[dict[str, Any]] = []
        self.purl_functions_omitted = 0  # entries past the bound
        self.native_drop_gaps = 0  # gaps marked for events the BCC probes dropped in the kernel
        # Tetragon events after a switch back that the probes had counted (agent/source_switch_overlap.py)
        self.overlap_skipped = 0

    def _bcc(self) -> Any:
        return self._s.bcc.stats if self._s.bcc is not None else None

    @property
    def active(self) -> str:
        return self._s.mode

    @property
    def connected(self) -> bool:
        """The active source delivers: the Tetragon stream is open, or the probes are attached."""
        if self._s.mode == BCC:
            b = self._bcc()
            return bool(b and b.connected)
        return self._s.tetragon.stats.connected

    @property
    def tetragon_connected(self) -> bool:
        return self._s.tetragon.stats.connected

    @property
    def connects(self) -> int:
        b = self._bcc()
        return self._s.tetragon.stats.connects + (b.connects if b else 0)

    @property
    def reconnects(self) -> int:
        return self._s.tetragon.stats.reconnects

    @property
    def stream_errors(self) -> int:
        return self._s.tetragon.stats.stream_errors

    @property
    def received(self) -> int:
        b = self._bcc()
        return self._s.tetragon.stats.received + (b.received if b else 0)

    @property
    def last_error(self) -> str:
        b = self._bcc()
        if self._s.mode == BCC and b is not None and b.last_error and not b.connected:
            return f"native probes: {b.last_error}"
        err = self._s.tetragon.stats.last_error
        if self.native_posture is Posture.NONE and not self.connected:
            return f"{err or 'no connection yet'}; native probes unavailable: {self.native_why}"
        return err


def switch_metrics(switch: SourceSwitch) -> Iterator[Metric]:
    """The switch's families for the agent's /metrics (listed in agent/metrics.py)."""
    from stellaops_runtime.agent.metric_families import P
    from stellaops_runtime.agent.prometheus_core import CounterMetricFamily, GaugeMetricFamily

    g = GaugeMetricFamily(P + "agent_source", "1 for the event source in use now.", labels=["source"])
    for s in (TETRAGON, BCC):
        g.add_metric([s], 1 if switch.mode == s else 0)
    yield g
    c = CounterMetricFamily(P + "source_switches", "Switches between Tetragon and BCC.", labels=["to"])
    c.add_metric([BCC], switch.stats.switches["tetragon_to_bcc"])
    c.add_metric([TETRAGON], switch.stats.switches["bcc_to_tetragon"])
    yield c
    yield GaugeMetricFamily(
        P + "native_connected", "1 while the agent's own BCC probes are attached.",
        value=1 if switch.bcc is not None and switch.bcc.stats.connected else 0,
    )  # fmt: skip
    yield CounterMetricFamily(
        P + "native_probe_config_errors", "Probe ConfigMap files that could not be read.",
        value=switch.stats.probe_config_errors,
    )  # fmt: skip
    yield CounterMetricFamily(
        P + "native_drop_gaps",
        "Observation gaps marked because the native probes dropped events in the kernel "
        "(rate limit, sampling, a full buffer, recursion misses).",
        value=switch.stats.native_drop_gaps,
    )
    yield CounterMetricFamily(
        P + "source_switch_overlap_skipped",
        "Events of the first Tetragon stream after the native probes that were not counted: "
        "stamped while the probes ran, of a function they had attached (they counted it).",
        value=switch.stats.overlap_skipped,
    )
    probes = GaugeMetricFamily(
        P + "native_probes",
        "Probes of the native probes' latest load while attached: attached, or failed to attach "
        "(each logged with its reason); 0 while they are not attached.",
        labels=["state"],
    )
    up = switch.bcc.stats if switch.bcc is not None and switch.bcc.stats.connected else None
    probes.add_metric(["attached"], len(up.attached) if up is not None else 0)
    probes.add_metric(["failed"], len(up.failed) if up is not None else 0)
    yield probes
    if switch.bcc is not None:
        k = CounterMetricFamily(
            P + "native_kernel_events",
            "The native probes' in-kernel counters.",
            labels=["probe", "counter"],
        )
        for probe, counters in sorted(switch.bcc.stats.kernel.items()):
            for name, v in sorted(counters.items()):
                k.add_metric([probe, name], v)
        yield k
