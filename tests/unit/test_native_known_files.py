"""The probed files kept for the agent's next start (native/known_files.py), and their wiring.

The real kept file round trip is in tests/integration/test_native_known_restart.py
(real BCC); here: a damaged or hostile file is a counter and a warning, never a
crash nor a source that will not start; another boot's file is ignored; two
agents of one node merge their entries; the agent keeps it beside its spool.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from stellaops_runtime.native import known_files
from stellaops_runtime.native.config import NativeConfig
from stellaops_runtime.native.source import NativeProbeSource
from stellaops_runtime.sources.queue import EventQueue

BOOT = known_files.this_boot()
pytestmark = pytest.mark.skipif(not BOOT, reason="no boot id on this kernel")


def _source(path: Path) -> NativeProbeSource:
    return NativeProbeSource(NativeConfig(), queue=EventQueue(10), kernel_source="", known_path=str(path))


def test_what_is_written_is_read_back_and_another_boots_file_is_ignored(tmp_path: Path) -> None:
    p = tmp_path / "spool.native-files"
    kept = {"/usr/bin/app": {(2049, 17): (100, 5), (2049, 18): (101, 6)}, "/usr/bin/b": {}}
    known_files.write(str(p), kept)
    assert known_files.read(str(p)) == {"/usr/bin/app": kept["/usr/bin/app"]}  # an empty path is left out
    assert oct(p.stat().st_mode & 0o777) == "0o600"
    assert _source(p)._known == {"/usr/bin/app": kept["/usr/bin/app"]}
    doc = json.loads(p.read_text())
    doc["boot_id"] = "another-boot"
    p.write_text(json.dumps(doc))
    assert known_files.read(str(p)) == {}  # its processes are gone, its inode numbers reused
    assert known_files.read(str(tmp_path / "none")) == {}


def test_two_agents_of_a_node_merge_their_files(tmp_path: Path) -> None:
    p = str(tmp_path / "k")
    known_files.write(p, {"/a": {(1, 1): (1, 1)}, "/b": {(2, 2): (2, 2)}})
    known_files.write(p, {"/a": {(1, 3): (3, 3)}})
    assert known_files.read(p) == {"/a": {(1, 1): (1, 1), (1, 3): (3, 3)}, "/b": {(2, 2): (2, 2)}}
    many = {"/a": {(1, n): (n, n) for n in range(100, 100 + known_files.MAX_PER_PATH)}}
    known_files.write(p, many)
    assert known_files.read(p)["/a"] == many["/a"]  # the bound per path keeps the newest (ours)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\x00\xff garbage",
        b'{"format": "something-else", "paths": {}}',
        b'{"format": "stellaops-runtime-native-files", "boot_id": "BOOT", "paths": {"/a": [[1, 2, 3]]}}',
        b'{"format": "stellaops-runtime-native-files", "boot_id": "BOOT", "paths": {"/a": [[1, 2, 3, -4]]}}',
        b'{"format": "stellaops-runtime-native-files", "boot_id": "BOOT", "paths": {"/a": [[1, 2, 3, "4"]]}}',
        b'{"format": "stellaops-runtime-native-files", "boot_id": "BOOT", "paths": {"/a": [[1, 2, 3, 1.5]]}}',
        b'{"format": "stellaops-runtime-native-files", "boot_id": "BOOT", "paths": {"/a": 7}}',
        b'{"format": "stellaops-runtime-native-files", "boot_id": "BOOT", "paths": []}',
        b"[" * 100_000,
        b" " * (known_files.MAX_BYTES + 1),
    ],
    ids=["empty", "binary", "format", "short", "negative", "text", "float", "files", "paths", "deep", "huge"],
)
def test_a_damaged_file_is_a_counter_and_a_warning_and_the_source_starts(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    p = tmp_path / "spool.native-files"
    p.write_bytes(content.replace(b"BOOT", BOOT.encode()))
    with caplog.at_level(logging.WARNING, "stellaops_runtime.native.source"):
        src = _source(p)
    assert src._known == {} and src.stats.known_errors == 1
    assert "files of the last agent" in caplog.text and "renamed away before this start" in caplog.text
    src._known["/a"] = {(1, 2): (3, 4)}
    src._save_known()  # replaced whole by a good file
    assert known_files.read(str(p)) == {"/a": {(1, 2): (3, 4)}} and src.stats.known_errors == 1


def test_a_symlink_or_fifo_at_the_path_is_not_followed_nor_waited_on(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("x")
    link = tmp_path / "link"
    link.symlink_to(secret)
    with pytest.raises(known_files.KnownFileError):
        known_files.read(str(link))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(known_files.KnownFileError):
        known_files.read(str(fifo))  # nobody writes: read at once, empty, refused


def test_a_write_that_fails_is_counted_once_per_change_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src = _source(tmp_path / "no-such-dir" / "k")
    src._known["/a"] = {(1, 2): (3, 4)}
    with caplog.at_level(logging.WARNING, "stellaops_runtime.native.source"):
        src._save_known()
        src._save_known()  # unchanged since: not tried again every second
    assert src.stats.known_errors == 1 and "cannot be kept for the next start" in caplog.text


def test_the_agent_keeps_them_beside_its_spool() -> None:
    assert known_files.known_path("/var/lib/stella/spool") == "/var/lib/stella/spool.native-files"
    assert known_files.known_path("") == ""  # no spool path: nothing kept (docs/native-probes.md)
