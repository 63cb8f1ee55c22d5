"""A probed node file whose modification time alone moved (``touch``) is no replacement.

Defect (s48 NF brief 3): the agent took any change of a probed node file's (device, inode, size,
modification time) for a replacement (agent/node_file_gaps.py ``replaced``), so ``touch libssl.so``
made the node unwatched (a node-wide gap) while Tetragon's uprobe still sat where it did, on the same
bytes. Now a change of the modification time alone with the same content digest
(agent/node_file_digest.py, kept with the baseline: agent/node_file_baseline.py) is a touch; a
rewrite in place with other bytes, even of the same size, still opens the gap, and so does a change
the digest cannot vouch for.

Real parts: TetragonFacts looking at a node root in ``tmp_path``, NodeFileGaps with its baseline file
beside the spool, the boot id read from a file the test writes.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from stellaops_runtime.agent import node_file_digest
from stellaops_runtime.agent.policy_reloads import PolicyReloads
from tests.integration.test_node_file_baseline import _agent, node  # noqa: F401 (node: the fixture)

S = 1_000_000_000
UP = ("shop", "stellaops-web-uprobes")


def _touch(exe: Path) -> None:
    st = exe.stat()
    os.utime(exe, ns=(st.st_atime_ns, st.st_mtime_ns + 5 * S))


def _rewrite_same_size(exe: Path) -> None:
    """``cp`` of another build of the same size over the file: same inode and size, other bytes."""
    data = exe.read_bytes()
    with open(exe, "r+b") as f:
        f.write(bytes(b ^ 0x55 for b in data))
    _touch(exe)  # a modification time of its own, whatever the file system's granularity


def test_a_touch_is_no_replacement_and_a_same_size_rewrite_is_one(
    tmp_path: Path,
    node: tuple[Path, Path],  # noqa: F811 (the fixture imported above)
) -> None:
    """Seen failing before the change: the touch opened the gap (``replaced`` 1)."""
    host, exe = node
    a = _agent(tmp_path, host)
    asyncio.run(a.poll(100.0))  # the read: identity and digest kept
    assert list(a.gaps.baseline.digests) == [str(exe)]
    _touch(exe)
    asyncio.run(a.poll(102.0))  # the look sees the modification time moved
    asyncio.run(a.poll(104.0))
    assert not a.gaps.open and a.gaps.replaced == 0
    assert a.gaps.baseline.files[str(exe)][3] == exe.stat().st_mtime_ns  # kept as touched
    b = _agent(tmp_path, host)  # the next agent of the boot: no gap either
    asyncio.run(b.poll(100.0))
    assert not b.gaps.open
    _touch(exe)  # touched while no agent ran
    c = _agent(tmp_path, host)
    asyncio.run(c.poll(100.0))
    assert not c.gaps.open and c.gaps.replaced == 0
    _rewrite_same_size(exe)
    asyncio.run(c.poll(102.0))
    assert c.gaps.open and c.gaps.replaced == 1


def test_a_file_rewritten_while_no_agent_ran_is_still_replaced(
    tmp_path: Path,
    node: tuple[Path, Path],  # noqa: F811 (the fixture imported above)
) -> None:
    host, exe = node
    asyncio.run(_agent(tmp_path, host).poll(100.0))
    _rewrite_same_size(exe)
    b = _agent(tmp_path, host)
    asyncio.run(b.poll(100.0))
    assert b.gaps.open and b.gaps.replaced == 1


def test_without_a_digest_a_touch_is_still_a_replacement(
    tmp_path: Path,
    node: tuple[Path, Path],  # noqa: F811 (the fixture imported above)
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A file over the bound gets no digest (nor does a baseline written by an agent before this
    change): nothing vouches for its bytes, so the touch opens the gap (the safe side)."""
    host, exe = node
    monkeypatch.setattr(node_file_digest, "MAX_BYTES", 4)
    a = _agent(tmp_path, host)
    asyncio.run(a.poll(100.0))
    assert a.gaps.baseline.digests == {}
    kept = json.loads(Path(a.gaps.baseline.path).read_text())
    assert "digests" not in kept  # the file an older agent reads, unchanged
    _touch(exe)
    asyncio.run(a.poll(102.0))
    assert a.gaps.open and a.gaps.replaced == 1


def test_a_digest_is_none_for_a_file_that_is_not_the_identity_asked() -> None:
    assert node_file_digest.digest("/nonexistent/file", (1, 2, 3, 4)) is None
    assert node_file_digest.touch_only((1, 2, 3, 4), (1, 2, 3, 5))
    assert not node_file_digest.touch_only((1, 2, 3, 4), (1, 2, 4, 5))
    assert not node_file_digest.touch_only((1, 2, 3, 4), (1, 3, 3, 5))


def _listed(r: PolicyReloads, generation: int, state: str = "ENABLED") -> None:
    """A poll of ListTracingPolicies asking now, listing our one uprobes object under ``generation``."""
    entry = {"name": UP[1], "state": state, "objectUid": "u", "objectGeneration": generation}
    r.listed({UP: entry}, asked_ns=time.monotonic_ns(), now_ns=time.time_ns())


