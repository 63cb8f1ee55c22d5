"""``stella-runtime query``: ask the hot-symbol store what ran, and what a "no" rests on.

Four questions, each a subcommand: ``observed`` (was this function seen in
this image?), ``functions`` (which functions of this package ran?), ``hot``
(what runs most?) and ``images`` (which images were observed, when and how
well?). Answers are three-valued (DESIGN.md): *observed* (exit 0); *not
observed* while the image was under observation at a posture that can see
function calls (EbpfDeep: user stacks were sampled, contracts/posture.py),
stating the windows and posture that back it (exit 1);
*unknown* when there is no such evidence, when events were dropped (Tetragon's throttling or
rate limiting, the agent's own queue or probes) in a window it would rest on, or when calls
that may be the function's are stored where the question cannot count them
(evidence/doubts.py) (exit 3), saying why. Output is an
aligned table for people or, with ``--json``, one JSON document for scripts.

Images may be written ``registry/repo@sha256:…``, ``repo:tag@sha256:…``,
``sha256:…`` or as the bare hex digest; packages as package URLs (matched as
purls: no version = every version); functions as symbol names (mangled or
canonical) or function IDs. Malformed input is a usage error (exit 2).

Reading never changes the store: no migrations, and a SQLite file that does
not exist is an error rather than a new empty database; a store from before
migration 0003 answers with posture unknown, one from before 0002 is an error
naming what it lacks (cli/store_access.py). Every failure (bad URL,
unreachable server, never-migrated database) is one line on stderr and exit
2, never a traceback (cli/store_access.py, shared with the other commands
that read the store; cli/query_output.py prints).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any

import sqlalchemy as sa

from stellaops_runtime.cli import exitcodes
from stellaops_runtime.cli.query_images import run_images
from stellaops_runtime.cli.query_output import (
    FUNCTIONS_COLUMNS,
    HOT_COLUMNS,
    OBSERVED_COLUMNS,
    emit,
    emit_json,
    emit_line,
    table,
)
from stellaops_runtime.cli.store_access import (
    STORE_ENV,
    error,
    image_and_store_options,
    ref_type,
    store_options,
    with_store,
)
from stellaops_runtime.contracts.config import DEFAULT_STORE_URL
from stellaops_runtime.evidence.doubts import doubts as find_doubts
from stellaops_runtime.evidence.doubts import package_doubts, package_not_seen
from stellaops_runtime.store import coverage, queries
from stellaops_runtime.store.coverage import NOT_OBSERVED, OBSERVED, UNKNOWN, Verdict
from stellaops_runtime.store.coverage_open import open_gaps
from stellaops_runtime.store.function_refs import FunctionQuery, function_query
from stellaops_runtime.store.refs import PurlQuery, RefError, parse_rfc3339, plain_text
from stellaops_runtime.store.unnamed import unnamed_code

HELP = f"""\
Query the hot-symbol store the agent writes.

  observed   was FUNCTION observed in image IMAGE?
             exit 0 observed; 1 not observed while IMAGE was under observation
             (the window and posture are stated); 3 unknown (never observed, only
             at a posture that cannot see function calls: below EbpfDeep, no user
             stack sampled; Tetragon reported dropping events in the period,
             or calls that may be the function's
             are where the question cannot count them: a file of no package, a
             row the store refused, history retention removed, a function of
             an interpreted package (pypi, npm, a deb of Python modules, ...;
             without --purl: of an image running interpreted code) asked by
             name (not by function ID or mangled symbol), which no sampled
             stack names, a PURL never seen loaded in IMAGE (mistyped?); each
             is named)
  functions  the functions of package PURL observed in IMAGE (exit 1 none, 3 unknown:
             also when the package, or the --prefix, matches no stored package,
             or a function of IMAGE ran in a file of no package: it may be PURL's)
  hot        the most-invoked functions of IMAGE (exit 1 none, 3 unknown)
  images     every image known: windows, nodes, posture, events, rows, state
             (observed; watched, nothing observed; gaps only: ran unwatched)

IMAGE: registry/repo@sha256:<hex>, repo:tag@sha256:<hex>, sha256:<hex> or <hex>.
PURL: a package URL; without a version it matches every version of the package.
The store is --store, else ${STORE_ENV}, else {DEFAULT_STORE_URL}.
Exit 2 on errors (malformed input, bad URL, store unreachable, no data yet).
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "query",
        help="ask the hot-symbol store what ran (observed, functions, hot, images)",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    qs = p.add_subparsers(dest="query", metavar="QUESTION")
    p.set_defaults(func=lambda _args: _usage(p))

    o = qs.add_parser(
        "observed",
        help="was a function observed in an image? (exit 0 yes, 1 no, 3 unknown)",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    image_and_store_options(o)
    o.add_argument(
        "--function",
        required=True,
        type=ref_type(function_query),
        metavar="NAME|ID",
        help="symbol name (mangled or canonical) or function ID <build-id>:<symbol>+0x<offset>",
    )
    o.add_argument("--purl", metavar="PURL", help="only rows of this package (no version: any version)")
    o.add_argument(
        "--since", type=ref_type(parse_rfc3339), metavar="TIME", help="RFC 3339 start of the period"
    )
    o.add_argument("--until", type=ref_type(parse_rfc3339), metavar="TIME", help="RFC 3339 end of the period")
    o.set_defaults(func=run_observed)

    f = qs.add_parser("functions", help="functions of a package observed in an image")
    image_and_store_options(f)
    f.add_argument(
        "--purl", required=True, metavar="PURL", help="package URL (or a raw prefix with --prefix)"
    )
    f.add_argument(
        "--prefix",
        "--purl-prefix",
        dest="prefix",
        action="store_true",
        help="treat PURL as a raw string prefix, e.g. pkg:deb/debian/openssl@",
    )
    f.set_defaults(func=run_functions)

    h = qs.add_parser("hot", help="the most-invoked functions of an image")
    image_and_store_options(h)
    h.add_argument("--limit", type=_positive_int, default=20, metavar="N", help="how many rows (default 20)")
    h.set_defaults(func=run_hot)

    i = qs.add_parser(
        "images", help="every image known: observation windows, posture and state (gaps only included)"
    )
    store_options(i)
    i.set_defaults(func=run_images)


MAX_LIMIT = 2**63 - 1


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {n}")
    if n > MAX_LIMIT:  # a SQL LIMIT is a 64-bit integer: past it, the database's error, not an answer
        raise argparse.ArgumentTypeError(f"expected a positive integer at most {MAX_LIMIT}, got {n}")
    return n


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_help(sys.stderr)
    return exitcodes.ERROR


EXIT = {OBSERVED: exitcodes.OK, NOT_OBSERVED: exitcodes.NOT_FOUND, UNKNOWN: exitcodes.UNKNOWN}


# -- handlers -----------------------------------------------------------------


def run_observed(args: argparse.Namespace) -> int:
    fq: FunctionQuery = args.function
    since: dt.datetime | None = args.since
    until: dt.datetime | None = args.until
    if since is not None and until is not None and since > until:
        return error("--since is after --until", code=exitcodes.ERROR)
    try:
        pq = PurlQuery.parse(args.purl) if args.purl is not None else None
    except RefError as e:
        return error(str(e))
    what = fq.text + (f" ({args.purl})" if args.purl else "")

    def ask(conn: sa.Connection) -> int:
        queries.snapshot(conn)  # one snapshot: agents flush while this reads
        rows = queries.observed(conn, image=args.image, function=fq, purl=pq, since=since, until=until)
        groups = coverage.image_windows(conn, image=args.image, since=since, until=until)
        by_evidence = ""
        if rows:
            counts: dict[str, int] = {}
            for r in rows:
                counts[r.evidence_kind] = counts.get(r.evidence_kind, 0) + r.invocation_count
            by_evidence = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
            verdict = Verdict(OBSERVED, f"{what} observed in {args.image}: {by_evidence}", None)
            cov = coverage.backing(groups)
        else:
            gaps = coverage.image_gaps(conn, image=args.image, since=since, until=until)
            gaps += open_gaps(conn, image=args.image, since=since, until=until)  # now: the store's clock
            nameless = unnamed_code(conn, image=args.image, function=fq, purl=pq, since=since, until=until)
            doubts = find_doubts(conn, image=args.image, function=fq, purl=pq, since=since, until=until)
            unknown_package = package_not_seen(conn, image=args.image, purl=pq)
            if unknown_package is not None:  # a mistyped purl: no "not observed" of it
                doubts.insert(0, unknown_package)
            unseen = coverage.image_unseen(conn, image=args.image, since=since, until=until)
            first = coverage.first_record(conn) if since is not None else None  # before it: nothing known
            verdict = coverage.absence(
                args.image, groups, since=since, until=until, gaps=gaps, unnamed=nameless, doubts=doubts,
                unseen=unseen, recorded_from=first,
            )  # fmt: skip
            cov = verdict.coverage
        if args.json:
            doc: dict[str, Any] = {"image": args.image, "function": fq.text}
            if args.purl is not None:
                doc["purl"] = args.purl
            if since is not None or until is not None:
                doc["since"] = queries.rfc3339(since) if since else None
                doc["until"] = queries.rfc3339(until) if until else None
            doc |= {
                "answer": verdict.answer,
                "observed": {OBSERVED: True, NOT_OBSERVED: False}.get(verdict.answer),
                "reason": verdict.reason,
                "coverage": cov.to_json() if cov is not None else None,
                "gaps": [g.to_json() for g in verdict.gaps],
                "unnamed": [u.to_json() for u in verdict.unnamed],
                "unseen": [u.to_json() for u in verdict.unseen],
                "records": [r.to_json() for r in rows],
            }
            for d in verdict.doubts:  # the rows an "unknown" rests on: refused, unattributed, ...
                doc |= d.to_json()
            emit_json(doc)
        elif verdict.answer == OBSERVED:
            emit_line(f"observed: {what} in {args.image} ({by_evidence})")
            emit(table(rows, OBSERVED_COLUMNS))
            if cov is not None:
                emit_line(f"coverage: {cov.describe()}")
        elif verdict.answer == NOT_OBSERVED:
            assert cov is not None
            emit_line(f"not observed: {what} in {args.image}, under observation {cov.describe()}")
        else:
            emit_line(f"unknown: {what} in {args.image}: {verdict.reason}")
        return EXIT[verdict.answer]

    return with_store(args, ask)


def _empty_answer(
    conn: sa.Connection, image: str, purl: PurlQuery | None = None, prefix: str | None = None
) -> Verdict:
    windows = coverage.image_windows(conn, image=image)
    doubts = package_doubts(conn, image=image, purl=purl, prefix=prefix)
    gaps, unseen = coverage.image_gaps(conn, image=image), coverage.image_unseen(conn, image=image)
    gaps += open_gaps(conn, image=image)
    return coverage.absence(image, windows, gaps=gaps, doubts=doubts, unseen=unseen)


def run_functions(args: argparse.Namespace) -> int:
    try:
        pq = None if args.prefix else PurlQuery.parse(args.purl)
        if pq is None:
            plain_text(args.purl, "package URL prefix")
    except RefError as e:
        return error(str(e))

    def ask(conn: sa.Connection) -> int:
        queries.snapshot(conn)  # one snapshot: agents flush while this reads
        if pq is None:
            rows = queries.functions(conn, image=args.image, purl_prefix=args.purl)
        else:
            rows = queries.functions(conn, image=args.image, purl=pq)
        prefix = args.purl if pq is None else None
        verdict = Verdict(OBSERVED, "", None) if rows else _empty_answer(conn, args.image, pq, prefix)
        if args.json:
            emit_json(
                {
                    "image": args.image,
                    "purl": args.purl,
                    "prefix": bool(args.prefix),
                    "answer": verdict.answer,
                    "functions": [r.to_json() for r in rows],
                }
                | ({"reason": verdict.reason} if not rows else {})
                | {k: v for d in verdict.doubts for k, v in d.to_json().items()}
            )
        elif rows:
            emit(table(rows, FUNCTIONS_COLUMNS))
        else:
            kind = "prefix" if args.prefix else "package"
            head = f"no functions of {kind} {args.purl} observed in {args.image}"
            if verdict.answer == UNKNOWN:
                emit_line(f"unknown: {head}: {verdict.reason}")
            else:
                assert verdict.coverage is not None
                emit_line(f"{head}, under observation {verdict.coverage.describe()}")
        return EXIT[verdict.answer]

    return with_store(args, ask)


def run_hot(args: argparse.Namespace) -> int:
    def ask(conn: sa.Connection) -> int:
        queries.snapshot(conn)  # one snapshot: agents flush while this reads
        rows = queries.hot(conn, image=args.image, limit=args.limit)
        verdict = Verdict(OBSERVED, "", None) if rows else _empty_answer(conn, args.image)
        if args.json:
            emit_json(
                {"image": args.image, "limit": args.limit, "answer": verdict.answer}
                | ({"reason": verdict.reason} if not rows else {})
                | {"hot": [r.to_json() for r in rows]}
                | {k: v for d in verdict.doubts for k, v in d.to_json().items()}
            )
        elif rows:
            emit(table(rows, HOT_COLUMNS))
        elif verdict.answer == UNKNOWN:
            emit_line(f"unknown: no functions observed in {args.image}: {verdict.reason}")
        else:
            assert verdict.coverage is not None
            cov_text = verdict.coverage.describe()
            emit_line(f"no functions observed in {args.image}, under observation {cov_text}")
        return EXIT[verdict.answer]

    return with_store(args, ask)
