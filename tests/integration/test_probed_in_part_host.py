"""A ``binaryPath`` function probed in part on the node answers unknown about the host image, not "no".

gcc -O2 splits ``split_fn`` of a node's program (``split_fn`` + ``split_fn.part.0``, ``main`` calling
the tail directly); the probes sit at ``split_fn`` only, so those calls are never counted. The
host's processes are stored under ``host:<node>`` (contracts/events.py ``image_key``); the agent now
reads the tails of each node file it probes (native/host_tails.py) at each configure of the probes
(agent/source_switch_purl.py) and hands them to the pipeline as ``unprobed`` facts of that image.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.native.config import NativeConfig, UprobeTarget
from stellaops_runtime.native.host_file import host_file
from stellaops_runtime.native.host_tails import host_tails
from stellaops_runtime.store.batches import Batch
from stellaops_runtime.store.engine import open_store
from tests.cli_run import cli_json
from tests.integration.test_probed_in_part_stripped import PROGRAM
from tests.integration.test_vex import DAY, T0, S

HOST = "host:node-1"
APP = "/usr/bin/stella-app"
MAIN = "int main(int argc, char **argv) { return (int)user(argc, argv); }\n"


def _host_program(tmp_path: Path) -> UprobeTarget:
    """The node's root (a directory here) with a gcc -O2 program; the target its ConfigMap's
    ``binaryPath`` function split_fn gives (native/policy_config.py's rule)."""
    host = tmp_path / "host"
    exe = host / APP.lstrip("/")
    exe.parent.mkdir(parents=True)
    src = tmp_path / "app.c"
    src.write_text(PROGRAM + MAIN)
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(src)], check=True, capture_output=True, timeout=60)
    names = subprocess.run(["nm", str(exe)], check=True, capture_output=True, text=True).stdout
    assert " split_fn.part.0\n" in names and " split_fn\n" in names, names  # the premise
    binary = host_file(str(host), APP)
    return UprobeTarget(binary, "split_fn", str(host) + APP if binary != str(host) + APP else "")


@pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("nm") is None, reason="needs gcc")
def test_a_binary_path_function_probed_in_part_is_unknown_on_the_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_at_head: Callable[[Path], str]
) -> None:
    """Seen failing before the fix: no fact, and the CLI answered not_observed (exit 1)."""
    from stellaops_runtime.agent.pipeline import Pipeline
    from stellaops_runtime.agent.source_switch import SourceSwitch
    from stellaops_runtime.contracts.config import parse_config
    from stellaops_runtime.native import detect
    from stellaops_runtime.sources.queue import EventQueue

    target = _host_program(tmp_path)
    module = target.module or target.binary
    rep = detect.Report(kernel="6.1", machine="x86_64", posture=Posture.PASSIVE)
    monkeypatch.setattr(detect, "detect", lambda **kw: rep)
    cfg = parse_config({"symbols": {"enabled": False}, "attribution": {"enabled": False}})
    pipeline = Pipeline(cfg, node_name="node-1")

    async def configure() -> None:  # the switch configures its BCC probes (BCC's detection stood in for)
        async def in_thread(fn: Any, *args: Any) -> Any:
            return fn(*args)

        sw = SourceSwitch(cfg, queue=EventQueue(10), pipeline=pipeline, in_pipeline=in_thread)
        assert await sw._make_bcc()
        sw._probe_config = lambda: NativeConfig(uprobes=(target,))  # type: ignore[method-assign]
        await sw._configure()

    asyncio.run(configure())
    rows = pipeline.unprobed.deltas(node_name="node-1", now_ns=T0 + 3 * DAY, window_seconds=60)
    assert [(r.key.image_digest, r.key.module, r.key.function_name, r.key.evidence) for r in rows] == [
        (HOST, module, "split_fn.part.0", EvidenceKind.UNPROBED)
    ]
    bid = rows[0].build_id
    assert len(bid) == 40 and rows[0].purl == "", rows[0]
    # main's calls of split_fn probed and counted, 40 days watched at EbpfDeep; the fact as written
    url = sqlite_at_head(tmp_path / "hot.db")
    start = T0 + 3 * DAY
    call = HotSymbolDelta(
        HotSymbolKey(HOST, module, "user", EvidenceKind.INVOKED), start, 5, start + S, start + S,
        build_id=bid, node_name="node-1",
    )  # fmt: skip
    windows = [
        ObservationWindow(HOST, "node-1", T0 + d * DAY, 9, Posture.EBPF_DEEP, 60, "native") for d in range(40)
    ]
    with open_store(url) as s:
        s.write([call], windows)
        assert not s.write_batch(Batch("node-1/agent", 1, rows)).errors
    code, doc = cli_json(
        "query", "observed", "--image", HOST, "--function", "split_fn", "--store", url, "--json"
    )
    assert (code, doc["answer"]) == (3, "unknown") and "split_fn.part.0" in doc["reason"], doc


@pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("nm") is None, reason="needs gcc")
def test_only_the_node_s_files_give_host_facts(tmp_path: Path) -> None:
    """A PURL target (a container's file) and a file under a container's root are not the host's;
    a file that is gone or not ELF gives nothing."""
    target = _host_program(tmp_path)
    (tmp_path / "not-elf").write_text("#!/bin/sh\n")
    facts = host_tails([target], node_name="n")
    assert list(facts) == [("host:n", target.module or target.binary, "split_fn.part.0")]
    others = [
        UprobeTarget(target.binary, "split_fn", root="/proc/7/root"),  # a PURL target
        UprobeTarget(f"/proc/7/root{target.binary}", "split_fn"),  # under a container's root
        UprobeTarget(str(tmp_path / "gone"), "split_fn"),
        UprobeTarget(str(tmp_path / "not-elf"), "split_fn"),
        UprobeTarget(target.binary, "main"),  # a function with no tail
    ]
    assert host_tails(others, node_name="n") == {}


@pytest.mark.skipif(
    any(shutil.which(t) is None for t in ("gcc", "nm", "objcopy", "strip")), reason="needs gcc and binutils"
)
def test_a_stripped_node_file_s_tails_come_from_its_debug_file(tmp_path: Path) -> None:
    """A node's program shipped stripped, its debug file beside it through ``.gnu_debuglink`` (CRC-32
    checked): the tails are read from the debug file, as the docs say ("its ``.symtab``, else its
    debug file"); ``symbols.debugFiles: false`` reads none, and a debug file changed after the link
    was made (another CRC-32) is not read."""
    target = _host_program(tmp_path)
    exe = Path(target.binary)
    dbg = exe.with_name("stella-app.debug")
    for cmd in (
        ["objcopy", "--only-keep-debug", str(exe), str(dbg)],
        ["strip", "--strip-debug", "--strip-unneeded", str(exe)],
        ["objcopy", f"--add-gnu-debuglink={dbg}", str(exe)],
    ):
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    names = subprocess.run(["nm", str(exe)], capture_output=True, text=True).stdout + " "
    assert "split_fn.part.0" not in names  # the premise: stripped, the tail is only in the debug file
    module = target.module or target.binary
    assert list(host_tails([target], node_name="n")) == [("host:n", module, "split_fn.part.0")]
    # without its debug file the stripped file does not define split_fn for the probe either (the
    # loader's lookup reads the same tables): the function itself is the fact, never probed
    assert list(host_tails([target], node_name="n", debug_files=False)) == [("host:n", module, "split_fn")]
    dbg.write_bytes(dbg.read_bytes() + b"\0")  # its CRC-32 is no longer the link's
    assert list(host_tails([target], node_name="n")) == [("host:n", module, "split_fn")]
