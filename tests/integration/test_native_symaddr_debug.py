"""native/symaddr.py finds a uprobe's function in the probed file's separate debug file, checked.

Distributions strip their binaries and ship the symbols apart. The lookup
used to read only a debug file at the GNU build-id path, without checking
that file's build-id (another build's debug file there gave another build's
address: a probe on the wrong instruction), and never a ``.gnu_debuglink``:
a function only there failed. It now uses the canonicalizer's search
(canonical/debugfiles.py): the build-id path and the ``.gnu_debuglink`` name,
under the file's own root and the given roots, with its build-id and CRC-32
checks. Programs are built here with the GNU recipe (gcc -g, objcopy
--only-keep-debug, strip --strip-all, objcopy --add-gnu-debuglink; cached by
tests/native/debuglink.py); addresses are compared with ``nm`` of the
unstripped program, and with what BCC by name finds where BCC is installed;
and the real probes count a stripped program's calls through its debug file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.native import symdebug
from stellaops_runtime.native.bccimport import load_bcc
from stellaops_runtime.native.config import NativeConfig, UprobeTarget
from stellaops_runtime.native.detect import Report
from stellaops_runtime.native.symaddr import SymbolNotFound, find_address, where_of
from tests.integration.test_native_probes import need, program, report, run, uprobe_events  # noqa: F401
from tests.native import debuglink as dl

SYMBOL = "stella_add"  # not exported: in the stripped program, only its debug file names it


@pytest.fixture(scope="module")
def builds() -> tuple[dl.Split, dl.Split]:
    if dl.tools_missing() or shutil.which("nm") is None:
        pytest.skip(f"{dl.tools_missing() or 'nm'} is not installed")
    return dl.build_split("symdbg"), dl.build_split("symdbg_o0", flags=("-O0", "-g"))


def _nm(path: Path, symbol: str) -> int:
    out = subprocess.run(["nm", str(path)], capture_output=True, text=True, check=True).stdout
    rows = (line.split() for line in out.splitlines())
    return next(int(row[0], 16) for row in rows if len(row) == 3 and row[2] == symbol)


def _bid_path(root: Path, split: dl.Split) -> Path:
    bid = dl.readelf_build_id(split.stripped)
    return root / "usr/lib/debug/.build-id" / bid[:2] / f"{bid[2:]}.debug"


def _place(dst: Path, src: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def test_a_function_only_in_the_debuglink_file_is_found_at_the_unstripped_address(
    builds: tuple[dl.Split, dl.Split], tmp_path: Path
) -> None:
    split, _ = builds
    want = _nm(split.full, SYMBOL)
    app = _place(tmp_path / "app" / "prog", split.stripped)
    with pytest.raises(SymbolNotFound):  # no debug file anywhere yet
        find_address(str(app), SYMBOL, debug_roots=())
    # next to it, then in .debug/ next to it (the link records only the file name)
    for there in (app.parent / split.debug.name, app.parent / ".debug" / split.debug.name):
        _place(there, split.debug)
        assert find_address(str(app), SYMBOL, debug_roots=()) == want
        there.unlink()
    bcc, _ = load_bcc()
    if bcc is not None:  # BCC by name follows the link too: the same place
        _place(app.parent / split.debug.name, split.debug)
        by_name = bcc.BPF._check_path_symbol(str(app).encode(), SYMBOL.encode(), None, -1)[1]
        assert bcc.BPF._check_path_symbol(str(app).encode(), b"", want, -1)[1] == by_name


def test_a_container_root_s_debug_file_is_read_inside_that_root(
    builds: tuple[dl.Split, dl.Split], tmp_path: Path
) -> None:
    """A file held by descriptor (as every attach is) is named by (root, path): its debuglink is looked
    for inside that root (``/usr/lib/debug/<dir>/`` there), its build-id there and under the roots
    given; without a name only the build-id is followed, and the reason says where to put it."""
    split, _ = builds
    root = tmp_path / "root"
    app = _place(root / "opt/app/prog", split.stripped)
    _place(root / "usr/lib/debug/opt/app" / split.debug.name, split.debug)
    fd = os.open(app, os.O_RDONLY)
    try:
        held = f"/proc/self/fd/{fd}"
        assert find_address(held, SYMBOL, where=(str(root), "/opt/app/prog"), debug_roots=()) == _nm(
            split.full, SYMBOL
        )
        with pytest.raises(SymbolNotFound) as e:  # the descriptor alone: no directory to look in
            find_address(held, SYMBOL, debug_roots=())
        bid = dl.readelf_build_id(split.stripped)
        assert (
            f"install it for the agent as /usr/lib/debug/.build-id/{bid[:2]}/{bid[2:]}.debug" in e.value.hint
        )
        host = tmp_path / "host"
        _place(_bid_path(host, split), split.debug)  # the node's build-id path: found by build-id
        assert find_address(held, SYMBOL, debug_roots=(str(host),)) == _nm(split.full, SYMBOL)
    finally:
        os.close(fd)


def test_a_debug_file_of_another_build_or_crc_is_never_read(
    builds: tuple[dl.Split, dl.Split], tmp_path: Path
) -> None:
    """A debug file at the build-id path was read whatever build it was of: another build's address
    (a probe on the wrong instruction). Its build-id must be the file's, a debuglink's CRC-32 the
    link's; a refused one is said in the reason, and the right one is then found."""
    split, other = builds
    assert _nm(other.full, SYMBOL) != _nm(split.full, SYMBOL)  # another build: another address
    host = tmp_path / "host"
    app = _place(tmp_path / "app" / "prog", split.stripped)
    planted = _place(_bid_path(host, split), other.debug)
    with pytest.raises(SymbolNotFound) as e:
        find_address(str(app), SYMBOL, debug_roots=(str(host),))
    assert "a debug file of it was refused (build_id_mismatch)" in e.value.hint, e.value.hint
    # the right build's debug file with a byte more: its build-id matches, its CRC-32 does not
    linked = _place(app.parent / split.debug.name, split.debug)
    with linked.open("ab") as f:
        f.write(b"\0")
    with pytest.raises(SymbolNotFound) as e:
        find_address(str(app), SYMBOL, debug_roots=(str(host),))
    assert "refused (build_id_mismatch, crc_mismatch)" in e.value.hint, e.value.hint
    _place(planted, split.debug)
    assert find_address(str(app), SYMBOL, debug_roots=(str(host),)) == _nm(split.full, SYMBOL)


