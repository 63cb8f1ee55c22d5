"""End to end with hostile container files (issue 11): the real agent keeps counting while they are present.

A procfs of our own (``symbols.procRoot``) gives three live "processes":
one whose container root is full of hostile files (symlinks out of the root,
a FIFO, a device, a sparse 1 TB file without build-id, a pclntab and DWARF
bombs, a huge segment without section headers), an attacker whose library
claims a victim's build-id, and the victim. Their events come first in the
stream, before the synthetic stream's well-formed events, whose counts must
still match the stream's ground truth exactly. Peak RSS (VmHWM) stays under
300 MB, and no outside file's function is ever stored.
"""

from __future__ import annotations

import asyncio
import copy
import gzip
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from stellaops_runtime.replay.events import load_events
from stellaops_runtime.replay.server import ReplayServer
from tests.e2e import harness as h
from tests.integration import test_hostile_elf_builder as eb

pytestmark = [pytest.mark.e2e]

OBJS = h.stream_objects()
HOSTILE_DIGEST = "sha256:" + "ba" * 32
ATTACKER_DIGEST = "sha256:" + "a7" * 32
VICTIM_DIGEST = "sha256:" + "5e" * 32
REPEAT = 20  # events per hostile process: a refused file must not be retried each time


def hostile_root(root: Path, outside: Path) -> list[tuple[str, int]]:
    """Build the hostile container root; (module, file offset) of every hostile frame."""
    lib = root / "usr/lib"
    lib.mkdir(parents=True)
    (lib / "shadow.so").symlink_to("/etc/shadow")
    (lib / "abs.so").symlink_to(str(outside))
    (lib / "rel.so").symlink_to("../../" * 12 + str(outside).lstrip("/"))
    (lib / "dirlink").symlink_to(str(outside.parent))
    (lib / "zero.so").symlink_to("/dev/zero")
    (lib / "urandom.so").symlink_to("/dev/urandom")
    os.mkfifo(lib / "libfifo.so")
    eb.make_char_device(lib / "libchar.so")
    eb.write(lib / "sparse.so", eb.Elf(build_id=None, functions=["f"], pad_to=1 << 40))
    eb.write(lib / "pclntab.so", eb.Elf(functions=[], extra=[eb.pclntab_bomb()]))
    eb.write(lib / "zdebug.so", eb.Elf(functions=[], extra=[eb.zdebug_bomb(claimed=2 << 30, real=4096)]))
    eb.write(lib / "zassert.so", eb.Elf(functions=[], extra=[eb.zdebug_bomb(claimed=100, real=10)]))
    eb.write(lib / "noshdr.so", eb.Elf(functions=[], section_headers=False, pad_to=96 << 20))
    mods = [
        "shadow.so", "abs.so", "rel.so", "dirlink/evil.so", "zero.so", "urandom.so", "libfifo.so",
        "libchar.so", "sparse.so", "pclntab.so", "zdebug.so", "zassert.so", "noshdr.so",
    ]  # fmt: skip
    frames = [(f"/usr/lib/{m}", 0x200) for m in mods]
    frames.append(("/.." * 8 + str(outside), 0x100))
    return frames


def kprobe(template: dict[str, Any], *, pid: int, digest: str, frames: list[tuple[str, int]], n: int) -> dict:
    o = copy.deepcopy(template)
    k = o["process_kprobe"]
    k["process"]["pid"] = pid
    k["process"]["exec_id"] = f"hostile-{pid}"
    k["process"]["pod"]["container"]["image"]["id"] = f"registry.example.com/x@{digest}"
    k["user_stack_trace"] = [{"module": m, "offset": str(off), "symbol": f"hint{n}"} for m, off in frames]
    o["node_name"] = "e2e-node"
    return o


def stored(url: str) -> list[dict]:
    eng = sa.create_engine(url)
    with eng.connect() as c:
        res = c.execute(
            sa.text(
                "SELECT image_digest, module, function_name, evidence_kind, invocation_count FROM hot_symbols"
            )
        )
        out = [dict(r._mapping) for r in res]
    eng.dispose()
    return out


def vm_hwm_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


