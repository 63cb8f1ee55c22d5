"""native/follow.py with a stand-in for BCC: which replaced files are probed, and how.

The real kernel is in tests/integration/test_native_replaced_binary.py; here
the decisions: a FIFO or device put at a target's path is never opened (a
read of a FIFO would wait, a device's open can have effects), a file is
probed through the descriptor held, under the target's own programs, once,
and at most MAX_FOLLOWED new files are kept open per load.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from stellaops_runtime.native import follow
from stellaops_runtime.native.config import UprobeTarget
from stellaops_runtime.native.follow import TargetWatch


class FakeBPF:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, str]] = []  # (kind, path's file content, symbol, program)

    @staticmethod
    def get_user_addresses(path: bytes, sym_re: bytes) -> list[int]:
        with open(path, "rb") as f:
            return [0x1000] if b"has-symbol" in f.read() else []

    def attach_uprobe(self, name: bytes, sym: bytes, fn_name: bytes) -> None:
        self.calls.append(("enter", name.decode(), sym.decode(), fn_name.decode()))

    def attach_uretprobe(self, name: bytes, sym: bytes, fn_name: bytes) -> None:
        self.calls.append(("return", name.decode(), sym.decode(), fn_name.decode()))


def put(path: Path, content: bytes) -> None:
    """A new file renamed over the path, as an upgrade does."""
    tmp = path.with_name(path.name + ".new")
    tmp.write_bytes(content)
    os.rename(tmp, path)


def test_a_replaced_file_is_probed_through_its_descriptor_with_the_targets_programs(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"v1 has-symbol")
    b.write_bytes(b"v1 has-symbol")
    w = TargetWatch.before_attach((UprobeTarget(str(a), "f"), UprobeTarget(str(b), "g")))
    bpf = FakeBPF()
    assert w.follow(bpf).attached == [] and bpf.calls == []  # nothing changed
    put(b, b"v2 has-symbol")
    res = w.follow(bpf)
    assert res.attached == [f"{b}:g"] and res.failed == []
    (fd,) = w.fds
    assert bpf.calls == [
        ("enter", f"/proc/self/fd/{fd}", "g", "stella_up_enter_1"),
        ("return", f"/proc/self/fd/{fd}", "g", "stella_up_return_1"),
    ]
    assert os.readlink(f"/proc/self/fd/{fd}") == str(b)  # the file looked at, held open
    assert w.follow(bpf).attached == []  # once
    w.close()
    assert w.fds == []


def test_a_fifo_or_a_file_without_the_symbol_is_not_probed(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"has-symbol")
    b.write_bytes(b"has-symbol")
    w = TargetWatch.before_attach((UprobeTarget(str(a), "f"), UprobeTarget(str(b), "g")))
    a.unlink()
    os.mkfifo(a)  # never opened: a read would wait for a writer for ever
    put(b, b"renamed")
    bpf = FakeBPF()
    res = w.follow(bpf)
    assert res.attached == [] and bpf.calls == []
    assert res.failed == [(f"{b}:g", f"symbol g not found in the new file at {b}")]
    assert w.follow(bpf).failed == []  # reported once per file
    assert w.fds == []


def test_at_most_max_followed_new_files_per_load(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(follow, "MAX_FOLLOWED", 2)
    a = tmp_path / "a"
    a.write_bytes(b"has-symbol")
    w = TargetWatch.before_attach((UprobeTarget(str(a), "f"),))
    bpf = FakeBPF()
    outcomes = []
    for n in range(3):
        put(a, b"has-symbol %d" % n)
        res = w.follow(bpf)
        outcomes.append((len(res.attached), [why for _, why in res.failed]))
    assert outcomes[:2] == [(1, []), (1, [])]
    assert outcomes[2] == (0, [f"{a} was replaced, more than 2 new files since the load: not probed"])
    assert len(w.fds) == 2
    w.close()


def test_a_file_appearing_where_none_was_is_probed_and_fd_targets_are_not_watched(tmp_path: Path) -> None:
    later = tmp_path / "later"
    held = UprobeTarget("/proc/self/fd/99", "h", module="/in/container")  # native/purl_wiring.py's
    w = TargetWatch.before_attach((UprobeTarget(str(later), "f"), held))
    assert set(w.idents) == {0}
    later.write_bytes(b"has-symbol")
    assert w.follow(FakeBPF()).attached == [f"{later}:f"]
    w.close()
