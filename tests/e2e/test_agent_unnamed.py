"""End to end: code that ran under no name makes a "not observed" unknown.

A C program is built here with ``-rdynamic`` (its exported ``handle`` is in ``.dynsym``) and
stripped of ``.symtab``, as images ship it. Its ``static`` function ``parse_token`` is then in
no symbol table at all. The real agent reads a Tetragon export file whose kprobe stacks hold
a frame inside ``parse_token`` (the return address after its call of ``strchr``) and one inside
``handle``, with the process's root at a directory of the test's own (a procfs of its own).

- The ``handle`` frame is named from ``.dynsym``; the ``parse_token`` frame is stored under its
  offset (``0x...``), as nothing names it: neither our tables nor the event.
- ``query observed`` for ``parse_token`` answers **unknown** (exit 3) and names the file. Before
  this rule it answered "not observed" (exit 1) for a function that ran on every event.
- ``handle`` is observed (exit 0), and a question scoped to another build (a function ID of
  another build-id) stays "not observed".

The export file is read from its start, so the hold about its first line is a node-wide gap
(sources/export_restart.py ``take_outage``: Tetragon's cache may have put lines of that time in an
earlier file), and any gap makes the answer unknown before unnamed code is weighed. The file
therefore opens with an exec line an hour before the kprobe events; the question is asked of the
period from the events on, and, asked whole, names exactly that hold as its only gap.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from stellaops_runtime.canonical.elflayout import file_build_id
from tests.e2e import harness as h
from tests.e2e.test_agent_inlined import DIGEST, nm_functions, observed, return_after_call, run_agent, stored
from tests.elf_files import file_offset
from tests.node_alive import each_node_alive_after

# an exec an hour before the kprobe events (tests/e2e/test_agent_inlined.py: 09:00:00-02 that day)
LEAD = {
    "process_exec": {"process": {"exec_id": "bGVhZA==", "pid": 4243, "binary": "/bin/true", "arguments": ""}},
    "node_name": "e2e-node",
    "time": "2026-12-04T08:00:00.000000Z",
}

pytestmark = [pytest.mark.e2e]

PROGRAM = r"""
#include <stdio.h>
#include <string.h>
__attribute__((noinline)) static int parse_token(const char *s) {
  const char *colon = strchr(s, ':');
  return colon ? (int)(colon - s) * 3 + 1 : (int)strlen(s);
}
__attribute__((noinline)) int handle(const char *s) { return parse_token(s) * 2 + 1; }
int main(int argc, char **argv) { printf("%d\n", handle(argc > 1 ? argv[1] : "a:b")); return 0; }
"""


def test_a_function_in_no_symbol_table_is_unknown_not_unobserved(
    tmp_path: Path, sqlite_at_head: Callable[[Path], str]
) -> None:
    root = tmp_path / "container"
    (root / "app").mkdir(parents=True)
    (tmp_path / "server.c").write_text(PROGRAM)
    full, stripped = tmp_path / "server", root / "app" / "server"
    subprocess.run(["gcc", "-O2", "-rdynamic", "-o", str(full), str(tmp_path / "server.c")], check=True)
    subprocess.run(["strip", "--strip-all", "-o", str(stripped), str(full)], check=True)
    funcs = nm_functions(full)
    parse = next(k for k in funcs if k.startswith("parse_token"))  # gcc may name it parse_token.isra.0
    dynsym = subprocess.run(["nm", "-D", "--defined-only", str(stripped)], capture_output=True, text=True)
    assert " handle" in dynsym.stdout and "parse_token" not in dynsym.stdout
    in_parse = return_after_call(full, parse, "strchr@plt")
    in_handle = return_after_call(full, "handle", parse)
    frames = [
        {"module": "/app/server", "offset": str(file_offset(full, in_parse))},
        {"module": "/app/server", "offset": str(file_offset(full, in_handle))},
    ]
    url, _ = run_agent(tmp_path, root, frames, sqlite_at_head(tmp_path / "hot.db"), json.dumps(LEAD) + "\n")
    each_node_alive_after(url)  # the agent exits after the file: its node ran on (tests/node_alive.py)

    rows = {r["function_name"]: r for r in stored(url)}
    unnamed = f"0x{file_offset(full, in_parse):x}"
    assert set(rows) == {"handle", unnamed}, rows
    assert rows[unnamed]["invocation_count"] == 3 and rows[unnamed]["module"] == "/app/server"

    code, whole = observed(url, "parse_token")  # the hold about the file's first line: its only gap
    hold = [("node", "2026-12-04T07:59:28Z", "2026-12-04T08:00:32Z")]
    assert (code, whole["answer"]) == (3, "unknown"), whole
    assert [(g["scope"], g["start"], g["end"]) for g in whole["gaps"]] == hold, whole
    r = h.cli(
        "query", "observed", "--image", DIGEST, "--function", "parse_token",
        "--since", "2026-12-04T09:00:00Z", "--store", url, "--json",
    )  # fmt: skip
    assert "Traceback" not in r.stderr, r.stderr
    code, doc = r.returncode, json.loads(r.stdout)
    assert (code, doc["answer"], doc["gaps"]) == (3, "unknown", []), doc
    assert doc["unnamed"] == [{"module": "/app/server", "offsets": 1, "calls": 3}], doc
    assert "no symbol names: /app/server" in doc["reason"]
    assert observed(url, "handle")[0] == 0
    with stripped.open("rb") as f:
        bid = file_build_id(f)[0]
    other = "0" * len(bid)
    # another build: not this code, so not its unnamed offsets either; a build the image never held
    # is unknown of its own (file_not_seen, 87bbb6b), not "not observed"
    code, other_doc = observed(url, f"{other}:parse_token+0x0")
    assert (code, other_doc["answer"]) == (3, "unknown"), other_doc
    assert f"no file with build-id {other}" in other_doc["reason"] and not other_doc.get("unnamed"), other_doc
    assert observed(url, f"{bid}:parse_token+0x0")[0] == 3
    assert DIGEST in doc["reason"]
