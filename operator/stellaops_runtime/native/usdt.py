"""USDT probes: read a binary's ``.note.stapsdt`` probes and attach BPF to them, semaphores included.

BCC's Python binding enables a probe guarded by a semaphore (Python's
``function__entry`` is) only per process, by writing into that process's
memory. The kernel can do it for every process mapping the file, now and
later: a uprobe perf event opened with the semaphore's file offset
(``ref_ctr_offset``, kernel 4.20+) raises the counter itself. So probes are
placed here by file offset through ``perf_event_open`` on the uprobe PMU, and
the program reads the probe's arguments straight from the registers and
memory its note describes (``8@%rbp``, ``-4@112(%rsp)``, ``$5``).

x86_64 only (register names and ``struct pt_regs``), like the header tree.
"""

from __future__ import annotations

import ctypes
import os
import re
import struct
from dataclasses import dataclass

from stellaops_runtime.canonical.elflayout import ElfError, parse_notes, read_layout
from stellaops_runtime.canonical.symtab import read_section, read_section_table
from stellaops_runtime.native.symaddr import open_regular
from stellaops_runtime.native.symcancel import check_given_up

NT_STAPSDT = 3
MAX_NOTES_BYTES = 16 << 20
MAX_ARGS = 3  # arguments carried in a record (Python's probes have three)

# x86_64 register names (any width) -> struct pt_regs field.
_REGS: dict[str, str] = {"rip": "ip", "eip": "ip"}
for _full, _field, _aliases in (
    ("rax", "ax", ("eax", "ax", "al")), ("rbx", "bx", ("ebx", "bx", "bl")),
    ("rcx", "cx", ("ecx", "cx", "cl")), ("rdx", "dx", ("edx", "dx", "dl")),
    ("rsi", "si", ("esi", "si", "sil")), ("rdi", "di", ("edi", "di", "dil")),
    ("rbp", "bp", ("ebp", "bp", "bpl")), ("rsp", "sp", ("esp", "sp", "spl")),
):  # fmt: skip
    for _n in (_full, *_aliases):
        _REGS[_n] = _field
for _i in range(8, 16):
    for _suffix in ("", "d", "w", "b"):
        _REGS[f"r{_i}{_suffix}"] = f"r{_i}"

_ARG = re.compile(r"^(-?\d+)@(.+)$")
_MEM = re.compile(r"^(-?(?:0x[0-9a-fA-F]+|\d+))?\(%([a-z0-9]+)\)$")


class UsdtError(Exception):
    """A binary, probe or argument we cannot use; the message says which and why."""


@dataclass(frozen=True, slots=True)
class UsdtArg:
    size: int  # bytes; negative = signed
    kind: str  # "reg", "mem" or "const"
    reg: str = ""  # pt_regs field
    disp: int = 0  # memory displacement, or the constant
    spec: str = ""


@dataclass(frozen=True, slots=True)
class UsdtProbe:
    provider: str
    name: str
    offset: int  # file offset of the probe point
    ref_ctr_offset: int  # file offset of the semaphore (0: none)
    args: tuple[UsdtArg, ...]

    def label(self) -> str:
        return f"{self.provider}:{self.name}"


def parse_arg(spec: str) -> UsdtArg:
    m = _ARG.match(spec)
    if not m:
        raise UsdtError(f"argument {spec!r}: not SIZE@OPERAND")
    size, op = int(m.group(1)), m.group(2)
    if abs(size) not in (1, 2, 4, 8):
        raise UsdtError(f"argument {spec!r}: size {size} is not 1, 2, 4 or 8")
    if op.startswith("%"):
        reg = _REGS.get(op[1:])
        if reg is None:
            raise UsdtError(f"argument {spec!r}: register {op} unknown on x86_64")
        return UsdtArg(size, "reg", reg=reg, spec=spec)
    if op.startswith("$"):
        try:
            value = int(op[1:], 0)
        except ValueError:
            raise UsdtError(f"argument {spec!r}: bad constant") from None
        return UsdtArg(size, "const", disp=_int64(value, spec), spec=spec)
    mm = _MEM.match(op)
    if mm:
        reg = _REGS.get(mm.group(2))
        if reg is None:
            raise UsdtError(f"argument {spec!r}: register %{mm.group(2)} unknown on x86_64")
        try:
            disp = int(mm.group(1) or "0", 0)
        except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
            raise UsdtError(f"argument {spec[:80]!r}: bad displacement") from None
        return UsdtArg(size, "mem", reg=reg, disp=_int64(disp, spec), spec=spec)
    raise UsdtError(f"argument {spec!r}: operand form not supported (indexed or segment addressing)")


def _int64(value: int, spec: str) -> int:
    """A constant or displacement as the C source will write it (``<n>LL``): a signed 64-bit value.

    The notes come from the probed file. A value past 64 bits is no x86_64
    operand, and written into the program it was a compile error that cost
    every probe, not only this argument."""
    if not -(1 << 63) < value < 1 << 63:
        raise UsdtError(f"argument {spec[:80]!r}: {str(value)[:40]} does not fit in 64 bits")
    return value


