"""``symbols.debugFiles: false`` turns off separate debug files for the native probes too.

The key tells the agent not to read separate debug files (canonical/debugfiles.py);
the canonicalizer honoured it, the native probes did not: a uprobe's symbol
missing from a stripped binary was still looked up in its debug file
(native/symdebug.py: a file under a container's root among them) and probed
there. Now the switch hands the setting to the native source, the load's
lookups and the looks at replaced files pass it to native/symaddr.py, and no
debug file is opened: the target is listed in ``failed`` saying why.

Built here: a program split the way distributions ship it (stripped binary,
its debug file in the container's ``/usr/lib/debug``). Stand-ins for BCC.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.native import detect, follow_attach, loader, symaddr
from stellaops_runtime.native.config import NativeConfig, UprobeTarget
from stellaops_runtime.native.symaddr import SymbolNotFound, find_address
from stellaops_runtime.sources.queue import EventQueue
from tests.native import debuglink as dl
from tests.unit.test_native_lookup_off_thread import _BCC, _FakeBPF

OFF = "separate debug files are not read (symbols.debugFiles is false)"


@pytest.fixture
def container(tmp_path: Path) -> tuple[Path, Path]:
    """(the container's root, its stripped program): the program's debug file is in the root's
    /usr/lib/debug, where its .gnu_debuglink leads."""
    if dl.tools_missing():
        pytest.skip(f"{dl.tools_missing()} is not installed")
    split = dl.build_split("symdbg")
    root = tmp_path / "container"
    app = root / "opt/app/prog"
    for dst, src in ((app, split.stripped), (root / "usr/lib/debug/opt/app" / split.debug.name, split.debug)):
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    return root, app


def test_no_debug_file_is_read_for_an_address(container: tuple[Path, Path], monkeypatch: Any) -> None:
    root, app = container
    where = (str(root), "/opt/app/prog")
    assert find_address(str(app), "stella_add", where=where) > 0  # found in the debug file
    searched: list[Any] = []
    real = symaddr.debug_address

    def recorded(*a: Any) -> Any:
        searched.append(a)
        return real(*a)

    monkeypatch.setattr(symaddr, "debug_address", recorded)
    with pytest.raises(SymbolNotFound) as e:
        find_address(str(app), "stella_add", where=where, debug_files=False)
    assert OFF in str(e.value)
    assert not searched  # no debug file looked for
    assert find_address(str(app), "stella_add", where=where) > 0 and searched  # by default, looked for


def test_the_load_and_a_replaced_file_honour_it(container: tuple[Path, Path], monkeypatch: Any) -> None:
    root, app = container
    monkeypatch.setattr(loader, "load_bcc", lambda: (_BCC, ""))
    monkeypatch.setattr(loader, "LOAD_SCAN_SECONDS", 0.0)
    _FakeBPF.order = []
    target = UprobeTarget(str(app), "stella_add", module="/opt/app/prog", root=str(root))
    cfg = NativeConfig(exec_events=False, uprobes=(target,))
    ps = loader.load(cfg, kernel_source="", ring_buffer=True, debug_files=False)
    try:
        assert [why for _, why in ps.failed] == [f"symbol stella_add not found in {app}; {OFF}"]
        assert ps.watch is not None and ps.watch.debug_files is False  # the looks at replaced files too
    finally:
        ps.close()
    fd = os.open(app, os.O_RDONLY)
    try:
        why = follow_attach.uprobe(_FakeBPF(b""), 0, target, fd, "the new file", debug_files=False)
    finally:
        os.close(fd)
    assert why == f"symbol stella_add not found in the new file; {OFF}"
    ps = loader.load(cfg, kernel_source="", ring_buffer=True)  # the default reads it
    try:
        assert not ps.failed and _FakeBPF.order[-1].startswith("uprobe 0x")
    finally:
        ps.close()


def test_the_switch_hands_the_agents_setting_to_the_native_source(monkeypatch: Any) -> None:
    from stellaops_runtime.agent.pipeline import Pipeline
    from stellaops_runtime.agent.source_switch import SourceSwitch

    rep = detect.Report(kernel="6.1", machine="x86_64", posture=Posture.PASSIVE)
    monkeypatch.setattr(detect, "detect", lambda **kw: rep)
    for value in (False, True):
        cfg = parse_config(
            {"symbols": {"enabled": False, "debugFiles": value}, "attribution": {"enabled": False}}
        )

        async def make(cfg: Any = cfg) -> Any:
            async def in_thread(fn: Any, *args: Any) -> Any:
                return fn(*args)

            sw = SourceSwitch(
                cfg, queue=EventQueue(10), pipeline=Pipeline(cfg, node_name="n"), in_pipeline=in_thread
            )
            assert await sw._make_bcc()
            return sw.bcc

        bcc = asyncio.run(make())
        assert bcc is not None and bcc.debug_files is value
