"""The synthetic Tetragon stream through the FrameCanonicalizer, against this machine's libraries.

``stream-a`` has user frames with real file offsets into four Debian 12
libraries and ``process_loader`` events with their real build-ids (also in
``stream-a.expected.json``). With host-root lookup on ``/``, a library whose
build-id on this machine matches the loader's must resolve every frame to a
symbol of our own (symtab/dynsym, not Tetragon's hint) whose function ID
embeds that build-id; a library that differs (here libcrypto/libssl, whose
package was upgraded) must come out as ``build_id_mismatch``, counted, with
the hint kept. The events come from other nodes, so local /proc is never
consulted (``proc_root=None``): their pids mean nothing on this machine.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest

from stellaops_runtime.adapter import common, from_json
from stellaops_runtime.canonical.elflayout import ElfError
from stellaops_runtime.canonical.frames import FrameCanonicalizer
from stellaops_runtime.canonical.symbolizer import Symbolizer
from stellaops_runtime.contracts.events import EventKind, RuntimeCallEvent

FIXTURES = Path(__file__).parents[1] / "fixtures" / "tetragon" / "synthetic"


def load_events() -> list[RuntimeCallEvent]:
    stats = common.AdapterStats()
    out = []
    with gzip.open(FIXTURES / "stream-a.jsonl.gz") as f:
        for line in f:
            ev = from_json.adapt(from_json.decode_line(line), stats=stats)
            if ev is not None:
                out.append(ev)
    return out


def machine_build_ids(paths: list[str]) -> dict[str, str]:
    sym = Symbolizer()
    out = {}
    for p in paths:
        try:
            out[p] = sym.file_build_id(p)[0]
        except (OSError, ElfError):
            out[p] = ""
    return out


def test_stream_frames_resolve_where_build_ids_match() -> None:
    expected = json.loads((FIXTURES / "stream-a.expected.json").read_text())
    libs: dict[str, str] = expected["build_ids"]
    here = machine_build_ids(list(libs))
    matching = {p for p, bid in libs.items() if here[p] == bid}
    if not matching:
        pytest.skip(
            f"none of the stream's Debian 12 libraries is on this machine with the same build-id: {here}"
        )
    events = load_events()
    fc = FrameCanonicalizer(proc_root=None, host_root="/")
    for ev in events:
        fc.canonicalize(ev)

    frames = [(ev, f) for ev in events for f in ev.user_stack]
    assert frames
    sources: Counter[tuple[str, str]] = Counter()
    innermost: Counter[str] = Counter()
    for _ev, f in frames:
        sources[(f.module, str(f.source))] += 1
        bid = libs.get(f.module)
        if f.module in matching:
            assert f.source in ("symtab", "dynsym"), (f.module, f.offset, f.source)
            assert f.build_id == bid
            assert f.function_id == f"{bid}:{f.symbol}+{f.symbol_offset:#x}"
            assert f.symbol and f.symbol_offset >= 0
        elif bid:  # a library of the stream that differs here: the loader's build-id, the hint kept
            assert (f.source, f.build_id) == ("hint", bid), (f.module, f.source)
            assert f.function_id == f"{bid}:+{f.offset:#x}"
            assert f.symbol and f.symbol_offset == 0
        else:  # the images' own executables exist nowhere on this machine
            assert f.source == "hint" and f.build_id == "" and f.function_id == ""
    for ev in events:
        if ev.user_stack:
            f = ev.user_stack[0]
            if f.module in matching:
                innermost[f"{ev.image_key}|{f.module}|{f.symbol}"] += 1

    # Our own symbols reproduce the ground truth: the innermost user frame's function per image.
    truth = {k: v for k, v in expected["stack_frame_counts"].items() if k.split("|")[1] in matching}
    assert dict(innermost) == truth

    stats = fc.stats
    mismatched = [p for p in libs if p not in matching and here[p]]
    if mismatched:
        assert stats["build_id_mismatch"] == sum(n for (m, _s), n in sources.items() if m in mismatched)
    assert stats.get("hint_disagreements", 0) == 0
    assert stats["resolved_kallsyms"] > 0
    assert stats["no_file"] == sum(n for (m, _s), n in sources.items() if m not in libs)
    assert stats["symbolizer_binaries_loaded"] == len(matching)
    assert stats["cache_processes"] == 0  # every process's loader build-ids forgotten at its exit


def test_stream_uprobe_function_ids() -> None:
    expected = json.loads((FIXTURES / "stream-a.expected.json").read_text())
    libs: dict[str, str] = expected["build_ids"]
    here = machine_build_ids(list(libs))
    events = load_events()
    fc = FrameCanonicalizer(proc_root=None, host_root="/")
    for ev in events:
        fc.canonicalize(ev)
    uprobes = [ev for ev in events if ev.kind is EventKind.UPROBE]
    assert uprobes
    for ev in uprobes:
        bid = libs[ev.module]
        # Every probed function's entry ID: from the binary where it matches, from the name otherwise.
        assert ev.function_id == f"{bid}:{ev.function_name}+0x0", (ev.module, ev.function_name)
    stats = fc.stats
    matching = [p for p in libs if here[p] == libs[p]]
    if matching:
        assert stats["events_function_resolved_dynsym"] > 0
    if any(here[p] and here[p] != libs[p] for p in libs):
        assert stats["events_function_unverified_build_id_mismatch"] > 0
