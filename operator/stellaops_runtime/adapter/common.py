"""Pure helpers shared by the two Tetragon adapters (protobuf and JSON export).

Both adapters must produce identical RuntimeCallEvents for the same event
(a test checks every fixture line through both), so every decision that is
not "where does this field live in this encoding" is made here, once.
"""

from __future__ import annotations

import base64
import calendar
import re
import time
from collections import Counter
from dataclasses import dataclass, field

from stellaops_runtime.contracts.drops import DropKind, DropSignal
from stellaops_runtime.contracts.events import ContainerInfo, EventKind

# The GetEventsResponse oneof members we turn into events, and their kind.
# process_kprobe is split into SYSCALL / KPROBE by the function name.
HANDLED_KINDS: dict[str, EventKind] = {
    "process_exec": EventKind.EXEC,
    "process_exit": EventKind.EXIT,
    "process_kprobe": EventKind.KPROBE,
    "process_tracepoint": EventKind.TRACEPOINT,
    "process_uprobe": EventKind.UPROBE,
    "process_usdt": EventKind.USDT,
    "process_lsm": EventKind.LSM,
    "process_loader": EventKind.LOADER,
}

# Syscall entry symbols on the architectures Tetragon supports.
_SYSCALL_PREFIXES = ("__x64_sys_", "__ia32_sys_", "__arm64_sys_", "__se_sys_", "__do_sys_", "sys_", "ksys_")

KERNEL_MODULE = "[kernel]"


@dataclass(slots=True)
class AdapterStats:
    """What the adapter saw and could not use (exported as metrics)."""

    events: Counter[str] = field(default_factory=Counter)  # by EventKind value
    unhandled: Counter[str] = field(default_factory=Counter)  # by oneof name ("none" = no oneof set)
    malformed: Counter[str] = field(default_factory=Counter)  # by reason
    # Events kept after a repair (NUL replaced, time clamped, stack or text cut), by reason.
    repaired: Counter[str] = field(default_factory=Counter)
    # Events Tetragon's own JSON exporter dropped (its rate_limit_info events).
    tetragon_export_dropped: int = 0
    # Tetragon's drop signals (process_throttle, rate_limit_info) read since the
    # pipeline last took them (agent/pipeline.py hands them to the gap tracker).
    drop_signals: list[DropSignal] = field(default_factory=list)


# The unhandled-kind label of a process_exec Tetragon made from /proc at its start (see procfs_flag).
PROCFS_EXEC = "process_exec_procfs"


def procfs_flag(flags: str) -> bool:
    """Whether a Process's ``flags`` (Tetragon's space-separated debug words) hold ``procFS``.

    Tetragon walks /proc when it starts (a node reboot, a Tetragon restart or upgrade) and sends a
    ``process_exec`` flagged ``procFS`` for each process already running, stamped with its start
    time (Tetragon's pkg/sensors/exec/procevents, pushExecveEvents). Such an exec is no execution
    seen: an agent that watched the real one counted it already, so the adapters count it as
    ``events_unhandled_total{kind="process_exec_procfs"}`` and hand nothing on
    (tests/unit/test_adapter_procfs_exec.py). Other kinds of such a process are calls seen live.
    """
    return "procFS" in flags.split()


_THROTTLE_KINDS = {"THROTTLE_START": DropKind.THROTTLE_START, "THROTTLE_STOP": DropKind.THROTTLE_STOP}
_MAX_CGROUP_CHARS = 4096


def drop_signal(
    kind_name: str, *, throttle_type: str, cgroup: object, dropped: int, timestamp_ns: int, node_name: object
) -> DropSignal | None:
    """A ``process_throttle`` or ``rate_limit_info`` event as a DropSignal; None when it says nothing usable
    (THROTTLE_UNKNOWN, a rate-limit report of 0 events) or a text field is not a string."""
    if type(node_name) is not str or type(cgroup) is not str:
        return None
    node = node_name.replace("\x00", "\ufffd")
    if kind_name == "rate_limit_info":
        if dropped <= 0:
            return None
        return DropSignal(DropKind.RATE_LIMIT, timestamp_ns, node, dropped=dropped)
    kind = _THROTTLE_KINDS.get(throttle_type)
    if kind is None:
        return None
    return DropSignal(kind, timestamp_ns, node, cgroup=cgroup[:_MAX_CGROUP_CHARS])


# EventKind members as module globals: on Python 3.11 reading a member through its class costs ~90 ns
# (the enum's class attribute lookup), a global ~7 ns, and this runs on every kprobe event.
_SYSCALL, _KPROBE = EventKind.SYSCALL, EventKind.KPROBE


def kprobe_kind(function_name: str) -> EventKind:
    return _SYSCALL if function_name.startswith(_SYSCALL_PREFIXES) else _KPROBE


# A digest as an image id carries it: a SHA-2 algorithm and hex digits, nothing after them.
_DIGEST = re.compile(r"sha(?:256|384|512):[0-9A-Fa-f]+")


