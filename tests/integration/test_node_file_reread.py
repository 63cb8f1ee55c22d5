"""A node's ``binaryPath`` file upgraded in place while its agent runs: its facts are read again.

The agent reads the split tails and clones of the probe ConfigMap's ``binaryPath`` files as
``unprobed`` facts of ``host:<node>`` (agent/tetragon_facts.py). It read them again only when the
ConfigMap changed, and handed each (image, path, tail) to the store once whatever its build
(agent/unprobed.py): a node file upgraded in place while the agent ran had no fact of its new build,
and a hostPath container showing only that build said ``not_observed`` while its tail ran unprobed
(the s45 known limit, NF and RNF). Now each poll (once a second, not per event) compares the stat
identity of the files the last read covered, reads them again when one changed, and a fact of a new
build is handed over again.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from stellaops_runtime.agent import tetragon_facts
from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey
from stellaops_runtime.store.batches import Batch
from stellaops_runtime.store.engine import open_store
from tests.integration.test_answer_replaced_in_place import APP, HOST, MAIN, MAIN2, NEW, _windows
from tests.integration.test_node_fact_builds import _ask
from tests.integration.test_probed_in_part_stripped import PROGRAM
from tests.integration.test_vex import DAY, T0, S

POD = "sha256:" + "ab" * 32  # runs the node's file through a hostPath mount, after the upgrade
needs_gcc = pytest.mark.skipif(any(shutil.which(t) is None for t in ("gcc", "nm")), reason="needs gcc")


def _compile(tmp_path: Path, source: str, name: str) -> Path:
    src, out = tmp_path / f"{name}.c", tmp_path / name
    src.write_text(source)
    subprocess.run(["gcc", "-O2", "-o", str(out), str(src)], check=True, capture_output=True, timeout=60)
    return out


def _upgrade(tmp_path: Path, exe: Path) -> None:
    """The node's file upgraded: another build written over the same inode (as ``cp`` over it)."""
    with open(exe, "r+b") as f:
        f.write(_compile(tmp_path, PROGRAM + NEW + MAIN2, "new").read_bytes())
        f.truncate()


def _watch(tmp_path: Path, host: Path) -> tetragon_facts.TetragonFacts:
    from stellaops_runtime.agent.pipeline import Pipeline
    from stellaops_runtime.contracts.config import parse_config

    entry = {"functions": [{"binaryPath": APP, "symbols": ["split_fn"]}], "maxLevel": "EbpfDeep"}
    doc = {"apiVersion": "stellaops.io/v1alpha1", "kind": "ProbeConfig", "policies": {"P/ns/p": entry}}
    probes = tmp_path / "probes.json"
    probes.write_text(json.dumps(doc))
    native = {"enabled": True, "probeConfigFile": str(probes)}
    cfg = parse_config({"symbols": {"enabled": False}, "attribution": {"enabled": False}, "native": native})
    return tetragon_facts.TetragonFacts(str(probes), Pipeline(cfg, node_name="node-1"), host_root=str(host))


def _facts(watch: tetragon_facts.TetragonFacts, now: float, at: int) -> list[HotSymbolDelta]:
    asyncio.run(watch.poll(now))
    return watch.pipeline.unprobed.deltas(node_name="node-1", now_ns=at, window_seconds=60)


