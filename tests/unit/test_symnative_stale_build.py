"""A compiled index older than its C source is not used (canonical/symnative.py).

In a checkout installed in place the shared object stays beside canonical/_symindex.c; pulled or
edited without a rebuild, the old build would be called with the new Python side's arguments and
fail every batch. Where no source is shipped (an image) the build is taken.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stellaops_runtime.canonical import symnative


def _pair(tmp_path: Path, so_ns: int, c_ns: int | None) -> str:
    so = tmp_path / "_symindex.cpython-311-x86_64-linux-gnu.so"
    so.write_bytes(b"\x7fELF")
    os.utime(so, ns=(so_ns, so_ns))
    if c_ns is not None:
        c = tmp_path / "_symindex.c"
        c.write_text("/* source */\n")
        os.utime(c, ns=(c_ns, c_ns))
    return str(so)


def test_a_build_older_than_its_source_is_not_used(tmp_path: Path) -> None:
    assert not symnative.built_from_current_source(_pair(tmp_path, 1_000_000_000, 2_000_000_000))


def test_a_build_newer_than_its_source_is_used(tmp_path: Path) -> None:
    assert symnative.built_from_current_source(_pair(tmp_path, 2_000_000_000, 1_000_000_000))


def test_a_build_without_its_source_beside_it_is_used(tmp_path: Path) -> None:
    assert symnative.built_from_current_source(_pair(tmp_path, 1_000_000_000, None))


def test_no_file_is_no_build(tmp_path: Path) -> None:
    assert not symnative.built_from_current_source(None)
    assert not symnative.built_from_current_source(str(tmp_path / "missing.so"))


def test_this_checkouts_build_is_current_and_loaded() -> None:
    """setup.sh rebuilds the extension when its source changes: the tests run the native path."""
    if symnative._NATIVE is None:
        import importlib.util

        assert importlib.util.find_spec("stellaops_runtime.canonical._symindex") is None, (
            "the extension is built but older than _symindex.c: run scripts/setup.sh"
        )
        return
    assert symnative.built_from_current_source(symnative._NATIVE.__file__)


def test_each_extension_is_compared_with_its_own_source(tmp_path: Path) -> None:
    """_kallsyms (the kernel table's parse) has its own sources beside it: _kallsyms.c, _kallsyms_table.c,
    _kallsyms.h; another module's newer source does not count."""
    so = tmp_path / "_kallsyms.cpython-311-x86_64-linux-gnu.so"
    so.write_bytes(b"\x7fELF")
    os.utime(so, ns=(2_000_000_000, 2_000_000_000))
    (tmp_path / "_symindex.c").write_text("/* another module's source, newer */\n")
    assert symnative.built_from_current_source(str(so))
    for name in ("_kallsyms.c", "_kallsyms_table.c", "_kallsyms.h"):  # each of its sources
        c = tmp_path / name
        c.write_text("/* source */\n")
        os.utime(c, ns=(1_000_000_000, 1_000_000_000))
    assert symnative.built_from_current_source(str(so))
    for name in ("_kallsyms_table.c", "_kallsyms.h"):
        os.utime(tmp_path / name, ns=(3_000_000_000, 3_000_000_000))
        assert not symnative.built_from_current_source(str(so)), name
        os.utime(tmp_path / name, ns=(1_000_000_000, 1_000_000_000))


def test_this_checkouts_kallsyms_build_is_current_and_loaded() -> None:
    """The kernel table's native parse, like the index: built here means current and used."""
    if symnative._KALLSYMS is None:
        import importlib.util

        assert importlib.util.find_spec("stellaops_runtime.canonical._kallsyms") is None, (
            "the extension is built but older than _kallsyms.c: run scripts/setup.sh"
        )
        return
    assert symnative.built_from_current_source(symnative._KALLSYMS.__file__)


def test_the_kallsyms_extension_is_built_where_its_headers_are() -> None:
    """Where a compiler, Python's headers and zlib's are, the install built _kallsyms: setup.py's
    build is optional and skips it without a word (zlib.h missing, a Python it did not compile
    on), and then every test of the native path here is skipped and nothing fails."""
    import shutil
    import subprocess
    import sysconfig

    gcc = shutil.which("gcc")
    if gcc is None or not os.path.exists(os.path.join(sysconfig.get_path("include"), "Python.h")):
        pytest.skip("no compiler or no Python.h: the Python path only")
    probe = subprocess.run([gcc, "-E", "-x", "c", "-"], input=b"#include <zlib.h>\n", capture_output=True)
    if probe.returncode != 0:
        pytest.skip("no zlib.h: the Python path only (scripts/setup.sh --server installs zlib1g-dev)")
    assert symnative._KALLSYMS is not None, "_kallsyms was not built or is stale: run scripts/setup.sh"
