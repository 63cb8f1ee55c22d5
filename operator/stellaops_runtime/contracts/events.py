"""RuntimeCallEvent: one normalized runtime event, whatever its source.

Every source (Tetragon gRPC, Tetragon JSON export, later our own BCC probes)
is reshaped into this one record by the event adapter, so the privacy filter,
the frame canonicalizer and the hot-symbol bridge never see a source's wire
format. Plain data only: no I/O, no imports from other layers.

Records are slotted dataclasses because the agent builds one per event on the
hot path (tens of thousands per second).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stellaops_runtime.contracts.posture import Posture


class EventKind(enum.StrEnum):
    """What kind of observation an event is (DESIGN.md, RuntimeCallEvent.kind)."""

    EXEC = "exec"
    EXIT = "exit"
    SYSCALL = "syscall"  # a kprobe on a syscall entry (__x64_sys_*)
    KPROBE = "kprobe"  # a kprobe on any other kernel function
    TRACEPOINT = "tracepoint"
    UPROBE = "uprobe"
    USDT = "usdt"
    LSM = "lsm"
    LOADER = "loader"  # a file (library, executable) mapped into a process
    NETWORK = "network"


@dataclass(slots=True)
class StackFrame:
    """One stack frame as the source gave it.

    For Tetragon user frames ``offset`` is a file offset inside ``module`` (not an
    offset from the symbol) and ``symbol`` is only a hint; kernel frames carry a
    kallsyms symbol and the offset from its start. ``address`` is usually 0.

    The frame canonicalizer (``stellaops_runtime.canonical``) fills the rest:
    ``build_id`` of the mapped file, ``symbol`` replaced by the canonical
    demangled name it resolved itself, ``symbol_offset`` (offset from that
    symbol's start), ``function_id`` (``<build-id>:<symbol>+0x<offset>``) and
    ``source``, where the symbol came from (symtab, dynsym, dwarf, gopclntab,
    kallsyms, hint, none; empty until canonicalized), and ``inlined``: the
    canonical names of the functions the compiler inlined at this frame's
    return address, innermost first (Go's inline tree, DWARF inlined
    subroutines; canonical/inlines.py). They ran, but have no frame of their own.
    """

    module: str = ""
    symbol: str = ""
    offset: int = 0
    address: int = 0
    build_id: str = ""
    symbol_offset: int = 0
    function_id: str = ""
    source: str = ""
    inlined: tuple[str, ...] = ()


@dataclass(slots=True)
class ProcessInfo:
    exec_id: str = ""
    pid: int = 0
    tid: int = 0
    uid: int | None = None
    binary: str = ""
    # Arguments after the privacy filter (the adapter fills the raw string; the
    # filter redacts or removes it before anything is stored or logged).
    arguments: str = ""
    cwd: str = ""
    parent_exec_id: str = ""


@dataclass(slots=True)
class ContainerInfo:
    id: str = ""  # runtime prefix stripped: bare hex id
    runtime: str = ""  # "containerd", "docker", "cri-o", ... from the id prefix
    name: str = ""
    image_ref: str = ""  # image name as the runtime reports it (repo:tag)
    image_id: str = ""  # image id as Tetragon reports it (repo@sha256:... or sha256:...)
    image_digest: str = ""  # "sha256:<hex>" when one could be found, else ""
    cgroup_id: int = 0


# The pod annotations the adapters copy into PodInfo.annotations: only the
# ones the agent acts on (the user's observe level, read by privacy/optout.py).
# Tetragon sends every annotation of the pod with every event when run with
# --enable-pod-annotations, kubectl's last-applied-configuration (the whole
# pod spec, environment values included) among them; none of the others is
# copied, so none can be kept, logged or stored. Equal to
# contracts.crds.OBSERVE_LEVEL_ANNOTATION (a test checks; this module imports nothing).
KEPT_POD_ANNOTATIONS: tuple[str, ...] = ("stellaops.io/observe-level",)


@dataclass(slots=True)
class PodInfo:
    namespace: str = ""
    name: str = ""
    uid: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    workload: str = ""
    workload_kind: str = ""
    # Of the pod's annotations, those in KEPT_POD_ANNOTATIONS that the source
    # sent (Tetragon only with --enable-pod-annotations, v1.5+); empty otherwise.
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Argument:
    """One traced argument, flattened to text (what a policy or a human reads)."""

    label: str
    type: str  # the Tetragon oneof member name, e.g. "string_arg", "file_arg"
    value: str


@dataclass(slots=True)
class RuntimeCallEvent:
    """One normalized runtime event."""

    kind: EventKind
    timestamp_ns: int  # wall-clock time of the event, ns since the epoch
    node_name: str
    process: ProcessInfo
    container: ContainerInfo | None = None  # None for host processes
    pod: PodInfo | None = None  # None for host processes and plain containers
    function_name: str = ""  # probed function / syscall / hook / tracepoint "subsys:event"
    module: str = ""  # the file the probed function lives in (uprobe/usdt path, loader path)
    symbol_offset: int = 0  # uprobe offset when the probe was placed by offset
    build_id: str = ""  # hex build-id of ``module`` when the source reports it (loader)
    # Canonical ID of the probed function's entry (``<build-id>:<symbol>+0x0``),
    # filled by the frame canonicalizer for uprobe/USDT events.
    function_id: str = ""
    policy_name: str = ""
    arguments: list[Argument] = field(default_factory=list)
    kernel_stack: list[StackFrame] = field(default_factory=list)
    user_stack: list[StackFrame] = field(default_factory=list)
    latency_ns: int | None = None
    source: str = ""  # "tetragon-grpc", "tetragon-export", "bcc"
    # Monotonic ns when the agent received the event; used for capture latency.
    received_ns: int = 0
    # At most this much coverage may rest on the event (its observation window's posture is
    # capped by it): a Python function seen through USDT proves calls were seen only while the
    # interpreter fired its probe (adapter/python_usdt.py), so it backs no "not observed". None: the kind's.
    posture_cap: Posture | None = None

    @property
    def image_key(self) -> str:
        """What the hot-symbol index files this event under.

        The image digest when known; else the image id/name as reported; host
        processes (no container) are filed as ``host:<node>`` so that one node's
        host binaries are still queryable.
        """
        c = self.container
        if c is None:
            return f"host:{self.node_name}"
        return c.image_digest or c.image_id or c.image_ref or f"container:{c.id}"
