"""The CLI's help formatter: argparse's, its width found without importing ``shutil`` (issue 13).

argparse builds a help formatter whenever a parser gets an argument, and its formatter imports
``shutil`` to ask the terminal's width; ``shutil`` imports ``bz2`` and ``lzma`` (and their C
libraries) at once. The node agent only parses its command line, yet held them for its whole
life: ~0.7 MB of its idle RSS (docs/benchmarks.md, "Sixteenth pass"). :class:`HelpFormatter`
finds the width as ``shutil.get_terminal_size()`` does: ``COLUMNS`` when it is a positive
integer, else the width of the terminal the interpreter's stdout is, else 80 (tests/unit/
test_cli_help_format.py compares the two, and the help they print).
"""

from __future__ import annotations

import argparse
import os
import sys

FALLBACK_COLUMNS = 80  # shutil.get_terminal_size's fallback


def terminal_columns() -> int:
    """``shutil.get_terminal_size().columns``, without shutil."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns > 0:
        return columns
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or FALLBACK_COLUMNS  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):  # no stdout, a closed one, or not a terminal
        return FALLBACK_COLUMNS


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """argparse's ``RawDescriptionHelpFormatter``, its default width from :func:`terminal_columns`."""

    def __init__(
        self, prog: str, indent_increment: int = 2, max_help_position: int = 24, width: int | None = None
    ) -> None:
        if width is None:
            width = terminal_columns() - 2  # as argparse takes it from shutil
        super().__init__(prog, indent_increment, max_help_position, width)
