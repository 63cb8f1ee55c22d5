"""``stella-runtime tetragon-replay``: serve a recorded Tetragon JSON export over gRPC.

Stands in for a node's Tetragon in demos, end-to-end tests and local runs of
the agent: point the agent's ``tetragon.address`` at the printed address. The
one line ``listening on <address>`` on stdout is the contract scripts wait for
(port 0 picks a free port); logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any

from stellaops_runtime.cli import exitcodes
from stellaops_runtime.replay.events import LoadResult, load_events
from stellaops_runtime.replay.server import PolicyStatus, ReplayServer

log = logging.getLogger(__name__)

POLICY_STATES = ("ENABLED", "DISABLED", "LOAD_ERROR", "ERROR", "LOADING", "UNLOADING")
MAX_LINE_WARNINGS = 10

DESCRIPTION = """\
Serve the events of a Tetragon JSON export (one GetEventsResponse per line, as
written by Tetragon's export or `tetra getevents -o json`) through a real
tetragon.FineGuidanceSensors gRPC server: GetEvents (with Tetragon's allow/deny
filter semantics), GetHealth, GetVersion, ListTracingPolicies, plus the standard
grpc.health.v1 service. Each GetEvents stream replays the file from its first
line; after the last event the stream stays open (like Tetragon) unless --loop.
Prints "listening on ADDRESS" once bound; stops on SIGTERM or SIGINT.
"""


def _positive_rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0 events/s, got {text}")
    return value


def _policy(text: str) -> PolicyStatus:
    name, sep, rest = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=STATE[:MESSAGE], got {text!r}")
    state, _, message = rest.partition(":")
    state = state.upper()
    if state not in POLICY_STATES:
        raise argparse.ArgumentTypeError(f"state {state!r} is not one of {', '.join(POLICY_STATES)}")
    return PolicyStatus(name=name, state=state, message=message)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "tetragon-replay",
        help="serve a recorded Tetragon JSON export as a Tetragon gRPC server",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "file",
        metavar="FILE",
        help="Tetragon JSON export to replay, .jsonl or gzip-compressed .jsonl.gz",
    )
    parser.add_argument(
        "--listen",
        default="localhost:54321",
        metavar="HOST:PORT|unix:///path",
        help="address to serve on (default localhost:54321, Tetragon's own default; "
        "port 0 picks a free port; unix:///path serves on a Unix socket, "
        "replacing a stale socket file)",
    )
    parser.add_argument(
        "--rate",
        type=_positive_rate,
        default=None,
        metavar="EVENTS_PER_S",
        help="pace every stream at this many events per second (default: as fast as the client reads)",
    )
    parser.add_argument(
        "--loop",
        action="store_true",
        help="after the last event start again from the first (default: keep the stream open and idle)",
    )
    parser.add_argument(
        "--policy",
        type=_policy,
        action="append",
        default=None,
        metavar="NAME=STATE[:MESSAGE]",
        help="a tracing policy ListTracingPolicies reports (repeatable; replaces the default of one "
        f"ENABLED policy per policy_name in FILE); STATE is one of {', '.join(POLICY_STATES)}; "
        "MESSAGE becomes the error (LOAD_ERROR, ERROR) or info text",
    )
    parser.set_defaults(func=run)


def _load(path: str) -> LoadResult | None:
    try:
        result = load_events(path)
    except (OSError, EOFError, UnicodeDecodeError) as e:
        print(f"tetragon-replay: cannot read {path}: {e}", file=sys.stderr)
        return None
    for line_no, message in result.errors[:MAX_LINE_WARNINGS]:
        print(f"tetragon-replay: warning: {path}:{line_no}: skipped: {message}", file=sys.stderr)
    if len(result.errors) > MAX_LINE_WARNINGS:
        print(
            f"tetragon-replay: warning: {len(result.errors)} lines skipped in total "
            f"({len(result.errors) - MAX_LINE_WARNINGS} not shown)",
            file=sys.stderr,
        )
    if not result.events:
        print(f"tetragon-replay: no valid events in {path}", file=sys.stderr)
        return None
    return result


async def _serve(args: argparse.Namespace, loaded: LoadResult) -> int:
    server = ReplayServer(loaded.events, rate=args.rate, loop=args.loop, policies=args.policy)
    try:
        address = await server.start(args.listen)
    except RuntimeError as e:
        print(f"tetragon-replay: {e}", file=sys.stderr)
        return exitcodes.ERROR
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"listening on {address}", flush=True)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await server.stop()
    log.info("served %d events on %d streams", server.served, server.streams_opened)
    return exitcodes.OK


def run(args: argparse.Namespace) -> int:
    loaded = _load(args.file)
    if loaded is None:
        return exitcodes.ERROR
    log.info("loaded %d events from %s (%d lines skipped)", len(loaded.events), args.file, len(loaded.errors))
    return asyncio.run(_serve(args, loaded))
