"""Hot-symbol records: what the bridge hands to the store.

A hot-symbol key names one function of one file in one image, observed one
way. The key carries the module (file path inside the image) so that one
function name in two packages never collides, and the evidence kind because
confidence depends on how a function was seen: an invocation counted by a
uprobe is stronger evidence than the same function sitting on a stack sampled
at a syscall, and much stronger than its library merely being mapped.

The bridge aggregates events into :class:`HotSymbolDelta` rows; the store adds
them to what it already has (counts are additive, so a retried or merged flush
is exact).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from stellaops_runtime.contracts.posture import Posture


class EvidenceKind(enum.StrEnum):
    """How a function (or file) was observed."""

    INVOKED = "invoked"  # uprobe / USDT hit: one event is one invocation
    KERNEL_CALL = "kernel_call"  # the kernel function a kprobe/tracepoint/lsm hook fired on
    ON_STACK = "on_stack"  # on a user stack sampled at a kprobe/tracepoint
    EXECUTED = "executed"  # the binary of an exec event
    LOADED = "loaded"  # a file mapped into a process (process_loader): loaded, not called
    # Not an observation: a GCC split tail (``crc32.part.0``) of a function probed by PURL, left
    # unprobed (callers that inlined the head call it unseen). Always 0 calls; answers read it as
    # "probed in part", never "not observed" (evidence/probed_in_part.py, agent/unprobed.py).
    UNPROBED = "unprobed"
    # Not an observation: a ``.jar`` the package's database lists beside a library of it seen loaded
    # (a JNI library's JAR, whose classes run as JIT code under no file). Always 0 calls, function "";
    # answers read it as "this package holds Java code" (evidence/interpreted.py, agent/listed_jars.py).
    LISTED = "listed"


# The kinds above that are facts, not observations: 0 calls, read for any period, never dropped by the
# outage bound (store/batches.py never_dropped), never counted as a call or a package seen loaded.
FACT_KINDS = frozenset({EvidenceKind.UNPROBED, EvidenceKind.LISTED})


# Runtime-signal confidence per evidence kind (DESIGN.md: the seed's RTS table
# 1.00 / 0.80 / 0.50 / 0.20, with 0.50 as the default for anything else).
# docs/architecture.md explains the reading.
CONFIDENCE: dict[EvidenceKind, float] = {
    EvidenceKind.INVOKED: 1.00,
    EvidenceKind.KERNEL_CALL: 1.00,
    EvidenceKind.ON_STACK: 0.80,
    EvidenceKind.EXECUTED: 0.50,
    EvidenceKind.LOADED: 0.20,
}
DEFAULT_CONFIDENCE = 0.50


@dataclass(frozen=True, slots=True)
class HotSymbolKey:
    image_digest: str
    module: str  # path of the file inside the image ("[kernel]" for kernel functions)
    function_name: str  # canonical name; for EXECUTED/LOADED the file itself ("" )
    evidence: EvidenceKind


@dataclass(slots=True)
class HotSymbolDelta:
    """What one aggregation window added for one key, since the last flush.

    ``window_start_ns`` is the start of the aggregation window (window length
    from config); the store appends it to the window history (several rows of
    one (key, window) are summed by every query) and adds it to one cumulative
    row per key. ``unique_callers`` is the number of distinct callers
    this agent has seen for the key so far (not additive: the store keeps the
    maximum). ``build_id``, ``purl``, ``function_id`` and ``sample`` describe the key and are
    kept from the first delta that has them.
    """

    key: HotSymbolKey
    window_start_ns: int
    invocation_count: int
    first_seen_ns: int
    last_seen_ns: int
    unique_callers: int = 0
    total_latency_ns: int = 0
    max_latency_ns: int = 0
    confidence: float = DEFAULT_CONFIDENCE
    build_id: str = ""
    purl: str = ""
    # Canonical ID of the function's entry, ``<build-id>:<symbol>+0x0`` (empty for
    # file evidence and for functions the canonicalizer could not resolve).
    function_id: str = ""
    node_name: str = ""
    # One example observation, JSON-serializable, after the privacy filter:
    # {"binary", "arguments", "namespace", "pod", "container_id", "stack": [...]}.
    sample: dict[str, Any] = field(default_factory=dict)

    def merge(self, other: HotSymbolDelta) -> None:
        """Fold a later delta of the same (key, window) into this one."""
        self.invocation_count += other.invocation_count
        self.first_seen_ns = min(self.first_seen_ns, other.first_seen_ns)
        self.last_seen_ns = max(self.last_seen_ns, other.last_seen_ns)
        self.unique_callers = max(self.unique_callers, other.unique_callers)
        self.total_latency_ns += other.total_latency_ns
        self.max_latency_ns = max(self.max_latency_ns, other.max_latency_ns)
        self.confidence = max(self.confidence, other.confidence)
        self.build_id = self.build_id or other.build_id
        self.purl = self.purl or other.purl
        self.function_id = self.function_id or other.function_id
        self.node_name = other.node_name or self.node_name
        if not self.sample:
            self.sample = other.sample


@dataclass(frozen=True, slots=True)
class ObservationWindow:
    """An image was under observation on a node during a window, and how well.

    "Observed for 30 days, never called" needs to know when an image was being
    watched at all, not only when one of its functions ran, and whether the
    watching could have seen the function: ``posture`` is the highest level
    the window's events evidence (``contracts.posture.EVENT_POSTURE``: lifecycle
    events only give Passive, which cannot see function calls), never a level
    someone declared. None means unknown (rows written before postures were
    recorded); it never supports a "not observed". ``window_seconds`` is the
    window's length (0 when unknown) and ``source`` the event source that
    delivered it ("tetragon"; "" when unknown). ``evidenced`` is what a
    "not observed" may rest on: the lowest, over the image's containers that
    sent events in the window, of the highest posture each one's events showed
    (hotsymbols/window_units.py: one pod's user stacks say nothing of another
    pod's calls; a container of the image that ran in the window without
    sending it an event counts at Passive, hotsymbols/container_runs.py),
    cumulative over the window's drains so the latest row of a window that
    carries it holds all of them (None, the Python value: as ``posture`` on a
    row with events; lifecycle and gap rows leave it alone; a row with no
    events that carries it restates the window's value). ``Posture.NONE``
    (rank 0, which no event gives) is the unwatched-container mark: the first
    window that UTC day of a container of the image that showed no call all
    day on the node while another container of it did, silent or traced
    without stacks (hotsymbols/day_calls.py; a lifecycle row may carry it
    too). The store takes that node's day out of the watch on it
    (store/watched_sql.py ``unseen_days``); read alone, the window reads as
    its ``posture`` capped at ActiveTracing, as a Passive value does.

    A *gap* is Tetragon telling us it did not deliver events in the window
    (hotsymbols/gaps.py): ``gap_start_ns``..``gap_end_ns`` is the part of the
    window it covers (both 0: no gap), ``throttles`` the THROTTLE_START
    signals for the image in the window and ``dropped_events`` the events
    Tetragon's export rate limiter reported dropped. Rate limiting has no pod,
    so it is recorded on a node-wide row, ``image_digest`` :data:`NODE_WIDE`
    with no events, which applies to every image observed on that node in
    that window. No "not observed" may rest on a window with a gap.

    ``marked_by`` names the agent that judged ``evidenced`` (its ``agent_id``, stamped on a mark and
    on a restate row by agent/pipeline.py; "" when unknown: rows of older agents, tools): the store
    lets a restate row clear only a mark the same agent wrote (store/marks.py).
    """

    image_digest: str
    node_name: str
    window_start_ns: int
    event_count: int
    posture: Posture | None = None
    window_seconds: int = 0
    source: str = ""
    gap_start_ns: int = 0
    gap_end_ns: int = 0
    throttles: int = 0
    dropped_events: int = 0
    evidenced: Posture | None = None
    marked_by: str = ""

    @property
    def has_gap(self) -> bool:
        return self.gap_end_ns > 0

    @property
    def evidenced_posture(self) -> Posture | None:
        """The ``evidenced_level`` store/rows.py writes: ``evidenced``, or ``posture`` for a row with
        events when no container count was made; None for a row without events and without
        ``evidenced`` (lifecycle and gap rows leave the stored value alone)."""
        if self.evidenced is not None:
            return self.evidenced
        return self.posture if self.event_count > 0 else None

    def merged(self, other: ObservationWindow) -> ObservationWindow:
        """This row and another, later one of the same (image, node, window): counts add, posture is
        the higher, gaps are the union of both (earliest start, latest end), ``evidenced`` the later
        row's when it has one (it counted every container of the window so far; a row with no events
        that carries one restates it, hotsymbols/window_units.py), else this one's."""
        starts = [s for s in (self.gap_start_ns, other.gap_start_ns) if s > 0]
        theirs = other.evidenced_posture
        evidenced = theirs if theirs is not None else self.evidenced_posture
        if self.evidenced is None and other.evidenced is None:
            evidenced = None  # no container count on either side: as the merged posture
        return ObservationWindow(
            self.image_digest,
            self.node_name,
            self.window_start_ns,
            self.event_count + other.event_count,
            higher_posture(self.posture, other.posture),
            max(self.window_seconds, other.window_seconds),
            union_sources(self.source, other.source),
            min(starts) if starts else 0,
            max(self.gap_end_ns, other.gap_end_ns),
            self.throttles + other.throttles,
            self.dropped_events + other.dropped_events,
            evidenced,
            other.marked_by or self.marked_by,  # the mark's writer: store/marks.py merged
        )


def union_sources(a: str, b: str) -> str:
    """Both rows' sources (comma-joined names), each once, sorted: a window both sources observed
    (the agent switched inside it, in one flush or across two) names both, whichever was written first."""
    if a == b or not b:
        return a
    if not a:
        return b
    return normal_sources(a + "," + b)


def normal_sources(text: str) -> str:
    """A stored ``source`` as one spelling: its names each once, sorted (the store appends a second
    source in the order the rows came, ``bcc,tetragon`` or ``tetragon,bcc``)."""
    if "," not in text:
        return text
    return ",".join(sorted({p for p in text.split(",") if p}))


# ``image_digest`` of a node-wide observation-window row (a gap that has no pod).
NODE_WIDE = ""


def higher_posture(a: Posture | None, b: Posture | None) -> Posture | None:
    """The higher of two postures; unknown (None) is below every known level."""
    if a is None:
        return b
    if b is None:
        return a
    return a if a >= b else b
