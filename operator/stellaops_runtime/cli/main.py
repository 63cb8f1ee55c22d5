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
import traceback

from stellaops_runtime import __version__
from stellaops_runtime.cli import exitcodes, pipes
from stellaops_runtime.cli.help_format import HelpFormatter
from stellaops_runtime.contracts.redact import redact_error

log = logging.getLogger(__name__)

# Subcommand name -> module, in the order `--help` lists them. Only the module
# of the command asked for is imported (each pulls in its own libraries: the
# operator kopf and kubernetes, the replay server grpcio, ...), so a command starts in a
# fraction of the time; `--help` and bad usage import them all.
COMMANDS = {
    "agent": "stellaops_runtime.cli.agent",
    "attribute": "stellaops_runtime.cli.attribute",
    "containers": "stellaops_runtime.cli.containers",
    "evidence": "stellaops_runtime.cli.evidence",
    "node-gone": "stellaops_runtime.cli.node_gone",
    "operator": "stellaops_runtime.cli.operator",
    "probes": "stellaops_runtime.cli.probes",
    "query": "stellaops_runtime.cli.query",
    "tetragon-replay": "stellaops_runtime.cli.replay",
    "symbolize": "stellaops_runtime.cli.symbolize",
    "vex": "stellaops_runtime.cli.vex",
    "witness": "stellaops_runtime.cli.witness",
}
SUBCOMMANDS = tuple(dict.fromkeys(COMMANDS.values()))
# Commands that demangle the names a user gives them (store/function_refs.py, cli/attribute.py): where
# the demangler bindings are missing or do not load, GNU c++filt answers (as in the agent,
# agent/canonicalizer_setup.py), started only at the first C++ or Rust name.
DEMANGLING = frozenset({"attribute", "evidence", "query", "vex", "witness"})


def _command_of(argv: list[str]) -> str | None:
    """The subcommand named in ``argv`` (the first word that is not an option or its value)."""
    it = iter(argv)
    for word in it:
        if word == "--log-level":
            next(it, None)
        elif not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


DESCRIPTION = """\
StellaOps Runtime: runtime evidence of which functions of which packages run in
which container images.

exit codes: 0 success (or "observed"), 1 a "no" answer (e.g. not observed
while the image was under observation), 2 error (bad usage, bad config, store
or server unreachable), 3 unknown (query: the image was never observed, or
not at a posture that can see function calls, so there is no evidence either
way), 130 interrupted (Ctrl-C).
"""


def _cxxfilt_if_bindings_fail() -> None:
    from stellaops_runtime.canonical import demangle
    from stellaops_runtime.canonical.cxxfilt import CxxfiltDemangler

    demangle.fallback_if_bindings_fail(CxxfiltDemangler)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stella-runtime",
        description=DESCRIPTION,
        formatter_class=HelpFormatter,  # argparse's, without shutil (cli/help_format.py)
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log verbosity (default INFO); logs go to stderr",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    command = _command_of(argv) if argv is not None else None
    for name in (COMMANDS[command],) if command else SUBCOMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def _end_cxxfilt() -> None:
    """End the c++filt a demangling command started and wait for it: left to end at our exit, it
    stays a zombie under a PID 1 that reaps no orphans (a container's own process: one per run)."""
    from stellaops_runtime.canonical import demangle
    from stellaops_runtime.canonical.cxxfilt import CxxfiltDemangler

    fallback = demangle.current_fallback()
    if isinstance(fallback, CxxfiltDemangler):
        fallback.close()  # a later name in this process starts it again


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        return _main(argv)
    finally:
        if _command_of(argv) in DEMANGLING:
            _end_cxxfilt()


def _main(argv: list[str]) -> int:
    pipes.ensure_stdout()  # started with stdout closed: write to /dev/null, the status is the answer
    if _command_of(argv) in DEMANGLING:  # before parsing: argparse reads --function
        _cxxfilt_if_bindings_fail()
    parser = build_parser(argv)
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
    except pipes.OutputError as e:  # a full disk: the answer was not written
        return _unwritten(args.command, e)
    except Exception as e:
        # Python's own exit status for an uncaught exception is 1, which `query observed`,
        # `evidence` and `vex` define as "no" (not observed): a crash must never read as an answer.
        # Where, for a bug report: the traceback's frames, not its last line (the message, which
        # can quote a store URL's password; it is printed redacted below).
        log.error("%s failed at\n%s", args.command, "".join(traceback.format_tb(e.__traceback__)))
        print(
            f"stella-runtime {args.command}: internal error, no answer: {type(e).__name__}: "
            f"{redact_error(e)} (exit {exitcodes.ERROR})",
            file=sys.stderr,
        )
        code = exitcodes.ERROR
    try:
        pipes.flush()
    except pipes.OutputError as e:
        return _unwritten(args.command, e)
    return code


def _unwritten(command: str, e: pipes.OutputError) -> int:
    print(f"stella-runtime {command}: cannot write the answer: {e} (exit {exitcodes.ERROR})", file=sys.stderr)
    return exitcodes.ERROR


if __name__ == "__main__":
    sys.exit(main())
