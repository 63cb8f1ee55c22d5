"""``agent --config`` naming what is no usable config file is exit 2 naming it, never a hang.

docs/configuration.md, first paragraph: "`FILE` must be a regular file [...]
of at most 4 MiB of UTF-8: a FIFO, a device or a directory, a larger file or
one that is not UTF-8 is an error naming the file (exit 2), never a start-up
that waits for ever". README: exit 2 is "bad config".

Before the fix, through the real CLI: ``--config`` naming a FIFO (a config
piped by a wrapper that died, a mistyped path) or ``/dev/zero`` left the
agent waiting (or reading) for ever at start-up, and a file that was not
UTF-8 ended it with an internal error.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e import harness as h


def _config(tmp: Path, kind: str) -> tuple[Path, str]:
    path = tmp / f"agent-{kind}.yaml"
    if kind == "fifo":
        os.mkfifo(path)
        return path, "cannot read config file {}: not a regular file (a FIFO)"
    if kind == "device":
        return Path("/dev/zero"), "cannot read config file {}: not a regular file (a character device)"
    if kind == "directory":
        return tmp, "cannot read config file {}: not a regular file (a directory)"
    if kind == "huge":
        path.write_text("nodeName: n\n" + "#" * (4 * 1024 * 1024) + "\n")
        return path, "config file {} is larger than 4194304 bytes"
    path.write_bytes(b"nodeName: caf\xe9\n")  # Latin-1, as an editor may save it
    return path, "config file {} is not UTF-8 text (byte 13)"


@pytest.mark.parametrize("kind", ["fifo", "device", "directory", "huge", "latin1"])
def test_an_unusable_config_file_is_exit_2_naming_it(tmp_path: Path, kind: str) -> None:
    config, says = _config(tmp_path, kind)
    try:
        r = subprocess.run(
            [sys.executable, "-m", "stellaops_runtime.cli.main", "agent", "--config", str(config),
             "--exit-when-idle", "1"],
            capture_output=True, text=True, timeout=60, cwd=h.ROOT,
        )  # fmt: skip
    except subprocess.TimeoutExpired as e:  # the FIFO: waiting for a writer that never comes
        raise AssertionError(f"the agent did not exit in 60 s: {e.stderr!r}") from None
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert f"stella-runtime agent: {says.format(config)}" in r.stderr.splitlines(), r.stderr
    assert "Traceback" not in r.stderr and "memory allocator" not in r.stderr  # refused before starting
