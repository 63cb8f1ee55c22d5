"""``stella-runtime evidence``: the seed's Evidence document for one function of one package in one image.

It states the reachability state (DynamicReachable, LiveExploitPath,
PotentiallyReachable, or defer to static analysis), its confidence and the
RTS factor, from what the store recorded (docs/evidence.md). Exit 0 when the
function was observed, 1 when it was not while the image was watched (the
state is PotentiallyReachable), 3 when the runtime has nothing to say (defer
to static analysis), 2 on errors, as ``query`` does.
"""

from __future__ import annotations

import argparse
import sys

import sqlalchemy as sa

from stellaops_runtime.cli import exitcodes
from stellaops_runtime.cli.query_output import emit_json, emit_line
from stellaops_runtime.cli.store_access import image_and_store_options as _common
from stellaops_runtime.cli.store_access import ref_type as _arg
from stellaops_runtime.cli.store_access import with_store as _with_store
from stellaops_runtime.evidence.document import evidence
from stellaops_runtime.evidence.reachability import State
from stellaops_runtime.evidence.store_facts import observe
from stellaops_runtime.store.function_refs import function_query
from stellaops_runtime.store.queries import snapshot
from stellaops_runtime.store.refs import PurlQuery, RefError
from stellaops_runtime.witness.issued import no_later_than_store

HELP = """\
Print the Evidence document for FUNCTION of package PURL in image IMAGE:
the reachability state, its confidence and the Runtime (RTS) factor, the
observation window and gaps it rests on, the call counts and a sample stack.

exit 0: observed (DynamicReachable, or LiveExploitPath with --exploit-path)
exit 1: not observed while the image was watched (PotentiallyReachable)
exit 3: the runtime has nothing to say: defer to static analysis
exit 2: errors (malformed input, store unreachable, no data yet)
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "evidence",
        help="the Evidence document for a function: reachability state, confidence, RTS",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(p)
    p.add_argument("--purl", required=True, metavar="PURL", help="package URL (no version: any version)")
    p.add_argument(
        "--function",
        required=True,
        type=_arg(function_query),
        metavar="NAME|ID",
        help="symbol name (mangled or canonical) or function ID <build-id>:<symbol>+0x<offset>",
    )
    p.add_argument(
        "--exploit-path",
        action="store_true",
        help="the claim records a confirmed vulnerable flow: an observed function is LiveExploitPath",
    )
    p.set_defaults(func=run)


EXIT = {
    State.DYNAMIC_REACHABLE: exitcodes.OK,
    State.LIVE_EXPLOIT_PATH: exitcodes.OK,
    State.POTENTIALLY_REACHABLE: exitcodes.NOT_FOUND,
}


def run(args: argparse.Namespace) -> int:
    try:
        pq = PurlQuery.parse(args.purl)
    except RefError as e:
        print(f"stella-runtime evidence: {e}", file=sys.stderr)
        return exitcodes.ERROR

    def ask(conn: sa.Connection) -> int:
        snapshot(conn)  # one snapshot: agents flush while this reads
        obs = observe(conn, image=args.image, purl=pq, function=args.function, exploit_path=args.exploit_path)
        # dated no later than the store's clock, as a witness of it is (witness/issued.py)
        doc = no_later_than_store(
            conn, evidence(obs, image=args.image, purl=args.purl, function=args.function.text)
        )
        state = doc["reachability_state"]
        if args.json:
            emit_json(doc)
        else:
            data, r = doc["data"], doc["rts"]
            emit_line(f"state: {state or 'none (defer to static analysis)'}")
            emit_line(f"confidence: {doc['confidence'] if doc['confidence'] is not None else '-'}")
            emit_line(f"rts: {r['score']:.2f} (weight {r['weight']}): {r['scenario']}")
            emit_line(f"reason: {doc['reason']}")
            emit_line(f"invocations: {data['invocation_count']} (busiest day {data['max_calls_in_a_day']})")
            emit_line(f"observation window: {data['observation_window'] or '-'}")
            emit_line(f"watched days: {data['watched_days']}, without calls: {data['days_without_calls']}")
            for g in obs.gaps:
                emit_line(f"gap: {g.describe()}")
            for u in obs.unnamed:
                emit_line(f"ran under no name: {u.describe()}")
            for d in obs.doubts:
                emit_line(f"may have run ({d.kind}): {d.why}")
        if (obs.unnamed or obs.doubts) and not obs.facts.invocations:  # may be that code
            return exitcodes.UNKNOWN
        return EXIT.get(State(state), exitcodes.UNKNOWN) if state else exitcodes.UNKNOWN

    return _with_store(args, ask)