@pytest.mark.parametrize("then", ["touch", "rewrite"])
def test_a_touch_of_a_file_waiting_for_its_reload_keeps_when_it_was_seen_replaced(
    tmp_path: Path,
    node: tuple[Path, Path],  # noqa: F811 (the fixture imported above)
    then: str,
) -> None:
    """Defect (s48 RNF, left alone 3): a file replaced, then Tetragon loading its policy anew, then a
    ``touch`` of the new file before the poll that saw the load tracing: the touch counted as a new
    replacement, seen after the load, so the load no longer ended the gap (open until the next
    reload). Seen failing before the change (the gap stayed open, ``replaced`` 2). Now a touch of a
    file waiting for its reload (same bytes as the identity seen replaced) keeps that moment and
    moves the identity the baseline takes at the reload; a rewrite with other bytes still counts."""
    host, exe = node
    a = _agent(tmp_path, host)
    r = a.gaps.reloads = PolicyReloads()
    _listed(r, 1)
    asyncio.run(a.poll(100.0))
    new = exe.with_name(exe.name + ".dpkg-new")
    new.write_bytes(b"the upgrade's build of another size")
    new.replace(exe)
    asyncio.run(a.poll(102.0))
    assert a.gaps.open and a.gaps.replaced == 1
    _listed(r, 1)  # a poll after the replacement was seen
    _listed(r, 2, "LOADING")  # Tetragon loads the policy anew: on the new file
    (_touch if then == "touch" else _rewrite_same_size)(exe)
    asyncio.run(a.poll(104.0))
    asyncio.run(a.poll(106.0))
    _listed(r, 2)
    asyncio.run(a.poll(108.0))
    if then == "rewrite":  # other bytes since the load: the probe may sit at an old offset
        assert a.gaps.open and a.gaps.replaced == 2
        return
    assert not a.gaps.open and a.gaps.replaced == 1 and a.gaps.ended == 1
    st = exe.stat()
    assert a.gaps.baseline.files[str(exe)] == (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    b = _agent(tmp_path, host)  # the next agent of the boot: the touched file is the baseline
    asyncio.run(b.poll(100.0))
    assert not b.gaps.open and b.gaps.replaced == 0


def test_a_replaced_file_whose_digest_failed_is_not_read_again_until_it_changes(
    tmp_path: Path,
    node: tuple[Path, Path],  # noqa: F811 (the fixture imported above)
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Defect (s48 RNF2, left alone 3): a replaced file waiting for its reload whose digest failed (its
    change time moved while it was read: a ``chmod`` meanwhile) was read in full again at every poll
    (up to MAX_BYTES, 128 MiB, a second). Seen failing before the change (read again at each of the
    three polls). Now the identity whose digest failed is not read again until it changes."""
    host, exe = node
    a = _agent(tmp_path, host)
    a.gaps.reloads = PolicyReloads()
    asyncio.run(a.poll(100.0))
    new = exe.with_name(exe.name + ".dpkg-new")
    new.write_bytes(b"the upgrade's build, its mode changed while it is read")
    new.replace(exe)
    ino = exe.stat().st_ino
    reads: list[int] = []
    real_read = os.read

    def read(fd: int, n: int) -> bytes:
        if os.fstat(fd).st_ino == ino:  # the new file: a chmod while it is read moves its change time
            reads.append(n)
            os.chmod(exe, 0o640 if len(reads) % 2 else 0o644)
        return real_read(fd, n)

    monkeypatch.setattr(node_file_digest.os, "read", read)
    asyncio.run(a.poll(102.0))
    assert a.gaps.open and a.gaps.replaced == 1 and reads  # its digest was tried, and failed
    tried = len(reads)
    for now in (104.0, 106.0, 108.0):
        asyncio.run(a.poll(now))
    assert len(reads) == tried
    assert a.gaps.open and a.gaps.replaced == 1
    _rewrite_same_size(exe)  # another identity: its digest is tried again
    asyncio.run(a.poll(110.0))
    assert len(reads) > tried and a.gaps.replaced == 2


def test_the_bytes_digested_at_one_poll_are_bounded(tmp_path: Path) -> None:
    """Several replaced files waiting for their reload: one call digests at most ``budget`` bytes; the
    files left over are not tried (their turn comes at a later poll)."""
    from stellaops_runtime.agent.node_file_gaps import digests

    files = []
    for name, size in (("a", 40), ("b", 30), ("c", 20)):
        f = tmp_path / name
        f.write_bytes(b"x" * size)
        st = f.stat()
        files.append((str(f), (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)))
    got = digests(files, budget=50)
    assert list(got) == [files[0][0]] and got[files[0][0]][1] is not None
    assert digests(files, budget=10) == {}
    got = digests(files[1:], budget=50)
    assert sorted(got) == [files[1][0], files[2][0]]
    gone = ("/nonexistent/file", (1, 2, 3, 4))
    assert digests([gone], budget=50) == {gone[0]: (gone[1], None)}  # tried: failed
