"""The OOM watch against the real kernel: a kill is kept after the cgroup is gone.

Docker and the CRI runtimes delete a container's cgroup before they announce
its exit, so the kernel's OOM-kill count must be read while the cgroup lives
(lifecycle/oom_watch.py). Here a real memory cgroup (v1, and v2 where the
memory controller is there) with a 16 MiB limit holds a process
that waits, then allocates until the kernel's OOM killer kills it. The watch
must take the kill from the kernel's notification (no read at the exit can,
the cgroup being removed first), and a plain SIGKILL must read as no kill.
Each cgroup version runs where it is there and skips with the reason where
it is not (a hybrid host has no v2 memory controller; a pure v2 host no v1).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import uuid
from pathlib import Path

import pytest

from stellaops_runtime.lifecycle.cgroups import CgroupResolver, directory_of
from stellaops_runtime.lifecycle.oom_watch import OomWatch
from tests.containerd_harness import static_program

LIMIT = str(16 << 20)


def _v2_root() -> tuple[Path | None, str]:
    """The cgroup v2 hierarchy's root directory with the memory controller, or why there is none."""
    resolver = CgroupResolver()
    v2_root = directory_of("/", resolver.mounts())
    if not v2_root:
        kind = subprocess.run(["stat", "-fc", "%T", "/sys/fs/cgroup"], capture_output=True, text=True).stdout
        return None, f"no cgroup v2 hierarchy is mounted (/sys/fs/cgroup is {kind.strip() or '?'})"
    try:
        controllers = Path(v2_root, "cgroup.subtree_control").read_text(errors="replace").split()
    except OSError as e:
        return None, f"the cgroup v2 root {v2_root} cannot be read: {e}"
    if "memory" not in controllers:
        return None, (
            f"the cgroup v2 hierarchy at {v2_root} has no memory controller enabled for its children "
            "(on a hybrid host it is bound to the v1 hierarchy)"
        )
    return Path(v2_root), ""


def _memory_cgroup(name: str, version: str) -> Path:
    """A new memory cgroup directory of cgroup ``version``, limited to 16 MiB without swap."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create a memory cgroup")
    if version == "v2":
        root, why = _v2_root()
        if root is None:
            pytest.skip(f"cgroup v2's memory.events path cannot be tested here: {why}")
        d = root / name
        d.mkdir()
        (d / "memory.max").write_text(LIMIT)
        if (d / "memory.swap.max").exists():
            (d / "memory.swap.max").write_text("0")
        return d
    v1 = Path("/sys/fs/cgroup/memory")
    if not (v1 / "memory.oom_control").exists():
        pytest.skip("cgroup v1's memory.oom_control path cannot be tested here: no v1 memory hierarchy")
    d = v1 / name
    d.mkdir()
    (d / "memory.limit_in_bytes").write_text(LIMIT)
    if (d / "memory.memsw.limit_in_bytes").exists():
        (d / "memory.memsw.limit_in_bytes").write_text(LIMIT)
    return d


def _spawn(cgroup: Path) -> subprocess.Popen[bytes]:
    """A process in ``cgroup`` that reads one line, then allocates until killed ("eat")."""
    prog = static_program()

    def join() -> None:
        (cgroup / "cgroup.procs").write_text(str(os.getpid()))

    script = f"read line; exec {prog} eat"
    return subprocess.Popen(["/bin/sh", "-c", script], stdin=subprocess.PIPE, preexec_fn=join)


async def _until(cond: object, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20.0
    while not cond():  # type: ignore[operator]
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("death", ["oom", "sigkill"])
def test_a_kill_counted_while_the_cgroup_lived_outlasts_it(death: str, version: str) -> None:
    """v2: the kernel's POLLPRI on memory.events; v1: the eventfd on memory.oom_control."""
    cid = uuid.uuid4().hex
    cgroup = _memory_cgroup(f"stella-oomwatch-{cid}", version)
    v1 = version == "v1"
    key = ("", cid)
    watch = OomWatch()
    proc = _spawn(cgroup)
    try:

        async def main() -> int | None:
            found = watch.counter_file(proc.pid, None if v1 else str(cgroup), cid)
            assert found is not None and found[1] is v1, found
            watch.watch(key, 1, *found)
            assert watch.seen(key) == 0 and len(watch) == 1
            if death == "oom":
                assert proc.stdin is not None
                proc.stdin.write(b"go\n")
                proc.stdin.close()
                # The kernel's notification, not a read at the exit: the cgroup goes first.
                await _until(lambda: watch.seen(key) == 1, "the OOM kill counted from the notification")
            else:
                proc.send_signal(signal.SIGKILL)
            assert await asyncio.to_thread(proc.wait, 20) == -signal.SIGKILL
            await _until(lambda: not (cgroup / "cgroup.procs").read_text().strip(), "an empty cgroup")
            cgroup.rmdir()  # as runc does before Docker or the CRI says the container exited
            return watch.final(key)

        kills = asyncio.run(main())
        assert kills == (1 if death == "oom" else 0)
        assert watch.final(key) == kills and len(watch) == 0  # a second exit event: the same answer
        if death == "oom":
            assert watch.notifications >= 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        watch.close()
        if cgroup.exists():
            cgroup.rmdir()


