"""End to end: a function the compiler inlined is observed, never answered "not observed".

A Go program is built in the test where ``main.parseHeader`` is inlined into
``main.handle`` (checked with ``go build -gcflags=-m``), then stripped
(``-ldflags=-s -w``, as production Go ships). The real agent CLI follows a
Tetragon export file whose kprobe event carries a user stack through the call
inside the inlined code: the return address after ``CALL strings.Index``, as
``objdump`` disassembles the unstripped copy. A procfs of our own gives the
process a container root holding the stripped copy.

The reference is ``llvm-symbolizer --inlines`` on the UNSTRIPPED copy (Go's
DWARF), which shares nothing with the agent's reading of the stripped copy's
inline tree. Checked:

- the store has an ``on_stack`` row of ``main.parseHeader`` with its entry ID
  and the caller chain, and ``query observed`` answers observed (exit 0) for
  it; before inlined functions were read it answered "not observed" (exit 1);
- ``stella-runtime symbolize --file`` on the stripped copy reports, for every
  address of the program's own functions, the inlined chain llvm-symbolizer
  reports for that address.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from stellaops_runtime.canonical.elflayout import file_build_id
from tests.e2e import harness as h
from tests.elf_files import file_offset
from tests.native.build import GO_CACHE, _env, find_go

pytestmark = [pytest.mark.e2e]

PID = 6161
DIGEST = "sha256:" + "6e" * 32
PROGRAM = """package main

import (
\t"fmt"
\t"os"
\t"strings"
)

func parseHeader(s string) int {
\treturn strings.Index(s, ":") + len(s)
}

//go:noinline
func handle(s string) int {
\treturn parseHeader(s) * 2
}

