"""A module path holding a NUL byte is refused as unreadable, never read as its prefix (s40 H1).

A frame's module comes from an event (Tetragon's JSON export or gRPC, a replayed file, the
``symbolize`` CLI's inputs): a string, which may hold a NUL although no file name can. The
kernel's ``openat2`` is called through ctypes, which passes the text up to its first NUL, so
``/app/lib.so\\0junk`` opened ``/app/lib.so`` and named the frame from a file the event did not
name; the user-space walk (kernels before 5.6, ``FORCE_USERSPACE``) and a host path
(``root='/'``) raised ``ValueError`` out of ``Symbolizer.resolve_file``, which promises never to
raise (in the agent the frame was dropped with a traceback and counted under no reason).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from stellaops_runtime.canonical import rootopen
from stellaops_runtime.canonical.symbolizer import Symbolizer
from tests.integration import test_hostile_elf_builder as eb


@pytest.mark.parametrize("userspace", [False, True], ids=["openat2", "walk"])
def test_a_path_with_a_nul_byte_is_unreadable_not_its_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, userspace: bool
) -> None:
    monkeypatch.setattr(rootopen, "FORCE_USERSPACE", userspace)
    root = tmp_path / "root"
    (root / "app").mkdir(parents=True)
    offset = eb.write(root / "app/lib.so", eb.Elf(functions=["prefix_function"]))["prefix_function"]
    sym = Symbolizer()
    assert sym.resolve_file("/app/lib.so", offset, root=str(root)).symbol == "prefix_function"
    for path, under in (
        ("/app/lib.so\0junk", str(root)),
        (f"{root}/app/lib.so\0junk", "/"),
        ("\0", str(root)),
    ):
        r = sym.resolve_file(path, offset, root=under)
        assert (r.error, r.symbol, r.build_id) == ("unreadable_file", "", ""), (path, r)
        assert "NUL" in r.detail
    with pytest.raises(OSError) as caught:
        rootopen.open_in_root(str(root), "/app/lib.so\0")
    assert caught.value.errno == errno.EINVAL
    with pytest.raises(OSError):
        rootopen.stat_in_root(str(root), "/app\0")
    with pytest.raises(OSError):
        rootopen.open_dir_in_root(str(root), "/app\0")


@pytest.mark.parametrize("userspace", [False, True], ids=["openat2", "walk"])
def test_a_path_with_a_lone_surrogate_is_unreadable_not_an_exception(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, userspace: bool
) -> None:
    """A lone surrogate (JSON's ``"\\ud800"`` escape read by ``json.loads``) encodes to no file name:
    ``os.fsencode`` raised ``UnicodeEncodeError`` out of ``resolve_file`` as the NUL did (review
    RH1). A name ``os.fsdecode`` made of undecodable bytes (``\\udcff``) is still a file name."""
    monkeypatch.setattr(rootopen, "FORCE_USERSPACE", userspace)
    root = tmp_path / "root"
    (root / "app").mkdir(parents=True)
    offset = eb.write(root / "app/lib.so", eb.Elf(functions=["f"]))["f"]
    odd = os.fsdecode(b"/app/lib\xff.so")  # '\udcff': bytes that are no UTF-8, a real name
    (root / odd.lstrip("/")).write_bytes((root / "app/lib.so").read_bytes())
    sym = Symbolizer()
    assert sym.resolve_file(odd, offset, root=str(root)).symbol == "f"
    for path, under in (
        ("/app/lib.so\ud800", str(root)),
        (f"{root}/app/lib.so\udfff", "/"),
        ("/app/lib.so", f"{root}\ud800"),
    ):
        r = sym.resolve_file(path, offset, root=under)
        assert (r.error, r.symbol, r.build_id) == ("unreadable_file", "", ""), (path, r)
        assert "surrogate" in r.detail
    with pytest.raises(OSError) as caught:
        rootopen.open_regular("/proc/self/\ud800")
    assert caught.value.errno == errno.EINVAL
