"""Entry point of ``stella-runtime``.

Each subcommand lives in its own module exposing ``register(subparsers)``,
which adds its parser and sets ``func`` to a handler ``(args) -> int``; this
module only wires them together and turns uncaught errors into exit code 2.
Output closed early by the reader (``| head -1``) ends quietly: no traceback,
the subcommand's exit status (see :mod:`stellaops_runtime.cli.pipes`).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from stellaops_runtime import __version__
from stellaops_runtime.cli import exitcodes, pipes

# Subcommand modules, in the order `--help` lists them.
SUBCOMMANDS = (
    "stellaops_runtime.cli.agent",
    "stellaops_runtime.cli.attribute",
    "stellaops_runtime.cli.evidence",
    "stellaops_runtime.cli.operator",
    "stellaops_runtime.cli.query",
    "stellaops_runtime.cli.replay",
    "stellaops_runtime.cli.symbolize",
    "stellaops_runtime.cli.vex",
    "stellaops_runtime.cli.witness",
)

DESCRIPTION = """\
StellaOps Runtime: runtime evidence of which functions of which packages run in
which container images.

exit codes: 0 success (or "observed"), 1 a "no" answer (e.g. not observed
while the image was under observation), 2 error (bad usage, bad config, store
or server unreachable), 3 unknown (query: the image was never observed, or
not at a posture that can see function calls, so there is no evidence either
way).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stella-runtime",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log verbosity (default INFO); logs go to stderr",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: 0 for --help/--version, 2 for usage errors
        pipes.flush()
        return int(e.code or 0)
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return exitcodes.ERROR
    try:
        code = int(args.func(args))
    except KeyboardInterrupt:
        code = exitcodes.INTERRUPTED
    except BrokenPipeError:  # the reader closed our output: not an error of ours
        pipes.silence_stdout()
        return exitcodes.OK
    pipes.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
