"""The agent's schema migration, run in a child process so that the agent never loads Alembic.

Why it exists: SQLAlchemy and Alembic, once imported to migrate, stay loaded for the life of the
process: an agent that migrated its store at start (every node's first start on a new SQLite file,
every upgrade that adds a revision) idled at ~67 MB instead of ~39 (issue 13: under 45), and the
migration's CPU held the GIL beside its first events. :class:`ChildMigrator` is the
:data:`~stellaops_runtime.store.engine.Migrator` the agent gives ``open_store``: it starts
store/migration_child.py with this interpreter, hands it the store URL on stdin (never on its
command line nor in its environment: the URL may hold a password), waits for its one-line report
and raises what a migration in the agent's process raised: :class:`StoreUnavailable` for a
database out of reach (the agent keeps counting and retries), :class:`StoreError` for a failed
migration, with the same one-line message. A child that ends without a readable report (killed,
out of memory, crashed) is a :class:`StoreError` naming its exit status, never a success.

A child outlives neither its waiting nor the agent: :meth:`ChildMigrator.close` (the agent's stop)
kills a running one and starts no other; the child exits when its stdin ends (the agent gone,
however it ended) and asks Linux for SIGKILL at its parent's death. Its log lines go to the
agent's stderr.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import stellaops_runtime
from stellaops_runtime.store.dbconn import Timeouts
from stellaops_runtime.store.errors import StoreError, StoreUnavailable
from stellaops_runtime.store.revisions import head_revision
from stellaops_runtime.store.store_url import safe_text

log = logging.getLogger(__name__)

CHILD_MODULE = "stellaops_runtime.store.migration_child"
# -P: the child's sys.path gets no entry for the working directory, which is not where the
# package comes from (child_environment puts its own location first).
CHILD_COMMAND = (sys.executable, "-P", "-m", CHILD_MODULE)
OUTCOMES = ("migrated", "unavailable", "failed")  # store/migration_child.py's reports
# A migration that failed (not one the database was out of reach for, nor a child killed): the next
# child not before 10 s, then 20, 40... up to 5 min. Each child costs ~0.5 s of CPU (its imports),
# and a migration that fails for good (a broken store, a refused DDL) was otherwise tried by a new
# child at every flush, for ever.
RETRY_AFTER = (10.0, 300.0)


def child_environment() -> dict[str, str]:
    """The agent's environment, with the directory this package was imported from first on PYTHONPATH:
    the child imports the same code however the agent was started (installed, from a checkout, from
    its working directory)."""
    env = dict(os.environ)
    root = str(Path(stellaops_runtime.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def exit_status(returncode: int) -> str:
    """``killed by signal SIGKILL`` / ``exited with status 3``."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = str(-returncode)
        return f"was killed by signal {name}"
    return f"exited with status {returncode}"


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


class ChildMigrator:
    """Runs ``alembic upgrade head`` for one agent, each time in a new child process."""

    def __init__(
        self, command: tuple[str, ...] = CHILD_COMMAND, retry_after: tuple[float, float] = RETRY_AFTER
    ) -> None:
        self.command = command  # the child's argv: never the URL
        self.retry_after = retry_after  # (first, longest) wait before a failed migration's next child
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[bytes]] = set()
        self._closed = False
        self._failures = 0  # failed migrations in a row
        self._retry_at = 0.0  # time.monotonic() before which no child is started after a failure
        self._failure = ""  # the last failure's message (one line, the password masked)

    @property
    def running_pids(self) -> list[int]:
        with self._lock:
            return sorted(p.pid for p in self._running)

    def __call__(self, url: str, timeouts: Timeouts | None = None) -> None:
        where = f"cannot migrate store {safe_text(url)}"
        with self._lock:
            if self._closed:  # the agent is stopping: nothing may outlive it
                raise StoreError(f"{where}: the agent is stopping")
            if not self.command[0]:
                raise StoreError(f"{where}: no Python interpreter to run the migration in")
            if (wait := self._retry_at - time.monotonic()) > 0:
                raise StoreError(f"{self._failure} (the migration is tried again in {wait:.0f} s)")
            try:
                proc = subprocess.Popen(
                    self.command,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=None if _is_open(2) else subprocess.DEVNULL,  # its log lines: the agent's
                    env=child_environment(),
                )
            except OSError as e:
                raise StoreError(f"{where}: cannot start the migration process: {e}") from None
            self._running.add(proc)
        started = time.monotonic()
        log.info(
            "store %s is not at schema revision %s: migrating it in a child process (pid %d)",
            safe_text(url), head_revision(), proc.pid,
        )  # fmt: skip
        try:
            outcome = self._wait(proc, url, timeouts)
            kind, message = outcome.get("outcome"), str(outcome.get("message") or "")
            if kind == "unavailable":
                raise StoreUnavailable(message or f"{where}: unreachable")
            if kind != "migrated":
                raise StoreError(message or f"{where}: the migration process reported a failure")
        except StoreError as e:
            self._failed(e, proc.returncode)
            raise
        finally:
            with self._lock:
                self._running.discard(proc)
        with self._lock:
            self._failures, self._retry_at = 0, 0.0
        took = time.monotonic() - started
        log.info("store %s migrated in %.1f s (pid %d)", safe_text(url), took, proc.pid)

    def _failed(self, e: StoreError, returncode: int | None) -> None:
        """A failed migration sets the time of the next child; one the database was out of reach for,
        or a child killed by a signal (the agent's stop, the OOM killer, an operator), does not."""
        if isinstance(e, StoreUnavailable) or (returncode or 0) < 0:
            return
        first, longest = self.retry_after
        with self._lock:
            self._failures += 1
            wait = min(longest, first * 2 ** min(self._failures - 1, 30))
            self._retry_at, self._failure = time.monotonic() + wait, str(e)

    def _wait(self, proc: subprocess.Popen[bytes], url: str, timeouts: Timeouts | None) -> dict[str, object]:
        """Hand the child its request, read its report, reap it; its stdin stays open until then."""
        assert proc.stdin is not None and proc.stdout is not None
        request = {
            "url": url,
            "timeouts": dataclasses.asdict(timeouts or Timeouts()),
            "log_level": logging.getLogger().getEffectiveLevel(),
            "parent": os.getpid(),
        }
        try:
            try:
                proc.stdin.write(json.dumps(request).encode() + b"\n")
                proc.stdin.flush()
            except OSError:  # it ended already: its exit status says how
                pass
            out = proc.stdout.read()  # its one report line, until it closes it (or is killed)
            proc.wait()  # stdin still open: its end would tell the child that the agent is gone
        finally:
            for f in (proc.stdin, proc.stdout):
                with contextlib.suppress(OSError):
                    f.close()
            proc.wait()
        lines = out.decode("utf-8", "replace").splitlines()
        outcome: object = None
        if len(lines) == 1:
            try:
                outcome = json.loads(lines[0])
            except ValueError:
                outcome = None
        where = f"cannot migrate store {safe_text(url)}: the migration process (pid {proc.pid})"
        if proc.returncode != 0:
            raise StoreError(f"{where} {exit_status(proc.returncode)}")
        if not isinstance(outcome, dict) or outcome.get("outcome") not in OUTCOMES:
            raise StoreError(f"{where} exited without a readable report")
        return outcome

    def close(self) -> None:
        """At the agent's stop: kill a running child and start no other."""
        with self._lock:
            self._closed = True
            running = list(self._running)
        for proc in running:
            with contextlib.suppress(OSError):  # ended meanwhile
                proc.kill()
