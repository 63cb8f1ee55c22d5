"""The canonicalizer fills a stack in one call with what filling it frame by frame gives.

canonical/kernelframes.py fills the kernel frames its cache resolved without a call
per frame and counts ``resolved_kallsyms`` once per run; canonical/frames.py fills
the user frames of an event that may not read this node's files, whose module has
no file and no identity, without a call per frame, and counts their reason once per
run. Everything else (a kernel symbol this kernel lacks, a frame without a module, a
frame of this node's process, a frame that raises) goes frame by frame as before,
after the run so far is counted. Here a canonicalizer doing exactly that frame by
frame (the code before) and the real one get the same events: the same frames, the
same counters in the same order, the same caches in the same order.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import pytest

from stellaops_runtime.adapter import common, from_proto
from stellaops_runtime.canonical.framefill import unresolved
from stellaops_runtime.canonical.frames import FrameCanonicalizer
from stellaops_runtime.canonical.resolution import Source
from stellaops_runtime.contracts.events import RuntimeCallEvent, StackFrame
from tests.integration import test_adapter_golden as golden


class FrameByFrame(FrameCanonicalizer):
    """The stack loops as they were: one call per frame, each frame counted on its own."""

    def _kernel_stack(self, stack: list[StackFrame]) -> None:
        for f in stack:
            try:
                self._kernel_frame(f)
            except Exception:
                self.counters["internal_error"] += 1

    def _user_stack(self, ev: RuntimeCallEvent) -> None:
        ids = self._process_ids(ev)
        local = self.locator.local(ev)
        for f in ev.user_stack:
            try:
                self._user_frame(ev, ids, f, local)
            except Exception:
                self.counters["internal_error"] += 1
                unresolved(f, f.build_id, Source.HINT if f.symbol else Source.NONE)


def _kallsyms(tmp_path: Path) -> str:
    p = tmp_path / "kallsyms"
    p.write_text(
        "ffffffff81000000 T _stext\n"
        "ffffffff81001000 T do_syscall_64\n"
        "ffffffff81002000 T entry_SYSCALL_64_after_hwframe\n"
        "ffffffff81003000 T __x64_sys_connect\n"
        "ffffffff81004000 T __x64_sys_write\n"
        "ffffffff81005000 T __x64_sys_openat\n"
        "ffffffff81006000 T _etext\n"
    )
    return str(p)


@pytest.fixture(scope="module")
def events() -> tuple[RuntimeCallEvent, ...]:
    """The events both cases give both canonicalizers: made once per module (1.3 s of decoding the
    fixture streams), let go after it; a tuple, and every user deep-copies it before canonicalizing."""
    streams = golden._streams(with_json=False)
    st = common.AdapterStats()
    out = []
    for name in ("never-repeating", "hostile", "stream-a"):
        for p in streams[name][0][:1500]:
            ev = from_proto.adapt_payload(p, 1, st)
            if ev is not None:
                out.append(ev)
    # Frames that leave the shortcuts mid-stack: an unknown kernel symbol between known ones, a
    # kernel offset that cannot be a key, user frames without a module, of a module with other
    # reasons, an offset that cannot be formatted, a build-id unfit for the short ID form.
    base = next(e for e in out if e.kernel_stack and e.user_stack)
    odd = copy.deepcopy(base)
    odd.kernel_stack = [
        StackFrame(symbol="do_syscall_64", offset=3),
        StackFrame(symbol="no_such_symbol", offset=1),
        StackFrame(symbol="do_syscall_64", offset=4),
        StackFrame(symbol="do_syscall_64", offset=[1]),  # type: ignore[arg-type]  # unhashable: raises
        StackFrame(symbol="entry_SYSCALL_64_after_hwframe", offset=5),
    ]
    odd.user_stack = [
        *copy.deepcopy(base.user_stack),
        StackFrame(module="", symbol="anon"),
        StackFrame(module="/lib/x.so", symbol="f", offset="0x12"),  # type: ignore[arg-type]  # hex() raises
        *copy.deepcopy(base.user_stack),
        StackFrame(module="/lib/y.so", symbol="", offset=9),
    ]
    colon = copy.deepcopy(odd)
    colon.process.exec_id = "colon-process"
    here = copy.deepcopy(odd)
    here.node_name = "this-node"  # a process of this node: its frames go frame by frame
    return (*out, odd, colon, here, *copy.deepcopy([odd, colon, here]))  # the second: cached answers


@pytest.mark.parametrize("proc_root", [None, "/nonexistent-proc"])
def test_stacks_are_filled_as_frame_by_frame(
    tmp_path: Path,
    proc_root: str | None,
    caplog: pytest.LogCaptureFixture,
    events: tuple[RuntimeCallEvent, ...],
) -> None:
    caplog.set_level(logging.CRITICAL)
    kallsyms = _kallsyms(tmp_path)
    made = [
        cls(proc_root=proc_root, kallsyms_path=kallsyms, node_name="this-node", max_binaries=2)
        for cls in (FrameCanonicalizer, FrameByFrame)
    ]
    got = []
    for fc in made:
        # build-ids of a loader for the modules of the odd frames, one unfit for the short ID form
        fc.remember_build_id("colon-process", "/lib/x.so", "abcd")
        fc.remember_build_id("colon-process", "/lib/y.so", "ab:cd")
        evs = copy.deepcopy(events)
        raised = []
        for ev in evs:
            try:
                fc.canonicalize(ev)
            except Exception as e:  # an unfit build-id raises again in the handler: both ways alike
                raised.append(type(e).__name__)
            else:
                raised.append("")
        got.append(
            (
                raised,
                [(ev.function_id, ev.kernel_stack, ev.user_stack) for ev in evs],
                list(fc.counters.items()),
                list(fc._kernel.data),
                list(fc.locator._unavailable.data.items()),
                list(fc._ids.data.items()),
            )
        )
    assert got[0] == got[1]
    counters = dict(got[0][2])
    assert {"", "TypeError"} <= set(got[0][0])  # the odd frames raise again in the handler: as before
    # Every path was taken: resolved and unknown kernel frames, unavailable and unfit user frames.
    assert counters["resolved_kallsyms"] > 0 and counters["kernel_unknown_kernel_symbol"] > 0
    assert counters["internal_error"] > 0 and counters["not_file_backed"] > 0 and counters["no_file"] > 0