@needs_gcc
def test_a_node_file_upgraded_in_place_gets_its_new_build_s_fact(
    tmp_path: Path, sqlite_at_head: Callable[[Path], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node's file is rewritten in place (same inode, as ``cp`` over it does) with another build.
    Seen failing before the fix: the poll after the upgrade handed over nothing (no read, and the
    tail's key counted as sent), so the store held the old build's fact only, where the hostPath
    container showing only the new build answers not_observed (exit 1:
    test_node_fact_builds.py::test_a_build_with_no_fact_of_the_function_keeps_its_no). Now the new
    build's fact is stored and the container gets unknown, naming the tail. A poll with nothing
    changed reads no file (the cost: a stat of each file a second)."""
    host = tmp_path / "host"
    exe = host / APP.lstrip("/")
    exe.parent.mkdir(parents=True)
    shutil.copyfile(_compile(tmp_path, PROGRAM + MAIN, "old"), exe)
    reads: list[str] = []
    real = tetragon_facts.read_facts
    monkeypatch.setattr(tetragon_facts, "read_facts", lambda *a, **k: reads.append(a[0]) or real(*a, **k))
    watch = _watch(tmp_path, host)
    before, after = T0 + 2 * DAY, T0 + 20 * DAY
    first = _facts(watch, 100.0, before)
    assert [r.key.function_name for r in first] == ["split_fn.part.0"] and len(reads) == 1
    assert _facts(watch, 102.0, before) == [] and len(reads) == 1  # nothing changed: no read
    inode = exe.stat().st_ino
    _upgrade(tmp_path, exe)
    assert exe.stat().st_ino == inode
    second = _facts(watch, 104.0, after)
    assert [(r.key.module, r.key.function_name) for r in second] == [(first[0].key.module, "split_fn.part.0")]
    old, new = first[0].build_id, second[0].build_id
    assert old and new and old != new and len(reads) == 2
    url = sqlite_at_head(tmp_path / "hot.db")
    with open_store(url) as s:
        s.write([], _windows(HOST) + _windows(POD))
        for n, rows in enumerate((first, second)):
            assert not s.write_batch(Batch("node-1/agent", n + 1, rows)).errors
        load = HotSymbolKey(POD, "/host" + APP, "", EvidenceKind.LOADED)
        s.write([HotSymbolDelta(load, after, 1, after + S, after + S, build_id=new, node_name="node-1")], [])
    for asked in ("split_fn", f"{new}:split_fn+0x0"):
        code, doc = _ask(url, POD, asked)
        assert (code, doc["answer"]) == (3, "unknown") and "split_fn.part.0" in str(doc["reason"]), doc


def test_a_file_replaced_by_rename_or_rewritten_at_its_size_is_another_identity(tmp_path: Path) -> None:
    """What a poll compares: a package manager's rename over the path (a new inode) and a rewrite
    of the same size at the same inode (its modification time) each change it; a look alone does not."""
    f = tmp_path / "app"
    f.write_bytes(b"a" * 64)
    files = (str(f),)
    first = tetragon_facts.idents(files)
    assert tetragon_facts.idents(files) == first and f.read_bytes()
    new = tmp_path / "app.new"
    new.write_bytes(b"a" * 64)
    new.replace(f)
    renamed = tetragon_facts.idents(files)
    assert renamed != first and renamed[0] is not None
    st = f.stat()
    f.write_bytes(b"b" * 64)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # a coarse clock may not have moved it
    assert tetragon_facts.idents(files) != renamed
    f.unlink()
    assert tetragon_facts.idents(files) == (None,)


@needs_gcc
def test_under_bcc_a_node_file_upgraded_in_place_reloads_with_its_new_build_s_facts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The BCC probes read a node file's facts (and probe its clones) when they load, and a file
    rewritten at its inode is a gap until the next load (native/follow.py). Seen failing before the
    fix: with no PURL function the switch never wanted a reload for it, so the new build's tail had
    no fact. Now a changed node file wants one (at most once a REPLACED_RELOAD_SECONDS), and its
    configure hands over the new build's fact."""
    from stellaops_runtime.agent.pipeline import Pipeline
    from stellaops_runtime.agent.source_switch_purl import REPLACED_RELOAD_SECONDS
    from stellaops_runtime.contracts.config import parse_config
    from stellaops_runtime.contracts.posture import Posture
    from stellaops_runtime.native import detect
    from stellaops_runtime.native.config import NativeConfig, UprobeTarget
    from tests.integration.test_binary_path_clones import _switch

    exe = tmp_path / "host" / APP.lstrip("/")
    exe.parent.mkdir(parents=True)
    shutil.copyfile(_compile(tmp_path, PROGRAM + MAIN, "old"), exe)
    rep = detect.Report(kernel="6.1", machine="x86_64", posture=Posture.PASSIVE)
    monkeypatch.setattr(detect, "detect", lambda **kw: rep)
    cfg = parse_config({"symbols": {"enabled": False}, "attribution": {"enabled": False}})
    pipeline = Pipeline(cfg, node_name="node-1")
    base = NativeConfig(uprobes=(UprobeTarget(str(exe), "split_fn"),))

    def drained() -> list[tuple[str, str]]:
        rows = pipeline.unprobed.deltas(node_name="node-1", now_ns=T0, window_seconds=60)
        return [(r.key.function_name, r.build_id) for r in rows]

    async def load_upgrade_reload() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        sw = _switch(cfg, pipeline)
        assert await sw._make_bcc()
        sw._probe_config = lambda: base  # type: ignore[method-assign]
        await sw._configure()
        first = drained()
        sw._reloaded_at = time.monotonic() - REPLACED_RELOAD_SECONDS  # the last load a minute ago
        assert not sw._reload_wanted()  # nothing changed
        _upgrade(tmp_path, exe)
        assert sw._reload_wanted()
        await sw._configure()  # what the reload runs
        assert not sw._reload_wanted()
        return first, drained()

    first, second = asyncio.run(load_upgrade_reload())
    assert [n for n, _ in first] == [n for n, _ in second] == ["split_fn.part.0"]
    assert first[0][1] and second[0][1] and first[0][1] != second[0][1]


def test_the_poll_s_look_at_the_node_files_is_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The look runs every second; a node file on a file system that hangs (an NFS mount behind
    /opt, a FUSE one) hung its stat, and the stat ran on the event loop: the whole agent (the
    stream, the flushes, the proof of life, the stop) stood still with it. It now runs on a worker
    thread (the agent's default executor: daemon threads, never waited for at the exit), as the
    read does. Seen failing before the fix: the stat ran on the loop's thread (review RNX)."""
    host = tmp_path / "host"
    exe = host / APP.lstrip("/")
    exe.parent.mkdir(parents=True)
    exe.write_bytes(b"not an ELF file")  # no facts, but a file the read covered
    watch = _watch(tmp_path, host)
    on: list[bool] = []
    real = tetragon_facts.idents

    def spy(files: tuple[str, ...]) -> tuple[tetragon_facts.Ident, ...]:
        on.append(threading.current_thread() is loop_thread)
        return real(files)

    async def polls() -> None:
        nonlocal loop_thread
        loop_thread = threading.current_thread()
        await watch.poll(100.0)  # the first read
        monkeypatch.setattr(tetragon_facts, "idents", spy)
        await watch.poll(102.0)  # a look, nothing changed

    loop_thread = threading.current_thread()
    asyncio.run(polls())
    assert watch._files and on == [False]
