"""Functions named by PURL, resolved through a running process's root and probed there.

The "container" is a real process chrooted into a root filesystem built here:
a static C program installed by a dpkg database (status + .list, merged /usr
with ``/bin -> usr/bin``), a second program no package owns, and hostile
entries in the file list. Resolution reads it all through /proc/<pid>/root;
the BPF test then counts the calls the chrooted process makes, exactly.
Needs root (chroot); the probe test also needs BPF (marked ``bpf``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from stellaops_runtime.contracts.events import EventKind
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.native import purl_targets as pt
from stellaops_runtime.native.config import NativeConfig
from stellaops_runtime.native.detect import detect
from stellaops_runtime.native.session import run_session

PURL = "pkg:deb/debian/stella-demo@1.2-3?arch=amd64"
PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
__attribute__((noinline)) int stella_pkg_fn(int x) { __asm__ volatile(""); return x * 3; }
__attribute__((noinline)) int stella_pkg_other(int x) { __asm__ volatile(""); return x + 7; }
int main(void) {
    char line[64];
    long s = 0;
    printf("ready\n");
    fflush(stdout);
    while (fgets(line, sizeof line, stdin)) {   /* each line: a number of calls to make */
        int n = atoi(line);
        for (int i = 0; i < n; i++) s += stella_pkg_fn(i);
        printf("done %ld\n", s);
        fflush(stdout);
    }
    return 0;
}
"""
UNOWNED = r"""
__attribute__((noinline)) int stella_unowned_fn(int x) { return x; }
int main(void) { return stella_unowned_fn(0); }
"""
STATUS = """Package: stella-demo
Status: install ok installed
Version: 1.2-3
Architecture: amd64

Package: stella-gone
Status: deinstall ok config-files
Version: 0.1
Architecture: amd64
"""
FILE_LIST = "\n".join(
    [
        "/.",
        "/bin/stella_purl_target",  # as dpkg records it; the file is at /usr/bin (merged /usr)
        "/usr/share/doc/stella-demo",  # a directory
        "/usr/share/stella/readme.txt",  # not ELF
        "/usr/lib/../../../etc/shadow",  # climbs above the root
        "/usr/bin/evil",  # an absolute symlink to /etc/passwd: re-anchored in the root, absent there
        "",
    ]
)


def _gcc(src: str, out: Path) -> None:
    c = out.with_suffix(".c")
    c.write_text(src)
    subprocess.run(["gcc", "-static", "-O1", "-fno-omit-frame-pointer", "-o", str(out), str(c)], check=True)
    c.unlink()


def package_root(root: Path) -> None:
    """A Debian root (merged /usr) where dpkg installed stella-demo: its program, doc directory and
    non-program file, its status and file list, and os-release."""
    (root / "usr/bin").mkdir(parents=True)
    (root / "bin").symlink_to("usr/bin")
    _gcc(PROGRAM, root / "usr/bin/stella_purl_target")
    (root / "usr/share/doc/stella-demo").mkdir(parents=True)
    (root / "usr/share/stella").mkdir(parents=True)
    (root / "usr/share/stella/readme.txt").write_text("not a program\n")
    (root / "etc").mkdir()
    (root / "etc/os-release").write_text('ID=debian\nVERSION_ID="12"\n')
    (root / "var/lib/dpkg/info").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text(STATUS)
    (root / "var/lib/dpkg/info/stella-demo:amd64.list").write_text(FILE_LIST)


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.geteuid() != 0 or not shutil.which("gcc") or not shutil.which("chroot"):
        pytest.skip("needs root, gcc and chroot")
    root = tmp_path_factory.mktemp("purlroot")
    package_root(root)
    _gcc(UNOWNED, root / "usr/bin/stella_unowned")
    (root / "usr/bin/evil").symlink_to("/etc/passwd")
    return root


