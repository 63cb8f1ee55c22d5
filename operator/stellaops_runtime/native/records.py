"""The binary records the BPF programs write, described once for C (probes/) and Python (events.py).

Every record starts with the same 48-byte header; the probe kind picks the
body. Little-endian, no padding surprises: each field sits at its natural
alignment, and the C structs are generated from these tables so the two sides
cannot drift.

Stack ids: a uprobe record carries its user stack id in its body. Syscall and
TCP records taken with stacks (the policy asked for them) carry the flag
``FLAG_STACK_IDS`` and 8 more bytes after the body, ``STACK_IDS``: the user
and the kernel stack id in the one stack-trace map (``stella_stacks``), -1
for a stack not asked for or not stored (counted as ``stack_lost``). Records
without the flag keep their size, so stacks cost nothing when off.
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
# Any kind in STACK_KINDS: the record is followed by STACK_IDS (user id, kernel id).
FLAG_STACK_IDS = 2

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
    KIND_UPROBE: (("u32", "target", "I"), ("s32", "stack_id", "i"), ("u64", "latency_ns", "Q")),
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

# The kinds whose records may carry STACK_IDS after their body (see the module docstring).
STACK_KINDS = (KIND_SYSCALL, KIND_TCP)
STACK_ID_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("s32", "user_stack_id", "i"),
    ("s32", "kernel_stack_id", "i"),
)
STACK_IDS = struct.Struct("<" + "".join(f for _, _, f in STACK_ID_FIELDS))
_UPROBE_STACK_AT = HEADER.size + 4  # the uprobe body: u32 target, s32 stack_id, ...
_FLAGS_AT = 1


def c_struct(kind: int, *, stacked: bool = False) -> str:
    """The C definition of one record kind (``struct stella_<name>``, ``..._st`` with stack ids)."""
    fields = HEADER_FIELDS + BODIES[kind] + (STACK_ID_FIELDS if stacked else ())
    lines = "".join(f"    {t} {n};\n" for t, n, _ in fields)
    return f"struct stella_{KIND_NAMES[kind]}{'_st' if stacked else ''} {{\n{lines}}};\n"


def c_struct_name(kind: int, *, stacked: bool) -> str:
    return f"stella_{KIND_NAMES[kind]}{'_st' if stacked else ''}"


def _stacked(rec: bytes, kind: int) -> bool:
    return kind in STACK_KINDS and len(rec) > _FLAGS_AT and bool(rec[_FLAGS_AT] & FLAG_STACK_IDS)


def record_size(rec: bytes) -> int:
    """Bytes of the kernel record at the start of ``rec`` (what follows is padding or the trailer).

    An unknown kind gives ``len(rec)``: the decoder refuses it anyway.
    """
    if not rec:
        return 0
    kind = rec[0]
    s = STRUCTS.get(kind)
    if s is None:
        return len(rec)
    return s.size + (STACK_IDS.size if _stacked(rec, kind) else 0)


def stack_ids(rec: bytes) -> tuple[int, int]:
    """(user stack id, kernel stack id) of a record; -1 for none, or for a record too short to say."""
    if not rec:
        return -1, -1
    kind = rec[0]
    s = STRUCTS.get(kind)
    if s is None or len(rec) < s.size:
        return -1, -1
    if kind == KIND_UPROBE:
        return int(struct.unpack_from("<i", rec, _UPROBE_STACK_AT)[0]), -1
    if _stacked(rec, kind) and len(rec) >= s.size + STACK_IDS.size:
        user, kernel = STACK_IDS.unpack_from(rec, s.size)
        return int(user), int(kernel)
    return -1, -1
