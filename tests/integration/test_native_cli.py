"""``stella-runtime probes`` as a user runs it: a subprocess, its exit code, its output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.native.detect import detect

CACHE = str(Path(".cache/native").resolve())


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stellaops_runtime.cli.main", "probes", *args],
        capture_output=True, text=True, timeout=120, check=False,
        env=dict(os.environ, STELLA_CACHE_DIR=CACHE, **(env or {})),
    )  # fmt: skip


def test_detect_json_agrees_with_the_library_and_sets_the_exit_code() -> None:
    r = cli("detect", "--json")
    rep = orjson.loads(r.stdout)
    expected = detect(mount_tracefs=True, compile_test=True, cache_dir=CACHE)
    assert rep["posture"] == str(expected.posture)
    assert {c["name"]: c["ok"] for c in rep["checks"]} == {c.name: c.ok for c in expected.checks}
    assert r.returncode == (0 if expected.posture > Posture.NONE else 2)
    if not expected.ok("kernel headers"):  # our header tree, written under $STELLA_CACHE_DIR
        assert rep["kernelSource"].startswith(CACHE + "/kernel-shim-")


def test_detect_text_without_bcc_says_why_and_exits_2() -> None:
    r = cli("detect", env={"STELLA_BCC_PYTHON_DIR": "/nonexistent/stella"})
    assert r.returncode == 2
    assert "posture: None" in r.stdout
    assert "[--] bcc: BCC's Python binding (bcc/__init__.py) is not in /nonexistent/stella" in r.stdout


def test_run_refuses_without_bcc_with_the_reason() -> None:
    r = cli("run", "--seconds", "1", env={"STELLA_BCC_PYTHON_DIR": "/nonexistent/stella"})
    assert r.returncode == 2
    assert "error: native probes cannot run here: Passive needs bcc:" in r.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--syscall", "opnat"], "error: native.syscalls: unknown on x86_64: opnat"),
        (["--uprobe", "no-colon"], "error: --uprobe 'no-colon': expected BINARY:SYMBOL"),
        (["--usdt", "/bin/x:only"], "error: --usdt '/bin/x:only': expected BINARY:PROVIDER:NAME"),
        (["--sample", "0"], "error: native.syscall_sample_every"),
        (["--seconds", "-1"], "error: --seconds must be in (0, 86400]"),
    ],
)
def test_run_bad_options_exit_2(args: list[str], message: str) -> None:
    argv = ["run", *args] if "--seconds" in args else ["run", "--seconds", "1", *args]
    r = cli(*argv)
    assert r.returncode == 2
    assert message in r.stderr


@pytest.mark.bpf
def test_run_json_reports_a_missing_binary_and_keeps_the_rest() -> None:
    if detect(mount_tracefs=True, cache_dir=CACHE).posture < Posture.EBPF_DEEP:
        pytest.skip("native probes cannot attach uprobes here (stella-runtime probes detect says why)")
    r = cli(
        "run", "--seconds", "1", "--json", "--uprobe", "/nonexistent/stella:f", "--syscall", "getpgid",
        "--usdt", "/nonexistent/stella:python:function__entry",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    summary = orjson.loads(lines[-1])["summary"]
    assert summary["failed"] == [
        {"probe": "/nonexistent/stella:f", "reason": "binary /nonexistent/stella not found"},
        {
            "probe": "/nonexistent/stella:python:function__entry",
            "reason": "binary /nonexistent/stella not found",
        },
    ]
    assert summary["attached"] == ["sched:sched_process_exec", "raw_syscalls:sys_enter (getpgid)"]
    assert summary["events"] == len(lines) - 1
    k = summary["kernel"]["exec"]
    assert k["seen"] == k["emitted"] + k["lost"]
