"""What the native probe source reports: native/source.py's ``stats``, apart so the source stays small.

Read by the agent's source switch (agent/source_switch*.py), its metrics and
``/readyz``; the fields every source has (``connects``, ``connected``,
``received``, ``last_error``) and the probes' own (attached and failed probes,
kernel counters, drops and unwatched spans not yet taken by the switch).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stellaops_runtime.native.drop_counters import NativeDrop


@dataclass(slots=True)
class NativeStats:
    connects: int = 0  # successful loads
    reconnects: int = 0
    connect_failures: int = 0  # failed loads
    received: int = 0  # records read from the kernel
    connected: bool = False
    last_error: str = ""
    attached: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # probes that could not attach, and why
    kernel: dict[str, dict[str, int]] = field(default_factory=dict)  # ProbeSet.counters(), last read
    attached_ns: int = 0  # wall clock just after the latest load attached the probes (0: never)
    detached_ns: int = 0  # wall clock just after the latest run closed them (0: not yet)
    # ... as the latest run's last read began, before the uprobes' detach (0: not yet): a call stamped
    # later may be in no record (entered once its uprobe was gone, or written after the last poll)
    last_read_ns: int = 0
    drops: list[NativeDrop] = field(default_factory=list)  # not yet taken by the switch (take_drops)
    dropped_total: int = 0  # events the probes dropped, all runs (drop_counters.py)
    followed: int = 0  # targets probed in the new file put at their path (native/follow.py)
    former: int = 0  # deleted former files of targets, still run, probed at the loads (native/former.py)
    reload_wanted: bool = False  # a PURL target's file changed in its container since the load
    unwatched: list[tuple[int, int]] = field(default_factory=list)  # wall spans not yet taken
    known_errors: int = 0  # the probed files kept for the next start could not be read or written
