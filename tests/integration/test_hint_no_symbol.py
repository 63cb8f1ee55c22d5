"""A hint the file itself contradicts is dropped: the frame stays unnamed, never misnamed.

Tetragon names a user frame by scanning the symbol tables of the file it opens by the frame's
path in its own mount namespace (docs/symbolization.md, "hint"); for a container's process that
can be another file than the one the process mapped. When the agent has read the mapped file
itself (identified by its build-id) and no function of it covers the offset, a name from the
event can only come from another file. Keeping it would count a call of a function that did not
run, and hide the code that did from store/unnamed.py, which turns a "not observed" about that
code into "unknown". So the frame keeps its offset (``0x...``, source ``none``) and
``hint_dropped`` counts it. Where the agent could not read the file, the hint is all there is and
is kept (tests/integration/test_symbolize_failures.py).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from stellaops_runtime.agent.metric_families import canonicalizer_metrics
from stellaops_runtime.canonical.frames import FrameCanonicalizer
from stellaops_runtime.canonical.symbolizer import Symbolizer
from stellaops_runtime.contracts.events import EventKind, ProcessInfo, RuntimeCallEvent, StackFrame
from tests.e2e.test_agent_inlined import nm_functions, return_after_call
from tests.e2e.test_agent_unnamed import PROGRAM
from tests.elf_files import file_offset


def test_a_hint_the_file_contradicts_is_dropped(tmp_path: Path) -> None:
    (tmp_path / "server.c").write_text(PROGRAM)
    full, stripped = tmp_path / "server", tmp_path / "server.stripped"
    subprocess.run(["gcc", "-O2", "-rdynamic", "-o", str(full), str(tmp_path / "server.c")], check=True)
    subprocess.run(["strip", "--strip-all", "-o", str(stripped), str(full)], check=True)
    parse = next(k for k in nm_functions(full) if k.startswith("parse_token"))
    in_parse = file_offset(full, return_after_call(full, parse, "strchr@plt"))
    in_handle = file_offset(full, return_after_call(full, "handle", parse))
    bid = Symbolizer().binary(str(stripped)).build_id
    fc = FrameCanonicalizer(host_root="/")
    proc = ProcessInfo(exec_id="hint-1", pid=4_100_001, binary=str(stripped))
    fc.canonicalize(RuntimeCallEvent(EventKind.LOADER, 0, "n", proc, module=str(stripped), build_id=bid))
    for round_ in range(3):  # the first sight, then the frame cache's answers
        frames = [
            StackFrame(module=str(stripped), offset=in_parse, symbol="main"),  # another file's name
            StackFrame(module=str(stripped), offset=in_handle, symbol="handle"),
        ]
        fc.canonicalize(RuntimeCallEvent(EventKind.SYSCALL, 0, "n", proc, user_stack=frames))
        unnamed, named = frames
        assert (unnamed.symbol, unnamed.source, unnamed.build_id) == ("", "none", bid), round_
        assert unnamed.function_id == f"{bid}:+{in_parse:#x}"
        assert (named.symbol, named.source) == ("handle", "dynsym")
    assert fc.stats["hint_dropped"] == 3
    assert fc.stats["no_symbol"] >= 1
    # as the agent exports it (docs/symbolization.md)
    ops = next(m for m in canonicalizer_metrics(fc.stats) if m.name.endswith("symbolizer_operations"))
    assert {s.labels["op"]: s.value for s in ops.samples}["hint_dropped"] == 3