def image_digest(image_id: str) -> str:
    """``repo@sha256:abc`` -> ``sha256:abc``; ``sha256:abc`` -> itself; else "".

    Only a digest (``_DIGEST``) is taken: the digest is the hot-symbol key as it is, and the
    privacy filter masks the image name and id (PrivacyFilter.scrub_image), never the digest;
    ``repo@sha256:abc?access_token=X`` or ``repo@user:X`` has none, so its filtered id is the key.
    """
    at = image_id.rfind("@")
    d = image_id[at + 1 :] if at >= 0 else image_id
    return d if _DIGEST.fullmatch(d) else ""


def split_container_id(raw: str) -> tuple[str, str]:
    """``containerd://abc`` -> ("containerd", "abc"); a bare id has no runtime."""
    sep = raw.find("://")
    if sep < 0:
        return "", raw
    return raw[:sep], raw[sep + 3 :]


def make_container(*, raw_id: str, name: str, image_id: str, image_name: str) -> ContainerInfo:
    runtime, cid = split_container_id(raw_id)
    return ContainerInfo(
        id=cid,
        runtime=runtime,
        name=name,
        image_ref=image_name,
        image_id=image_id,
        image_digest=image_digest(image_id),
    )


# RFC 3339 parsing, cached on the whole-seconds prefix: events arrive in bursts
# that share their second, and datetime parsing costs ~1 µs a call.
_SECONDS_CACHE: dict[str, int] = {}


def rfc3339_to_ns(text: str) -> int:
    """Parse Tetragon's protojson timestamps (``2026-11-24T09:00:00.004000Z``) to ns."""
    if not text:
        return 0
    base = text[:19]  # YYYY-MM-DDTHH:MM:SS
    secs = _SECONDS_CACHE.get(base)
    if secs is None:
        if len(_SECONDS_CACHE) > 4096:
            _SECONDS_CACHE.clear()
        secs = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
        _SECONDS_CACHE[base] = secs
    rest = text[19:]
    frac_ns = 0
    offset_s = 0
    if rest.startswith("."):
        i = 1
        while i < len(rest) and rest[i].isdigit():
            i += 1
        digits = rest[1:i]
        frac_ns = int((digits + "000000000")[:9]) if digits else 0
        rest = rest[i:]
    if rest and rest not in ("Z", "z"):
        sign = 1 if rest[0] == "+" else -1
        hh, mm = rest[1:].split(":")
        offset_s = sign * (int(hh) * 3600 + int(mm) * 60)
    return (secs - offset_s) * 1_000_000_000 + frac_ns


def build_id_hex(raw: bytes) -> str:
    return raw.hex()


def b64_to_bytes(text: str) -> bytes:
    # protojson writes standard base64 with padding; accept URL-safe too.
    try:
        return base64.b64decode(text, validate=False)
    except ValueError:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def bytes_text(raw: bytes) -> str:
    """Bytes arguments as text, so the privacy filter can see secrets in them."""
    return raw.decode("utf-8", "replace")


def sock_text(*, family: str, protocol: str, saddr: str, sport: int, daddr: str, dport: int) -> str:
    return f"{family} {protocol} {saddr}:{sport} -> {daddr}:{dport}".strip()


def _int(v: object) -> int:
    # protojson renders 64-bit integers as strings.
    return int(v) if v not in (None, "") else 0  # type: ignore[call-overload]


def render_arg(kind: str, value: object) -> str:
    """One KprobeArgument's oneof value (as protojson renders it) to text.

    Used for every argument of the JSON adapter and for the compound argument
    types of the protobuf adapter (after MessageToDict), so both render alike.
    """
    if isinstance(value, str):
        if kind in ("bytes_arg",):
            return bytes_text(b64_to_bytes(value))
        return value
    if isinstance(value, bool | int | float):
        return str(int(value)) if not isinstance(value, float) else str(value)
    if not isinstance(value, dict):
        return str(value)
    v = value
    if kind in ("file_arg", "path_arg", "linux_binprm_arg"):
        return str(v.get("path", ""))
    if kind == "truncated_bytes_arg":
        return bytes_text(b64_to_bytes(str(v.get("bytes_arg", ""))))
    if kind in ("sock_arg", "skb_arg"):
        return sock_text(
            family=str(v.get("family", "")),
            protocol=str(v.get("protocol", "")),
            saddr=str(v.get("saddr", "")),
            sport=_int(v.get("sport")),
            daddr=str(v.get("daddr", "")),
            dport=_int(v.get("dport")),
        )
    if kind == "sockaddr_arg":
        return f"{v.get('family', '')} {v.get('addr', '')}:{_int(v.get('port'))}".strip()
    if kind == "sockaddrun_arg":
        return f"{v.get('family', '')} {v.get('path', '')}".strip()
    if kind in ("net_dev_arg", "module_arg", "capability_arg"):
        return str(v.get("name", ""))
    if kind == "syscall_id":
        return f"{v.get('abi', '')}:{_int(v.get('id'))}"
    if kind == "error_arg":
        return str(v.get("Message", ""))
    import orjson  # the rare types rendered as JSON: imported for them alone (issue 13)

    return orjson.dumps(v, option=orjson.OPT_SORT_KEYS).decode()
