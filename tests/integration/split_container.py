"""A program built with a separate debug file, placed in a container root that several process roots show.

test_debug_files.py, test_debug_file_reuse.py and test_known_file_busy_worker.py each
built the split program in a fixture of their own and laid out the same container.
The fixtures (``split``, ``other_split``) are imported by the test modules that use
them; roots are symbolic links to one directory: distinct roots (as
``/proc/<pid>/root`` of two processes of one container are) over the same files.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.native import debuglink as dl

PROG = "/opt/app/bin/prog"


@pytest.fixture(scope="module")
def split() -> dl.Split:
    missing = dl.tools_missing()
    assert not missing, f"{missing} is needed (binutils, gcc)"
    return dl.build_split("prog")


@pytest.fixture(scope="module")
def other_split() -> dl.Split:
    return dl.build_split("other", flags=("-O1", "-g"))


def place(root: Path, path: str, src: Path) -> Path:
    dst = root / path.lstrip("/")
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def container(tmp_path: Path, split: dl.Split, n_roots: int) -> tuple[Path, list[str]]:
    """A container root holding the stripped program and its debug file next to it (debuglink), and
    ``n_roots`` roots that are that directory (processes of the container)."""
    root = tmp_path / "container"
    place(root, PROG, split.stripped)
    place(root, f"/opt/app/bin/{split.debug.name}", split.debug)
    roots = []
    for i in range(n_roots):
        link = tmp_path / f"proc-{i}-root"
        os.symlink(root, link)
        roots.append(str(link))
    return root, roots
