"""The ``cgroupAllow`` lookup reads the cgroup v2 tree only (RSW4, s43).

The probes match a call's cgroup id as ``bpf_get_current_cgroup_id`` gives it:
the id of its cgroup in the v2 (unified) hierarchy. native/cgroup_ids.py found
an allowed cgroup by a directory's inode number anywhere under
``/sys/fs/cgroup``, but each cgroup hierarchy numbers its directories on its
own from 1: on a node with cgroup v1 controllers mounted (systemd's hybrid
layout, ``/sys/fs/cgroup/unified`` beside ``memory``, ``pids``...; or v1 alone)
a v1 directory of another container carries the same small number as an
allowed v2 cgroup. The walk took it (and stopped once every id was found), so
the overlap filter skipped Tetragon's cached calls of a container the probes
never counted (their only count: lost), and counted the allowed container's
twice. Only the v2 tree (the directory holding ``cgroup.controllers``) is read now.
"""

from __future__ import annotations

from pathlib import Path

from stellaops_runtime.native.cgroup_ids import look_up

CID, OTHER = "ab" * 32, "cd" * 32


def _hybrid(root: Path) -> tuple[int, int]:
    """systemd's hybrid layout: the unified hierarchy at ``unified``, a v1 ``memory`` beside it;
    (the allowed container's v2 cgroup, another container's v1 memory cgroup)."""
    (root / "unified").mkdir(parents=True)
    (root / "unified" / "cgroup.controllers").write_text("")  # a cgroup2 directory holds it
    v2 = root / "unified" / "kubepods.slice" / f"cri-containerd-{CID}.scope"
    v1 = root / "memory" / "kubepods.slice" / f"cri-containerd-{OTHER}.scope"
    v2.mkdir(parents=True)
    v1.mkdir(parents=True)
    (v1 / "cgroup.procs").write_text("")  # a v1 cgroup's files: no cgroup.controllers
    return v2.stat().st_ino, v1.stat().st_ino


def test_a_v1_directory_is_not_taken_for_an_allowed_cgroup(tmp_path: Path) -> None:
    """The allowed ids are the v2 cgroup of CID and a number that a v1 directory of OTHER carries
    too (a tmpfs cannot give two directories one inode: the v1 directory's number stands for the
    allowed id it coincides with). Seen failing before the fix: OTHER was named, so its cached
    calls, which the probes never counted, were skipped."""
    v2, v1 = _hybrid(tmp_path)
    ids, unseen = look_up([v2, v1], (str(tmp_path),))
    assert OTHER not in ids.values(), "another container's v1 cgroup named: its calls skipped, lost"
    assert ids == {v2: CID}
    assert unseen == frozenset()  # the v2 tree was read whole: the other id counted nothing there


def test_a_node_with_cgroup_v1_alone_is_undecided(tmp_path: Path) -> None:
    """No v2 tree at all (cgroup v1 only): no allowed cgroup can be found, whatever the v1
    directories' numbers; the load is undecided (its span a gap, never counted twice or lost).
    Seen failing before the fix: the v1 directory's container was named."""
    v1 = tmp_path / "memory" / "kubepods" / OTHER
    v1.mkdir(parents=True)
    ino = v1.stat().st_ino
    assert look_up([ino], (str(tmp_path),)) == ({}, frozenset({ino}))
