"""A function named by PURL that GCC split (``f`` and ``f.part.0``), probed at ``f`` only, asked by the CLI.

gcc -O2 splits the extern ``stella_split_fn`` by partial inlining: its early-return head is
inlined into ``main``, which then calls ``stella_split_fn.part.0`` directly (checked here with the
symbol table). The PURL probes attach to ``stella_split_fn`` only (``.part.N`` is not probed:
``f`` jumps to it, so probing both would count a call twice: native/purl_targets.py
``function_offsets``). So every call ``main`` makes runs unseen. The honest answer to "did
stella_split_fn run in this image" is then ``unknown`` naming the unprobed clone, never
``not_observed`` (docs/native-probes.md, "Known limits"; brief NP3 of session 42).

End to end: the real agent with its BCC probes (Tetragon unreachable), a chrooted process in a
cgroup of its own as the container (tests/integration/test_agent_purl_functions.py), the function
configured by PURL as a user would, 25 calls made, then ``query observed`` through the CLI as a
subprocess, about a period of EbpfDeep windows without gaps. Seen failing before the fix:
``not_observed`` (exit 1). The agent now stores the tail as unprobed (agent/unprobed.py) and the
answer names it (evidence/probed_in_part.py). Needs root and BPF (marked ``bpf``).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from stellaops_runtime.agent import source_switch
from stellaops_runtime.agent.node_status import purl_state
from stellaops_runtime.agent.runner import Agent
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.lifecycle.lookup import ContainerLookup
from stellaops_runtime.native.detect import detect
from tests.e2e import harness as h
from tests.integration import test_native_purl as tnp
from tests.integration.test_agent_purl_functions import CGROUP_FS, Contained

ROOT = Path(__file__).resolve().parents[2]
DIGEST = "sha256:" + "5c" * 32
POLICY = "ObservationPolicy/shop/split"
FN = "stella_split_fn"
# Extern, with a cold-ish tail: gcc -O2 inlines the NULL check into main and calls the rest,
# stella_split_fn.part.0, directly; stella_split_fn itself is a jmp to it. Same line protocol as
# test_native_purl.PROGRAM ("ready", then N calls per line read, "done").
PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
unsigned stella_split_fn(unsigned crc, const char *p) { if (!p) return crc;
  for (size_t i = 0; i < strlen(p); ++i) { crc = crc * 31 + p[i];
    if (crc == 0xdeadbeefu) { fprintf(stderr, "big %u\n", crc); crc = 0; } }
  if (crc == 7u) fprintf(stderr, "seven\n"); return crc; }
/* probed too and called directly once per line: the package is seen in the image */
__attribute__((noinline)) int stella_seen_fn(int x) { __asm__ volatile(""); return x + 1; }
/* read(2) made here, not in libc: the syscall's user stack starts in main (a named frame) */
static long raw_read(char *buf, long n) { long r; __asm__ volatile ("syscall" : "=a"(r)
  : "a"(0L), "D"(0L), "S"(buf), "d"(n) : "rcx", "r11", "memory"); return r; }
int main(void) {
    char line[64];
    unsigned long s = 0;
    long got;
    printf("ready\n");
    fflush(stdout);
    while ((got = raw_read(line, sizeof line - 1)) > 0) {   /* each line: a number of calls to make */
        line[got] = 0;
        int n = atoi(line);
        for (int i = 0; i < n; i++) s += stella_split_fn(i, line);
        s += stella_seen_fn(n);
        printf("done %lu\n", s);
        fflush(stdout);
    }
    return 0;
}
"""


def _symbols(path: Path) -> set[str]:
    with path.open("rb") as f:
        symtab = ELFFile(f).get_section_by_name(".symtab")
        assert isinstance(symtab, SymbolTableSection)
        return {s.name for s in symtab.iter_symbols() if s["st_info"]["type"] == "STT_FUNC"}


@pytest.fixture(scope="module")
def split_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (CGROUP_FS / "cgroup.procs").exists():
        pytest.skip("needs a cgroup v2 hierarchy at /sys/fs/cgroup or /sys/fs/cgroup/unified")
    root = tmp_path_factory.mktemp("splitroot")
    with pytest.MonkeyPatch.context() as mp:  # the package's program is this one
        mp.setattr(tnp, "PROGRAM", PROGRAM)
        mp.setattr(tnp, "_gcc", _gcc_o2)
        tnp.package_root(root)
    program = root / "usr/bin/stella_purl_target"
    # A chrooted process's /proc/<pid>/maps names its file by the host path, which the symbolizer
    # reads under /proc/<pid>/root (a container's maps name the path inside it): the same file
    # there too, or its stack frames stay unnamed ("code ran that no symbol names": unknown anyway)
    mirror = root / str(program).lstrip("/")
    mirror.parent.mkdir(parents=True)
    os.link(program, mirror)
    got = _symbols(program)
    if f"{FN}.part.0" not in got:
        pytest.skip(f"this gcc made no {FN}.part.0 at -O2: {sorted(s for s in got if FN in s)}")
    return root