def test_a_debug_file_replaced_after_its_check_is_not_read(
    builds: tuple[dl.Split, dl.Split], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checked, then opened again to be read: another file at its path by then (renamed over it) is
    not read, and the reason says so."""
    split, other = builds
    app = _place(tmp_path / "app" / "prog", split.stripped)
    there = _place(app.parent / split.debug.name, split.debug)
    opened = symdebug.open_regular

    def swapped(path: str) -> tuple[int, os.stat_result]:
        _place(there.with_suffix(".new"), other.debug).rename(there)
        return opened(path)

    monkeypatch.setattr(symdebug, "open_regular", swapped)
    with pytest.raises(SymbolNotFound) as e:
        find_address(str(app), SYMBOL, debug_roots=())
    assert f"its debug file {there} (debuglink) changed since it was checked" in e.value.hint, e.value.hint


def test_gnu_debugdata_is_said_not_read(builds: tuple[dl.Split, dl.Split], tmp_path: Path) -> None:
    split, _ = builds
    blob = tmp_path / "mini.xz"
    blob.write_bytes(b"\xfd7zXZ\0" + bytes(64))  # what the section holds is never opened
    app = tmp_path / "prog"
    subprocess.run(
        ["objcopy", f"--add-section=.gnu_debugdata={blob}", str(split.stripped), str(app)], check=True
    )
    with pytest.raises(SymbolNotFound) as e:
        find_address(str(app), SYMBOL, debug_roots=())
    assert e.value.hint.endswith("; the debug information its .gnu_debugdata holds is not read"), e.value.hint


def test_where_a_target_s_debug_files_are_looked_for() -> None:
    assert symdebug.DEBUG_ROOTS == ("/", "/proc/1/root")  # the agent's own, then the node's (hostPID)
    assert where_of("/proc/1/root/usr/lib/libx.so") == ("/proc/1/root", "/usr/lib/libx.so")
    assert where_of("/proc/42/root/app/bin") == ("/proc/42/root", "/app/bin")
    assert where_of("/usr/bin/app") == ("/", "/usr/bin/app")
    assert where_of("/proc/self/fd/7") is None  # a descriptor alone: build-id only
    assert where_of("/proc/self/fd/7", "/proc/42/root", "/app/bin") == ("/proc/42/root", "/app/bin")


def test_libc6_dbg_gives_glibc_s_static_functions() -> None:
    """Debian's libc6-dbg: a static function of the stripped libc, at the address nm reads in the
    debug file (where libc6-dbg is installed; CI installs it)."""
    libc = Path("/lib/x86_64-linux-gnu/libc.so.6")
    bid = dl.readelf_build_id(libc) if libc.exists() and not dl.tools_missing() else ""
    debug = Path(f"/usr/lib/debug/.build-id/{bid[:2]}/{bid[2:]}.debug")
    if not bid or not debug.exists() or shutil.which("nm") is None:
        pytest.skip("libc6-dbg (or nm, readelf) is not installed")
    for name in ("_int_malloc", "_IO_new_file_overflow"):
        assert find_address(str(libc), name) == _nm(debug, name)


@pytest.mark.bpf
def test_the_real_probes_count_every_call_of_a_function_only_its_debuglink_file_names(
    report: Report,  # noqa: F811 (the fixtures imported above)
    program: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The stripped program and its debug file side by side, as a -dbgsym package puts them: the
    probe attaches at the address found there and counts each call once (it failed "not found")."""
    need(report, Posture.EBPF_DEEP)
    if dl.tools_missing():
        pytest.skip(f"{dl.tools_missing()} is not installed")
    _, stripped = dl.split_binary(program, tmp_path / "split")
    n = 37
    cfg = NativeConfig(
        exec_events=False, user_stacks=False, uprobes=(UprobeTarget(str(stripped), "stella_target"),)
    )
    res, pid = run(cfg, report, [str(stripped), "calls", str(n)])
    assert res.attached == [f"uprobe {stripped}:stella_target"], res.failed
    assert len(uprobe_events(res, pid, "stella_target")) == n
    assert res.kernel_counters["uprobe"]["seen"] == n
