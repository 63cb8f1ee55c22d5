"""A minimal kernel-header tree written by us, so BCC compiles on nodes without kernel headers.

BCC compiles each program with clang against a kernel source tree
(``/lib/modules/$(uname -r)/build``, or ``BCC_KERNEL_SOURCE``). Its own
``helpers.h`` needs only a handful of kernel headers (integer types, the
version macro, ``PAGE_SIZE``, ``roundup_pow_of_two``, x86_64 ``struct
pt_regs``); BCC ships the BPF UAPI itself, and tracepoint arguments come from
tracefs formats, not from headers. Our probes use nothing else, so this tree of
a few small headers is enough, and kernel headers of another version (Debian
only has 6.1's) are never needed. The tree is written once per kernel release
into a cache directory.
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

from stellaops_runtime.atomic_file import write_atomically

# Bumped whenever a header below changes, so a stale tree is rewritten.
SHIM_VERSION = 2

_TYPES = """\
#ifndef STELLA_SHIM_TYPES_H
#define STELLA_SHIM_TYPES_H
typedef signed char __s8;
typedef unsigned char __u8;
typedef short __s16;
typedef unsigned short __u16;
typedef int __s32;
typedef unsigned int __u32;
typedef long long __s64;
typedef unsigned long long __u64;
typedef __s8 s8;
typedef __u8 u8;
typedef __s16 s16;
typedef __u16 u16;
typedef __s32 s32;
typedef __u32 u32;
typedef __s64 s64;
typedef __u64 u64;
typedef __u16 __le16;
typedef __u16 __be16;
typedef __u32 __le32;
typedef __u32 __be32;
typedef __u64 __le64;
typedef __u64 __be64;
typedef __u16 __sum16;
typedef __u32 __wsum;
typedef __u64 __aligned_u64 __attribute__((aligned(8)));
typedef unsigned long size_t;
typedef long ssize_t;
typedef unsigned long uintptr_t;
typedef long intptr_t;
typedef int pid_t;
typedef _Bool bool;
enum { false = 0, true = 1 };
typedef __s8 int8_t;
typedef __u8 uint8_t;
typedef __s16 int16_t;
typedef __u16 uint16_t;
typedef __s32 int32_t;
typedef __u32 uint32_t;
typedef __s64 int64_t;
typedef __u64 uint64_t;
#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif
#endif
"""

# x86_64 struct pt_regs as the kernel lays it out (arch/x86/include/asm/ptrace.h, kernel view).
_PTRACE_X86_64 = """\
#ifndef STELLA_SHIM_PTRACE_H
#define STELLA_SHIM_PTRACE_H
struct pt_regs {
    unsigned long r15, r14, r13, r12, bp, bx, r11, r10, r9, r8;
    unsigned long ax, cx, dx, si, di, orig_ax, ip, cs, flags, sp, ss;
};
#endif
"""

_LOG2 = """\
#ifndef STELLA_SHIM_LOG2_H
#define STELLA_SHIM_LOG2_H
#define roundup_pow_of_two(n) \\
    ((n) <= 1 ? 1UL : (1UL << (64 - __builtin_clzl((unsigned long)(n) - 1))))
#endif
"""


def version_code(release: str) -> int:
    """LINUX_VERSION_CODE of a release string (``6.18.44-fc`` -> 6<<16 | 18<<8 | 44)."""
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", release)
    if not m:
        return 0
    major, minor, patch = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
    return (major << 16) + (minor << 8) + min(patch, 255)


def files(release: str) -> dict[str, str]:
    """Relative path -> content of every header of the tree."""
    return {
        # BCC force-includes it; the kernel's pulls in autoconf.h. helpers.h only checks this one.
        "include/linux/kconfig.h": "#define CONFIG_BPF_SYSCALL 1\n",
        "include/linux/types.h": _TYPES,
        "include/linux/bpf_common.h": "/* BCC's bpf.h defines what programs use */\n",
        "include/uapi/linux/bpf.h": "/* BCC's own bpf.h is included before this one */\n",
        "include/uapi/linux/if_packet.h": "/* no socket programs here */\n",
        "include/uapi/linux/ptrace.h": _PTRACE_X86_64,
        "include/linux/version.h": (
            f"#define LINUX_VERSION_CODE {version_code(release)}\n"
            "#define KERNEL_VERSION(a, b, c) (((a) << 16) + ((b) << 8) + ((c) > 255 ? 255 : (c)))\n"
        ),
        "include/linux/log2.h": _LOG2,
        "arch/x86/include/asm/page.h": f"#define PAGE_SIZE {os.sysconf('SC_PAGE_SIZE')}UL\n",
    }


def supported_machine(machine: str | None = None) -> bool:
    """The tree describes x86_64 only (struct pt_regs is per architecture)."""
    return (machine or platform.machine()) == "x86_64"


def ensure(cache_dir: str | os.PathLike[str], release: str | None = None) -> Path:
    """Write the tree (if missing or stale) under ``cache_dir``; its root, for BCC_KERNEL_SOURCE."""
    release = release or platform.release()
    root = Path(cache_dir) / f"kernel-shim-v{SHIM_VERSION}-{re.sub(r'[^A-Za-z0-9._-]', '_', release)}"
    for rel, text in files(release).items():
        path = root / rel
        if path.is_file() and path.read_text() == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, text.encode(), mode=0o644, durable=False)
    return root


def real_headers(release: str | None = None) -> str:
    """The kernel's own header tree when installed for this exact release, else ''."""
    release = release or platform.release()
    for base in (f"/lib/modules/{release}/build", f"/lib/modules/{release}/source"):
        if os.path.isfile(os.path.join(base, "include/linux/kconfig.h")):
            return base
    return ""