class Chrooted:
    """A process inside ``root`` that calls stella_pkg_fn N times for each N written to it."""

    def __init__(self, root: Path) -> None:
        self.p = subprocess.Popen(
            ["chroot", str(root), "/usr/bin/stella_purl_target"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.p.stdout is not None and self.p.stdout.readline() == "ready\n"
        self.pid = self.p.pid  # chroot execs the program: same pid, root already changed

    def calls(self, n: int) -> None:
        assert self.p.stdin is not None and self.p.stdout is not None
        self.p.stdin.write(f"{n}\n")
        self.p.stdin.flush()
        assert self.p.stdout.readline().startswith("done")

    def stop(self) -> None:
        if self.p.stdin is not None:
            self.p.stdin.close()
        self.p.wait(timeout=30)


@pytest.fixture
def chrooted(rootfs: Path) -> Iterator[Chrooted]:
    c = Chrooted(rootfs)
    yield c
    c.stop()


def test_purl_resolves_to_the_packages_file_through_the_process_root(
    chrooted: Chrooted, rootfs: Path
) -> None:
    reports, fds = pt.resolve(
        chrooted.pid, PURL, ["stella_pkg_fn", "stella_unowned_fn", "nope"], container="c1"
    )
    try:
        by = {r.symbol: r for r in reports}
        fn = by["stella_pkg_fn"]
        assert fn.status == pt.RESOLVED and fn.container == "c1" and fn.pid == chrooted.pid
        assert fn.packages == ["pkg:deb/debian/stella-demo@1.2-3?arch=amd64&distro=debian-12"]
        host = f"/proc/{chrooted.pid}/root/usr/bin/stella_purl_target"
        assert [f.path for f in fn.files] == ["/usr/bin/stella_purl_target"]
        ((path, offset),) = fn.locations
        assert path == host
        # the offset is the file offset of the symbol's address, as pyelftools computes it independently
        with open(rootfs / "usr/bin/stella_purl_target", "rb") as f:
            elf = ELFFile(f)
            (sym,) = elf.get_section_by_name(".symtab").get_symbol_by_name("stella_pkg_fn")
            vaddr = sym["st_value"]
            seg = next(
                s
                for s in elf.iter_segments("PT_LOAD")
                if s["p_vaddr"] <= vaddr < s["p_vaddr"] + s["p_filesz"]
            )
            assert offset == vaddr - seg["p_vaddr"] + seg["p_offset"]
        # the file the unowned function is in belongs to no package: not looked at
        assert by["stella_unowned_fn"].status == pt.NOT_IN_PACKAGE
        assert "none of the 1 ELF file(s)" in by["stella_unowned_fn"].detail
        assert "(1 listed path(s) unreadable)" in by["nope"].detail  # the ../../ entry
        assert len(fds) == 1
    finally:
        for fd in fds.values():
            os.close(fd)


@pytest.mark.parametrize(
    ("purl", "status", "detail"),
    [
        ("pkg:deb/debian/stella-demo@9.9", pt.NOT_FOUND, "no installed package matches"),
        ("pkg:deb/ubuntu/stella-demo", pt.NOT_FOUND, "no installed package matches"),
        ("pkg:deb/debian/stella-demo?arch=arm64", pt.NOT_FOUND, "no installed package matches"),
        ("pkg:deb/debian/stella-gone", pt.NOT_FOUND, "no installed package matches"),  # config-files only
        ("pkg:rpm/fedora/stella-demo", pt.UNSUPPORTED, "package type 'rpm' is not resolved"),
        ("not a purl", pt.UNSUPPORTED, "purl"),
        ("pkg:deb/debian/stella-demo", pt.RESOLVED, ""),  # no version: any installed version
    ],
)
def test_what_a_purl_does_not_name_is_reported(
    chrooted: Chrooted, purl: str, status: str, detail: str
) -> None:
    r = pt.resolve_function(chrooted.pid, purl, "stella_pkg_fn")
    assert (r.status, r.symbol) == (status, "stella_pkg_fn")
    assert detail in r.detail


def test_gone_process_and_corrupt_database(rootfs: Path, tmp_path: Path) -> None:
    r = pt.resolve_function(2**22 + 12345, PURL, "stella_pkg_fn")  # no such pid
    assert r.status == pt.ERROR and "cannot read the package database through /proc/" in r.detail
    bad = tmp_path / "proc" / "1" / "root"
    shutil.copytree(rootfs, bad, symlinks=True)
    (bad / "var/lib/dpkg/status").write_bytes(b"\x00\xff garbage without stanzas\n\n:::\n")
    r = pt.resolve_function(1, PURL, "stella_pkg_fn", proc_root=str(tmp_path / "proc"))
    assert r.status == pt.NOT_FOUND, r
    (bad / "var/lib/dpkg/status").unlink()
    (bad / "var/lib/dpkg/status").mkdir()  # a directory where the database belongs
    r = pt.resolve_function(1, PURL, "stella_pkg_fn", proc_root=str(tmp_path / "proc"))
    assert r.status == pt.ERROR and "/var/lib/dpkg/status" in r.detail


@pytest.mark.bpf
def test_uprobe_by_purl_counts_exactly_n_calls_per_container_without_doubling(rootfs: Path) -> None:
    report = detect(mount_tracefs=True, compile_test=True, cache_dir=str(Path(".cache/native").resolve()))
    if report.posture < Posture.EBPF_DEEP:
        pytest.skip(f"native probes give {report.posture} here: {report.missing}")
    a, b = Chrooted(rootfs), Chrooted(rootfs)
    plan = pt.PurlProbePlan()
    try:
        plan.add("ctr-a", a.pid, PURL, ["stella_pkg_fn", "missing_fn"])
        plan.add("ctr-b", b.pid, PURL, ["stella_pkg_fn"])
        targets = plan.targets()
        assert len(targets) == 1  # both containers see the same file: one probe, or every call counts twice
        cfg = NativeConfig(exec_events=False, uprobes=targets)

        def work() -> None:
            a.calls(37)
            b.calls(5)

        res = asyncio.run(run_session(cfg, seconds=1.0, report=report, during=work))
        assert not res.error, res.error
        plan.mark(res.attached, res.failed)
        status = {(r.container, r.symbol): r.status for r in plan.reports}
        assert status == {
            ("ctr-a", "stella_pkg_fn"): pt.ATTACHED,
            ("ctr-a", "missing_fn"): pt.NOT_IN_PACKAGE,
            ("ctr-b", "stella_pkg_fn"): pt.ATTACHED,
        }
        calls = [e for e in res.events if e.kind is EventKind.UPROBE and e.function_name == "stella_pkg_fn"]
        assert sum(e.process.pid == a.pid for e in calls) == 37
        assert sum(e.process.pid == b.pid for e in calls) == 5
        assert {e.module for e in calls} == {"/usr/bin/stella_purl_target"}  # the path inside the container
        assert res.kernel_counters["uprobe"]["emitted"] == 42
    finally:
        plan.close()
        a.stop()
        b.stop()


def test_plan_reports_a_probe_that_failed_to_attach(chrooted: Chrooted) -> None:
    plan = pt.PurlProbePlan()
    try:
        plan.add("c", chrooted.pid, PURL, ["stella_pkg_fn"])
        (t,) = plan.targets()
        assert t.binary.startswith("/proc/self/fd/") and t.module == "/usr/bin/stella_purl_target"
        plan.mark([], [(t.label(), "attach failed: permission denied")])
        (r,) = plan.reports
        assert (r.status, r.detail) == (pt.ATTACH_FAILED, "attach failed: permission denied")
        assert r.to_dict()["files"] == [{"path": "/usr/bin/stella_purl_target", "offset": r.files[0].offset}]
    finally:
        plan.close()
