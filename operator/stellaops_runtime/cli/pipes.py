"""Output closed early (``stella-runtime query hot ... | head -1``): end quietly.

The Python documentation's recipe (library/signal, "Note on SIGPIPE"): once a
write fails with BrokenPipeError, point stdout at /dev/null so that nothing
else (not even the interpreter's final flush) raises or prints a traceback.
A process started with no stdout at all (``>&-``) writes to /dev/null too
(:func:`ensure_stdout`): in both cases the exit status stays the answer's.
Any other failed write (a full disk) is :class:`OutputError`: the answer was
not written, exit 2 (cli/main.py), never an "internal error" or a "no".
"""

from __future__ import annotations

import os
import sys


class OutputError(Exception):
    """The answer could not be written to stdout; the message says why."""


def ensure_stdout() -> None:
    """Give a process started without a stdout (``sys.stdout`` is None) /dev/null to write to."""
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (kept open until the process ends)


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
    except OSError as e:  # ENOSPC, EIO: the rest is dropped, so the interpreter's flush cannot fail
        silence_stdout()
        raise OutputError(e.strerror or str(e)) from None
    return True


def flush() -> None:
    """Flush stdout at exit, silencing it when the reader has gone; :class:`OutputError` when
    the flush fails otherwise."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        silence_stdout()
    except OSError as e:
        silence_stdout()
        raise OutputError(e.strerror or str(e)) from None
