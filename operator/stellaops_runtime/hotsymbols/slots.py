"""The aggregator's per-key record, and the deltas a drain turns those records into.

Why a module of its own: the record's layout is what bounds the agent's memory
per key (issue 13: one ``__slots__`` object, no dict), and turning a window's
records into :class:`HotSymbolDelta` rows is the one place that reads them all.
Both are pure; hotsymbols/aggregate.py decides what is counted in them.
"""

from __future__ import annotations

from typing import Any

from stellaops_runtime.contracts.hotsymbols import CONFIDENCE, EvidenceKind, HotSymbolDelta, HotSymbolKey
from stellaops_runtime.hotsymbols.callers import CallerTable
from stellaops_runtime.hotsymbols.samples import sample_dict

# A group of keys: (window start, image, module, evidence); its functions are the dict keys.
Group = tuple[int, str, str, EvidenceKind]

_STACK = EvidenceKind.ON_STACK


def id_symbol(function_id: str) -> str:
    """The symbol part of ``<build-id>:<symbol>+0x<offset>`` (no validation: IDs here are ours)."""
    return function_id[function_id.index(":") + 1 : function_id.rindex("+0x")]


class Slot:
    """The counts of one key in one window (one record, no dict: there are up to maxKeys of them)."""

    __slots__ = (
        "build_id",
        "count",
        "first_ns",
        "function_id",
        "last_ns",
        "max_latency_ns",
        "node",
        "sample",
        "total_latency_ns",
    )

    def __init__(self, ts: int, lat: int, node: str, build_id: str, function_id: str, sample: Any) -> None:
        self.count = 1
        self.first_ns = ts
        self.last_ns = ts
        self.total_latency_ns = lat
        self.max_latency_ns = lat
        self.node = node
        self.build_id = build_id
        self.function_id = function_id
        self.sample = sample


def slot_deltas(groups: dict[Group, dict[str, Slot]], callers: CallerTable) -> list[HotSymbolDelta]:
    """One delta per key of ``groups``; a stack key's distinct callers are read from ``callers``."""
    deltas = []
    # One sample dict per sample tuple: the keys of one event share it (nothing mutates it).
    samples: dict[int, dict[str, Any]] = {}
    for (win, image, module, evidence), slots in groups.items():
        confidence = CONFIDENCE[evidence]
        stack = evidence is _STACK  # only stack keys have callers
        for function, s in slots.items():
            sample = samples.get(id(s.sample))
            if sample is None:
                sample = samples[id(s.sample)] = sample_dict(s.sample)
            deltas.append(
                HotSymbolDelta(
                    key=HotSymbolKey(
                        image_digest=image, module=module, function_name=function, evidence=evidence
                    ),
                    window_start_ns=win,
                    invocation_count=s.count,
                    first_seen_ns=s.first_ns,
                    last_seen_ns=s.last_ns,
                    unique_callers=callers.count(image, module, function) if stack else 0,
                    total_latency_ns=s.total_latency_ns,
                    max_latency_ns=s.max_latency_ns,
                    confidence=confidence,
                    build_id=s.build_id,
                    function_id=s.function_id,
                    node_name=s.node,
                    sample=sample,
                )
            )
    return deltas
