"""An answer whose output cannot be written never exits 1 ("no") and never prints a traceback.

- Standard output closed (``stella-runtime query observed … >&-``, a daemon without one): the
  answer's exit status, as when the reader closed the pipe early (cli/pipes.py): a script may
  ask for the status alone. Before the fix the first write raised AttributeError (stdout is
  None), reported as an internal error, and the final flush raised it again outside any handler:
  a traceback and exit 1, which reads as "not observed".
- A write that fails (``> /dev/full``: no space left on the device): exit 2 and one line saying
  the answer could not be written. Before the fix: "internal error" and the traceback's frames
  logged on stderr.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from stellaops_runtime.contracts.hotsymbols import EvidenceKind
from stellaops_runtime.store.engine import open_store
from tests.integration.test_vex import IMG, ROOT, delta, watched

QUESTIONS = {
    "observed": (("query", "observed", "--image", IMG, "--function", "crc32"), 0),
    "not observed": (("query", "observed", "--image", IMG, "--function", "adler32"), 1),
    "evidence": (("evidence", "--image", IMG, "--function", "crc32", "--purl", "pkg:deb/debian/zlib1g"), 0),
    "images json": (("query", "images", "--json"), 0),
}


@pytest.fixture
def store_url(tmp_path: Path, sqlite_at_head: Callable[[Path], str]) -> str:
    url = sqlite_at_head(tmp_path / "hot.db")
    with open_store(url) as s:
        s.write([delta("", 0, 1, EvidenceKind.LOADED), delta("crc32", 3, 12)], watched(range(5)))
    return url


def run(url: str, argv: tuple[str, ...], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stellaops_runtime.cli.main", *argv, "--store", url],
        stderr=subprocess.PIPE, text=True, timeout=60, cwd=ROOT, **kw,  # type: ignore[call-overload]
    )  # fmt: skip


@pytest.mark.parametrize("name", sorted(QUESTIONS))
def test_a_closed_stdout_keeps_the_answers_exit_status(store_url: str, name: str) -> None:
    argv, code = QUESTIONS[name]
    r = run(store_url, argv, stdout=None, preexec_fn=lambda: os.close(1))
    assert r.returncode == code and r.stderr == "", (r.returncode, r.stderr)


@pytest.mark.parametrize("name", sorted(QUESTIONS))
def test_a_failed_write_is_exit_2_in_one_line(store_url: str, name: str) -> None:
    argv, _ = QUESTIONS[name]
    with open("/dev/full", "w") as full:
        r = run(store_url, argv, stdout=full)
    assert r.returncode == 2, (r.returncode, r.stderr)
    [line] = r.stderr.strip().splitlines()
    assert "cannot write the answer" in line and "No space left on device" in line, r.stderr


def test_ctrl_c_is_exit_130_as_the_help_says() -> None:
    """``--help`` lists 130 for an interrupted command (it listed 0-3 only); a Ctrl-C while a
    question waits for a PostgreSQL that never answers ends it so, without a traceback."""
    cli = [sys.executable, "-m", "stellaops_runtime.cli.main"]
    helped = subprocess.run([*cli, "--help"], capture_output=True, text=True, timeout=60)
    assert "130 interrupted" in " ".join(helped.stdout.split()), helped.stdout
    with socket.socket() as server:  # accepts connections (the kernel's backlog), answers nothing
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        url = f"postgresql+psycopg://u@127.0.0.1:{server.getsockname()[1]}/db"
        proc = subprocess.Popen(
            [*cli, "query", "images", "--store", url],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while not _connected(proc.pid, server.getsockname()[1]) and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (proc.returncode, out, err)
    assert "Traceback" not in err, err


def _connected(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds a TCP connection to ``port`` (it is past start-up, at the store)."""
    try:
        inodes = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        lines = open("/proc/net/tcp").read().splitlines()[1:]  # noqa: SIM115
    except OSError:
        return False
    remote = f"0100007F:{port:04X}"
    return any(f[2] == remote and f"socket:[{f[9]}]" in inodes for f in (line.split() for line in lines))
