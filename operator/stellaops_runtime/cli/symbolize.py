"""``stella-runtime symbolize``: resolve addresses the way the agent does, for people and scripts.

Three input kinds, one JSON object per input on stdout, in input order::

    stella-runtime symbolize --pid PID ADDRESS...        # addresses in a live process
    stella-runtime symbolize --file PATH FILE_OFFSET...  # file offsets (what Tetragon frames carry)
    stella-runtime symbolize --kernel SYMBOL+0xOFF|ADDRESS...

Each object has ``input``, ``module``, ``build_id``, ``symbol``, ``offset``
(from the symbol's start; the file offset when unresolved), ``function_id``,
``source`` (symtab|dynsym|dwarf|gopclntab|kallsyms|hint|none), plus
``file_offset``, ``file_line`` (DWARF, when the binary has a line table),
``inlined`` (the functions the compiler inlined at that address, innermost
first, from Go's inline tree or DWARF; canonical/inlines.py) and
``error``/``detail`` when present. Numbers are hex (0x...) or decimal. An
address is read as it is (as ``llvm-symbolizer --inlines`` does); the agent
asks about a stack frame's return address minus one.

Exit codes: 0 every input resolved to a symbol; 1 some did not; 2 error (bad
usage, no such process, file missing, unreadable or not a usable ELF, not a
regular file, over its parse budget, or damaged).

``--root DIR`` resolves PATH inside DIR the way the container sees it
(symlinks re-rooted at DIR, ``..`` stops at DIR; canonical/rootopen.py): a
link to ``/etc/shadow`` names DIR's own ``/etc/shadow``, never the host's.
"""

from __future__ import annotations

import argparse
import json
import sys

from stellaops_runtime.canonical.resolution import Outcome, Resolution
from stellaops_runtime.canonical.symbolizer import Symbolizer
from stellaops_runtime.cli import exitcodes

HELP = """\
Resolve addresses to canonical function IDs (<build-id>:<symbol>+0x<offset>),
exactly as the agent canonicalizes stack frames.

  --pid PID ADDRESS...          addresses in live process PID (via /proc/PID/maps
                                and /proc/PID/root, so container files resolve)
  --file PATH FILE_OFFSET...    file offsets inside PATH (a Tetragon user frame's
                                module + offset)
  --kernel SYMBOL+0xOFF|ADDR... kernel frames (kallsyms; addresses need root)

One JSON object per input on stdout. Exit 0 all resolved, 1 some unresolved,
2 error (bad usage, no such process or file, not an ELF file).
"""

# Outcomes that mean the input as a whole is unusable (exit 2), not one unresolved frame.
_INPUT_ERRORS = frozenset(
    {
        Outcome.NO_SUCH_PROCESS,
        Outcome.UNREADABLE_FILE,
        Outcome.NOT_ELF,
        Outcome.TRUNCATED_ELF,
        Outcome.BAD_ELF,
        Outcome.NOT_REGULAR,
        Outcome.BUDGET_EXCEEDED,
        Outcome.MALFORMED,
        Outcome.KALLSYMS_UNREADABLE,
    }
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "symbolize",
        help="resolve addresses / file offsets / kernel frames to canonical function IDs",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--pid", type=int, metavar="PID", help="resolve ADDRESSes in this live process")
    what.add_argument("--file", metavar="PATH", help="resolve FILE_OFFSETs inside this ELF file")
    what.add_argument("--kernel", action="store_true", help="inputs are kernel SYMBOL+0xOFF or addresses")
    p.add_argument(
        "--root",
        default="/",
        metavar="DIR",
        help="with --file: PATH is resolved inside this root, never leaving it (default /)",
    )
    p.add_argument("--no-lines", action="store_true", help="skip file:line and inlined-function lookups")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="addresses, file offsets or SYMBOL+0xOFF")
    p.set_defaults(func=run)


def parse_number(text: str) -> int:
    """Hex (0x...) or decimal, non-negative; ValueError otherwise."""
    t = text.strip().lower()
    value = int(t, 16) if t.startswith("0x") else int(t, 10)
    if value < 0:
        raise ValueError(f"negative number {text!r}")
    return value


def parse_kernel_input(text: str) -> tuple[str, int] | int:
    """``SYMBOL+0xOFF`` / ``SYMBOL`` -> (symbol, offset); a number -> an address."""
    try:
        return parse_number(text)
    except ValueError:
        pass
    symbol, plus, off = text.rpartition("+")
    if not plus:
        symbol, off = text, "0"
    if not symbol or any(c.isspace() for c in symbol):
        raise ValueError(f"not SYMBOL+0xOFFSET or an address: {text!r}")
    return symbol, parse_number(off)


def run(args: argparse.Namespace) -> int:
    sym = Symbolizer(file_lines=not args.no_lines)
    try:
        results = _resolve(sym, args)
    except ValueError as e:
        print(f"stella-runtime symbolize: {e}", file=sys.stderr)
        return exitcodes.ERROR
    finally:
        sym.close()
    for r in results:
        print(json.dumps(r.to_json(), ensure_ascii=False), flush=False)
    sys.stdout.flush()
    errors = sorted({r.error for r in results if r.error in _INPUT_ERRORS})
    if errors:
        detail = next(r.detail for r in results if r.error in _INPUT_ERRORS)
        print(f"stella-runtime symbolize: {errors[0]}: {detail}", file=sys.stderr)
        return exitcodes.ERROR
    return exitcodes.OK if all(r.resolved for r in results) else exitcodes.NOT_FOUND


def _resolve(sym: Symbolizer, args: argparse.Namespace) -> list[Resolution]:
    inputs: list[str] = args.inputs
    if args.kernel:
        parsed = [parse_kernel_input(s) for s in inputs]
        out = []
        for text, value in zip(inputs, parsed, strict=True):
            if isinstance(value, int):
                out.append(sym.resolve_kernel_address(value, input=text))
            else:
                out.append(sym.resolve_kernel(value[0], value[1], input=text))
        return out
    numbers = []
    for s in inputs:
        try:
            numbers.append(parse_number(s))
        except ValueError:
            raise ValueError(f"not an address or offset (hex 0x... or decimal): {s!r}") from None
    if args.pid is not None:
        if args.pid <= 0:
            raise ValueError(f"not a process id: {args.pid}")
        return sym.resolve_pid_many(args.pid, numbers, inputs=inputs)
    return sym.resolve_file_many(args.file, numbers, root=args.root, inputs=inputs)
