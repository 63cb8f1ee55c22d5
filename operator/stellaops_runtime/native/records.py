"""The binary records the BPF programs write, described once for C (probes/) and Python (events.py).

Every record starts with the same 48-byte header; the probe kind picks the
body. Little-endian, no padding surprises: each field sits at its natural
alignment, and the C structs are generated from these tables so the two sides
cannot drift.

Stacks travel in the record itself (``bpf_get_stack``, no stack-trace map):
a syscall, TCP or uprobe record taken with stacks carries the flag
``FLAG_STACKS`` and, after its body, ``STACK_HEAD`` (user frame count,
kernel frame count) and then that many return addresses, innermost first:
the kernel ones, then the user ones. Only the frames walked are written, so
a record's size varies with its stacks; a stack that could not be walked has
count 0 (counted in the kernel as ``stack_lost``). Records without the flag
keep their plain size, so stacks cost nothing when off. The agent's source
(``source.py``) takes the addresses out of the record (``split_stacks``) and
hands the decoder the plain record plus its trailer.
"""

from __future__ import annotations

import struct

KIND_EXEC = 1
KIND_SYSCALL = 2
KIND_UPROBE = 3
KIND_USDT = 4
KIND_TCP = 5
KIND_NAMES = {
    KIND_EXEC: "exec", KIND_SYSCALL: "syscall", KIND_UPROBE: "uprobe", KIND_USDT: "usdt", KIND_TCP: "tcp",
}  # fmt: skip

# Header flags. TCP: the pid/uid/cgroup/comm are the socket owner's (the task that connected,
# listened or closed it); without the flag no task is known and they are zero.
FLAG_TCP_ATTRIBUTED = 1
# Any kind in STACK_KINDS: the body is followed by STACK_HEAD and the addresses it counts.
FLAG_STACKS = 2
# Uprobe: a call still in flight when the probes detached (entered, not returned): made in user
# space from the entry the probes kept (in_flight_record), at the entry's time; no latency, no stack.
FLAG_IN_FLIGHT = 4
MAX_STACK_FRAMES = 127  # frames per stack at most (the kernel's perf_event_max_stack default)

COMM_LEN = 16
FILENAME_LEN = 256
USDT_STR1_LEN = 160  # Python's function__entry: the file name
USDT_STR2_LEN = 96  # and the function name

# Per-kind counters, in this order (see probes/prelude.py); metrics use these names.
# period_limited: dropped by a policy's rateLimit (one event per thread and probe per period).
COUNTERS = (
    "seen", "cgroup_filtered", "rate_limited", "sampled_out", "lost", "emitted", "stack_lost",
    "period_limited",
)  # fmt: skip
C_SEEN, C_CGROUP, C_RATE, C_SAMPLED, C_LOST, C_EMITTED, C_STACK_LOST, C_PERIOD = range(len(COUNTERS))
NUM_KINDS = 6  # index 0 unused

# (C type, C field, struct format)
HEADER_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("u8", "kind", "B"),
    ("u8", "flags", "B"),
    ("u16", "reserved", "H"),
    ("u32", "pid", "I"),
    ("u32", "tid", "I"),
    ("u32", "uid", "I"),
    ("u64", "ktime_ns", "Q"),
    ("u64", "cgroup_id", "Q"),
    ("char", f"comm[{COMM_LEN}]", f"{COMM_LEN}s"),
)
BODIES: dict[int, tuple[tuple[str, str, str], ...]] = {
    KIND_EXEC: (
        ("u32", "old_pid", "I"),
        ("u32", "pad", "I"),
        ("char", f"filename[{FILENAME_LEN}]", f"{FILENAME_LEN}s"),
    ),
    KIND_SYSCALL: (("u32", "nr", "I"), ("u32", "sample_every", "I")),
    # unused: held a stack id when stacks went through a stack-trace map
    KIND_UPROBE: (("u32", "target", "I"), ("s32", "unused", "i"), ("u64", "latency_ns", "Q")),
    KIND_USDT: (
        ("u32", "target", "I"),
        ("u32", "nargs", "I"),
        ("u64", "arg1", "Q"),
        ("u64", "arg2", "Q"),
        ("u64", "arg3", "Q"),
        ("char", f"str1[{USDT_STR1_LEN}]", f"{USDT_STR1_LEN}s"),
        ("char", f"str2[{USDT_STR2_LEN}]", f"{USDT_STR2_LEN}s"),
    ),
    KIND_TCP: (
        ("s32", "oldstate", "i"),
        ("s32", "newstate", "i"),
        ("u16", "sport", "H"),
        ("u16", "dport", "H"),
        ("u16", "family", "H"),
        ("u16", "protocol", "H"),
        ("u8", "saddr[16]", "16s"),  # IPv4: the first 4 bytes
        ("u8", "daddr[16]", "16s"),
    ),
}

