"""agent/jemalloc.py: when the agent re-executes itself under jemalloc, and what it preloads.

The decision is pure (``plan``), checked branch by branch; the library's trust check on real
files (owner, mode, links); and, in real child interpreters started the way the re-exec starts
them, that the allocator answers ``mallctl`` and that its purge gives freed pages back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from stellaops_runtime.agent import jemalloc

LIB = jemalloc.find_library()
needs_lib = pytest.mark.skipif(LIB is None, reason="libjemalloc2 not installed (scripts/setup.sh --server)")


def test_plan_preloads_jemalloc_with_pythonmalloc_and_a_loop_guard() -> None:
    p = jemalloc.plan({"PATH": "/bin"}, "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
    assert p.env is not None
    assert p.env["LD_PRELOAD"] == "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
    assert p.env["PYTHONMALLOC"] == "malloc"
    assert p.env["MALLOC_CONF"] == jemalloc.MALLOC_CONF
    assert p.env[jemalloc.MARK_ENV] and p.env["PATH"] == "/bin"
    # the re-executed process sees the guard and carries on: never a second exec
    assert jemalloc.plan(p.env, "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2").env is None


def test_plan_keeps_the_operators_malloc_conf() -> None:
    p = jemalloc.plan({"MALLOC_CONF": "narenas:4"}, "/usr/lib/libjemalloc.so.2")
    assert p.env is not None and p.env["MALLOC_CONF"] == "narenas:4"


@pytest.mark.parametrize(
    ("environ", "library", "reason"),
    [
        ({"STELLA_AGENT_ALLOCATOR": "system"}, "/usr/lib/libjemalloc.so.2", "STELLA_AGENT_ALLOCATOR=system"),
        ({"STELLA_AGENT_ALLOCATOR": "SYSTEM "}, "/usr/lib/libjemalloc.so.2", "STELLA_AGENT_ALLOCATOR=system"),
        ({"STELLA_AGENT_ALLOCATOR": "tcmalloc"}, "/usr/lib/libjemalloc.so.2", "'tcmalloc' is not one of"),
        ({"PYTHONMALLOC": "pymalloc"}, "/usr/lib/libjemalloc.so.2", "set by the operator"),
        ({"LD_PRELOAD": "/usr/lib/libtcmalloc.so.4"}, "/usr/lib/libjemalloc.so.2", "set by the operator"),
        ({}, None, "libjemalloc.so.2 not found"),
        ({"STELLA_AGENT_ALLOCATOR": "jemalloc"}, None, "libjemalloc.so.2 not found"),
    ],
)
def test_plan_carries_on_and_says_why(environ: dict[str, str], library: str | None, reason: str) -> None:
    p = jemalloc.plan(environ, library)
    assert p.env is None
    assert reason in p.reason


def test_only_a_root_owned_file_nobody_else_may_write_is_preloaded(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to make files of other owners")
    lib = tmp_path / jemalloc.SONAME
    lib.write_bytes(b"\x7fELF")
    lib.chmod(0o644)
    assert jemalloc.trusted(str(lib))
    link = tmp_path / "link.so"
    link.symlink_to(lib)
    assert jemalloc.trusted(str(link))  # Debian's soname is a link to the versioned file
    for mode in (0o664, 0o646, 0o666):
        lib.chmod(mode)
        assert not jemalloc.trusted(str(lib)), oct(mode)
    lib.chmod(0o644)
    os.chown(lib, 65534, 0)
    assert not jemalloc.trusted(str(lib))
    assert not jemalloc.trusted(str(tmp_path))  # a directory
    assert not jemalloc.trusted(str(tmp_path / "missing.so"))


def test_candidates_are_system_library_directories_only() -> None:
    got = jemalloc.candidates("aarch64-linux-gnu")
    assert got == [
        "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
        "/usr/lib64/libjemalloc.so.2",
        "/usr/lib/libjemalloc.so.2",
    ]
    assert jemalloc.candidates(None)[0] == "/usr/lib64/libjemalloc.so.2"


def test_reexec_runs_the_same_command_with_this_interpreter() -> None:
    cmd = ["python3", "-X", "dev", "-m", "stellaops_runtime.cli.main", "agent", "--config", "a.yaml"]
    assert jemalloc.reexec_command(cmd, "/opt/venv/bin/python3") == ["/opt/venv/bin/python3", *cmd[1:]]
    assert jemalloc.reexec_command([], "/usr/bin/python3") == ["/usr/bin/python3"]


def test_this_test_process_is_not_under_jemalloc() -> None:
    assert jemalloc.active() is None
    assert jemalloc.purge() is False


_CHILD = textwrap.dedent(
    """
    import gc, json
    from pathlib import Path
    from stellaops_runtime.agent import allocator, jemalloc

    def rss():
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

    blocks = [bytes(16_384 - 40) + i.to_bytes(4, "little") for i in range(5_120)]  # 80 MiB
    live = blocks[1::2]
    del blocks
    gc.collect()
    before = rss()
    released = allocator.release_free_memory()
    print(json.dumps({
        "active": jemalloc.active(), "under": allocator.under_jemalloc(), "released": released,
        "tuned": allocator.tune_malloc(), "before": before, "after": rss(), "live": len(live),
    }))
    """
)


@needs_lib
def test_under_jemalloc_the_release_purges_freed_pages() -> None:
    """As the re-executed agent runs (its preload and PYTHONMALLOC), but with jemalloc's default
    decay, so that freed pages stay until the purge: the purge gives them back."""
    assert LIB is not None
    env = dict(os.environ, LD_PRELOAD=LIB, PYTHONMALLOC="malloc", MALLOC_CONF="narenas:1")
    out = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, check=True)
    got = json.loads(out.stdout)
    assert got["active"] and Path(got["active"]).name.startswith("libjemalloc.so")
    assert got["under"] is True and got["released"] is True
    assert got["tuned"] == {}  # glibc's malloc holds nothing: mallopt is not called
    assert got["after"] < got["before"] - 20, got
    assert got["live"] == 2_560
