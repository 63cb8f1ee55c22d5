"""A store error is classified by the drivers loaded, and classifying one loads no driver (issue 13).

store/errors.py and store/ledger.py used to import sqlite3 for its exception classes, so a node's
agent on PostgreSQL mapped SQLite's library for nothing (~0.9 MB). They now consult a driver's
classes only when it is loaded: an error cannot come from a driver nobody imported. What each
driver's errors mean must not change: "down, retry" (is_unavailable), "a database error"
(is_database_error), "the data itself is refused" (is_row_refusal).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap

import psycopg

from stellaops_runtime.store.errors import is_database_error, is_unavailable
from stellaops_runtime.store.ledger import is_row_refusal


def test_each_drivers_errors_keep_their_meaning() -> None:
    assert is_unavailable(sqlite3.OperationalError("database is locked"))
    assert is_unavailable(sqlite3.InterfaceError("closed"))
    assert is_unavailable(psycopg.OperationalError("connection refused"))
    assert is_unavailable(psycopg.InterfaceError("the connection is closed"))
    assert not is_unavailable(sqlite3.IntegrityError("UNIQUE constraint failed"))
    assert not is_unavailable(psycopg.DataError("NUL byte"))
    assert not is_unavailable(ValueError("not a database error"))
    for e in (sqlite3.Error(), sqlite3.IntegrityError(), psycopg.Error(), psycopg.errors.UniqueViolation()):
        assert is_database_error(e), e
    for e in (ValueError(), OSError(), KeyError("sqlite3"), Exception("psycopg.Error")):
        assert not is_database_error(e), e
    assert is_row_refusal(sqlite3.IntegrityError("NOT NULL constraint failed"))
    assert is_row_refusal(sqlite3.DataError("string or blob too big"))
    assert is_row_refusal(sqlite3.InterfaceError("Error binding parameter 3: type 'dict' is not supported"))
    assert not is_row_refusal(sqlite3.InterfaceError("Cannot operate on a closed database."))
    assert not is_row_refusal(sqlite3.OperationalError("database is locked"))
    assert is_row_refusal(psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes"))
    assert is_row_refusal(OverflowError("int too big to convert"))
    assert is_row_refusal(UnicodeEncodeError("utf-8", "\udcff", 0, 1, "surrogates not allowed"))
    assert not is_row_refusal(psycopg.OperationalError("server closed the connection"))
    # SQLAlchemy's wrappers (the readers'), looked up the same way (store/errors.py loaded_classes).
    import sqlalchemy.exc as sa_exc

    assert is_unavailable(sa_exc.OperationalError("SELECT 1", {}, Exception("gone")))
    assert is_unavailable(sa_exc.DisconnectionError())
    assert is_unavailable(sa_exc.DBAPIError("SELECT 1", {}, Exception("x"), connection_invalidated=True))
    assert not is_unavailable(sa_exc.IntegrityError("INSERT", {}, Exception("duplicate")))
    assert is_database_error(sa_exc.NoSuchTableError("hot_symbols"))


def test_classifying_errors_without_sqlite_loaded_never_imports_it() -> None:
    # A PostgreSQL agent's process: psycopg loaded, sqlite3 never; every classifier runs on its
    # errors and on others, and afterwards sqlite3 is still not loaded.
    code = textwrap.dedent(
        """
        import json, sys
        from stellaops_runtime.store import psycopg_import
        from stellaops_runtime.store.errors import is_database_error, is_unavailable
        from stellaops_runtime.store.ledger import is_row_refusal
        psycopg = psycopg_import.load()
        before = "sqlite3" in sys.modules
        errors = [psycopg.OperationalError("x"), psycopg.DataError("NUL"), ValueError(), OverflowError()]
        got = [[is_unavailable(e), is_database_error(e), is_row_refusal(e)] for e in errors]
        print(json.dumps({"before": before, "after": "sqlite3" in sys.modules, "got": got}))
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-4000:]
    out = json.loads(done.stdout)
    assert out["before"] is False and out["after"] is False
    assert out["got"] == [
        [True, True, False],  # down: retry
        [False, True, True],  # refused before the server: the row, not the store
        [False, False, False],
        [False, False, True],  # an integer no column takes
    ]


def test_a_driver_being_imported_on_another_thread_does_not_break_classifying() -> None:
    # A PostgreSQL agent imports sqlite3 later, on the pipeline thread, with the first event
    # (package attribution's attribution/osdb.py reads rpm's SQLite database). While that import
    # runs, sys.modules holds a sqlite3 module without its classes yet; a store write failing on
    # its own thread at that moment was classified through it: AttributeError instead of "down,
    # retry", and the flush failed as an unexpected error. The import is held here at
    # sqlite3.dbapi2 (where sqlite3's classes come from) so the moment is not left to chance.
    code = textwrap.dedent(
        """
        import importlib.abc, json, sys, threading
        from stellaops_runtime.store import psycopg_import
        from stellaops_runtime.store.errors import is_database_error, is_unavailable
        from stellaops_runtime.store.ledger import is_row_refusal
        psycopg = psycopg_import.load()
        entered, release = threading.Event(), threading.Event()

        class Hold(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name == "sqlite3.dbapi2":
                    entered.set()
                    release.wait(60)
                return None

        sys.meta_path.insert(0, Hold())
        t = threading.Thread(target=lambda: __import__("sqlite3"))
        t.start()
        assert entered.wait(60)
        partial = "sqlite3" in sys.modules and not hasattr(sys.modules["sqlite3"], "Error")
        errors = [psycopg.OperationalError("x"), psycopg.DataError("NUL"), ValueError()]
        got = []
        for e in errors:
            try:
                got.append([is_unavailable(e), is_database_error(e), is_row_refusal(e)])
            except Exception as x:
                got.append(repr(x))
        release.set()
        t.join(60)
        import sqlite3
        locked = sqlite3.OperationalError("locked")
        done = [is_unavailable(locked), is_row_refusal(sqlite3.IntegrityError("x"))]
        print(json.dumps({"partial": partial, "got": got, "done": done}))
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-4000:]
    out = json.loads(done.stdout)
    assert out["partial"] is True  # the moment this test is about was reached
    assert out["got"] == [[True, True, False], [False, True, True], [False, False, False]]
    assert out["done"] == [True, True]  # once imported, its errors are classified as ever
