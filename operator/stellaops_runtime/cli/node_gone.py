"""``stella-runtime node-gone``: an operator records that a node is gone for good.

A node lost without its agent's graceful stop (powered off, reclaimed without notice, its agent
killed and then uninstalled) reads open, unknown, for the images it ran on its last day, on every
later question until retention removes its rows. This command ends that at the store's now
(store/node_gone.py): the days from the node's watched end to now stay unknown, the later ones rest
on the nodes that watched the image. Refused, exit 1 and nothing written, for a node with a proof
of life or a row newer than ``--quiet-windows`` of its windows, or with no proof of life; exit 2 for
an error (bad usage, the store unreachable). A later proof of life on the node replaces the record.
"""

from __future__ import annotations

import argparse
import json

import sqlalchemy as sa

from stellaops_runtime.cli import exitcodes
from stellaops_runtime.cli.store_access import error, store_options, with_store
from stellaops_runtime.store.node_gone import DEFAULT_QUIET_WINDOWS, record_gone

HELP = __doc__.split("\n\n", 1)[1] if __doc__ else ""


def _node(text: str) -> str:
    if not text or len(text) > 253 or "\x00" in text or text != text.strip():
        raise argparse.ArgumentTypeError(f"not a node name: {text[:80]!r}")
    return text


def _windows(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= 100_000:
        raise argparse.ArgumentTypeError(f"not a number of windows from 1 to 100000: {text[:40]!r}")
    return n


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "node-gone",
        help="record that a node is gone for good (its images' later days no longer read unknown)",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--node", required=True, type=_node, metavar="NAME", help="the node's name")
    p.add_argument(
        "--quiet-windows",
        type=_windows,
        default=DEFAULT_QUIET_WINDOWS,
        metavar="N",
        help=f"refuse a node with a proof of life or a row newer than N of its windows "
        f"(default {DEFAULT_QUIET_WINDOWS})",
    )
    store_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    def ask(conn: sa.Connection) -> int:
        out = record_gone(conn, args.node, args.quiet_windows)
        if out.recorded:
            conn.commit()
        else:
            conn.rollback()
        if args.json:
            doc = {"node": args.node, "recorded": out.recorded, "at": out.at.isoformat()}
            print(
                json.dumps(
                    {**doc, "agent_id": out.agent_id} if out.recorded else {**doc, "refused": out.reason}
                )
            )
        elif out.recorded:
            print(f"node {args.node} recorded as gone at {out.at.isoformat()} (store clock)")
        if not out.recorded:
            return error(f"refused: {out.reason}", code=exitcodes.NOT_FOUND, command="node-gone")
        return exitcodes.OK

    return with_store(args, ask)
