"""The probes' load ends, for the overlap filter, where their last read began (RSW3, s42).

agent/source_switch_overlap.py skips Tetragon's cached events of calls the
native probes counted: one stamped inside a load's time, of a function it
attached. The probes' last read (native/source_read.py ``_final_counters``)
first detaches the uprobes, then reads the buffer and the calls in flight; the
source closes the probes after it, and only then takes ``detached_ns``. A call
entered once its uprobe was detached, or written to the buffer after its last
poll, reached no record, yet it was stamped before ``detached_ns``: Tetragon's
cached copy, its only count, was skipped as the probes' (at the switch back,
and, since SW3's ``stored_all``, after a graceful stop too). The load now ends
at the start of the last read (``NativeStats.last_read_ns``): a call stamped
after it is Tetragon's; what the probes counted after it is counted twice at
worst.

Stand-ins for BCC: test_native_cut_read.py's buffer, run by the real
NativeProbeSource inside the real SourceSwitch.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from stellaops_runtime.agent import source_switch_loads as sl
from stellaops_runtime.agent.source_switch import BCC
from stellaops_runtime.native.config import NativeConfig
from stellaops_runtime.native.source import NativeProbeSource
from tests.unit.test_native_cut_read import _Probes, _until
from tests.unit.test_source_switch_overlap_attach import AF, ev, switch


class _Detaching(_Probes):
    """The stand-in's last read and close take time, as BCC's do (each uprobe detached, then all freed)."""

    def __init__(self) -> None:
        super().__init__()
        self.detach_ns = 0  # wall clock as the uprobes' detach began
        self.closed_ns = 0  # ... as the close (every other probe's detach) ended

    def detach_uprobes(self) -> None:
        self.detach_ns = time.time_ns()
        time.sleep(0.01)

    def close(self) -> None:
        time.sleep(0.01)
        self.closed_ns = time.time_ns()
        super().close()


def test_a_call_after_the_last_read_began_is_not_skipped_as_the_probes(tmp_path: Any) -> None:
    spool = str(tmp_path / "spool")
    sw = switch(spool)
    sw._reload_check_at = sw._next_check = float("inf")
    probes = _Detaching()
    src = NativeProbeSource(NativeConfig(uprobes=(AF,)), queue=sw.queue, kernel_source="")

    def load() -> Any:
        src.stats.attached = [f"uprobe {AF.label()}"]
        return probes

    src._load = load  # type: ignore[method-assign]
    sw.bcc, sw.mode, sw._bcc_since_ns = src, BCC, time.time_ns()
    sw._boundary(BCC, NativeConfig(uprobes=(AF,)))

    async def main() -> int:
        sw._start(src.run)
        await _until(lambda: src.stats.connected, "load")
        before = time.time_ns()  # a call the probes read
        await sw._to_tetragon()  # the switch back: the probes' last read, close, then the stream
        await sw._stop_active()
        return before

    before = asyncio.run(main())
    assert probes.detach_ns and probes.closed_ns > probes.detach_ns
    assert src.stats.detached_ns >= probes.closed_ns  # taken after the close, as before
    o = sw._segments[-1].overlap
    assert o is not None and o.counted_by_probes(ev(AF, before))  # read by the probes: skipped
    lost = [probes.detach_ns + 1, probes.closed_ns - 1]  # no uprobe left to count them
    assert not any(o.counted_by_probes(ev(AF, t)) for t in lost), "Tetragon's only count skipped"

    sw.stored_all()  # a graceful stop that stored every count (agent/runner.py): the same load
    r = sl.decode((tmp_path / "spool.probe-loads").read_bytes(), boot=sl.this_boot(), cut_ns=before)
    assert r is not None and r.counted_by_probes(ev(AF, before))
    assert not any(r.counted_by_probes(ev(AF, t)) for t in lost), "restart: Tetragon's only count skipped"
