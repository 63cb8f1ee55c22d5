"""What every command that reads the hot-symbol store shares: its options and how it opens the store.

``query``, ``evidence``, ``vex`` and ``witness`` take ``--store`` and
``--json``, most of them ``--image`` too, whose argparse type is the store's
own reference parser (a malformed digest is a usage error, exit 2). The store
is ``--store``, else ``$STELLA_RUNTIME_STORE``, else the default URL. Reading never changes the
store: no migrations, and a SQLite file that does not exist is an error
rather than a new empty database. Every failure (bad URL, unreachable
server, never-migrated database, a store older than migration 0002 or missing
a table the answers read) is one line on stderr and exit 2, never a
traceback, with the URL's password masked.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from stellaops_runtime.cli import exitcodes
from stellaops_runtime.contracts.config import DEFAULT_STORE_URL, STORE_URL_ENV
from stellaops_runtime.contracts.redact import redact, redact_error
from stellaops_runtime.store.engine import (
    HOT_SYMBOLS,
    SCHEMA,
    StoreError,
    create_store_engine,
    has_schema,
    has_table,
    normalize_url,
    safe_url,
    sqlite_path,
)
from stellaops_runtime.store.refs import RefError, image_key
from stellaops_runtime.store.threads import call_interruptibly

STORE_ENV = STORE_URL_ENV


def ref_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse ``type`` from a parser raising RefError (argparse then exits 2 with the message)."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except RefError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    convert.__name__ = parse.__name__
    return convert


def image_and_store_options(p: argparse.ArgumentParser) -> None:
    """``--image`` (required) and the store options."""
    p.add_argument(
        "--image",
        required=True,
        type=ref_type(image_key),
        metavar="IMAGE",
        help="image digest or reference with a digest: sha256:<hex>, repo@sha256:<hex>, <hex>",
    )
    store_options(p)


def store_options(p: argparse.ArgumentParser) -> None:
    """``--store`` and ``--json``."""
    p.add_argument(
        "--store",
        metavar="URL",
        default=None,
        help=f"store URL (default: ${STORE_ENV} or {DEFAULT_STORE_URL})",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document instead of a table")


def store_url(args: argparse.Namespace) -> str:
    return str(args.store or os.environ.get(STORE_ENV) or DEFAULT_STORE_URL)


def with_store(args: argparse.Namespace, ask: Callable[[sa.Connection], int]) -> int:
    """Open the store read-only-ish, run ``ask``, map every failure to one line + exit 2.

    The URL is shown as given, password masked (:func:`safe_url` on the string,
    not on SQLAlchemy's parse of it), and so is every error text.
    """
    command = str(getattr(args, "command", None) or "query")

    def fail(message: str) -> int:
        return error(message, command=command)

    url = store_url(args)
    shown = safe_url(url)
    try:
        u = normalize_url(url)
        if u.get_backend_name() == "sqlite":
            path = sqlite_path(u)
            if path is not None and not path.is_file():
                return fail(f"no hot-symbol store at {shown}: {path} does not exist (run the agent first)")
        engine = create_store_engine(u)
    except StoreError as e:
        return fail(redact_error(e))
    except Exception as e:  # e.g. a driver that is not installed
        return fail(f"cannot open store {shown}: {redact_error(e)}")
    try:  # on a daemon thread: Ctrl-C must not wait out a locked SQLite store's busy timeout
        return call_interruptibly(_ask, engine, shown, ask, fail)
    except sa.exc.SQLAlchemyError as e:
        detail = str(getattr(e, "orig", None) or e).strip().splitlines()
        return fail(f"cannot query store {shown}: {redact(detail[0]) if detail else type(e).__name__}")
    finally:
        engine.dispose()


def _ask(
    engine: sa.Engine, shown: str, ask: Callable[[sa.Connection], int], fail: Callable[[str], int]
) -> int:
    with engine.connect() as conn:
        if not has_schema(conn):
            return fail(f"no hot-symbol data in {shown}: run the agent first")
        if missing := _missing(conn):
            return fail(
                f"the store at {shown} is from an older schema or incomplete (no {', '.join(missing)}): "
                "let the agent migrate it (it migrates the store when it starts)"
            )
        return ask(conn)


# What every answer reads: the tables of migration 0001 and hot_symbols' function IDs (0002).
# Later columns (postures 0003, gaps 0005) are optional: without them an answer is unknown.
_READ_TABLES = ("observation_windows", "hot_symbol_windows")


def _missing(conn: sa.Connection) -> list[str]:
    """What the answers read that the store lacks (empty: it can answer)."""
    missing = [t for t in _READ_TABLES if not has_table(conn, t)]
    schema = SCHEMA if conn.dialect.name == "postgresql" else None
    columns = {c["name"] for c in sa.inspect(conn).get_columns(HOT_SYMBOLS, schema=schema)}
    if "function_id" not in columns:
        missing.append("hot_symbols.function_id (migration 0002)")
    return missing


def error(message: str, *, code: int = exitcodes.ERROR, command: str = "query") -> int:
    """``stella-runtime <command>: <message>`` on stderr; returns ``code``."""
    print(f"stella-runtime {command}: {message}", file=sys.stderr)
    return code
