"""agent/allocator.py: glibc's mmap threshold and arena count, unless the operator set them."""

from __future__ import annotations

import platform

import pytest

from stellaops_runtime.agent import allocator

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")


@glibc
def test_settings_are_applied(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    assert allocator.tune_malloc() == {"MALLOC_MMAP_THRESHOLD": 128 << 10, "MALLOC_ARENA_MAX": 2}


@glibc
def test_the_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    assert allocator.tune_malloc() == {"MALLOC_MMAP_THRESHOLD": 128 << 10}


def test_nothing_changes_off_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allocator.platform, "libc_ver", lambda: ("", ""))
    assert allocator.tune_malloc() == {}
