"""An export directory that cannot be locked: the real agent follows its file and says so.

Probe (s36/w2): where ``flock`` on the export file's directory is refused (a file system without
locks: EOPNOTSUPP, ENOLCK), the follower goes on unguarded (sources/export_lock.py), since a
node must not go blind. It said so once in its log, and nothing else: no metric, no /readyz
detail told an operator that a second agent on the node would count every line again unseen.
Now ``stellaops_runtime_export_unguarded`` is 1 and /readyz says ``export_unguarded: true``
while the agent stays ready and counts every line once.

No file system here refuses ``flock`` (no NFS; FUSE has the kernel lock locally), so the
refusal is injected at the boundary: a ``sitecustomize`` module on the agent's PYTHONPATH makes
``fcntl.flock`` on a directory raise EOPNOTSUPP, as such a file system's would; locks of files
(the node lock beside the spool) are untouched. The stream is the synthetic one
(tests/fixtures/tetragon/synthetic, copied from /work/shared/fixtures/tetragon).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e import export_agents as x
from tests.e2e import harness as h

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

REFUSE = """
import errno, fcntl, os, stat

_flock = fcntl.flock


def _refused(fd, op):
    if stat.S_ISDIR(os.fstat(fd).st_mode):  # the export directory's lock: refused as on NFS
        raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))
    return _flock(fd, op)


fcntl.flock = _refused
"""


def _start(cfg: Path, site: Path) -> subprocess.Popen[str]:
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return subprocess.Popen(
        [sys.executable, "-m", "stellaops_runtime.cli.main", "agent", "--config", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=h.ROOT,
        env=dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=path),
    )


async def test_an_export_directory_that_cannot_be_locked_is_followed_and_said(
    tmp_path: Path, pg_url: str
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(REFUSE)
    export = tmp_path / "export" / "tetragon.log"
    export.parent.mkdir()
    export.write_bytes(b"")
    first = x.OBJS[: x.THIRD]
    cfg, port = h.write_config(tmp_path, **x.conf(pg_url, str(tmp_path / "a.spool"), export))
    proc = _start(cfg, site)
    try:
        await h.wait_for(lambda: x.connected(port), what="the agent follows the file", timeout=60)
        await asyncio.to_thread(x.append, export, x.lines(first))
        await h.wait_for(lambda: x.settled(port, len(first)), what="the lines are stored", timeout=60)
        assert h.metric(h.scrape(port), "stellaops_runtime_export_unguarded") == 1
        assert h.metric(h.scrape(port), "stellaops_runtime_node_other_agent") == 0
        code, body = await asyncio.to_thread(x.readyz, port)
        assert code == 200 and body["export_unguarded"] is True, body  # said, and still ready
        assert body["other_agent_on_node"] is False, body
        exit_code, out = await x.stop(proc, signal.SIGTERM)
    finally:
        x.kill_all([proc])
    assert exit_code == 0, out
    assert out.count("a second agent following it would go unnoticed") == 1, out
    assert x.stored(pg_url) == x.truth(first)  # every line once
