"""The next agent of a node still knows which node file Tetragon's probe was loaded on (same boot).

Defect (s47/EX "left alone" 1, found by REX): a node file replaced under Tetragon made the node
unwatched for the rest of the noticing agent's life only. The next agent (a restart, an upgrade,
an OOM kill) took the new file as its baseline and the node read watched again, while Tetragon's
uprobe stayed on the old inode: "not observed" about calls nobody saw. A file replaced while no
agent ran was never noticed. Now the identity each file had at this boot's first read is kept
beside the spool (agent/node_file_baseline.py) and the next agent's reads compare with it.

Real parts: TetragonFacts on a node root in ``tmp_path``, NodeFileGaps with its file on disk,
the boot id read from a file the test writes (the kernel's is /proc/sys/kernel/random/boot_id).
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from stellaops_runtime import boot_id
from stellaops_runtime.agent.node_file_baseline import baseline_path
from stellaops_runtime.agent.node_file_gaps import NodeFileGaps
from stellaops_runtime.agent.tetragon_facts import TetragonFacts
from tests.integration.test_answer_replaced_in_place import APP
from tests.integration.test_node_file_reread import _watch


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    host = tmp_path / "host"
    exe = host / APP.lstrip("/")
    exe.parent.mkdir(parents=True)
    exe.write_bytes(b"the build Tetragon's policy was loaded with")
    boot = tmp_path / "boot_id"
    boot.write_text("boot-1\n")
    monkeypatch.setattr(boot_id, "BOOT_ID_PATH", str(boot))
    return host, exe


def _agent(tmp_path: Path, host: Path) -> TetragonFacts:
    """An agent's TetragonFacts with its record of replaced files kept beside the spool."""
    watch = _watch(tmp_path, host)
    watch.gaps = NodeFileGaps(baseline_path(str(tmp_path / "spool.jsonl")))
    return watch


def _replace(exe: Path) -> None:
    new = exe.with_name(exe.name + ".dpkg-new")
    new.write_bytes(b"the upgrade's build")
    new.replace(exe)


@pytest.mark.parametrize("when", ["seen by the agent before", "while no agent ran"])
def test_the_next_agent_of_the_boot_keeps_the_node_unwatched(
    tmp_path: Path, node: tuple[Path, Path], when: str
) -> None:
    """Seen failing before the fix (the next agent's gap not open); opens from its start."""
    host, exe = node
    a = _agent(tmp_path, host)
    asyncio.run(a.poll(100.0))  # A's first read: the file Tetragon probes
    if when == "seen by the agent before":
        _replace(exe)
        asyncio.run(a.poll(102.0))
        assert a.gaps.open
    else:
        _replace(exe)  # A gone (stopped, killed) first
    b = _agent(tmp_path, host)
    started = b.gaps.started
    asyncio.run(b.poll(100.0))
    assert b.gaps.open and b.gaps.replaced == 1
    assert b.gaps.take()[0][0] == started  # from B's start (the hole before it is the watch record's gap)


def test_a_reboot_or_the_file_unchanged_leaves_the_next_agent_watching(
    tmp_path: Path, node: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    host, exe = node
    asyncio.run(_agent(tmp_path, host).poll(100.0))
    b = _agent(tmp_path, host)
    asyncio.run(b.poll(100.0))
    assert not b.gaps.open  # nothing replaced
    _replace(exe)
    (tmp_path / "boot_id").write_text("boot-2\n")  # a reboot: Tetragon loaded its policies anew
    c = _agent(tmp_path, host)
    asyncio.run(c.poll(100.0))
    assert not c.gaps.open
    _replace(exe)  # ... and the new boot's baseline is the file then found
    d = _agent(tmp_path, host)
    asyncio.run(d.poll(100.0))
    assert d.gaps.open


BAD_ENTRY = b'{"format": "stellaops-runtime-tetragon-files", "boot_id": "boot-1", "files": {"/a": ["x", 1]}}'


@pytest.mark.parametrize(
    "content", [b"", b"\x00" * 10, b"{", b'{"format": 1}', b"[]", BAD_ENTRY, b"x" * (2 << 20)]
)
def test_a_kept_file_that_cannot_be_read_is_taken_as_empty(
    tmp_path: Path, node: tuple[Path, Path], content: bytes
) -> None:
    host, _ = node
    (tmp_path / "spool.jsonl.tetragon-files").write_bytes(content)
    t0 = time.monotonic()
    b = _agent(tmp_path, host)
    asyncio.run(b.poll(100.0))
    assert not b.gaps.open and time.monotonic() - t0 < 5
    assert b.gaps.baseline.files  # written again, of this boot


def test_a_file_the_config_map_stops_naming_loses_its_entry(tmp_path: Path, node: tuple[Path, Path]) -> None:
    """Its policy unloaded, Tetragon resolves the path anew when it is named again: no gap then."""
    host, exe = node
    a = _agent(tmp_path, host)
    asyncio.run(a.poll(100.0))
    probes = Path(a.path)
    config = probes.read_bytes()
    _write(probes, b'{"apiVersion": "stellaops.io/v1alpha1", "kind": "ProbeConfig", "policies": {}}')
    asyncio.run(a.poll(102.0))
    assert a.gaps.baseline.files == {}
    _replace(exe)
    _write(probes, config)
    b = _agent(tmp_path, host)
    asyncio.run(b.poll(100.0))
    assert not b.gaps.open and list(b.gaps.baseline.files) == [str(exe)]


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    t = time.time_ns() + 10**9
    os.utime(path, ns=(t, t))  # a ConfigMap's new content: another stamp
