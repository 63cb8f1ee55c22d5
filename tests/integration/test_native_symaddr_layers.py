"""A debug file the container wrote places no uprobe; the image's own debug file still does.

A real overlay mount stands for a container's root: the lower directory is
the image (the stripped program, and in one case its honest debug file, as a
``-dbgsym`` package installed in the image puts it), the upper one the
container's writable layer. The function-start check (native/symstart.py)
cannot tell one function's start from another's, so a debug file written in
the container naming ``stella_add`` at ``stella_caller``'s start used to move
the probe (shared with every container of the image) onto the wrong function,
which made ``stella_add`` "not observed" (seen failing before: the address of
``stella_caller``). native/symlayer.py now tells the container's writes (its
upper layer, a volume mounted into it) from the image's layers, through the
mount table of the container's process (``/proc/<pid>/root``: a process
chrooted into the merged directory here).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stellaops_runtime.native import symdebug, symlayer
from stellaops_runtime.native.symaddr import SymbolNotFound, find_address
from tests.integration.test_native_symaddr_forged import _bid_path, _nm, _place, _with_value
from tests.native import debuglink as dl

SYMBOL = "stella_add"
APP = "opt/app/prog"
WAIT = 60.0


@pytest.fixture(scope="module")
def split() -> dl.Split:
    if dl.tools_missing() or shutil.which("nm") is None:
        pytest.skip(f"{dl.tools_missing() or 'nm'} is not installed")
    return dl.build_split("symdbg")


@pytest.fixture
def layers(tmp_path: Path, split: dl.Split) -> Iterator[tuple[Path, Path, Path]]:
    """(lower, upper, merged) of an overlay mount; the lower one holds the stripped program."""
    lower, upper, work, merged = (tmp_path / d for d in ("lower", "upper", "work", "merged"))
    for d in (lower, upper, work, merged):
        d.mkdir()
    _place(lower / APP, split.stripped)
    mounted: list[Path] = []
    opts = f"lowerdir={lower},upperdir={upper},workdir={work}"
    done = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"overlayfs cannot be mounted here: {done.stderr.decode(errors='replace').strip()}")
    mounted.append(merged)
    try:
        yield lower, upper, merged
    finally:
        for m in reversed(mounted):
            subprocess.run(["umount", "-l", str(m)], check=False)


@pytest.fixture
def container(layers: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``/proc/<pid>/root`` of a process chrooted into the merged directory. The layers' paths in its
    mount table are this process's: the node's root is ``/`` here."""
    monkeypatch.setattr(
        symdebug, "container_wrote", functools.partial(symlayer.container_wrote, node_root="/")
    )
    merged = layers[2]
    code = "import os, sys; os.chroot(sys.argv[1]); os.chdir('/'); print('in', flush=True); sys.stdin.read()"
    p = subprocess.Popen(
        [sys.executable, "-c", code, str(merged)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert p.stdout is not None and p.stdout.readline() == b"in\n"
        root = f"/proc/{p.pid}/root"
        deadline = time.monotonic() + WAIT
        while os.stat(root).st_ino != os.stat(merged).st_ino:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        yield root
    finally:
        assert p.stdin is not None
        p.stdin.close()
        p.wait(WAIT)


def _lookup(root: str, app: Path) -> int:
    fd = os.open(app, os.O_RDONLY)
    try:
        return find_address(f"/proc/self/fd/{fd}", SYMBOL, where=(root, "/" + APP), debug_roots=())
    finally:
        os.close(fd)


def test_the_image_s_debug_file_is_read_and_one_the_container_wrote_is_refused(
    split: dl.Split, layers: tuple[Path, Path, Path], container: str
) -> None:
    lower, upper, merged = layers
    right, other = _nm(split.full, SYMBOL), _nm(split.full, "stella_caller")
    _place(_bid_path(lower, split), split.debug)  # a -dbgsym package installed in the image
    assert symlayer.container_wrote(container, str(_bid_path(Path("/"), split)), node_root="/") == ""
    assert _lookup(container, merged / APP) == right
    # the container writes over it (through the merged view: a copy-up into its upper layer)
    _place(_bid_path(merged, split), _with_value(split.debug, SYMBOL, other))
    assert _bid_path(upper, split).exists()
    with pytest.raises(SymbolNotFound) as e:
        _lookup(container, merged / APP)
    assert "written in the container (its overlay's upper layer)" in e.value.hint, e.value.hint
    # deleted: a whiteout in the upper layer hides the image's file too; no debug file is read
    _bid_path(merged, split).unlink()
    assert not _bid_path(merged, split).exists()
    with pytest.raises(SymbolNotFound):
        _lookup(container, merged / APP)


def test_a_debug_file_on_a_volume_in_the_container_is_refused(
    split: dl.Split, layers: tuple[Path, Path, Path], container: str, tmp_path: Path
) -> None:
    _lower, _upper, merged = layers
    vol = merged / "usr/lib/debug"
    vol.mkdir(parents=True)
    if subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(vol)], capture_output=True).returncode != 0:
        pytest.skip("tmpfs cannot be mounted here")
    try:
        _place(_bid_path(merged, split), split.debug)  # even the honest file: a volume is not the image
        with pytest.raises(SymbolNotFound) as e:
            _lookup(container, merged / APP)
        assert "on a tmpfs mount at /usr/lib/debug in the container, not in its image" in e.value.hint
    finally:
        subprocess.run(["umount", "-l", str(vol)], check=False)


def test_the_path_is_judged_where_the_container_s_symlinks_lead(
    split: dl.Split, layers: tuple[Path, Path, Path], container: str
) -> None:
    """The image's ``/usr/lib/debug`` is a symlink to ``/opt/dbg`` holding its debug file: read; the
    container's file written there (its upper layer, at the symlink's target) is refused."""
    lower, _upper, merged = layers
    right, other = _nm(split.full, SYMBOL), _nm(split.full, "stella_caller")
    (lower / "usr/lib").mkdir(parents=True)
    (lower / "usr/lib/debug").symlink_to("/opt/dbg")
    at = _bid_path(Path("/"), split).relative_to("/usr/lib/debug")
    _place(lower / "opt/dbg" / at, split.debug)
    assert _lookup(container, merged / APP) == right
    _place(merged / "opt/dbg" / at, _with_value(split.debug, SYMBOL, other))
    with pytest.raises(SymbolNotFound) as e:
        _lookup(container, merged / APP)
    assert "written in the container" in e.value.hint, e.value.hint
