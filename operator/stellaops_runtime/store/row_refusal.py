"""What a refused row is, and what is kept of it: the ledger's (store/ledger.py) sorting of errors.

Why this module exists: split from store/ledger.py (no behaviour change). The ledger writes a
batch in ranges and splits a range in halves when the database refuses a row (a data, integrity
or size error, SQLSTATE classes 22, 23 and 54), or when a range passes the statement timeout
(57014); any other error means "try the batch again later". The tests here say which is which,
for both drivers and for errors of the agent's own conversions, check a spool file's rows before
the database sees them (store/rowcheck.py), and clean what is kept: the error's text for
``quarantined_rows``, and a sample holding what PostgreSQL's jsonb cannot (U+FFFD, null).
"""

from __future__ import annotations

import math
import re
from typing import Any

from stellaops_runtime.contracts.hotsymbols import HotSymbolDelta, ObservationWindow
from stellaops_runtime.store.errors import is_database_error, loaded_classes
from stellaops_runtime.store.partitions import is_missing_partition
from stellaops_runtime.store.rowcheck import MAX_SAMPLE_DEPTH, row_problem

# SQLSTATE classes that mean "this data cannot be stored", not "try later".
ROW_REFUSAL_CLASSES = frozenset({"22", "23", "54"})
MAX_ERROR_CHARS = 2_000


def is_row_refusal(e: BaseException) -> bool:
    """Whether an error means the database refused the data itself (retrying cannot help)."""
    orig = getattr(e, "orig", None) or e
    sqlstate = getattr(orig, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate:
        # No partition of the history takes the row: the store lacks one, the row is good.
        return sqlstate[:2] in ROW_REFUSAL_CLASSES and not is_missing_partition(orig)
    # UnicodeEncodeError: a lone surrogate (a surrogateescape-decoded path) no driver can encode.
    if isinstance(orig, OverflowError | UnicodeEncodeError):
        return True
    # sqlite3's errors only where it is loaded (an idle PostgreSQL agent has not imported it, issue 13)
    # and not while another thread is still importing it (errors.loaded_classes).
    if sqlite3 := loaded_classes("sqlite3", "IntegrityError", "DataError", "InterfaceError"):
        if isinstance(orig, sqlite3[:2]):
            return True
        if isinstance(orig, sqlite3[2]) and "binding parameter" in str(orig):
            return True
    # psycopg and pgwire refuse some values before they reach the server (e.g. a NUL in a
    # text field, an integer too large for its column): a DataError without SQLSTATE.
    # Not loaded: not its error (a SQLite agent never loads a PostgreSQL driver).
    return isinstance(orig, client_data_errors())


def client_data_errors() -> tuple[type[BaseException], ...]:
    """The loaded PostgreSQL drivers' DataError (raised before a value reaches the server)."""
    return (*loaded_classes("psycopg", "DataError"), *loaded_classes("stellaops_runtime.pgwire", "DataError"))


class RowProblem(ValueError):
    """A row that cannot be stored as it is (store/rowcheck.py), refused before the database saw it."""


def is_conversion_refusal(e: BaseException) -> bool:
    """An error of our own conversions (not the database's): the same row fails every time."""
    return isinstance(e, TypeError | ValueError | RecursionError) and not is_database_error(e)


def range_problem(deltas: list[HotSymbolDelta], obs: list[ObservationWindow]) -> RowProblem | None:
    units: list[HotSymbolDelta | ObservationWindow] = [*deltas, *obs]
    for u in units:
        if (p := row_problem(u)) is not None:
            return RowProblem(f"not stored as read from the spool: {p}")
    return None


def error_text(e: BaseException) -> str:
    text = str(getattr(e, "orig", None) or e).replace("\x00", "\\x00").strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:MAX_ERROR_CHARS]


def is_statement_timeout(e: BaseException) -> bool:
    """Whether the server cancelled a statement (SQLSTATE 57014: ``statement_timeout`` or a cancel)."""
    orig = getattr(e, "orig", None) or e
    return getattr(orig, "sqlstate", None) == "57014"


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable_sample(value: Any, depth: int = 0) -> Any:
    """``value`` with NUL, lone surrogates and non-finite floats replaced (U+FFFD, None).

    So is what JSON cannot hold (another type, below ``MAX_SAMPLE_DEPTH`` levels): None.
    """
    if isinstance(value, str):
        return _UNSTORABLE.sub("\ufffd", value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool | int):
        return value
    if depth >= MAX_SAMPLE_DEPTH:
        return None
    if isinstance(value, dict):
        return {storable_sample(str(k)): storable_sample(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable_sample(v, depth + 1) for v in value]
    return None
