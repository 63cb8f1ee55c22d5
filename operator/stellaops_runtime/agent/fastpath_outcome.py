"""What the agent's fast path (agent/fastpath.py) remembers of one event, and when it may not.

Split from agent/fastpath.py, which decides when an outcome is used: this
module holds the record itself (:class:`Outcome`), the counters the fast path
keeps (:class:`FastPathStats`) and the rules saying which canonicalizer
results are final (:func:`unsettled`). Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stellaops_runtime.contracts.events import EventKind, RuntimeCallEvent

# Kinds whose outcome depends on nothing but the event and the process's loader build-ids.
_K = EventKind
REPEATABLE = frozenset({_K.SYSCALL, _K.KPROBE, _K.UPROBE, _K.USDT, _K.TRACEPOINT, _K.LSM})
# Canonicalizer outcomes that are never final.
_NEVER_FINAL = ("parse_pending", "internal_error")
# Outcomes that can change while a process of this node lives (its files are read live).
_LIVE = ("process_exited", "unreadable_file", "deleted_file", "no_such_process", "no_file", "not_mapped",
         "budget_exceeded", "build_id_mismatch")  # fmt: skip
Counts = tuple[tuple[str, int], ...]
Facts = tuple[tuple[str, str], ...]  # (path, build-id) pairs
UNSEEN = object()


@dataclass(slots=True)
class FastPathStats:
    """What the fast path did (the agent's metrics and the benchmark read it)."""

    hits: int = 0  # events counted as repeats
    misses: int = 0  # events processed in full (a key seen for the first time, or not kept)
    stored: int = 0  # outcomes remembered
    evictions: int = 0  # outcomes evicted at the bounds
    stale: int = 0  # remembered outcomes found invalid (loader build-ids or containers changed)
    not_kept: dict[str, int] = field(default_factory=dict)  # outcomes not remembered, by reason
    skipped: int = 0  # events sent straight to the ordinary path while nothing repeated


class Outcome:
    """One remembered outcome (see the module docstring); ``event`` is the processed event."""

    __slots__ = (
        "adapter", "below", "canon", "enrich", "epoch", "event", "exec_id", "facts", "generation", "kind",
        "n", "opted_out", "privacy", "privacy_dropped", "slots", "win", "window",
    )  # fmt: skip

    def __init__(self, event: RuntimeCallEvent, generation: int, facts: Facts | None) -> None:
        self.event = event  # processed (filtered, canonicalized); its times are set per repeat
        self.kind: EventKind = event.kind
        self.exec_id = event.process.exec_id
        self.facts = facts  # the process's loader build-ids it was computed with
        self.generation = generation  # -1: no longer valid
        self.adapter: Counts = ()  # repairs the adapter counted
        self.enrich: Counts = ()  # what the container lookup filled in
        self.opted_out = ""  # the opt-out reason, when dropped there
        self.privacy_dropped = False  # dropped by the namespace allowlist
        self.privacy: tuple[int, int, Counts] = (0, 0, ())  # fields redacted, truncated, by pattern
        self.canon: Counts = ()  # the canonicalizer's counters
        self.n = 0  # observations
        self.below = 0  # observations below the confidence threshold
        # The aggregator's slots and window entry it counted in, valid in that epoch and window.
        self.slots: list[Any] = []
        self.window: list[Any] = []
        self.epoch = -1
        self.win = -1


def unsettled(canon: Counts, local: Callable[[], bool]) -> str:
    """Why the canonicalizer's result, counted as ``canon``, may still change ("" when it may not).

    ``local()`` says whether the event's process is one of this node (its files are read live).
    """
    is_local = None
    for name, _ in canon:
        if name.endswith(_NEVER_FINAL):
            return "parse_pending" if name.endswith("parse_pending") else "internal_error"
        if name.endswith(_LIVE):
            if is_local is None:
                is_local = local()
            if is_local:
                return "live_process"
    return ""


def delta(before: dict[str, int], after: dict[str, int]) -> Counts:
    """What ``after`` added to ``before``, as (name, n) pairs."""
    return tuple((k, v - before.get(k, 0)) for k, v in after.items() if v != before.get(k, 0))


def enrich_counts(lookup: Any) -> dict[str, int]:
    """The container lookup's counters (lifecycle/lookup.py EnrichStats) as one flat dict."""
    if lookup is None:
        return {}
    st = lookup.stats
    return {"events": st.events, **st.fields}


def add_enrich(lookup: Any, counts: Counts) -> None:
    st = lookup.stats
    for name, n in counts:
        if name == "events":
            st.events += n
        else:
            st.fields[name] = st.fields.get(name, 0) + n
