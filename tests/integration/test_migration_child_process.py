"""store/migration_process.py's child, driven directly: what it reports, how it dies, what it imports.

The agent's side (its Flusher, a real agent subprocess) is tests/integration/test_agent_migration_child.py,
whose helpers these tests share. Real child processes on real SQLite files and the tests' PostgreSQL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import stellaops_runtime
from stellaops_runtime.store.dbconn import Timeouts
from stellaops_runtime.store.engine import (
    StoreError,
    StoreUnavailable,
    create_store_engine,
    migrate,
    open_store,
)
from stellaops_runtime.store.migration_process import ChildMigrator
from stellaops_runtime.store.revisions import at_head, head_revision
from tests.integration.test_agent_migration_child import PASSWORD, behind, revisions


def test_a_fresh_sqlite_store_is_migrated_by_the_child(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/hot.db"
    migrator = ChildMigrator()
    with open_store(url, migrator=migrator) as store:
        assert at_head(store.db)
    assert migrator.running_pids == []


def test_a_sqlite_migration_killed_once_its_tables_show_leaves_a_store_that_opens(
    tmp_path: Path,
) -> None:
    """Before: pysqlite began no transaction before DDL, so revision 0001's tables were committed one by
    one before its version row: a first start killed then (SIGKILL, OOM) left a store every later
    start refused ("table hot_symbols already exists"). The child is killed the moment another
    connection sees a hot-symbol table; the store must then open (and migrate) as a new one would."""
    db = tmp_path / "hot.db"
    url = f"sqlite:///{db}"
    migrator = ChildMigrator()
    outcome: list[object] = []

    def run() -> None:
        try:
            migrator(url)
            outcome.append("migrated")
        except StoreError as e:
            outcome.append(e)

    t = threading.Thread(target=run)
    t.start()
    killed = False
    end = time.monotonic() + 60
    while t.is_alive() and time.monotonic() < end:
        pids = migrator.running_pids
        if pids and db.exists():
            seen: list[Any] = []
            with (
                contextlib.closing(sqlite3.connect(db, timeout=0.01)) as c,
                contextlib.suppress(sqlite3.OperationalError),  # locked: look again
            ):
                seen = c.execute("SELECT 1 FROM sqlite_master WHERE name = 'hot_symbols'").fetchall()
            if seen:
                os.kill(pids[0], signal.SIGKILL)
                killed = True
                break
        time.sleep(0.001)
    t.join(60)
    assert killed and outcome, outcome
    with open_store(url) as store:  # before: StoreError, table hot_symbols already exists
        assert at_head(store.db)


def test_a_child_that_dies_or_reports_garbage_is_a_store_error_never_a_success(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/hot.db"
    for code, expected in (
        ("print('not a report')", "exited without a readable report"),
        ("import sys; sys.exit(3)", "exited with status 3"),
        ("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", "was killed by signal SIGSEGV"),
        ('print(\'{"outcome": "migrated"}\'); import sys; sys.exit(1)', "exited with status 1"),
    ):
        with pytest.raises(StoreError) as e:
            ChildMigrator(command=(sys.executable, "-c", code))(url)
        assert not isinstance(e.value, StoreUnavailable) and expected in str(e.value), (code, e.value)
    assert not (tmp_path / "hot.db").exists()  # none of them touched the store


def test_an_agent_started_with_stderr_closed_still_migrates(tmp_path: Path) -> None:
    # the child's stdout is its report alone: its stray output goes to the agent's stderr, or to
    # /dev/null when the agent has none (else the child's first free descriptor, 2, took its place)
    code = (
        "import sys; from stellaops_runtime.store.engine import open_store; "
        "from stellaops_runtime.store.migration_process import ChildMigrator; "
        "open_store(sys.argv[1], migrator=ChildMigrator()).close(); print('opened')"
    )
    url = f"sqlite:///{tmp_path}/hot.db"
    done = subprocess.run(
        [sys.executable, "-c", code, url], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=120,
        pass_fds=(), preexec_fn=lambda: os.close(2),
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (0, b"opened\n")
    assert revisions(url) == [head_revision()]


def test_the_child_imports_the_agents_own_package_not_one_on_its_path_or_in_its_cwd(tmp_path: Path) -> None:
    # A decoy package first on the agent's PYTHONPATH and in its working directory: the agent took the
    # real one (its sys.path set by hand, as a checkout's launcher may), and so must the child.
    decoy = tmp_path / "decoy"
    (decoy / "stellaops_runtime").mkdir(parents=True)
    (decoy / "stellaops_runtime" / "__init__.py").write_text("raise SystemExit('the decoy package')\n")
    root = str(Path(stellaops_runtime.__file__).resolve().parent.parent)
    code = (
        f"import sys; sys.path.insert(0, {root!r}); "
        "from stellaops_runtime.store.engine import open_store; "
        "from stellaops_runtime.store.migration_process import ChildMigrator; "
        "open_store(sys.argv[1], migrator=ChildMigrator()).close(); print('opened')"
    )
    url = f"sqlite:///{tmp_path}/hot.db"
    env = dict(os.environ, PYTHONPATH=str(decoy))
    done = subprocess.run(
        [sys.executable, "-P", "-c", code, url], capture_output=True, cwd=decoy, env=env, timeout=120
    )
    assert (done.returncode, done.stdout) == (0, b"opened\n"), done.stderr[-2000:]
    assert revisions(url) == [head_revision()]


def test_a_child_that_cannot_reach_postgresql_is_store_unavailable() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/nowhere"
    with pytest.raises(StoreUnavailable) as e:
        ChildMigrator()(url, Timeouts(connect=2))
    msg = str(e.value)
    assert msg.startswith("cannot migrate store postgresql://postgres:***@127.0.0.1") and "\n" not in msg, msg
    assert PASSWORD not in msg


@pytest.mark.postgres
def test_two_agents_migrating_one_postgresql_at_once_both_succeed(pg_empty_url: str) -> None:
    url = behind(pg_empty_url)
    outcomes: list[object] = []

    def one() -> None:
        try:
            ChildMigrator()(url)
            outcomes.append("ok")
        except StoreError as e:
            outcomes.append(e)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert outcomes == ["ok", "ok"] and revisions(url) == [head_revision()]


def test_a_child_that_reports_migrated_without_migrating_opens_no_store(tmp_path: Path) -> None:
    """A child that says ``migrated`` and exits 0 but left the store where it was (another package's
    child, a bug): the agent must not write to a store that is not at the newest revision. Before,
    open_store returned the store: on a new SQLite file each write then failed (no such table),
    retried for ever as "unavailable"; on a store one revision behind it wrote the old schema."""
    url = f"sqlite:///{tmp_path}/hot.db"
    liar = ChildMigrator(command=(sys.executable, "-c", 'print(\'{"outcome": "migrated"}\')'))
    with pytest.raises(StoreError) as e:
        open_store(url, migrator=liar).close()
    msg = str(e.value)
    assert not isinstance(e.value, StoreUnavailable), msg
    assert "reported success" in msg and f"{head_revision()}" in msg and "\n" not in msg, msg


def test_a_sqlite_store_its_migration_cannot_create_is_a_failed_migration_not_unavailable(
    tmp_path: Path,
) -> None:
    """A store at 0010 that holds 0011's table already (an older agent's non-transactional migration
    cut after its DDL, before its version): SQLite's "table export_positions already exists" is no
    outage. Before, it was classified StoreUnavailable (sqlite3's OperationalError) and retried as one."""
    db = tmp_path / "hot.db"
    engine = create_store_engine(f"sqlite:///{db}")
    try:
        migrate(engine, revision="0010")
    finally:
        engine.dispose()
    with contextlib.closing(sqlite3.connect(db)) as c:
        c.execute("CREATE TABLE export_positions (x INTEGER)")
        c.commit()
    with pytest.raises(StoreError) as e:
        ChildMigrator()(f"sqlite:///{db}")
    assert not isinstance(e.value, StoreUnavailable) and "already exists" in str(e.value), e.value


def test_a_failed_migration_starts_no_new_child_until_its_retry_time(tmp_path: Path) -> None:
    """Each child costs ~0.5 s of CPU (its imports): a migration that fails for good (a broken store, a
    refused DDL) was tried by a new child at every flush (10 s), for ever. Now the next child waits
    for a retry time that doubles; the calls meanwhile say the last failure and start nothing."""
    starts = tmp_path / "starts"
    code = (
        f"open({str(starts)!r}, 'a').write('x'); "
        'print(\'{"outcome": "failed", "message": "cannot migrate store s: refused"}\')'
    )
    migrator = ChildMigrator(command=(sys.executable, "-c", code), retry_after=(0.5, 60.0))
    url = f"sqlite:///{tmp_path}/hot.db"
    with pytest.raises(StoreError, match=r"^cannot migrate store s: refused$"):
        migrator(url)
    began = time.monotonic()
    with pytest.raises(StoreError, match=r"^cannot migrate store s: refused \(the migration is tried again"):
        migrator(url)
    assert starts.read_text() == "x"  # no second child
    time.sleep(max(0.0, 0.5 - (time.monotonic() - began)) + 0.05)
    with pytest.raises(StoreError, match=r"refused$"):
        migrator(url)  # its retry time came: a new child
    assert starts.read_text() == "xx"
    with pytest.raises(StoreError, match=r"tried again in [01] s"):  # 1 s now: doubled
        migrator(url)


def test_a_store_with_tables_but_no_revision_is_refused_with_what_to_do_and_without_a_child(
    tmp_path: Path,
) -> None:
    """A SQLite file an older agent's first migration left with its tables but no version row (its
    DDL committed one statement at a time, cut before the version): no migration can run on it. Before,
    a child was started for it at each retry and failed with "table hot_symbols already exists"."""
    db = tmp_path / "hot.db"
    with contextlib.closing(sqlite3.connect(db)) as c:
        c.execute("CREATE TABLE hot_symbols (x INTEGER)")
        c.commit()
    with pytest.raises(StoreError) as e:
        open_store(f"sqlite:///{db}", migrator=ChildMigrator(command=(sys.executable, "-c", "exit(9)")))
    msg = str(e.value)
    assert not isinstance(e.value, StoreUnavailable) and "status 9" not in msg, msg  # no child
    assert "no schema revision" in msg and "move it away" in msg and "\n" not in msg, msg
