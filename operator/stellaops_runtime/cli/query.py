"""``stella-runtime query``: ask the hot-symbol store what ran.

Three questions, each a subcommand: ``observed`` (was this function seen in
this image? exit 0 yes, 1 no), ``functions`` (which functions of this
package ran?) and ``hot`` (what runs most?). Output is an aligned table for
people or, with ``--json``, one JSON document for scripts.

Reading never changes the store: no migrations, and a SQLite file that does
not exist is an error rather than a new empty database. Every failure
(bad URL, unreachable server, never-migrated database) is one line on stderr
and exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

from stellaops_runtime.cli import exitcodes
from stellaops_runtime.contracts.config import DEFAULT_STORE_URL, STORE_URL_ENV
from stellaops_runtime.store import queries
from stellaops_runtime.store.engine import (
    StoreError,
    create_store_engine,
    has_schema,
    normalize_url,
    safe_url,
    sqlite_path,
)
from stellaops_runtime.store.queries import SymbolRow, rfc3339

STORE_ENV = STORE_URL_ENV

HELP = f"""\
Query the hot-symbol store the agent writes.

  observed   was FUNCTION observed in image DIGEST?  exit 0 yes, 1 no
  functions  the functions of package PURL observed in DIGEST (exit 1 if none)
  hot        the most-invoked functions of DIGEST (exit 1 if none)