def test_v1_a_parent_cgroups_oom_is_not_a_siblings_kill() -> None:
    """cgroup v1 notifies every cgroup below the one out of memory: in a pod whose cgroup holds the
    limit and whose containers have none of their own, the OOM killer's victim is in one container;
    its sibling, notified too and still running, was not OOM-killed (its own count stays 0)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create a memory cgroup")
    v1root = Path("/sys/fs/cgroup/memory")
    if not (v1root / "memory.oom_control").exists():
        pytest.skip("cgroup v1's memory.oom_control path cannot be tested here: no v1 memory hierarchy")
    pod = v1root / f"stella-oompod-{uuid.uuid4().hex[:12]}"
    pod.mkdir()
    (pod / "memory.limit_in_bytes").write_text(LIMIT)
    if (pod / "memory.memsw.limit_in_bytes").exists():
        (pod / "memory.memsw.limit_in_bytes").write_text(LIMIT)
    ids = {name: uuid.uuid4().hex for name in ("eater", "sibling")}
    dirs = {name: pod / cid for name, cid in ids.items()}
    for d in dirs.values():
        d.mkdir()  # no limit of their own: the pod's limit holds
    watch = OomWatch()
    procs = {name: _spawn(d) for name, d in dirs.items()}
    try:

        async def main() -> dict[str, int | None]:
            for name, p in procs.items():
                found = watch.counter_file(p.pid, None, ids[name])
                assert found is not None and found[1] is True, found
                watch.watch(("", ids[name]), 1, *found)
            eater = procs["eater"]
            assert eater.stdin is not None
            eater.stdin.write(b"go\n")
            eater.stdin.close()
            await _until(lambda: watch.seen(("", ids["eater"])) == 1, "the eater's OOM kill counted")
            assert await asyncio.to_thread(eater.wait, 20) == -signal.SIGKILL
            assert procs["sibling"].poll() is None  # the victim was the eater, the sibling runs on
            await _until(lambda: watch.notifications >= 2, "both cgroups notified")
            # Alive after the rereads with no kill of its own: ruled out, not merely unknown.
            await _until(lambda: not watch.unsure(("", ids["sibling"])), "the sibling's OOM ruled out")
            procs["sibling"].send_signal(signal.SIGKILL)  # then stopped, as a pod's other container
            assert await asyncio.to_thread(procs["sibling"].wait, 20) == -signal.SIGKILL
            out: dict[str, int | None] = {}
            for name, d in dirs.items():
                await _until(lambda d=d: not (d / "cgroup.procs").read_text().strip(), "an empty cgroup")
                d.rmdir()
                out[name] = watch.final(("", ids[name]))
            return out

        kills = asyncio.run(main())
        assert kills == {"eater": 1, "sibling": 0}
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        watch.close()
        for d in [*dirs.values(), pod]:
            if d.exists():
                d.rmdir()
