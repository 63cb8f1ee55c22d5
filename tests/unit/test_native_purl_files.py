"""Package files by PURL in a root built here: distroless dpkg status.d, apk, and symbols only in .dynsym."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from stellaops_runtime.attribution.rootfs import RootFS
from stellaops_runtime.native import purl_targets as pt
from stellaops_runtime.native.purl_files import PackageLookupError, package_files

LIB = r"""
__attribute__((visibility("default"), noinline)) int stella_lib_fn(int x) { return x * 5; }
"""


def _root_proc(tmp_path: Path) -> tuple[Path, Path]:
    """A fake /proc holding pid 1's root: the resolver reads <proc>/<pid>/root as a real directory."""
    proc = tmp_path / "proc"
    root = proc / "1" / "root"
    root.mkdir(parents=True)
    return proc, root


def test_distroless_status_d_with_md5sums_and_a_stripped_library(tmp_path: Path) -> None:
    if not shutil.which("gcc") or not shutil.which("strip"):
        pytest.skip("needs gcc and strip")
    proc, root = _root_proc(tmp_path)
    lib = root / "usr/lib/libstella.so.1"
    lib.parent.mkdir(parents=True)
    src = tmp_path / "lib.c"
    src.write_text(LIB)
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-o", str(lib), str(src)], check=True)
    subprocess.run(["strip", "--strip-all", str(lib)], check=True)  # only .dynsym is left
    (root / "etc").mkdir()
    (root / "etc/os-release").write_text("ID=debian\nVERSION_CODENAME=trixie\n")
    sd = root / "var/lib/dpkg/status.d"
    sd.mkdir(parents=True)
    (sd / "libstella1").write_text("Package: libstella1\nVersion: 2.0-1\nArchitecture: amd64\n")
    # hostile neighbours in the same package: an ELF header over garbage, and a truncated copy
    (root / "usr/lib/libbroken.so").write_bytes(b"\x7fELF\x02\x01\x01" + b"\xff" * 57)
    (root / "usr/lib/libcut.so").write_bytes(lib.read_bytes()[:2000])
    (sd / "libstella1.md5sums").write_text(
        "".join(f"0123456789abcdef0123456789abcdef  usr/lib/{n}\n" for n in ("libbroken.so", "libcut.so"))
        + "0123456789abcdef0123456789abcdef  usr/lib/libstella.so.1\n"
    )
    r = pt.resolve_function(1, "pkg:deb/debian/libstella1@2.0-1", "stella_lib_fn", proc_root=str(proc))
    assert r.status == pt.RESOLVED, r
    assert r.packages == ["pkg:deb/debian/libstella1@2.0-1?arch=amd64&distro=debian-trixie"]
    ((path, offset),) = r.locations
    assert path == f"{proc}/1/root/usr/lib/libstella.so.1"
    nm = subprocess.run(["nm", "-D", str(lib)], capture_output=True, text=True, check=True).stdout
    vaddr = int(next(ln.split()[0] for ln in nm.splitlines() if ln.endswith(" stella_lib_fn")), 16)
    assert offset == vaddr  # a small shared library maps its first segment at offset 0, vaddr 0


def test_apk_installed_database(tmp_path: Path) -> None:
    proc, root = _root_proc(tmp_path)
    (root / "lib/apk/db").mkdir(parents=True)
    (root / "lib/apk/db/installed").write_text(
        "P:musl\nV:1.2.4-r2\nA:x86_64\nF:lib\nR:ld-musl-x86_64.so.1\nR:libc.musl-x86_64.so.1\n\n"
        "P:busybox\nV:1.36.1-r15\nA:x86_64\nF:bin\nR:busybox\n\n"
    )
    (root / "etc").mkdir()
    (root / "etc/os-release").write_text("ID=alpine\nVERSION_ID=3.19.1\n")
    pf = package_files(RootFS(str(root)), "pkg:apk/alpine/musl")
    assert pf.purls == ["pkg:apk/alpine/musl@1.2.4-r2?arch=x86_64&distro=alpine-3.19.1"]
    assert pf.files == ["/lib/ld-musl-x86_64.so.1", "/lib/libc.musl-x86_64.so.1"]
    # listed, but the files are not there: the function is reported as not in the package
    r = pt.resolve_function(1, "pkg:apk/alpine/busybox@1.36.1-r15", "main", proc_root=str(proc))
    assert r.status == pt.NOT_IN_PACKAGE and "none of the 0 ELF file(s)" in r.detail
    assert package_files(RootFS(str(root)), "pkg:apk/alpine/musl@9").purls == []


def test_unreadable_database_is_an_error_with_the_path(tmp_path: Path) -> None:
    _, root = _root_proc(tmp_path)
    (root / "var/lib/dpkg").mkdir(parents=True)
    os.mkfifo(root / "var/lib/dpkg/status")  # a FIFO where the database belongs: never hangs
    with pytest.raises(PackageLookupError, match="/var/lib/dpkg/status"):
        package_files(RootFS(str(root)), "pkg:deb/debian/x")
    with pytest.raises(ValueError, match="purl"):
        package_files(RootFS(str(root)), "pkg:")