The store is --store, else ${STORE_ENV}, else {DEFAULT_STORE_URL}.
Exit 2 on errors (bad URL, store unreachable, no data yet).
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "query",
        help="ask the hot-symbol store what ran (observed, functions, hot)",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    qs = p.add_subparsers(dest="query", metavar="QUESTION")
    p.set_defaults(func=lambda _args: _usage(p))

    o = qs.add_parser("observed", help="was a function observed in an image? (exit 0 yes, 1 no)")
    _common(o)
    o.add_argument("--function", required=True, metavar="NAME", help="canonical function name")
    o.add_argument("--purl", metavar="PURL", help="only count rows of this package (exact match)")
    o.set_defaults(func=run_observed)

    f = qs.add_parser("functions", help="functions of a package observed in an image")
    _common(f)
    f.add_argument(
        "--purl", required=True, metavar="PURL", help="package URL (exact, or a prefix with --prefix)"
    )
    f.add_argument(
        "--prefix",
        "--purl-prefix",
        dest="prefix",
        action="store_true",
        help="treat PURL as a prefix, e.g. pkg:deb/debian/openssl@",
    )
    f.set_defaults(func=run_functions)

    h = qs.add_parser("hot", help="the most-invoked functions of an image")
    _common(h)
    h.add_argument("--limit", type=_positive_int, default=20, metavar="N", help="how many rows (default 20)")
    h.set_defaults(func=run_hot)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image", required=True, metavar="DIGEST", help="image digest, e.g. sha256:...")
    p.add_argument(
        "--store",
        metavar="URL",
        default=None,
        help=f"store URL (default: ${STORE_ENV} or {DEFAULT_STORE_URL})",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document instead of a table")


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {n}")
    return n


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_help(sys.stderr)
    return exitcodes.ERROR


# -- handlers -----------------------------------------------------------------


def run_observed(args: argparse.Namespace) -> int:
    def ask(conn: sa.Connection) -> int:
        rows = queries.observed(conn, image=args.image, function=args.function, purl=args.purl)
        if args.json:
            doc: dict[str, Any] = {"image": args.image, "function": args.function}
            if args.purl is not None:
                doc["purl"] = args.purl
            doc |= {"observed": bool(rows), "records": [r.to_json() for r in rows]}
            _print_json(doc)
        else:
            what = f"{args.function}" + (f" ({args.purl})" if args.purl else "")
            if rows:
                by_evidence: dict[str, int] = {}
                for r in rows:
                    by_evidence[r.evidence_kind] = by_evidence.get(r.evidence_kind, 0) + r.invocation_count
                counts = ", ".join(f"{k} {v}" for k, v in sorted(by_evidence.items()))
                print(f"observed: {what} in {args.image} ({counts})")
                print(_table(rows, OBSERVED_COLUMNS))
            else:
                print(f"not observed: {what} in {args.image}")
        return exitcodes.OK if rows else exitcodes.NOT_FOUND

    return _with_store(args, ask)


def run_functions(args: argparse.Namespace) -> int:
    def ask(conn: sa.Connection) -> int:
        if args.prefix:
            rows = queries.functions(conn, image=args.image, purl_prefix=args.purl)
        else:
            rows = queries.functions(conn, image=args.image, purl=args.purl)
        if args.json:
            _print_json(
                {
                    "image": args.image,
                    "purl": args.purl,
                    "prefix": bool(args.prefix),
                    "functions": [r.to_json() for r in rows],
                }
            )
        elif rows:
            print(_table(rows, FUNCTIONS_COLUMNS))
        else:
            kind = "prefix" if args.prefix else "package"
            print(f"no functions of {kind} {args.purl} observed in {args.image}")
        return exitcodes.OK if rows else exitcodes.NOT_FOUND

    return _with_store(args, ask)


def run_hot(args: argparse.Namespace) -> int:
    def ask(conn: sa.Connection) -> int:
        rows = queries.hot(conn, image=args.image, limit=args.limit)
        if args.json:
            _print_json({"image": args.image, "limit": args.limit, "hot": [r.to_json() for r in rows]})
        elif rows:
            print(_table(rows, HOT_COLUMNS))
        else:
            print(f"no functions observed in {args.image}")
        return exitcodes.OK if rows else exitcodes.NOT_FOUND

    return _with_store(args, ask)


# -- store access -------------------------------------------------------------


def store_url(args: argparse.Namespace) -> str:
    return str(args.store or os.environ.get(STORE_ENV) or DEFAULT_STORE_URL)


def _with_store(args: argparse.Namespace, ask: Callable[[sa.Connection], int]) -> int:
    """Open the store read-only-ish, run ``ask``, map every failure to one line + exit 2."""
    url = store_url(args)
    try:
        u = normalize_url(url)
        shown = safe_url(u)
        if u.get_backend_name() == "sqlite":
            path = sqlite_path(u)
            if path is not None and not path.is_file():
                return _error(f"no hot-symbol store at {shown}: {path} does not exist (run the agent first)")
        engine = create_store_engine(u)
    except StoreError as e:
        return _error(str(e))
    except Exception as e:  # e.g. a driver that is not installed
        return _error(f"cannot open store {safe_url(url)}: {e}")
    try:
        with engine.connect() as conn:
            if not has_schema(conn):
                return _error(f"no hot-symbol data in {shown}: run the agent first")
            return ask(conn)
    except sa.exc.SQLAlchemyError as e:
        detail = str(getattr(e, "orig", None) or e).strip().splitlines()
        return _error(f"cannot query store {shown}: {detail[0] if detail else type(e).__name__}")
    finally:
        engine.dispose()


def _error(message: str) -> int:
    print(f"stella-runtime query: {message}", file=sys.stderr)
    return exitcodes.ERROR


# -- output -------------------------------------------------------------------

Column = tuple[str, Callable[[SymbolRow], str]]

OBSERVED_COLUMNS: list[Column] = [
    ("MODULE", lambda r: r.module),
    ("EVIDENCE", lambda r: r.evidence_kind),
    ("PURL", lambda r: r.purl or "-"),
    ("INVOCATIONS", lambda r: str(r.invocation_count)),
    ("CALLERS", lambda r: str(r.unique_callers)),
    ("CONFIDENCE", lambda r: f"{r.confidence:.2f}"),
    ("FIRST SEEN", lambda r: rfc3339(r.first_seen)),
    ("LAST SEEN", lambda r: rfc3339(r.last_seen)),
    ("NODE", lambda r: r.node_name or "-"),
]
FUNCTIONS_COLUMNS: list[Column] = [
    ("FUNCTION", lambda r: r.function_name),
    ("MODULE", lambda r: r.module),
    ("EVIDENCE", lambda r: r.evidence_kind),
    ("PURL", lambda r: r.purl or "-"),
    ("INVOCATIONS", lambda r: str(r.invocation_count)),
    ("LAST SEEN", lambda r: rfc3339(r.last_seen)),
]
HOT_COLUMNS: list[Column] = [
    ("INVOCATIONS", lambda r: str(r.invocation_count)),
    ("FUNCTION", lambda r: r.function_name),
    ("MODULE", lambda r: r.module),
    ("EVIDENCE", lambda r: r.evidence_kind),
    ("PURL", lambda r: r.purl or "-"),
    ("CONFIDENCE", lambda r: f"{r.confidence:.2f}"),
]
_NUMERIC = {"INVOCATIONS", "CALLERS", "CONFIDENCE"}


def _table(rows: Sequence[SymbolRow], columns: Sequence[Column]) -> str:
    """Aligned plain-text columns: numbers right-aligned, the last column unpadded."""
    cells = [[h for h, _ in columns]] + [[fmt(r) for _, fmt in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = []
    for row in cells:
        parts = []
        for i, (text, (head, _)) in enumerate(zip(row, columns, strict=True)):
            if i == len(columns) - 1:
                parts.append(text)
            elif head in _NUMERIC:
                parts.append(text.rjust(widths[i]))
            else:
                parts.append(text.ljust(widths[i]))
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def _print_json(doc: dict[str, Any]) -> None:
    json.dump(doc, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")