HEADER = struct.Struct("<" + "".join(f for _, _, f in HEADER_FIELDS))
STRUCTS = {k: struct.Struct(HEADER.format + "".join(f for _, _, f in body)) for k, body in BODIES.items()}

# The kinds whose records may carry stacks (see the module docstring).
STACK_KINDS = (KIND_SYSCALL, KIND_TCP, KIND_UPROBE)
STACK_HEAD_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("u16", "user_n", "H"),
    ("u16", "kernel_n", "H"),
    ("u32", "stack_pad", "I"),
)
STACK_HEAD = struct.Struct("<" + "".join(f for _, _, f in STACK_HEAD_FIELDS))
_ADDR = 8
_FLAGS_AT = 1


def c_struct(kind: int, *, slots: int = 0) -> str:
    """The C definition of one record kind: ``struct stella_<name>``, or with ``slots`` > 0
    ``struct stella_<name>_st``, which adds the stack head and room for ``slots`` addresses."""
    fields = HEADER_FIELDS + BODIES[kind] + (STACK_HEAD_FIELDS if slots else ())
    lines = "".join(f"    {t} {n};\n" for t, n, _ in fields)
    if slots:
        lines += f"    u64 addrs[{slots}];\n"
    return f"struct stella_{KIND_NAMES[kind]}{'_st' if slots else ''} {{\n{lines}}};\n"


def c_struct_name(kind: int, *, stacked: bool) -> str:
    return f"stella_{KIND_NAMES[kind]}{'_st' if stacked else ''}"


def _stacked(rec: bytes, kind: int) -> bool:
    return kind in STACK_KINDS and len(rec) > _FLAGS_AT and bool(rec[_FLAGS_AT] & FLAG_STACKS)


def record_size(rec: bytes) -> int:
    """Bytes of the kernel record at the start of ``rec`` (what follows is padding or the trailer).

    An unknown kind gives ``len(rec)``: the decoder refuses it anyway. A stacked
    record too short to hold its stack head gives more than ``len(rec)``.
    """
    if not rec:
        return 0
    kind = rec[0]
    s = STRUCTS.get(kind)
    if s is None:
        return len(rec)
    if not _stacked(rec, kind):
        return s.size
    if len(rec) < s.size + STACK_HEAD.size:
        return s.size + STACK_HEAD.size
    user_n, kernel_n, _ = STACK_HEAD.unpack_from(rec, s.size)
    return s.size + STACK_HEAD.size + _ADDR * (user_n + kernel_n)


def split_stacks(rec: bytes) -> tuple[bytes, list[int], list[int]]:
    """(the record without its stacks and with the flag cleared, user addresses, kernel addresses).

    A record without stacks comes back as it is, with no addresses. One whose
    stack head is cut short or counts more than ``MAX_STACK_FRAMES`` a stack
    also comes back as it is: the decoder then refuses it (``native_short_record``
    or ``native_bad_stack``), it is never given made-up frames.
    """
    if not rec or not _stacked(rec, rec[0]):
        return rec, [], []
    s = STRUCTS[rec[0]]
    if len(rec) < s.size + STACK_HEAD.size:
        return rec, [], []
    user_n, kernel_n, _ = STACK_HEAD.unpack_from(rec, s.size)
    at = s.size + STACK_HEAD.size
    too_many = user_n > MAX_STACK_FRAMES or kernel_n > MAX_STACK_FRAMES
    if too_many or len(rec) < at + _ADDR * (user_n + kernel_n):
        return rec, [], []
    addrs = list(struct.unpack_from(f"<{kernel_n + user_n}Q", rec, at))
    plain = bytes([rec[0], rec[_FLAGS_AT] & ~FLAG_STACKS & 0xFF]) + rec[2 : s.size]
    return plain, addrs[kernel_n:], addrs[:kernel_n]


def in_flight_record(pid_tgid: int, target: int, entry_ktime_ns: int, cgroup_id: int, uid: int) -> bytes:
    """An uprobe record for a call the probes saw enter and not return before they detached
    (``FLAG_IN_FLIGHT``): the entry's time, thread, cgroup and uid; comm is read from /proc later."""
    pid, tid = pid_tgid >> 32, pid_tgid & 0xFFFFFFFF
    head = (KIND_UPROBE, FLAG_IN_FLIGHT, 0, pid, tid, uid & 0xFFFFFFFF, entry_ktime_ns, cgroup_id, b"")
    return STRUCTS[KIND_UPROBE].pack(*head, target, 0, 0)
