"""Attach a target's already loaded programs to one more file, held by a descriptor.

native/follow.py finds the files to add (a new file put at a target's path,
a deleted former file still run by a process); this puts the probes on them:
for a uprobe target the entry and return programs of its index, for a USDT
target the program of each probe site, compiled at the load from the
loaded file's notes. A USDT file whose sites read their arguments otherwise
(other registers, another count of sites) would need other programs: it is
refused with the reason, for the caller to report (and mark as a gap) until
the next load compiles programs for it.

Each attach goes through ``/proc/self/fd/<n>`` of the caller's descriptor,
so the file probed is the one looked at, whatever its path names meanwhile.
A uprobe's address is found by native/symaddr.py and given to BCC, which then
reads no symbol table of the file (a container may rewrite it at any moment);
the lookup runs on a thread of its own while the probes' buffer is read
(native/lookup.py).
"""

from __future__ import annotations

import contextlib
import os
import re
from typing import Any

from stellaops_runtime.canonical.elflayout import ElfError
from stellaops_runtime.native import lookup, usdt
from stellaops_runtime.native.config import UprobeTarget, UsdtTarget
from stellaops_runtime.native.lookup import Idle
from stellaops_runtime.native.symaddr import SymbolNotFound, where_of

_FD_PATH = re.compile(r"/proc/self/fd/[0-9]+")


def uprobe(
    bpf: Any,
    i: int,
    t: UprobeTarget,
    fd: int,
    what: str,
    *,
    idle: Idle | None = None,
    debug_files: bool = True,
) -> str:
    """Attach uprobe target ``i``'s programs to the file of ``fd``: '' when done, else why not.

    With ``idle``, the file's lookup runs on its own thread while ``idle`` is called (it reads the
    probes' buffer: native/lookup.py); the attach itself stays on the calling (the probes') thread."""
    path = f"/proc/self/fd/{fd}"
    try:  # the address is found here: BCC never reads a symbol table (native/symaddr.py)
        addr = lookup.address(
            fd, t.symbol, where=where_of(t.binary, t.root, t.module), debug_files=debug_files, idle=idle
        )
    except SymbolNotFound as e:
        return f"symbol {t.symbol} not found in {what}{e.hint}"
    except lookup.Abandoned as e:
        return f"{what}: {e}"
    except (OSError, ElfError) as e:
        return f"{what} cannot be read: {_FD_PATH.sub('it', str(e))}"  # ours, or the lookup's own
    name = path.encode()
    try:
        bpf.attach_uprobe(name=name, addr=addr, fn_name=f"stella_up_enter_{i}".encode())
    except Exception as e:
        return f"attach to {what} failed: {e}"
    try:
        bpf.attach_uretprobe(name=name, addr=addr, fn_name=f"stella_up_return_{i}".encode())
    except Exception as e:
        with contextlib.suppress(Exception):
            bpf.detach_uprobe(name=name, addr=addr)
        return f"attach to {what} failed: {e}"
    return ""


def usdt_sites(
    bpf: Any,
    i: int,
    t: UsdtTarget,
    loaded: tuple[usdt.UsdtProbe, ...],
    fd: int,
    what: str,
    *,
    idle: Idle | None = None,
) -> tuple[list[int], str]:
    """Attach USDT target ``i``'s site programs to the file of ``fd``: (perf event fds, '' or why not).

    With ``idle``, the file's notes are read on a thread of its own while ``idle`` is called (as a
    uprobe's lookup: native/lookup.py); the attach itself stays on the calling (the probes') thread."""
    path = f"/proc/self/fd/{fd}"
    if not loaded:
        return [], f"{what}: no programs were compiled for this probe at the load"
    try:  # with idle: read on a thread of its own while the probes' buffer is read (native/lookup.py)
        probes = (
            usdt.read_probes(path)
            if idle is None
            else lookup.off_thread(fd, usdt.read_probes, "read of its USDT notes", idle)
        )
        sites = [p for p in probes if p.provider == t.provider and p.name == t.name]
    except usdt.UsdtError as e:
        return [], f"{what} cannot be read: {_FD_PATH.sub('it', str(e), count=1)}"
    except OSError as e:  # the off-thread read could not start (no descriptor left to duplicate)
        return [], f"{what} cannot be read: {_FD_PATH.sub('it', str(e))}"
    except lookup.Abandoned as e:
        return [], f"{what}: {e}"
    if not sites:
        return [], f"no USDT probe {t.provider}:{t.name} in {what}"
    if [s.args for s in sites] != [s.args for s in loaded]:
        return [], (
            f"{what} has {len(sites)} site(s) of {t.provider}:{t.name} whose arguments differ from the "
            f"loaded file's {len(loaded)}: probed from the next load of the probes"
        )
    fds: list[int] = []
    try:
        for j, site in enumerate(sites):
            fn = bpf.load_func(f"stella_usdt_{i}_{j}".encode(), type(bpf).KPROBE)  # loaded: cached
            fds.append(usdt.attach(fn.fd, path, site))
    except Exception as e:  # usdt.UsdtError, or BCC's bare Exception
        for pfd in fds:
            with contextlib.suppress(OSError):
                os.close(pfd)
        return [], f"attach to {what} failed: {e}"
    return fds, ""
