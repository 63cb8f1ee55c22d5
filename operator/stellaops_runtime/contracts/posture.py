"""Observation posture: how well a pod or an image is being watched.

Levels, lowest first: None < Passive < ActiveTracing < EbpfDeep < FullInstrumentation
(the seed's table: Passive "lifecycle only", ActiveTracing "syscalls + network",
EbpfDeep "+ function calls", FullInstrumentation "+ USDT + coverage").

The controller computes the posture a pod *should* get (controller/posture.py):

- ``Passive``: process exec/exit (and loader) events only;
- ``ActiveTracing``: plus kernel probes (syscall kprobes, tracepoints, LSM hooks,
  network), rendered without user stacks;
- ``EbpfDeep``: plus uprobes on chosen functions, and the syscall kprobes with
  user stacks when the policy asks for them;
- ``FullInstrumentation``: plus USDT / language-runtime probes.

The hot-symbol bridge records, per observation window, the posture the events
*evidence* (:func:`event_rank`), which is what a "not observed" answer rests
on, so it says how much of the image's *function calls* the events could show:

- exec, exit, loader: Passive;
- a kernel-probe event without a user stack (or one whose stack was not
  counted): ActiveTracing. It shows no user function at all;
- a uprobe or USDT event: ActiveTracing too. It shows calls of the one function
  it probes, never the absence of any other, and the store does not record
  which functions were probed;
- a kernel-probe event with a counted user stack: EbpfDeep. Every function on
  the stack is seen (stack sampling at the probe: a function that makes no
  system call while it runs is never on a sampled stack).

Only EbpfDeep or more (:data:`FUNCTION_VISIBLE`) backs a "not observed".
Stores written before this rule recorded every kernel-probe event as
ActiveTracing (with a stack or not) and uprobes as EbpfDeep (USDT as
FullInstrumentation). Agents of this rule also write the rank to
``evidenced_level`` (store migration 0009); a window that only older agents
wrote reads at most :data:`LEGACY_TRUSTED` (ActiveTracing: not
function-visible, unknown, the safe direction), whatever its
``posture_level`` says. The store keeps a posture as its integer :attr:`Posture.rank` so
that merging is a maximum on every backend. Plain data: no I/O.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

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
# user function call can be seen (only the calls of probed functions, by uprobe or USDT).
FUNCTION_VISIBLE = Posture.EBPF_DEEP

# The highest posture a window written only by agents before store migration 0009 can read as:
# their posture_level said EbpfDeep/FullInstrumentation for uprobe/USDT events, and whether the
# window's events had counted user stacks was not recorded (store/watched_sql.py window_level).
LEGACY_TRUSTED = Posture.ACTIVE_TRACING

# What one event evidences about the posture of its image's window, without a user stack.
EVENT_POSTURE: dict[EventKind, Posture] = {
    EventKind.EXEC: Posture.PASSIVE,
    EventKind.EXIT: Posture.PASSIVE,
    EventKind.LOADER: Posture.PASSIVE,
    EventKind.SYSCALL: Posture.ACTIVE_TRACING,
    EventKind.KPROBE: Posture.ACTIVE_TRACING,
    EventKind.TRACEPOINT: Posture.ACTIVE_TRACING,
    EventKind.LSM: Posture.ACTIVE_TRACING,
    EventKind.NETWORK: Posture.ACTIVE_TRACING,
    EventKind.UPROBE: Posture.ACTIVE_TRACING,
    EventKind.USDT: Posture.ACTIVE_TRACING,
}
# Kernel-probe kinds whose user stack the hot-symbol bridge counts (one observation per function).
STACK_KINDS = frozenset({EventKind.SYSCALL, EventKind.KPROBE, EventKind.TRACEPOINT, EventKind.LSM})
# What such an event evidences when its user stack was counted: the stack's functions are seen.
STACK_POSTURE = Posture.EBPF_DEEP


def event_rank(kind: EventKind, *, stack_counted: bool, cap: Posture | None = None) -> int:
    """The posture rank one event evidences (the rule of the module docstring), at most ``cap``'s."""
    p = STACK_POSTURE if stack_counted and kind in STACK_KINDS else EVENT_POSTURE[kind]
    return min(p.rank, cap.rank) if cap is not None else p.rank


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

# What people write for "do not observe" besides the level's own name: read as None, no Warning.
OPT_OUT_SPELLINGS = (
    "off",
    "false",
    "no",
    "0",
    "disabled",
    "disable",
    "opt-out",
    "optout",
    "opted-out",
    "never",
)
_OPT_OUT = frozenset(OPT_OUT_SPELLINGS)
# Longer than any level or spelling with room for whitespace around it: a longer value is not
# lowered or stripped (the agent reads the value on every event), it is simply not a level.
MAX_LEVEL_CHARS = 64
# What the container runtime's record of a pod (lifecycle/decode.py, lifecycle/cri_records.py) keeps
# in place of a present value it cannot keep as it is (NUL bytes, not a string, past its bounds): no
# level, so read_level fails closed on it as on the value itself, never reading it as absent.
UNREADABLE_LEVEL = "\ufffd"


def parse_level(text: str) -> Posture | None:
    """A level from an annotation value: the posture names or kebab-case, any case; None if neither."""
    return _BY_TEXT.get(text.strip().lower())


class LevelRequest(NamedTuple):
    """What an ``stellaops.io/observe-level`` value asks for (:func:`read_level`)."""

    level: Posture | None  # None: no annotation, the policies and the node decide
    invalid: bool  # a value that is neither a level nor an opt-out spelling (read as Posture.NONE)


_ABSENT = LevelRequest(None, False)
_INVALID = LevelRequest(Posture.NONE, True)


def read_level(value: object) -> LevelRequest:
    """The one reading of an ``stellaops.io/observe-level`` value, the operator's and the agent's.

    A level's name (``Passive``, ``ebpf-deep``...; any case, whitespace around
    it ignored) requests that level; ``None`` and the opt-out spellings
    (:data:`OPT_OUT_SPELLINGS`: ``off``, ``false``, ``no``, ``0``...) opt the
    pod out. Any other value present, a typo, an empty string, NUL bytes, a
    value longer than :data:`MAX_LEVEL_CHARS`, a value that is not a string
    (a YAML bool), fails closed: it opts the pod out too and is ``invalid``
    (the operator posts a Warning Event), since a pod that asked not to be
    observed in words we do not know must not be observed. ``None`` (the
    annotation absent) requests nothing.
    """
    if value is None:
        return _ABSENT
    if type(value) is not str or len(value) > MAX_LEVEL_CHARS:
        return _INVALID
    text = value.strip().lower()
    level = _BY_TEXT.get(text)
    if level is not None:
        return LevelRequest(level, False)
    return LevelRequest(Posture.NONE, text not in _OPT_OUT)


def opts_out(value: object) -> bool:
    """Whether an ``stellaops.io/observe-level`` value opts the pod out (:func:`read_level` gives None).

    Every present value but a level above None does: the opt-out spellings and
    invalid values alike, by the operator and the agent alike.
    """
    return read_level(value).level is Posture.NONE


def names_a_level(value: object) -> bool:
    """Whether an ``stellaops.io/observe-level`` value names a level above None (the pod asks to be
    observed at it): the operator's ``optedIn`` list (controller/opted_out.py), by :func:`read_level`."""
    level = read_level(value).level
    return level is not None and level is not Posture.NONE