def _gcc_o2(src: str, out: Path) -> None:
    c = out.with_suffix(".c")
    c.write_text(src)
    cmd = ["gcc", "-static", "-O2", "-fno-omit-frame-pointer", "-o", str(out), str(c)]
    subprocess.run(cmd, check=True)
    c.unlink()


@pytest.fixture
def container(split_root: Path) -> Iterator[Contained]:
    if not tnp.shutil.which("chroot"):
        pytest.skip("needs chroot")
    c = Contained(split_root, "split", DIGEST)
    yield c
    c.close()


def _cli(*args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    r = subprocess.run(
        [sys.executable, "-m", "stellaops_runtime.cli.main", *args, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert r.returncode in (0, 1, 3), r.stderr
    return r.returncode, json.loads(r.stdout)


@pytest.mark.bpf
async def test_calls_of_an_unprobed_part_clone_make_the_answer_unknown(
    tmp_path: Path, container: Contained, sqlite_at_head: Callable[[Path], str]
) -> None:
    cache = str(Path(".cache/native").resolve())  # noqa: ASYNC240
    rep = await asyncio.to_thread(detect, mount_tracefs=True, compile_test=True, cache_dir=cache)
    if rep.posture < Posture.EBPF_DEEP:
        pytest.skip(f"native probes give {rep.posture} here: {rep.missing}")
    probes = tmp_path / "probes.json"
    probes.write_text(json.dumps({
        "apiVersion": "stellaops.io/v1alpha1", "kind": "ProbeConfig",
        "policies": {POLICY: {
            "functions": [{"purl": tnp.PURL, "symbols": [FN, "stella_seen_fn"]}],
            # the process's reads with their user stacks: its windows are EbpfDeep, what backs a "no"
            "syscalls": [{"name": "read"}], "stackTraces": {"kernel": False, "user": True},
        }},
    }))  # fmt: skip
    url = sqlite_at_head(tmp_path / "hot.db")  # a store at the newest schema: this is not about migrations
    cfg = parse_config({
        "tetragon": {"address": f"127.0.0.1:{h.free_port()}", "connectionTimeout": 0.3},
        "store": {"url": url},
        "hotSymbols": {"aggregationWindowSeconds": 1},  # the calls' windows lie past the start's gap
        "metrics": {"address": "127.0.0.1", "port": 0},
        "lifecycle": {"enabled": False},  # no runtime here: windows rest on the containers that sent events
        "native": {"fallbackAfterSeconds": 0.2, "tetragonCheckSeconds": 0.5, "probeConfigFile": str(probes)},
    })  # fmt: skip
    agent = Agent(cfg, node_name="split-node")
    sw = agent.source
    assert isinstance(sw, source_switch.SourceSwitch)
    sw.containers = lambda: [container.record]
    agent.pipeline.container_lookup = ContainerLookup([container.record], "containerd")
    task = asyncio.create_task(agent.run())

    def attached() -> bool:
        got = purl_state(sw.stats)
        return bool(sw.stats.connected and got and any(e["state"] == "attached" for e in got[0]))

    try:
        await h.wait_for(attached, timeout=90, what="the PURL function attached")
        ready = int(time.time())
        await h.wait_for(lambda: int(time.time()) > ready, timeout=5, what="a window after the attach")
        since = datetime.now(UTC)
        await asyncio.to_thread(container.proc.calls, 25)  # 25 calls, each through .part.0 directly
        until = datetime.now(UTC)
        await h.wait_for(lambda: time.time() > until.timestamp() + 1, timeout=5, what="the window's end")
    finally:
        agent.stop("test done")
        assert await asyncio.wait_for(task, 60) == 0
    period = ("--since", since.isoformat(), "--until", until.isoformat())
    ask = (
        "query",
        "observed",
        "--store",
        url,
        "--image",
        DIGEST,
        "--function",
        FN,
        "--purl",
        tnp.PURL,
        *period,
    )
    code, doc = await asyncio.to_thread(_cli, *ask)
    # The function ran 25 times, none of them through a probe: never "not observed".
    assert doc["answer"] != "not_observed", doc
    assert (code, doc["answer"]) == (3, "unknown"), doc
    assert f"{FN}.part.0" in json.dumps(doc), doc
