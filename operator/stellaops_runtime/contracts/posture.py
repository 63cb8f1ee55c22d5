"""Observation posture: how well a pod or an image is being watched.

Levels, lowest first: None < Passive < ActiveTracing < EbpfDeep < FullInstrumentation.

- ``Passive``: process exec/exit (and loader) events only: lifecycle, no function calls;
- ``ActiveTracing``: plus kernel probes (syscall kprobes, tracepoints, LSM hooks,
  network); functions can be seen on the user stacks they carry;
- ``EbpfDeep``: plus uprobes on chosen functions;
- ``FullInstrumentation``: plus USDT / language-runtime probes.

The controller computes the posture a pod *should* get (controller/posture.py);
the hot-symbol bridge records, per observation window, the posture the events
*evidence* (:data:`EVENT_POSTURE`), which is what a "not observed" answer rests
on. The store keeps a posture as its integer :attr:`Posture.rank` so that
merging is a maximum on every backend. Plain data: no I/O.
"""

from __future__ import annotations

import enum

from stellaops_runtime.contracts.events import EventKind


class Posture(enum.StrEnum):
    NONE = "None"
    PASSIVE = "Passive"
    ACTIVE_TRACING = "ActiveTracing"
    EBPF_DEEP = "EbpfDeep"
    FULL_INSTRUMENTATION = "FullInstrumentation"

    @property
    def rank(self) -> int:
        return ORDER.index(self)

    def __lt__(self, other: object) -> bool:  # ordered by level, not by name
        if not isinstance(other, Posture):
            return NotImplemented
        return self.rank < other.rank

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Posture):
            return NotImplemented
        return self.rank <= other.rank

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Posture):
            return NotImplemented
        return self.rank > other.rank

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Posture):
            return NotImplemented
        return self.rank >= other.rank


ORDER: tuple[Posture, ...] = (
    Posture.NONE,
    Posture.PASSIVE,
    Posture.ACTIVE_TRACING,
    Posture.EBPF_DEEP,
    Posture.FULL_INSTRUMENTATION,
)

# The lowest posture at which an absence of calls means something: below it no
# function call can be seen at all.
FUNCTION_VISIBLE = Posture.ACTIVE_TRACING

# What one event evidences about the posture of its image's window.
EVENT_POSTURE: dict[EventKind, Posture] = {
    EventKind.EXEC: Posture.PASSIVE,
    EventKind.EXIT: Posture.PASSIVE,
    EventKind.LOADER: Posture.PASSIVE,
    EventKind.SYSCALL: Posture.ACTIVE_TRACING,
    EventKind.KPROBE: Posture.ACTIVE_TRACING,
    EventKind.TRACEPOINT: Posture.ACTIVE_TRACING,
    EventKind.LSM: Posture.ACTIVE_TRACING,
    EventKind.NETWORK: Posture.ACTIVE_TRACING,
    EventKind.UPROBE: Posture.EBPF_DEEP,
    EventKind.USDT: Posture.FULL_INSTRUMENTATION,
}

# Shown to people where a posture is unknown (rows written before postures were stored).
UNKNOWN_TEXT = "unknown"


def posture_of_rank(rank: int | None) -> Posture | None:
    """The posture stored as ``rank``; None for NULL (unknown) or a rank this version does not know."""
    if rank is None or not 0 <= rank < len(ORDER):
        return None
    return ORDER[rank]


def posture_text(p: Posture | None) -> str:
    return p.value if p is not None else UNKNOWN_TEXT


# Pod keys the agent reads too (privacy/optout.py), so they live here and not with the CRD models.
OBSERVE_LEVEL_ANNOTATION = "stellaops.io/observe-level"  # set by users on pods
OBSERVE_OFF_LABEL = "stellaops.io/observe-off"  # set by the operator on pods opted out by the annotation

ALLOWED_LEVELS = ("none", "passive", "active-tracing", "ebpf-deep", "full-instrumentation")
_BY_TEXT: dict[str, Posture] = {}
for _p, _kebab in zip(ORDER, ALLOWED_LEVELS, strict=True):
    _BY_TEXT[_p.value.lower()] = _p
    _BY_TEXT[_kebab] = _p


def parse_level(text: str) -> Posture | None:
    """A level from an annotation value: the posture names or kebab-case, any case; None if neither."""
    return _BY_TEXT.get(text.strip().lower())


def opts_out(value: object) -> bool:
    """Whether an ``stellaops.io/observe-level`` value opts the pod out (reads as ``None``).

    Anything but a string that ``parse_level`` reads as ``None`` does not: an
    invalid value is ignored, as if absent, by the operator and the agent alike.
    """
    return isinstance(value, str) and parse_level(value) is Posture.NONE
