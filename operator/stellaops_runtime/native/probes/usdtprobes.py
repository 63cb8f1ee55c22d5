"""USDT probes a policy lists (binary, provider, name): one record per hit with up to three arguments.

Each target gets its own small program; arguments named as strings (Python's
file and function names) are copied from user memory into the record, the
others are carried as integers. Filters as for uprobes: cgroup and the
per-cgroup token bucket. Attaching goes through native/usdt.py, so probes
guarded by a semaphore are enabled by the kernel for every process.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from stellaops_runtime.native import records, usdt
from stellaops_runtime.native.config import NativeConfig
from stellaops_runtime.native.probes.prelude import emit_begin, emit_end

Sites = list[tuple[list[usdt.UsdtProbe], str]]
# Sites of one target a load compiles at most: one BPF function each, compiled on the probes' thread
# before any probe attaches (1,000: 8 s of CPU; 3,000: 35 s and 420 MB), and a compile cannot be given up.
MAX_SITES = 256


def probe_sites(cfg: NativeConfig, paths: Mapping[int, str] | None = None) -> Sites:
    """Per target: its probe sites in the binary, or ([], why not); read once per load, so the
    programs compiled and the sites attached (and followed: native/follow.py) are the same.
    ``paths``: target index -> the path to read instead (a descriptor native/follow.py holds)."""
    out: list[tuple[list[usdt.UsdtProbe], str]] = []
    for i, t in enumerate(cfg.usdt):
        path = (paths or {}).get(i, t.binary)
        if not os.path.isfile(path):
            out.append(([], f"binary {t.binary} not found"))
            continue
        try:
            sites = [p for p in usdt.read_probes(path) if p.provider == t.provider and p.name == t.name]
        except usdt.UsdtError as e:
            out.append(([], str(e).replace(path, t.binary)))
            continue
        if not sites:
            out.append(([], f"no USDT probe {t.provider}:{t.name} in {t.binary}"))
            continue
        if len(sites) > MAX_SITES:  # a hostile file: hours of compile for every probe of the node
            many = f"{len(sites)} sites of {t.provider}:{t.name}"
            out.append(([], f"{t.binary} has {many}, more than {MAX_SITES}: not probed"))
            continue
        out.append((sites, ""))
    return out


def c_source(cfg: NativeConfig, *, ring_buffer: bool, sites_of: Sites | None = None) -> str:
    k = records.KIND_USDT
    parts: list[str] = []
    for i, (sites, _why) in enumerate(probe_sites(cfg) if sites_of is None else sites_of):
        strings = cfg.usdt[i].strings()
        for j, site in enumerate(sites):
            body = [
                f"int stella_usdt_{i}_{j}(struct pt_regs *ctx) {{\n",
                "    u64 cg = bpf_get_current_cgroup_id();\n",
                f"    if (!stella_admit({k}, cg, 1, 0)) return 0;\n",
                "    u64 a1 = 0, a2 = 0, a3 = 0;\n",
            ]
            for n, arg in enumerate(site.args[: usdt.MAX_ARGS], start=1):
                body.append(usdt.c_read_arg(arg, f"a{n}"))
            body.append(emit_begin("stella_usdt", "e", k, ring_buffer=ring_buffer))
            body.append(f"    stella_header(e, {k}, cg);\n")
            body.append(f"    e->target = {i};\n    e->nargs = {min(len(site.args), usdt.MAX_ARGS)};\n")
            body.append("    e->arg1 = a1;\n    e->arg2 = a2;\n    e->arg3 = a3;\n")
            for n in (1, 2):
                if n in strings and n <= len(site.args):
                    body.append(
                        f"    bpf_probe_read_user_str(&e->str{n}, sizeof(e->str{n}), (void *)a{n});\n"
                    )
                else:
                    body.append(f"    e->str{n}[0] = 0;\n")
            body.append(emit_end("stella_usdt", "e", k, ring_buffer=ring_buffer))
            body.append("    return 0;\n}\n")
            parts.append("".join(body))
    return "".join(parts)


def attach(
    b: Any, bcc: Any, cfg: NativeConfig, sites_of: Sites | None = None, paths: Mapping[int, str] | None = None
) -> tuple[list[int], list[tuple[str, str]]]:
    """(perf event fds to close at the end, (label, why) of each target that failed); ``paths`` as
    for :func:`probe_sites`."""
    fds: list[int] = []
    failed: list[tuple[str, str]] = []
    for i, (sites, why) in enumerate(probe_sites(cfg) if sites_of is None else sites_of):
        t = cfg.usdt[i]
        path = (paths or {}).get(i, t.binary)
        if not sites:
            failed.append((t.label(), why))
            continue
        mine: list[int] = []
        try:
            for j, site in enumerate(sites):
                fn = b.load_func(f"stella_usdt_{i}_{j}".encode(), bcc.BPF.KPROBE)
                mine.append(usdt.attach(fn.fd, path, site))
        except (usdt.UsdtError, Exception) as e:  # BCC's load_func raises bare Exception
            for fd in mine:
                os.close(fd)
            failed.append((t.label(), str(e).replace(path, t.binary)))
            continue
        fds += mine
    return fds, failed
