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
    monkeypatch.setattr(allocator, "_glibc_version", lambda: "")
    assert allocator.tune_malloc() == {}


def test_glibc_is_told_by_the_c_library_as_platform_tells_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # The agent reads what platform.libc_ver() reads first, without the platform module (issue 13).
    name, version = platform.libc_ver()
    assert allocator._glibc_version() == (f"{name} {version}" if name == "glibc" else "")

    def unknown(name: str) -> str:
        raise ValueError("unrecognized configuration name")  # a C library without the name (musl)

    monkeypatch.setattr(allocator.os, "confstr", unknown)
    assert allocator._glibc_version() == ""
    assert allocator.tune_malloc() == {}
