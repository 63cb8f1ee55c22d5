"""The child process that migrates the agent's store (``python -P -m`` this module).

Why it exists: an agent whose store is not at the newest revision (a node's first start on a new
SQLite file; an upgrade that adds a revision) used to run ``alembic upgrade head`` in its own
process, and SQLAlchemy and Alembic then stayed loaded for the agent's whole life (~28 MB of its idle
memory, issue 13), and their CPU held the GIL beside its first events. The agent now starts this
module instead (store/migration_process.py) and waits for it.

Protocol, kept small so that nothing secret is ever on the command line nor in the environment:

- stdin: one JSON line, ``{"url": ..., "timeouts": {...}, "log_level": N, "parent": PID}`` (the
  URL may hold a password); then nothing: stdin stays open while the agent waits, and its end
  (the agent gone, however it ended) makes this process exit at once. Linux's parent-death
  signal (SIGKILL) is asked for as well.
- stdout: one JSON line, the outcome: ``{"outcome": "migrated"}``, or ``{"outcome":
  "unavailable" | "failed", "message": ...}`` with the same one-line message, the password
  masked, as a migration in the agent's process gave (store/engine.py ``migrate_in_process``).
  Anything else the libraries print goes to stderr, which is the agent's (a pod's log).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
from typing import Any

PARENT_GONE = 70  # the exit status when stdin ends before the migration did: the agent is gone
_PR_SET_PDEATHSIG = 1


def main() -> int:
    report = os.fdopen(os.dup(1), "w", encoding="utf-8")  # the outcome's channel, and only it
    os.dup2(2, 1)  # whatever else is printed goes to the agent's stderr (/dev/null if it has none)
    request: dict[str, Any] = json.loads(_request_line() or b"null") or {}
    _die_with_parent(int(request.get("parent", 0)))
    threading.Thread(target=_exit_at_eof, name="parent-watch", daemon=True).start()
    logging.basicConfig(
        level=int(request.get("log_level", logging.INFO)),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    outcome = _migrate(request)
    report.write(json.dumps(outcome) + "\n")
    report.close()  # the agent's read of it ends here; it then waits for this process's exit
    return 0


def _migrate(request: dict[str, Any]) -> dict[str, str]:
    """Run the migrations the request names; the outcome to report (never raises)."""
    from stellaops_runtime.store.engine import (
        StoreError,
        StoreUnavailable,
        Timeouts,
        first_line,
        migrate_in_process,
        safe_url,
    )

    url = str(request.get("url", ""))
    try:
        migrate_in_process(url, Timeouts(**request.get("timeouts", {})))
    except StoreUnavailable as e:
        return {"outcome": "unavailable", "message": str(e)}
    except StoreError as e:
        return {"outcome": "failed", "message": str(e)}
    except Exception as e:  # a bad request, a bug: reported as a failed migration, one line
        return {"outcome": "failed", "message": f"cannot migrate store {safe_url(url)}: {first_line(e)}"}
    return {"outcome": "migrated"}


def _die_with_parent(parent: int) -> None:
    """Ask the kernel for SIGKILL when the agent dies (Linux), and exit if it already has."""
    if sys.platform == "linux":
        import ctypes

        with contextlib.suppress(OSError, AttributeError):  # no prctl: stdin's end still stops it
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if parent and os.getppid() != parent:  # the agent died before the signal was asked for
        os._exit(PARENT_GONE)


def _request_line() -> bytes:
    """stdin's first line, read from its descriptor byte by byte: nothing after it is consumed, and
    no buffered reader's lock is held by the thread that waits for its end (at this process's exit,
    the interpreter aborts on a lock a daemon thread holds)."""
    line = b""
    while not line.endswith(b"\n") and (byte := os.read(0, 1)):
        line += byte
    return line


def _exit_at_eof() -> None:
    """Exit when stdin ends: the agent closed it (it stopped waiting) or is gone. A migration cut
    here is rolled back: it is one transaction, DDL included, on both backends (store/engine.py
    ``migrate_in_process``)."""
    while os.read(0, 4096):
        pass
    os._exit(PARENT_GONE)


if __name__ == "__main__":
    sys.exit(main())
