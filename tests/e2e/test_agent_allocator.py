"""The real agent re-executes itself under jemalloc (agent/jemalloc.py) and counts exactly the same.

Each test starts ``stella-runtime agent`` as a subprocess against the real replay server, reads
the running process's own ``/proc/<pid>/maps`` and ``/proc/<pid>/environ`` (an exec keeps the
pid), stops it with SIGTERM once every event arrived, and compares every stored count with the
stream's ground truth in both tables.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.agent import jemalloc
from stellaops_runtime.replay.server import ReplayServer
from tests.e2e import harness as h
from tests.e2e.test_shutdown_flush import EVENTS, _all_received, assert_exact

LIB_FILE = os.path.realpath(jemalloc.find_library() or "/nonexistent")  # what /proc/<pid>/maps names
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(jemalloc.find_library() is None, reason="libjemalloc2 is not installed"),
]


def _start(config: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "stellaops_runtime.cli.main", "agent", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=h.ROOT,
        env=env,
    )


def _process(pid: int) -> tuple[str, dict[str, str]]:
    """The running process's mapped files and environment (after its exec: the same pid)."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return maps, dict(item.decode().partition("=")[::2] for item in raw if b"=" in item)


async def _run(tmp_path: Path, at_head: Any, **env: str) -> tuple[str, dict[str, str], str]:
    """(the mapped files, the environment of the running agent, its output); counts checked.
    ``at_head``: tests/conftest.py's sqlite_at_head (the allocator is tested, not the migrations)."""
    server = ReplayServer(EVENTS)
    addr = await server.start("127.0.0.1:0")
    db = tmp_path / "hs.db"
    cfg, port = h.write_config(tmp_path, tetragon={"address": addr}, store={"url": at_head(db)})
    clean = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "PYTHONMALLOC", "MALLOC_CONF")}
    proc = _start(cfg, dict(clean, PYTHONUNBUFFERED="1", **env))
    try:
        await h.wait_for(lambda: _all_received(port), what="all events received", timeout=60)
        maps, environ = await asyncio.to_thread(_process, proc.pid)
        proc.send_signal(signal.SIGTERM)
        code, out = await asyncio.to_thread(h.finish, proc, 60)
    finally:
        if proc.poll() is None:
            proc.kill()
        await server.stop()
    assert code == 0, out
    assert "Traceback" not in out
    assert_exact(db)
    return maps, environ, out


async def test_the_agent_runs_under_jemalloc_and_counts_exactly(tmp_path: Path, sqlite_at_head: Any) -> None:
    maps, environ, out = await _run(tmp_path, sqlite_at_head)
    lib = jemalloc.find_library()
    assert lib is not None and LIB_FILE in maps
    assert environ["PYTHONMALLOC"] == "malloc"
    assert environ["LD_PRELOAD"] == lib
    assert environ["MALLOC_CONF"] == jemalloc.MALLOC_CONF
    assert f"memory allocator: jemalloc ({lib})" in out
    assert out.count("memory allocator:") == 1  # one exec, no loop


async def test_system_keeps_the_interpreters_allocator(tmp_path: Path, sqlite_at_head: Any) -> None:
    maps, environ, out = await _run(tmp_path, sqlite_at_head, STELLA_AGENT_ALLOCATOR="system")
    assert jemalloc.SONAME not in maps
    assert "PYTHONMALLOC" not in environ
    assert "memory allocator: the interpreter's (STELLA_AGENT_ALLOCATOR=system)" in out


async def test_an_operators_pythonmalloc_is_kept(tmp_path: Path, sqlite_at_head: Any) -> None:
    maps, environ, out = await _run(tmp_path, sqlite_at_head, PYTHONMALLOC="pymalloc")
    assert jemalloc.SONAME not in maps
    assert environ["PYTHONMALLOC"] == "pymalloc"
    assert "memory allocator: the interpreter's (PYTHONMALLOC or LD_PRELOAD set by the operator" in out


async def test_a_preload_the_loader_dropped_is_reported(tmp_path: Path, sqlite_at_head: Any) -> None:
    """As if re-executed with a library ld.so could not preload (it says so and carries on)."""
    maps, environ, out = await _run(
        tmp_path, sqlite_at_head, STELLA_AGENT_ALLOCATOR_EXEC="/nonexistent/libjemalloc.so.2"
    )
    assert jemalloc.SONAME not in maps
    assert "PYTHONMALLOC" not in environ  # no second exec
    assert "WARNING" in out
    assert "memory allocator: /nonexistent/libjemalloc.so.2 was preloaded but is not loaded" in out