def c_read_arg(arg: UsdtArg, dst: str) -> str:
    """C statements that leave the argument's value in the u64 ``dst`` (sign-extended when signed)."""
    ctype = {1: "char", 2: "short", 4: "int", 8: "long long"}[abs(arg.size)]
    ctype = ctype if arg.size < 0 else f"unsigned {ctype}"
    if arg.kind == "const":
        return f"    {dst} = (u64)({arg.disp}LL);\n"
    if arg.kind == "reg":
        return f"    {dst} = (u64)({ctype})ctx->{arg.reg};\n"
    return (
        f"    {{ {ctype} v = 0;\n"
        f"      bpf_probe_read_user(&v, sizeof(v), (void *)(ctx->{arg.reg} + ({arg.disp}LL)));\n"
        f"      {dst} = (u64)v; }}\n"
    )


def read_probes(path: str) -> list[UsdtProbe]:
    """Every USDT probe of an ELF file, with file offsets; UsdtError when the file is unusable."""
    try:  # a FIFO or device put at the path since it was checked is refused unopened (open_regular)
        with open_regular(path) as f:
            layout = read_layout(f)
            sections = {s.name: s for s in read_section_table(f, layout)}
            sec = sections.get(".note.stapsdt")
            if sec is None:
                return []
            if sec.size > MAX_NOTES_BYTES:
                raise UsdtError(f"{path}: .note.stapsdt is {sec.size} bytes, over {MAX_NOTES_BYTES}")
            data = read_section(f, sec.offset, sec.size, ".note.stapsdt")
    except OSError as e:
        raise UsdtError(f"{path}: {e.strerror or e}") from None
    except ElfError as e:
        raise UsdtError(f"{path}: {e}") from None
    if not layout.is64 or not layout.little:
        raise UsdtError(f"{path}: only 64-bit little-endian ELF files are supported")
    base_sec = sections.get(".stapsdt.base")
    out: list[UsdtProbe] = []
    for n, note in enumerate(parse_notes(data, little=True, align=sec.addralign or 4)):
        if n % 1024 == 0:  # a read given up (native/lookup.py) ends here, not after every site
            check_given_up("USDT notes")
        if note.name != "stapsdt" or note.type != NT_STAPSDT or len(note.desc) < 26:
            continue
        pc, base, sem = struct.unpack_from("<QQQ", note.desc, 0)
        parts = note.desc[24:].split(b"\0")
        if len(parts) < 3:
            continue
        provider, name, argtext = (p.decode("utf-8", "replace") for p in parts[:3])
        if base_sec is not None and base:  # prelink moved the file: shift by as much
            delta = base_sec.addr - base
            pc += delta
            sem = sem + delta if sem else 0
        offset = layout.offset_of(pc)
        if offset is None:
            continue
        ref = (layout.offset_of(sem) or 0) if sem else 0
        try:
            args = tuple(parse_arg(a) for a in argtext.split())
        except UsdtError:
            args = ()  # still attachable; its arguments are simply not read
        out.append(UsdtProbe(provider, name, offset, ref, args))
    return out


# -- attaching: perf_event_open on the uprobe PMU ------------------------------------------

_PERF_EVENT_OPEN = {"x86_64": 298}
_PERF_FLAG_FD_CLOEXEC = 1 << 3
_PERF_EVENT_IOC_ENABLE = 0x2400
_PERF_EVENT_IOC_SET_BPF = 0x40042408
_ATTR_SIZE = 112
PMU_TYPE = "/sys/bus/event_source/devices/uprobe/type"
REF_CTR_FORMAT = "/sys/bus/event_source/devices/uprobe/format/ref_ctr_offset"


def attach(prog_fd: int, path: str, probe: UsdtProbe) -> int:
    """Attach ``prog_fd`` at the probe for every process; the perf event fd (close it to detach)."""
    import platform

    nr = _PERF_EVENT_OPEN.get(platform.machine())
    if nr is None:
        raise UsdtError(f"USDT attach is not supported on {platform.machine()}")
    try:
        with open(PMU_TYPE) as f:
            pmu = int(f.read())
    except (OSError, ValueError) as e:
        raise UsdtError(f"no uprobe PMU ({PMU_TYPE}): {e}") from None
    if probe.ref_ctr_offset and not os.path.isfile(REF_CTR_FORMAT):
        raise UsdtError(f"{probe.label()} has a semaphore and this kernel has no uprobe ref_ctr_offset")
    path_buf = ctypes.create_string_buffer(path.encode())
    config = probe.ref_ctr_offset << 32  # bit 0 clear: an entry probe
    attr = struct.pack(
        "<IIQQQQQIIQQ", pmu, _ATTR_SIZE, config, 1, 0, 0, 0, 1, 0, ctypes.addressof(path_buf), probe.offset
    )
    attr += bytes(_ATTR_SIZE - len(attr))
    buf = ctypes.create_string_buffer(attr, len(attr))
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.syscall(
        ctypes.c_long(nr), buf, ctypes.c_int(-1), ctypes.c_int(0), ctypes.c_int(-1),
        ctypes.c_ulong(_PERF_FLAG_FD_CLOEXEC),
    )  # fmt: skip
    if fd < 0:
        err = ctypes.get_errno()
        raise UsdtError(f"{probe.label()} in {path}: perf_event_open: {os.strerror(err)}")
    for req, arg in ((_PERF_EVENT_IOC_SET_BPF, prog_fd), (_PERF_EVENT_IOC_ENABLE, 0)):
        if libc.ioctl(ctypes.c_int(fd), ctypes.c_ulong(req), ctypes.c_int(arg)) < 0:
            err = ctypes.get_errno()
            os.close(fd)
            raise UsdtError(f"{probe.label()} in {path}: ioctl: {os.strerror(err)}")
    return int(fd)
