"""The header tree BCC compiles against when the kernel's headers are missing (native/headershim.py)."""

from __future__ import annotations

import os
from pathlib import Path

from stellaops_runtime.native import headershim


def test_version_code_of_release_strings() -> None:
    assert headershim.version_code("6.18.44-fc-v1045") == (6 << 16) + (18 << 8) + 44
    assert headershim.version_code("5.10.300") == (5 << 16) + (10 << 8) + 255  # the kernel's clamp
    assert headershim.version_code("6.1") == (6 << 16) + (1 << 8)
    assert headershim.version_code("garbage") == 0


def test_tree_is_written_once_and_rewritten_when_damaged(tmp_path: Path) -> None:
    root = headershim.ensure(tmp_path, "6.18.44-fc-v1045")
    version = root / "include/linux/version.h"
    assert f"LINUX_VERSION_CODE {headershim.version_code('6.18.44-fc-v1045')}" in version.read_text()
    assert (
        root / "arch/x86/include/asm/page.h"
    ).read_text() == f"#define PAGE_SIZE {os.sysconf('SC_PAGE_SIZE')}UL\n"
    before = version.stat().st_mtime_ns
    assert headershim.ensure(tmp_path, "6.18.44-fc-v1045") == root
    assert version.stat().st_mtime_ns == before  # unchanged files are not rewritten
    version.write_text("damaged")
    headershim.ensure(tmp_path, "6.18.44-fc-v1045")
    assert "LINUX_VERSION_CODE" in version.read_text()
    assert not list(root.rglob("*.tmp*"))


def test_hostile_release_string_stays_inside_the_cache(tmp_path: Path) -> None:
    root = headershim.ensure(tmp_path / "c", "../../etc/6.1")
    assert root.parent == tmp_path / "c"
    assert "/" not in root.name
