"""The binary records the BPF programs write, described once for C (probes/) and Python (events.py).

Every record starts with the same 48-byte header; the probe kind picks the
body. Little-endian, no padding surprises: each field sits at its natural
alignment, and the C structs are generated from these tables so the two sides
cannot drift.
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


def c_struct(kind: int) -> str:
    """The C definition of one record kind (``struct stella_<name>``)."""
    fields = HEADER_FIELDS + BODIES[kind]
    lines = "".join(f"    {t} {n};\n" for t, n, _ in fields)
    return f"struct stella_{KIND_NAMES[kind]} {{\n{lines}}};\n"
