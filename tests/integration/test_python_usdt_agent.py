"""Python functions seen through USDT, end to end in the agent: stored under their pip package's PURL.

The in-process Agent runs its source switch with Tetragon unreachable, so its
real BCC probes take over, with ``native.usdt`` naming Python's
``function__entry`` probe. The "container" is a real Debian python3.11 in a
cgroup of its own, registered as a lifecycle ``ContainerRecord`` with an
image digest (as tests/integration/test_agent_purl_functions.py does). The
interpreter is a copy of /usr/bin/python3.11 (same bytes, its own inode), so
the probe traps only in this process and not in every Python on the machine;
the kernel's cgroup filter keeps only its cgroup.

The script imports ``pkg`` from a site-packages made here, with a real
``pkg-1.2.3.dist-info`` (METADATA, RECORD), and calls ``pkg.target()``
exactly N times: the store holds exactly N invocations of ``target`` in
``.../site-packages/pkg/__init__.py`` under the image digest and
``pkg:pypi/pkg@1.2.3``, and no row named ``python:function__entry``.

CPython 3.11 to 3.13 fire ``function__entry`` only while a trace or profile
function is installed (CPython gh-98894): the script profiles its N calls
with cProfile, and first makes calls without it, which the probe never sees
(docs/native-probes.md says so; this test shows it still holds).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from stellaops_runtime.agent import source_switch
from stellaops_runtime.agent.runner import Agent
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.lifecycle.lookup import ContainerLookup
from stellaops_runtime.lifecycle.registry import ContainerRecord
from stellaops_runtime.native.detect import detect
from tests.e2e import harness as h

pytestmark = pytest.mark.bpf

PYTHON = Path("/usr/bin/python3.11")
DIGEST = "sha256:" + "d3" * 32
N = 41
UNPROFILED = 13
CGROUP_FS = next(
    (p for p in (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup")) if (p / "cgroup.procs").exists()),
    Path("/sys/fs/cgroup"),
)
SCRIPT = """\
import cProfile
import sys
import pkg

sys.stdout.write("ready\\n")
sys.stdout.flush()
for line in sys.stdin:
    mode, n = line.split()
    # CPython 3.11-3.13 fire function__entry only while a trace or profile function is set (gh-98894).
    profiler = cProfile.Profile()
    if mode == "profiled":
        profiler.enable()
    for _ in range(int(n)):
        pkg.target()
    profiler.disable()
    sys.stdout.write("done\\n")
    sys.stdout.flush()