func main() {
\tfmt.Println(handle(os.Args[0]))
}
"""


def build(out: Path) -> tuple[Path, Path]:
    """(unstripped, stripped) builds of PROGRAM; fails unless parseHeader was inlined."""
    go = find_go()
    if go is None:
        pytest.fail("the Go toolchain is needed (Debian package golang-go)", pytrace=False)
    out.mkdir(parents=True, exist_ok=True)
    (out / "main.go").write_text(PROGRAM)
    (out / "go.mod").write_text("module inl\n\ngo 1.19\n")
    env = {**_env(out), "GOCACHE": str(GO_CACHE), "GO111MODULE": "on"}
    GO_CACHE.mkdir(parents=True, exist_ok=True)
    full = subprocess.run(
        [go, "build", "-gcflags=-m", "-o", str(out / "full"), "."],
        cwd=out, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "inlining call to parseHeader" in full.stderr, full.stderr
    subprocess.run(
        [go, "build", "-ldflags=-s -w", "-o", str(out / "stripped"), "."], cwd=out, env=env, check=True
    )
    return out / "full", out / "stripped"


def nm_functions(path: Path) -> dict[str, tuple[int, int]]:
    """name -> (start, end) of each sized function in the symbol table (nm)."""
    nm = ["nm", "-S", "--defined-only", str(path)]
    out = subprocess.run(nm, capture_output=True, text=True, check=True)
    funcs = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "tT":
            start = int(parts[0], 16)
            funcs[parts[3]] = (start, start + int(parts[1], 16))
    return funcs


def return_after_call(path: Path, function: str, callee: str) -> int:
    """The address after ``CALL callee`` in ``function`` (objdump of the unstripped copy)."""
    dis = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", f"--disassemble={function}", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    lines = [ln for ln in dis.splitlines() if re.match(r"\s+[0-9a-f]+:", ln)]
    for i, ln in enumerate(lines):
        if "call" in ln and f"<{callee}>" in ln:
            return int(lines[i + 1].split(":")[0], 16)
    raise AssertionError(f"no call of {callee} in {function}:\n{dis}")


def llvm_inlined(path: Path, addrs: list[int]) -> list[list[str]]:
    """llvm-symbolizer's inlined functions at each address, innermost first (its last frame is
    the function the address is in, which is not inlined)."""
    out = subprocess.run(
        ["llvm-symbolizer", "--inlines", "--output-style=JSON", f"--obj={path}", *map(hex, addrs)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    doc = json.loads(out)  # LLVM 14 prints one array for addresses given as arguments
    entries = doc if isinstance(doc, list) else [doc]
    assert len(entries) == len(addrs), out[:2000]
    return [[fr["FunctionName"] for fr in e["Symbol"][:-1]] for e in entries]


def kprobe(n: int, frames: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "process_kprobe": {
            "process": {
                "exec_id": "aW5saW5lZA==",
                "pid": PID,
                "binary": "/app/server",
                "arguments": "serve",
                "start_time": "2026-12-04T09:00:00Z",
                "pod": {
                    "namespace": "shop",
                    "name": "inl-0",
                    "container": {
                        "id": "containerd://" + "ab" * 32,
                        "name": "app",
                        "image": {
                            "id": f"registry.example.com/inl@{DIGEST}",
                            "name": "registry.example.com/inl:1",
                        },
                    },
                },
            },
            "function_name": "__x64_sys_read",
            "policy_name": "stellaops-syscalls",
            "user_stack_trace": frames,
        },
        "node_name": "e2e-node",
        "time": f"2026-12-04T09:00:0{n}.000000Z",
    }


def stored(url: str) -> list[dict[str, Any]]:
    eng = sa.create_engine(url)
    with eng.connect() as c:
        res = c.execute(
            sa.text(
                "SELECT module, function_name, function_id, evidence_kind, invocation_count, unique_callers,"
                " sample FROM hot_symbols WHERE evidence_kind = 'on_stack'"
            )
        )
        out = [dict(r._mapping) for r in res]
    eng.dispose()
    return out


def observed(url: str, function: str) -> tuple[int, dict[str, Any]]:
    r = h.cli("query", "observed", "--image", DIGEST, "--function", function, "--store", url, "--json")
    assert "Traceback" not in r.stderr, r.stderr
    return r.returncode, json.loads(r.stdout)


def run_agent(
    tmp_path: Path, root: Path, frames: list[dict[str, Any]], url: str, lead: str = ""
) -> tuple[str, dict[Any, float]]:
    """The real agent over three kprobe events with ``frames`` (after the lines ``lead``, if any),
    the process's root at ``root`` (a procfs of the test's own), storing into ``url`` (at head: not
    a migration test); returns the store URL and the last metrics scraped. Stopped by SIGTERM once
    the three are processed: its shutdown flush stores them (--exit-when-idle 3 sat 3 s idle first)."""
    proc_root = tmp_path / "proc"
    (proc_root / str(PID)).mkdir(parents=True)
    (proc_root / str(PID) / "root").symlink_to(root)
    (proc_root / str(PID) / "maps").write_text("")
    export = tmp_path / "export.jsonl"
    export.write_text(lead + "".join(json.dumps(kprobe(n, frames)) + "\n" for n in range(3)))
    cfg, port = h.write_config(
        tmp_path,
        tetragon={"exportFile": str(export), "exportFromStart": True},
        store={"url": url},
        # the first event waits for the files' tables, so every event counts the same keys
        symbols={"procRoot": str(proc_root), "parseWaitMilliseconds": 20_000},
        attribution={"enabled": False},
    )
    agent = h.start_agent(cfg)
    try:
        deadline = time.monotonic() + 60
        m: dict[Any, float] = {}
        while h.metric(m, "stellaops_runtime_event_processing_latency_seconds_count") < 3:
            assert agent.poll() is None and time.monotonic() < deadline, "events not processed in time"
            time.sleep(0.05)
            m = h.scrape(port) or m
        agent.send_signal(signal.SIGTERM)
        code, out = h.finish(agent, timeout=90)
    finally:
        if agent.poll() is None:
            agent.kill()
    assert code == 0, out
    return url, m


def test_an_inlined_function_on_a_stripped_go_stack_is_observed(
    tmp_path: Path, sqlite_at_head: Callable[[Path], str]
) -> None:
    full, stripped = build(tmp_path / "go")
    root = tmp_path / "container"
    (root / "app").mkdir(parents=True)
    (root / "app" / "server").write_bytes(stripped.read_bytes())

    ret = return_after_call(full, "main.handle", "strings.Index")
    ret_main = return_after_call(full, "main.main", "main.handle")
    assert "main.parseHeader" in llvm_inlined(full, [ret - 1])[0]  # the reference agrees it is inlined
    frames = [
        {"module": "/app/server", "offset": str(file_offset(full, ret))},
        {"module": "/app/server", "offset": str(file_offset(full, ret_main))},
    ]
    url, m = run_agent(tmp_path, root, frames, sqlite_at_head(tmp_path / "hot.db"))

    with stripped.open("rb") as f:
        bid = file_build_id(f)[0]
    rows = {r["function_name"]: r for r in stored(url)}
    inlined = llvm_inlined(full, [ret - 1])[0]  # innermost first
    assert set(rows) == {*inlined, "main.handle", "main.main"}, rows
    for name in (*inlined, "main.handle", "main.main"):
        r = rows[name]
        assert r["invocation_count"] == 3, r
        assert r["function_id"] == f"{bid}:{name}+0x0", r
    chain = [*inlined, "main.handle", "main.main"]
    assert [rows[n]["unique_callers"] for n in chain] == [1] * (len(chain) - 1) + [0]
    sample = rows["main.parseHeader"]["sample"]
    stack = (sample if isinstance(sample, dict) else json.loads(sample))["stack"]
    assert stack[: len(inlined)] == [f"/app/server!{n} (inlined)" for n in inlined], stack
    assert stack[len(inlined)].startswith("/app/server!main.handle+0x"), stack

    # every event's frame counts its inlined functions (warm frames and fast-path repeats too)
    assert h.metric(m, "stellaops_runtime_frames_inlined_total") == 3 * len(inlined)
    assert h.metric(m, "stellaops_runtime_frames_resolved_total", stack="user", source="gopclntab") == 6

    code, doc = observed(url, "main.parseHeader")
    assert (code, doc["answer"]) == (0, "observed"), doc


def test_symbolize_reports_the_inlined_chain_llvm_symbolizer_reports(tmp_path: Path) -> None:
    full, stripped = build(tmp_path / "go")
    funcs = {k: v for k, v in nm_functions(full).items() if k.startswith("main.")}
    assert {"main.handle", "main.main"} <= set(funcs), funcs
    addrs = [a for start, end in funcs.values() for a in range(start, end)]
    want = llvm_inlined(full, addrs)
    offsets = [str(file_offset(full, a)) for a in addrs]
    t0 = time.monotonic()
    r = h.cli("symbolize", "--file", str(stripped), *offsets, timeout=120)
    assert r.returncode == 0, r.stderr
    got = [json.loads(line).get("inlined", []) for line in r.stdout.splitlines()]
    assert len(got) == len(addrs), (time.monotonic() - t0, r.stderr)
    wrong = [(hex(a), g, w) for a, g, w in zip(addrs, got, want, strict=True) if g != w]
    assert not wrong, f"{len(wrong)} of {len(addrs)} addresses disagree, e.g. {wrong[:10]}"
    assert any(w for w in want), "the program has no inlined code: the test would prove nothing"


CXX = r"""
#include <cstdio>
#include <cstdlib>
namespace shop {
struct Cart {
  static inline int price(int x) { return x * 3 + (x >> 2); }
  static inline int total(int x) { int s = 0; for (int i = 0; i < x; ++i) s += price(i ^ x); return s; }
};
template <typename T> inline T checkout(T v) { return Cart::total(static_cast<int>(v)) * 2; }
__attribute__((noinline)) int handle(int x) { return checkout<long>(x) + Cart::price(x + 1); }
}  // namespace shop
int main(int argc, char** argv) {
  std::printf("%d\n", shop::handle(argc > 1 ? std::atoi(argv[1]) : 5));
  return 0;
}
"""


def test_symbolize_reads_a_stripped_cxx_binarys_debug_file_for_inlined_functions(tmp_path: Path) -> None:
    """C++ at -O2 -g, shipped stripped with its DWARF in a separate file (``.gnu_debuglink``): the
    CLI names the functions inlined at every address of ``shop::handle`` as llvm-symbolizer does
    on the unstripped build (demangled by each tool)."""
    (tmp_path / "shop.cpp").write_text(CXX)
    full, stripped, debug = tmp_path / "shop", tmp_path / "shop.stripped", tmp_path / "shop.debug"
    subprocess.run(["g++", "-O2", "-g", "-o", str(full), str(tmp_path / "shop.cpp")], check=True)
    subprocess.run(["objcopy", "--only-keep-debug", str(full), str(debug)], check=True)
    subprocess.run(["strip", "-o", str(stripped), str(full)], check=True)
    subprocess.run(["objcopy", f"--add-gnu-debuglink={debug}", str(stripped)], check=True, cwd=tmp_path)
    docs = symbolize_agrees_on_inlines(full, stripped, "_ZN4shop6handle")
    assert all(d["source"] == "symtab" for d in docs), docs[0]  # the debug file's .symtab


def symbolize_agrees_on_inlines(full: Path, stripped: Path, function_prefix: str) -> list[dict[str, Any]]:
    """``symbolize --file stripped`` at every address of the function named ``function_prefix...``
    gives the inlined functions llvm-symbolizer names on ``full`` (each tool demangling); its answers."""
    start, end = next(v for k, v in nm_functions(full).items() if k.startswith(function_prefix))
    addrs = list(range(start, end))
    want = llvm_inlined(full, addrs)
    assert sum(bool(w) for w in want) > len(addrs) // 4, "too little inlined code to prove anything"
    r = h.cli("symbolize", "--file", str(stripped), *(str(file_offset(full, a)) for a in addrs))
    assert r.returncode == 0, r.stderr
    docs = [json.loads(line) for line in r.stdout.splitlines()]
    got = [d.get("inlined", []) for d in docs]
    wrong = [(hex(a), g, w) for a, g, w in zip(addrs, got, want, strict=True) if g != w]
    assert not wrong, f"{len(wrong)} of {len(addrs)} addresses disagree, e.g. {wrong[:5]}"
    return docs


def test_an_inlined_cxx_function_is_observed_through_the_images_debug_file(
    tmp_path: Path, sqlite_at_head: Callable[[Path], str]
) -> None:
    """The DWARF path in the agent (parse worker): a stripped C++ binary in the container root
    with its DWARF in ``/app/shop.debug`` (``.gnu_debuglink``); a frame inside code of
    ``shop::Cart::price`` inlined into ``shop::handle`` counts the inlined functions llvm-symbolizer
    names there, under their demangled names, and ``query observed`` finds ``shop::Cart::price``."""
    root = tmp_path / "container"
    (root / "app").mkdir(parents=True)
    (tmp_path / "shop.cpp").write_text(CXX)
    full, stripped = tmp_path / "shop", root / "app" / "shop"
    subprocess.run(["g++", "-O2", "-g", "-o", str(full), str(tmp_path / "shop.cpp")], check=True)
    subprocess.run(["objcopy", "--only-keep-debug", str(full), str(root / "app" / "shop.debug")], check=True)
    subprocess.run(["strip", "-o", str(stripped), str(full)], check=True)
    subprocess.run(["objcopy", "--add-gnu-debuglink=shop.debug", str(stripped)], check=True, cwd=root / "app")
    start, end = next(v for k, v in nm_functions(full).items() if k.startswith("_ZN4shop6handle"))
    chains = llvm_inlined(full, list(range(start, end)))
    at = next(start + i for i, c in enumerate(chains) if any("price" in n for n in c))
    inlined = chains[at - start]
    # the agent reads a frame's offset as a return address and asks one byte before it
    frames = [{"module": "/app/shop", "offset": str(file_offset(full, at) + 1)}]
    url, m = run_agent(tmp_path, root, frames, sqlite_at_head(tmp_path / "hot.db"))

    with stripped.open("rb") as f:
        bid = file_build_id(f)[0]
    rows = {r["function_name"]: r for r in stored(url)}
    assert set(rows) == {*inlined, "shop::handle(int)"}, rows
    for name in rows:
        assert (rows[name]["invocation_count"], rows[name]["function_id"]) == (3, f"{bid}:{name}+0x0")
    assert h.metric(m, "stellaops_runtime_frames_inlined_total") == 3 * len(inlined)
    price = next(n for n in inlined if "price" in n)
    code, doc = observed(url, price)
    assert (code, doc["answer"]) == (0, "observed"), doc