async def test_agent_keeps_counting_with_hostile_files(
    tmp_path: Path, sqlite_at_head: Callable[[Path], str]
) -> None:
    outside = tmp_path / "host/evil.so"
    eb.write(outside, eb.Elf(build_id=b"\xee" * 20, functions=["outside_function"]))
    roots = {4242: tmp_path / "hostile", 4243: tmp_path / "attacker", 4244: tmp_path / "victim"}
    frames = hostile_root(roots[4242], outside)
    bid = b"\x77" * 20
    voff = eb.write(roots[4244] / "usr/lib/libv.so", eb.Elf(build_id=bid, functions=["victim_function"]))
    eb.write(roots[4243] / "usr/lib/libv.so", eb.Elf(build_id=bid, functions=["attacker_function"]))
    proc_root = tmp_path / "proc"
    for pid, root in roots.items():
        (proc_root / str(pid)).mkdir(parents=True)
        (proc_root / str(pid) / "root").symlink_to(root)
        (proc_root / str(pid) / "maps").write_text("")

    template = next(o for o in OBJS if "process_kprobe" in o and o["process_kprobe"].get("user_stack_trace"))
    libv = [("/usr/lib/libv.so", voff["victim_function"])]
    hostile = []
    for n in range(REPEAT):
        hostile.append(kprobe(template, pid=4242, digest=HOSTILE_DIGEST, frames=frames, n=n))
        hostile.append(kprobe(template, pid=4243, digest=ATTACKER_DIGEST, frames=libv, n=n))
        hostile.append(kprobe(template, pid=4244, digest=VICTIM_DIGEST, frames=libv, n=n))
    stream = tmp_path / "stream.jsonl.gz"
    with gzip.open(stream, "wt") as f:
        for o in hostile + OBJS:
            f.write(json.dumps(o) + "\n")
    events = load_events(stream).events

    url = sqlite_at_head(tmp_path / "hot.db")  # at head (tests/conftest.py): not a migration test
    server = ReplayServer(events)
    addr = await server.start("127.0.0.1:0")
    cfg, port = h.write_config(
        tmp_path,
        tetragon={"address": addr},
        store={"url": url},
        # The victim's and the hostile frames must each be answered from their own file in
        # every event (exact names and refusal counts below), so the pipeline waits for every
        # parse here; tests/e2e/test_parse_worker_e2e.py covers the short default wait.
        symbols={"procRoot": str(proc_root), "parseWaitMilliseconds": 60_000},
        attribution={"enabled": False},
    )
    t0 = time.monotonic()
    proc = h.start_agent(cfg, "--exit-when-idle", "2")
    try:
        hwm = 0

        def peak(_m: dict) -> bool:
            # Read while the agent runs: once it exits (--exit-when-idle) its status has no VmHWM.
            nonlocal hwm
            hwm = max(hwm, vm_hwm_kb(proc.pid))
            return True

        m = await h.wait_processed(port, len(events), also=peak)
        hwm = max(hwm, vm_hwm_kb(proc.pid))
        code, out = await asyncio.to_thread(h.finish, proc)
    finally:
        await server.stop()
        if proc.poll() is None:
            proc.kill()
    took = time.monotonic() - t0
    assert code == 0, out
    print(f"hostile e2e: peak RSS {hwm} kB, {took:.1f} s for {len(events)} events")
    assert 0 < hwm < 300 * 1024, f"peak RSS {hwm} kB"
    # No bound on ``took``: a hang (a file read whole, a FIFO opened) already fails
    # wait_processed's 90 s deadline, and a wall-clock bound only flakes on a loaded machine.

    rows = stored(url)
    on_stack = [r for r in rows if r["evidence_kind"] == "on_stack"]
    ours = {HOSTILE_DIGEST, ATTACKER_DIGEST, VICTIM_DIGEST}
    good = {
        f"{r['image_digest']}|{r['module']}|{r['function_name']}": r["invocation_count"]
        for r in on_stack
        if r["image_digest"] not in ours
    }
    assert good == dict(h.expected_stack_counts(OBJS))  # the well-formed events, counted exactly
    assert not [r for r in rows if "outside_function" in r["function_name"]]
    victim = {r["function_name"] for r in on_stack if r["image_digest"] == VICTIM_DIGEST}
    attacker = {r["function_name"] for r in on_stack if r["image_digest"] == ATTACKER_DIGEST}
    assert victim == {"victim_function"} and attacker == {"attacker_function"}
    hostile_rows = [r for r in on_stack if r["image_digest"] == HOSTILE_DIGEST]
    assert sum(r["invocation_count"] for r in hostile_rows) == REPEAT * len(frames)

    def unresolved(reason: str) -> float:
        return h.metric(m, "stellaops_runtime_frames_unresolved_total", stack="user", reason=reason)

    assert unresolved("not_regular") >= REPEAT
    assert unresolved("budget_exceeded") >= REPEAT * 3
    assert unresolved("malformed") >= REPEAT
    assert h.metric(m, "stellaops_runtime_symbolizer_operations_total", op="files_refused_remembered") > 0
