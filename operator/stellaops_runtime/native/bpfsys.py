"""Direct bpf(2) calls for capability checks: can this process create a map or load a program?

Detection must answer without BCC (which may be missing) and without
compiling anything, so these create the smallest object of each kind and
close it at once. Errors come back as an errno name, never as an exception.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct

BPF_SYSCALL_NR = {"x86_64": 321, "aarch64": 280, "arm64": 280}
BPF_MAP_CREATE = 0
BPF_PROG_LOAD = 5

MAP_HASH = 1
MAP_PERF_EVENT_ARRAY = 4
MAP_RINGBUF = 27
PROG_TYPE_TRACEPOINT = 5

# r0 = 0; exit
_RETURN_ZERO = struct.pack("<BBhi", 0xB7, 0, 0, 0) + struct.pack("<BBhi", 0x95, 0, 0, 0)


def _bpf(cmd: int, attr: bytes) -> tuple[int, int]:
    """(fd or -1, errno)."""
    nr = BPF_SYSCALL_NR.get(platform.machine())
    if nr is None:
        return -1, errno.ENOSYS
    buf = ctypes.create_string_buffer(attr, len(attr))
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.syscall(ctypes.c_long(nr), ctypes.c_int(cmd), buf, ctypes.c_uint(len(attr)))
    return (fd, 0) if fd >= 0 else (-1, ctypes.get_errno())


def _result(fd: int, err: int, what: str) -> tuple[bool, str]:
    if fd >= 0:
        os.close(fd)
        return True, ""
    return False, f"bpf({what}): {errno.errorcode.get(err, str(err))} ({os.strerror(err)})"


def create_map(map_type: int, key_size: int, value_size: int, max_entries: int) -> tuple[bool, str]:
    """Create and close a map of ``map_type``; (ok, why not)."""
    # union bpf_attr for BPF_MAP_CREATE: map_type, key_size, value_size, max_entries, map_flags.
    attr = struct.pack("<IIIII", map_type, key_size, value_size, max_entries, 0) + bytes(108)
    fd, err = _bpf(BPF_MAP_CREATE, attr)
    return _result(fd, err, f"BPF_MAP_CREATE type {map_type}")


# bpf_get_stack(ctx, fp - 8, 8, BPF_F_USER_STACK); r0 = 0; exit: r1 (ctx) is already set
# (mov64 r2 = r10; add64 r2 += -8; mov64 r3 = 8; mov64 r4 = 256; call 67).
HELPER_GET_STACK = 67
BPF_F_USER_STACK = 256
_GET_STACK = (
    struct.pack("<BBhi", 0xBF, 0xA2, 0, 0)
    + struct.pack("<BBhi", 0x07, 0x02, 0, -8)
    + struct.pack("<BBhi", 0xB7, 0x03, 0, 8)
    + struct.pack("<BBhi", 0xB7, 0x04, 0, BPF_F_USER_STACK)
    + struct.pack("<BBhi", 0x85, 0, 0, HELPER_GET_STACK)
    + _RETURN_ZERO
)


def load_trivial_tracepoint_program() -> tuple[bool, str]:
    """Load and close a two-instruction tracepoint program; (ok, why not)."""
    return _load_tracepoint(_RETURN_ZERO)


def load_get_stack_program() -> tuple[bool, str]:
    """Load and close a tracepoint program calling ``bpf_get_stack`` (kernel 4.18+); (ok, why not)."""
    return _load_tracepoint(_GET_STACK)


def _load_tracepoint(code: bytes) -> tuple[bool, str]:
    insns = ctypes.create_string_buffer(code, len(code))
    license_ = ctypes.create_string_buffer(b"GPL")
    attr = struct.pack(
        "<IIQQIIQII",
        PROG_TYPE_TRACEPOINT,
        len(code) // 8,
        ctypes.addressof(insns),
        ctypes.addressof(license_),
        0,
        0,
        0,
        0,
        0,
    ) + bytes(72)
    fd, err = _bpf(BPF_PROG_LOAD, attr)
    return _result(fd, err, "BPF_PROG_LOAD")


# struct bpf_prog_info (uapi/linux/bpf.h): ``recursion_misses`` (kernel 5.12+) is the u64 at byte 208,
# after run_time_ns (192) and run_cnt (200). The kernel copies min(our size, its size) bytes and
# writes that length back: a shorter answer means an older kernel without the field.
BPF_OBJ_GET_INFO_BY_FD = 15
PROG_INFO_SIZE = 256  # more than any field we read; the kernel accepts a larger buffer (zeros past its own)
PROG_INFO_TYPE_AT = 0
PROG_INFO_NAME_AT = 64
RECURSION_MISSES_AT = 208


def prog_info(prog_fd: int, size: int = PROG_INFO_SIZE) -> tuple[bytes, str]:
    """The first bytes of ``struct bpf_prog_info`` the kernel filled for the program at ``prog_fd``.

    (info, "") on success, the info cut to the length the kernel reported; (b"", why) on failure.
    """
    info = ctypes.create_string_buffer(size)
    attr = struct.pack("<IIQ", prog_fd, size, ctypes.addressof(info)) + bytes(104)
    buf = ctypes.create_string_buffer(attr, len(attr))
    nr = BPF_SYSCALL_NR.get(platform.machine())
    if nr is None:
        return b"", "bpf(BPF_OBJ_GET_INFO_BY_FD): no bpf syscall number for this machine"
    libc = ctypes.CDLL(None, use_errno=True)
    rc = libc.syscall(ctypes.c_long(nr), ctypes.c_int(BPF_OBJ_GET_INFO_BY_FD), buf, ctypes.c_uint(len(attr)))
    if rc < 0:
        err = ctypes.get_errno()
        return b"", f"bpf(BPF_OBJ_GET_INFO_BY_FD): {errno.errorcode.get(err, str(err))} ({os.strerror(err)})"
    info_len = struct.unpack_from("<I", buf.raw, 4)[0]  # the kernel wrote back how much it filled
    return info.raw[: min(info_len, size)], ""


def recursion_misses(info: bytes) -> int | None:
    """The program's ``recursion_misses`` from its prog info, or None when the kernel does not report it."""
    if len(info) < RECURSION_MISSES_AT + 8:
        return None
    return int(struct.unpack_from("<Q", info, RECURSION_MISSES_AT)[0])


def load_counting_tracepoint_program() -> tuple[int, str]:
    """Load a trivial tracepoint program and keep it open (for tests of prog_info); (fd or -1, why not)."""
    insns = ctypes.create_string_buffer(_RETURN_ZERO, len(_RETURN_ZERO))
    license_ = ctypes.create_string_buffer(b"GPL")
    name = b"stella_info"
    attr = struct.pack(
        "<IIQQIIQII16s", PROG_TYPE_TRACEPOINT, 2, ctypes.addressof(insns), ctypes.addressof(license_),
        0, 0, 0, 0, 0, name,
    ) + bytes(56)  # fmt: skip
    fd, err = _bpf(BPF_PROG_LOAD, attr)
    if fd < 0:
        return -1, f"bpf(BPF_PROG_LOAD): {errno.errorcode.get(err, str(err))} ({os.strerror(err)})"
    return fd, ""
