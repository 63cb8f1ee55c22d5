"""Output closed early (``stella-runtime query hot ... | head -1``): end quietly.

The Python documentation's recipe (library/signal, "Note on SIGPIPE"): once a
write fails with BrokenPipeError, point stdout at /dev/null so that nothing
else (not even the interpreter's final flush) raises or prints a traceback.
"""

from __future__ import annotations

import os
import sys


def silence_stdout() -> None:
    """Send the rest of stdout to /dev/null (after a BrokenPipeError)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real stdout (e.g. replaced in tests): nothing to silence
        pass


def write(text: str) -> bool:
    """Write ``text`` to stdout and flush; False (and stdout silenced) when the reader has gone."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        silence_stdout()
        return False
    return True


def flush() -> None:
    """Flush stdout at exit, silencing it when the reader has gone."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        silence_stdout()
