"""A ``--vulns`` input that never ends, is too large or nested too deep is exit 2 in one line.

Before the fix ``vex --vulns /dev/zero`` read for ever, its memory growing until the kernel
killed it; a file nested a hundred thousand arrays deep was an "internal error"
(RecursionError) with the traceback's frames logged. Now the input is read up to
``MAX_VULNS_BYTES`` (a larger one is refused, naming the limit: a pipe such as ``<(curl …)``
is still read) and a document nested too deep is "not JSON".
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from stellaops_runtime.cli import vex as vex_cli_module
from tests.integration.test_vex import VULNS, store, vex_cli


def test_an_endless_input_is_refused_at_the_limit(tmp_path: Path) -> None:
    url = store(tmp_path, range(3))
    vex_cli(tmp_path, url, VULNS)  # makes the key
    r = vex_cli(tmp_path, url, VULNS, "--vulns", "/dev/zero")  # the later --vulns wins
    assert r.returncode == 2 and "larger than" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_the_limit_is_what_the_message_names(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    with big.open("wb") as f:  # sparse: past the limit without writing it all
        f.truncate(vex_cli_module.MAX_VULNS_BYTES + 1)
    with pytest.raises(
        vex_cli_module.vex_input.VexInputError, match=f"larger than {vex_cli_module.MAX_VULNS_BYTES}"
    ):
        vex_cli_module.read_vulns(str(big))


def test_a_pipe_is_read(tmp_path: Path) -> None:
    """``--vulns <(curl …)``: a FIFO, not a regular file, read to its end."""
    url = store(tmp_path, range(3))
    vex_cli(tmp_path, url, VULNS)
    fifo = tmp_path / "vulns.fifo"
    os.mkfifo(fifo)

    def feed() -> None:
        with fifo.open("w") as f:
            f.write(json.dumps(VULNS))

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    r = vex_cli(tmp_path, url, VULNS, "--vulns", str(fifo))
    writer.join(timeout=60)
    assert r.returncode == 0 and len(json.loads(r.stdout)["statements"]) == 4, r.stderr


def test_an_input_nested_too_deep_is_not_json(tmp_path: Path) -> None:
    url = store(tmp_path, range(3))
    vex_cli(tmp_path, url, VULNS)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    r = vex_cli(tmp_path, url, VULNS, "--vulns", str(deep))
    assert r.returncode == 2 and "not JSON" in r.stderr and "internal error" not in r.stderr, r.stderr