"""


def _record_row(root: Path, path: Path) -> str:
    data = path.read_bytes()
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path.relative_to(root)},sha256={digest},{len(data)}"


def site_packages(tmp: Path) -> Path:
    """A pip-installed ``pkg`` 1.2.3: its module and a dist-info whose RECORD lists it."""
    site = tmp / "lib" / "python3.11" / "site-packages"
    (site / "pkg").mkdir(parents=True)
    init = site / "pkg" / "__init__.py"
    init.write_text("def target():\n    return 1\n")
    info = site / "pkg-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pkg\nVersion: 1.2.3\n")
    (info / "INSTALLER").write_text("pip\n")
    rows = [_record_row(site, p) for p in (init, info / "METADATA", info / "INSTALLER")]
    rows.append("pkg-1.2.3.dist-info/RECORD,,")
    (info / "RECORD").write_text("\n".join(rows) + "\n")
    return site


class PythonContainer:
    """The interpreter copy running the script, in a cgroup of its own, as a registry record."""

    def __init__(self, tmp: Path, site: Path) -> None:
        self.python = tmp / "bin" / "python3.11"
        self.python.parent.mkdir()
        shutil.copy2(PYTHON, self.python)
        script = tmp / "app.py"
        script.write_text(SCRIPT)
        self.cg = CGROUP_FS / f"stella-pyusdt-{os.getpid()}"
        self.cg.mkdir()
        self.env = {"PYTHONHOME": "/usr", "PYTHONPATH": str(site), "PYTHONDONTWRITEBYTECODE": "1"}
        self.script = script
        self.proc: subprocess.Popen[str] | None = None
        self.record = ContainerRecord(
            container_id="ctr-py", namespace="k8s.io", image_ref="demo/py:1", image_digest=DIGEST,
            status="running", pid=0, cgroup_path=f"/{self.cg.name}", cgroup_id=self.cg.stat().st_ino,
        )  # fmt: skip

    def start(self) -> None:
        """Started once the probes are attached: the kernel raises the probe's semaphore in new processes."""
        procs = self.cg / "cgroup.procs"
        self.proc = subprocess.Popen(
            [str(self.python), "-S", str(self.script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True, env=self.env, preexec_fn=lambda: procs.write_text(str(os.getpid())),  # in its cgroup
        )  # fmt: skip
        assert self.proc.stdout is not None and self.proc.stdout.readline() == "ready\n"
        self.record.pid = self.proc.pid

    def calls(self, n: int, *, profiled: bool = True) -> None:
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{'profiled' if profiled else 'plain'} {n}\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline() == "done\n"

    def close(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(OSError, ValueError):
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            self.proc.kill()
            self.proc.wait(10)
        with contextlib.suppress(OSError):
            self.cg.rmdir()


@pytest.fixture
def container(tmp_path: Path) -> Iterator[PythonContainer]:
    if not PYTHON.exists():
        pytest.skip("needs Debian's python3.11 (built with USDT probes)")
    if not (CGROUP_FS / "cgroup.procs").exists():
        pytest.skip("needs a cgroup v2 hierarchy at /sys/fs/cgroup or /sys/fs/cgroup/unified")
    c = PythonContainer(tmp_path, site_packages(tmp_path))
    yield c
    c.close()


async def test_python_function_calls_are_stored_exactly_under_their_pip_purl(
    tmp_path: Path, container: PythonContainer
) -> None:
    cache = str(Path(".cache/native").resolve())  # noqa: ASYNC240
    rep = await asyncio.to_thread(detect, mount_tracefs=True, compile_test=True, cache_dir=cache)
    if rep.posture < Posture.FULL_INSTRUMENTATION:
        pytest.skip(f"native probes give {rep.posture} here: {rep.missing}")
    db = tmp_path / "hot.db"
    cfg = parse_config({
        "tetragon": {"address": f"127.0.0.1:{h.free_port()}", "connectionTimeout": 0.3},
        "store": {"url": f"sqlite:///{db}"},
        "metrics": {"address": "127.0.0.1", "port": 0},  # not 8080: another worker's agent may hold it
        "native": {
            "fallbackAfterSeconds": 0.2, "tetragonCheckSeconds": 5, "execEvents": False,
            "usdt": [{"binary": str(container.python), "provider": "python", "name": "function__entry"}],
            "cgroupAllow": [container.record.cgroup_id],
        },
    })  # fmt: skip
    agent = Agent(cfg, node_name="py-node")
    sw = agent.source
    assert isinstance(sw, source_switch.SourceSwitch)
    sw.containers = lambda: [container.record]
    agent.pipeline.container_lookup = ContainerLookup([container.record], "containerd")
    task = asyncio.create_task(agent.run())
    try:

        def attached() -> bool:
            return sw.mode == source_switch.BCC and sw.bcc is not None and sw.bcc.stats.connected

        await h.wait_for(attached, timeout=90, what="the native probes attached")
        await asyncio.to_thread(container.start)
        agent.pipeline.container_lookup = ContainerLookup([container.record], "containerd")  # with its pid
        await asyncio.to_thread(container.calls, UNPROFILED, profiled=False)  # the probe does not fire
        await asyncio.to_thread(container.calls, N)
        stats = agent.pipeline.python_functions.stats
        await h.wait_for(lambda: stats["functions"] >= N, timeout=30, what="the calls through the pipeline")
        await asyncio.sleep(0.5)  # the ring buffer is polled every 100 ms
    finally:
        agent.stop("test done")
        assert await asyncio.wait_for(task, 60) == 0
    with sqlite3.connect(db) as c:
        rows = c.execute(
            "SELECT image_digest, module, invocation_count, purl, evidence_kind FROM hot_symbols "
            "WHERE function_name = 'target'"
        ).fetchall()
        probe_rows = c.execute(
            "SELECT count(*) FROM hot_symbols WHERE function_name LIKE 'python:%'"
        ).fetchone()[0]
    module = str(tmp_path / "lib/python3.11/site-packages/pkg/__init__.py")
    assert sum(r[2] for r in rows) == N
    assert {(r[0], r[1], r[3], r[4]) for r in rows} == {(DIGEST, module, "pkg:pypi/pkg@1.2.3", "invoked")}
    assert probe_rows == 0
    assert agent.pipeline.python_functions.stats["return_not_counted"] == 0  # only entry was probed
