"""What this node's kernel and Tetragon can do, detected once at agent start-up.

The operator turns these facts into each pod's posture ceiling and the node's
``feature.stellaops.io/*`` labels, so each one is measured, not assumed:

- kernel version: ``uname -r``;
- BTF: ``/sys/kernel/btf/vmlinux`` exists (CO-RE programs and typed tracepoints need it);
- BPF permitted: the ``bpf(BPF_PROG_LOAD)`` syscall accepts a two-instruction
  tracepoint program from this process (so the container really has
  CAP_BPF+CAP_PERFMON or CAP_SYS_ADMIN, whatever its spec says);
- tracepoints / uprobes / kprobes: the kernel's perf PMUs of those names under
  ``/sys/bus/event_source/devices`` (or tracefs' control files);
- USDT: uprobes with semaphore support, i.e. the uprobe PMU's
  ``format/ref_ctr_offset`` (kernel 4.20+);
- BPF ring buffer: kernel 5.8 or later;
- Tetragon: reachable when its GetVersion answers within the timeout, and its version.

``list_tracing_policies`` reads the load state of every TracingPolicy on this
node from Tetragon (the only place it exists: the CRDs have no status),
including, from Tetragon versions that report them, which of a policy's hooks
did not load (``hook_statuses``: what makes a policy PARTIALLY_ENABLED).

``root`` relocates every path, so tests can describe a node with a directory tree.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import logging
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf.message import DecodeError

from stellaops_runtime import rpc
from stellaops_runtime.agent.policy_reloads import TETRAGON_ID
from stellaops_runtime.contracts.redact import redact
from stellaops_runtime.controller.loaded_version import info_without_object, version_from_info
from stellaops_runtime.sources.tetragon_grpc import one_line
from stellaops_runtime.wire.tetragon import sensors_pb2, tetragon_pb2

log = logging.getLogger(__name__)

GET_VERSION = "/tetragon.FineGuidanceSensors/GetVersion"
GET_HEALTH = "/tetragon.FineGuidanceSensors/GetHealth"
LIST_TRACING_POLICIES = "/tetragon.FineGuidanceSensors/ListTracingPolicies"
_STATE_NUMBERS = frozenset(sensors_pb2.TracingPolicyState.values())
_HOOK_STATE_NUMBERS = frozenset(sensors_pb2.HookState.values())
# Hooks listed by name per policy entry (the counts cover all of them).
MAX_FAILED_HOOKS = 20
# ObservationNode status values the API server takes: integers are int64, and an empty string in a
# merge patch of a custom resource is refused as null by the v1.20 API server (the whole patch, and
# the node's heartbeat with it: tests/realkube/test_policy_entries_real.py), so empty texts are left out.
MAX_INT64 = 2**63 - 1

# bpf(2): syscall numbers per architecture, and the constants of a minimal program load.
_BPF_SYSCALL = {"x86_64": 321, "aarch64": 280, "arm64": 280}
_BPF_PROG_LOAD = 5
_BPF_PROG_TYPE_TRACEPOINT = 5
# r0 = 0 (BPF_ALU64|BPF_MOV|BPF_K); exit (BPF_JMP|BPF_EXIT).
# struct bpf_insn: u8 code, u8 dst/src regs, s16 off, s32 imm.
_PROGRAM = struct.pack("<BBhi", 0xB7, 0, 0, 0) + struct.pack("<BBhi", 0x95, 0, 0, 0)
RING_BUFFER_KERNEL = (5, 8)


class UndecodableAnswer(Exception):
    """Tetragon answered a call with bytes that are not its message (a string field of invalid UTF-8,
    bytes that are no protobuf): decoded here, not by the channel, so the error names the call."""

    def __init__(self, method: str) -> None:
        super().__init__(f"{method}: Tetragon's answer could not be decoded")


@dataclass(frozen=True, slots=True)
class TetragonInfo:
    address: str
    reachable: bool = False
    version: str = ""
    error: str = ""

    def to_status(self) -> dict[str, Any]:
        # The status is readable cluster-wide: an address with a password shows it masked.
        out: dict[str, Any] = {"reachable": self.reachable, "address": redact(self.address)}
        if self.version:
            out["version"] = self.version
        return out


@dataclass(frozen=True, slots=True)
class Capabilities:
    kernel_version: str
    btf: bool
    bpf_permitted: bool
    tracepoints: bool
    uprobes: bool
    kprobes: bool
    usdt: bool
    ring_buffer: bool
    tetragon: TetragonInfo
    notes: tuple[str, ...] = field(default=())

    def to_status(self) -> dict[str, Any]:
        """The ``status.capabilities`` of an ObservationNode."""
        return {
            "kernelVersion": self.kernel_version,
            "btf": self.btf,
            "bpfPermitted": self.bpf_permitted,
            "tracepoints": self.tracepoints,
            "uprobes": self.uprobes,
            "kprobes": self.kprobes,
            "usdt": self.usdt,
            "ringBuffer": self.ring_buffer,
            "tetragon": self.tetragon.to_status(),
        }


def kernel_release_tuple(release: str) -> tuple[int, int]:
    """(major, minor) of a release string such as ``6.1.0-18-amd64``; (0, 0) if unparsable."""
    m = re.match(r"(\d+)\.(\d+)", release)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def bpf_program_load_permitted() -> tuple[bool, str]:
    """Try to load a trivial tracepoint BPF program; (permitted, why not)."""
    machine = os.uname().machine  # what platform.machine() reads, without that module (issue 13)
    nr = _BPF_SYSCALL.get(machine)
    if nr is None:
        return False, f"bpf syscall number unknown for {machine}"
    insns = ctypes.create_string_buffer(_PROGRAM, len(_PROGRAM))
    license_ = ctypes.create_string_buffer(b"GPL")
    # union bpf_attr for BPF_PROG_LOAD: prog_type u32, insn_cnt u32, insns u64, license u64,
    # log_level u32, log_size u32, log_buf u64, kern_version u32, prog_flags u32.
    attr = struct.pack(
        "<IIQQIIQII",
        _BPF_PROG_TYPE_TRACEPOINT,
        len(_PROGRAM) // 8,
        ctypes.addressof(insns),
        ctypes.addressof(license_),
        0,
        0,
        0,
        0,
        0,
    )
    buf = ctypes.create_string_buffer(attr, len(attr))
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.syscall(ctypes.c_long(nr), ctypes.c_int(_BPF_PROG_LOAD), buf, ctypes.c_uint(len(attr)))
    if fd >= 0:
        os.close(fd)
        return True, ""
    err = ctypes.get_errno()
    return False, f"bpf(BPF_PROG_LOAD): {errno.errorcode.get(err, str(err))}"


def _exists(root: Path, *paths: str) -> bool:
    return any((root / p.lstrip("/")).exists() for p in paths)


def detect_kernel(
    *, root: Path = Path("/"), release: str | None = None, try_bpf: bool = True
) -> dict[str, Any]:
    """Kernel facts (blocking: file checks and one bpf syscall)."""
    release = release if release is not None else os.uname().release
    pmu = "/sys/bus/event_source/devices"
    tracefs = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
    notes: list[str] = []
    if try_bpf:
        permitted, why = bpf_program_load_permitted()
        if not permitted:
            notes.append(why)
    else:
        permitted = False
    uprobes = _exists(root, f"{pmu}/uprobe", *(f"{t}/uprobe_events" for t in tracefs))
    return {
        "kernel_version": release,
        "btf": _exists(root, "/sys/kernel/btf/vmlinux"),
        "bpf_permitted": permitted,
        "tracepoints": _exists(root, f"{pmu}/tracepoint", *(f"{t}/events" for t in tracefs)),
        "uprobes": uprobes,
        "kprobes": _exists(root, f"{pmu}/kprobe", *(f"{t}/kprobe_events" for t in tracefs)),
        "usdt": uprobes and _exists(root, f"{pmu}/uprobe/format/ref_ctr_offset"),
        "ring_buffer": kernel_release_tuple(release) >= RING_BUFFER_KERNEL,
        "notes": tuple(notes),
    }


async def probe_tetragon(address: str, *, timeout_s: float) -> TetragonInfo:
    """Ask Tetragon for its version (and health); unreachable after ``timeout_s`` seconds."""
    try:
        async with rpc.insecure_channel(address) as ch:
            raw_version = await ch.unary_unary(
                GET_VERSION, request_serializer=sensors_pb2.GetVersionRequest.SerializeToString
            )(sensors_pb2.GetVersionRequest(), timeout=timeout_s)
            raw_health = await ch.unary_unary(
                GET_HEALTH, request_serializer=tetragon_pb2.GetHealthStatusRequest.SerializeToString
            )(tetragon_pb2.GetHealthStatusRequest(), timeout=timeout_s)
    except rpc.RpcError as e:
        # whoever answers at the address writes the details: one redacted, clipped line
        return TetragonInfo(address=address, error=f"{e.code().name}: {one_line(e.details())}")
    try:
        version = _decoded("GetVersion", sensors_pb2.GetVersionResponse, raw_version)
        health = _decoded("GetHealth", tetragon_pb2.GetHealthStatusResponse, raw_health)
    except UndecodableAnswer as e:  # not its message: Tetragon is not usable
        return TetragonInfo(address=address, error=str(e))
    unhealthy = [s.details for s in health.health_status if s.status != tetragon_pb2.HEALTH_STATUS_RUNNING]
    if unhealthy:
        return TetragonInfo(
            address=address,
            version=version.version,
            error="Tetragon not running: " + one_line("; ".join(unhealthy)),
        )
    return TetragonInfo(address=address, reachable=True, version=version.version)


async def detect(
    *, tetragon_address: str, timeout_s: float, root: Path = Path("/"), try_bpf: bool = True
) -> Capabilities:
    """Every capability of this node (the kernel checks run in a worker thread)."""

    kernel = await asyncio.to_thread(detect_kernel, root=root, try_bpf=try_bpf)
    tetragon = await probe_tetragon(tetragon_address, timeout_s=timeout_s)
    notes = tuple(kernel.pop("notes")) + ((f"tetragon: {tetragon.error}",) if tetragon.error else ())
    return Capabilities(tetragon=tetragon, notes=notes, **kernel)


async def list_tracing_policies(
    address: str, *, timeout_s: float, with_ids: bool = False
) -> list[dict[str, Any]]:
    """Tetragon's ListTracingPolicies as ObservationNode ``status.policies`` entries.

    ``state`` is the TracingPolicyState name without ``TP_STATE_``; ``error``
    is Tetragon's message for a policy that failed to load. ``with_ids``: each
    entry also carries the number Tetragon gave its load (``TracingPolicyStatus.id``)
    under :data:`~stellaops_runtime.agent.policy_reloads.TETRAGON_ID` when it tells
    one (not 0), for the policy watch only: ``without_ids`` takes it out of the
    status (a number that moves on every reload is no state of the node). Raises
    :class:`stellaops_runtime.rpc.RpcError` when Tetragon does not answer, and
    :class:`UndecodableAnswer` when its answer is not the message.
    """
    async with rpc.insecure_channel(address) as ch:
        raw = await ch.unary_unary(
            LIST_TRACING_POLICIES,
            request_serializer=sensors_pb2.ListTracingPoliciesRequest.SerializeToString,
        )(sensors_pb2.ListTracingPoliciesRequest(), timeout=timeout_s)
    resp = _decoded("ListTracingPolicies", sensors_pb2.ListTracingPoliciesResponse, raw)
    out = [policy_entry(p) for p in resp.policies if p.name]  # a nameless one: nothing to match, refused
    if with_ids:
        for entry, p in zip(out, [p for p in resp.policies if p.name], strict=True):
            if p.id:
                entry[TETRAGON_ID] = int(p.id)
    out.sort(key=lambda e: (e.get("namespace", ""), e["name"]))
    return out


def _decoded(method: str, message: Any, raw: bytes) -> Any:
    """``raw`` (a call's answer) as ``message``; :class:`UndecodableAnswer` naming ``method`` if it is not."""
    try:
        return message.FromString(raw)
    except (DecodeError, ValueError):
        raise UndecodableAnswer(method) from None


def without_ids(entries: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """``list_tracing_policies(with_ids=True)`` entries as the status carries them."""
    if entries is None:
        return None
    return [{k: v for k, v in e.items() if k != TETRAGON_ID} for e in entries]


def policy_entry(p: Any) -> dict[str, Any]:
    """One ``TracingPolicyStatus`` as an ObservationNode ``status.policies`` entry.

    ``namespace`` is left out for a cluster-scoped policy (Tetragon's empty
    namespace), as are a failed hook's empty ``section`` and ``hook``: the
    API server refuses an empty string in the status patch (:data:`MAX_INT64`).

    ``objectUid``/``objectGeneration``: the Kubernetes object and generation
    Tetragon loaded, which its ``info`` names for a policy it took from the
    API server (``controller.loaded_version``), both absent otherwise;
    ``fromObject: false`` for a policy whose ``info`` names an object without
    identity (Tetragon read it from a file or took it over gRPC). The API
    server refuses an empty ``objectUid`` in a status patch, hence the flag.

    When Tetragon reports hook statuses, ``hooksTotal``/``hooksLoaded`` count
    them and ``failedHooks`` names the first ``MAX_FAILED_HOOKS`` that did not
    load: ``{section, index, hook, state}`` with ``state`` the HookState name
    without ``STATUS_`` (CALL_NOT_FOUND, PARTIAL_CALL_NOT_FOUND,
    DIGEST_REJECTED, UNSPECIFIED).
    """
    state = sensors_pb2.TracingPolicyState.Name(p.state) if p.state in _STATE_NUMBERS else "UNKNOWN"
    entry: dict[str, Any] = {
        "name": p.name,
        "state": state.removeprefix("TP_STATE_"),
        "sensors": list(p.sensors),
        "kernelMemoryBytes": min(int(p.kernel_memory_bytes), MAX_INT64),  # the schema's int64
    }
    if p.namespace:  # none for a cluster-scoped policy: an empty string is refused (see the constant)
        entry["namespace"] = p.namespace
    if p.error:
        entry["error"] = p.error[:1024]
    if (version := version_from_info(p.info)) is not None:  # the object and generation Tetragon loaded
        entry["objectUid"], entry["objectGeneration"] = version
    elif info_without_object(p.info):  # read from a file or taken over gRPC: never an object of ours
        entry["fromObject"] = False
    hooks = p.hook_statuses
    if hooks:
        failed = [h for h in hooks if h.state != sensors_pb2.STATUS_LOADED]
        entry["hooksTotal"] = len(hooks)
        entry["hooksLoaded"] = len(hooks) - len(failed)
        if failed:
            entry["failedHooks"] = [_hook_entry(h) for h in failed[:MAX_FAILED_HOOKS]]
    return entry


def _hook_entry(h: Any) -> dict[str, Any]:
    """One hook that did not load, its empty texts left out (the API server refuses them)."""
    state = sensors_pb2.HookState.Name(h.state) if h.state in _HOOK_STATE_NUMBERS else "UNKNOWN"
    out: dict[str, Any] = {"index": int(h.hook_idx), "state": state.removeprefix("STATUS_")}
    if h.section:
        out["section"] = h.section
    if h.hook_description:
        out["hook"] = h.hook_description[:256]
    return out
