"""Which file a DWARF line-table row names: its file entry joined to its directory and unit.

Why this module exists: DWARF 5 numbers files and directories from 0 and DWARF 2-4 from 1, a
relative directory is relative to the unit's ``DW_AT_comp_dir``, and a damaged index names no
file. ``Binary.file_line`` (canonical/dwarfinfo.py's line rows) prints what this gives; split
out of dwarfinfo.py, which had grown past 400 lines (review RH1, s40).
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["line_file_name"]


def line_file_name(files: Any, dirs: Any, index: int, version: int, comp_dir: str) -> str:
    """The path of file ``index`` of a line program (``""`` when the index names none)."""
    i = index if version >= 5 else index - 1
    if not 0 <= i < len(files):
        return ""
    fe = files[i]
    name = fe.name.decode("utf-8", "replace") if isinstance(fe.name, bytes) else str(fe.name)
    if os.path.isabs(name):
        return name
    d = fe.dir_index if version >= 5 else fe.dir_index - 1
    directory = ""
    if 0 <= d < len(dirs):
        raw = dirs[d]
        directory = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    elif comp_dir:
        directory = comp_dir
    if directory and not os.path.isabs(directory) and comp_dir:
        directory = os.path.join(comp_dir, directory)
    return os.path.join(directory, name) if directory else name
