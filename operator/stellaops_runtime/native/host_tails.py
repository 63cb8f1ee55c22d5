"""Split tails and entry clones of the node's own probed files: probes and "probed in part" facts.

Why this module exists: a ``binaryPath`` function of the probe ConfigMap (or a uprobe of the agent's
own settings) is probed at its name in a file of the node. When gcc split it by partial inlining
(``f`` and ``f.part.0``), a caller that inlined its head calls the tail directly and that call is
never counted, yet an answer about the node's host processes (image ``host:<node>``, where their
calls are stored: contracts/events.py ``image_key``) said "not observed". The functions named by
PURL already store such tails (native/purl_targets.py, agent/unprobed.py); this does the same for
the node's files: each file's tails of the functions probed in it are read from its ``.symtab``,
else from its separate debug file (native/purl_debug.py), once per load of the probes, and
stored as ``unprobed`` facts under ``host:<node>``, with the file's build-id and no package (a fact
of no package counts for every package's question, store/queries.py ``unprobed``).

The same read gives the function's entry clones (``crc32.isra.0``, ``crc32.constprop.0``: gcc -O2
may compile a static function into those only, and a probe by the exact name then counted
nothing). The BCC probes probe them, by name, as the PURL functions' clones are
(:func:`host_functions`); one they have no room for is a fact. Tetragon's TracingPolicy names the
symbol only (controller/render_policy.py), so while Tetragon is the source every tail and clone of
the ConfigMap's ``binaryPath`` functions is a fact (``room=0``: agent/tetragon_facts.py).

Only files the node's processes run are the host's: a target under a container's root
(``/proc/<pid>/root`` of another pid) or a PURL target is left out. A path in the agent's own root
(``/``) is taken as the node's (an agent run on the node, or a policy without a host root): were it
the agent image's file, its fact would only turn an answer about the host into ``unknown``. A
container that runs the node's file (a hostPath mount) has its calls stored under its own image;
the facts stored here follow the file there by build-id when the answers are made
(store/node_facts.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from stellaops_runtime.canonical.elflayout import ElfError, file_build_id
from stellaops_runtime.native.config import UprobeTarget
from stellaops_runtime.native.follow_files import open_path, split_root
from stellaops_runtime.native.purl_debug import debug_symbols, with_debug
from stellaops_runtime.native.purl_targets import function_offsets
from stellaops_runtime.native.symaddr import SymbolNotFound, find_address

HOST_ROOTS = ("/", "/proc/1/root")  # the agent's and the node's root (a hostPID agent)
Facts = dict[tuple[str, str, str], tuple[str, str]]  # (image, module, tail) -> (build-id, PURL "")


@dataclass(frozen=True, slots=True)
class HostFunctions:
    """What the node's probed files hold beside the functions probed: facts, and clones to probe."""

    facts: Facts  # split tails (and entry clones not probed) as ``unprobed`` facts of ``host:<node>``
    clones: tuple[UprobeTarget, ...] = ()  # the entry clones to probe, under their own names
    # (clone label, period): a clone keeps its function's rateLimit (NativeConfig.uprobe_periods)
    periods: tuple[tuple[str, int], ...] = ()


def host_tails(targets: Iterable[UprobeTarget], *, node_name: str, debug_files: bool = True) -> Facts:
    """The split tails, in the node's files, of the functions ``targets`` probe there, as facts of
    ``host:<node_name>`` under the path events name the file by (``module``, else ``binary``)."""
    return host_functions(targets, node_name=node_name, debug_files=debug_files, room=None).facts


def host_functions(
    targets: Iterable[UprobeTarget],
    *,
    node_name: str,
    debug_files: bool = True,
    room: int | None = 0,
    periods: Iterable[tuple[str, int]] = (),
) -> HostFunctions:
    """:func:`host_tails`, and the GCC entry clones (``crc32.isra.0``, ``crc32.constprop.0``:
    purl_targets.function_offsets) of those functions in those files.

    ``room``: how many clones may still be probed (the BCC probes: MAX_UPROBE_TARGETS less the
    targets already planned); each becomes a target of the same file and ``module``, probed by name
    as a PURL function's clone is (the loader finds its address: native/symaddr.py), its calls
    counted under its own name, which every answer counts as the function's. A clone past ``room``
    (``0``: Tetragon is the source, its TracingPolicy names the symbol only) is a fact, as a tail
    is: the answer is then unknown, never "not observed". None: clones are not looked at.
    ``periods``: the functions' rateLimits (``UprobeTarget.label()`` -> seconds), given to their clones.
    """
    by_file: dict[tuple[str, str], set[str]] = {}
    for t in targets:
        if t.root or split_root(t.binary)[0] not in HOST_ROOTS:
            continue  # a PURL target (a container's file), or a file under a container's root
        by_file.setdefault((t.binary, t.module or t.binary), set()).add(t.symbol)
    period_of = dict(periods)
    out: Facts = {}
    clones: list[UprobeTarget] = []
    clone_periods: list[tuple[str, int]] = []
    for (binary, module), symbols in sorted(by_file.items()):
        try:
            fd, _st = open_path(binary)
        except OSError:
            continue  # gone or unreadable: the probe's attach says so
        try:
            tails: dict[str, set[str]] = {}
            found, entry = function_offsets(fd, symbols, tails)
            debug = debug_symbols(fd, *split_root(binary), symbols, function_offsets) if debug_files else None
            if debug:  # stripped: its debug file's tails and clones (the probe finds its address there)
                found, entry, tails = with_debug(found, entry, tails, debug)
            of_file = {s: set(of) for s, of in tails.items()}
            taken = set(found.values())  # one probe per offset: not a clone where a name asked is probed
            for s, of in entry.items() if room is not None else ():
                of_file.setdefault(s, set()).update(c for c, off in of.items() if off not in taken)
            for s in symbols - found.keys() - {s for s, of in entry.items() if of}:
                of_file.setdefault(s, set()).add(s)  # absent: no probe can be placed, a fact
            with os.fdopen(os.dup(fd), "rb") as f:
                bid = file_build_id(f)[0] if any(of_file.values()) else ""
        except Exception:  # not ELF, damaged, over budget: no tail known from it
            out.update(
                _absent_by_lookup(binary, module, symbols, node_name=node_name, debug_files=debug_files)
            )
            continue
        finally:
            os.close(fd)
        for base in sorted(of_file):
            for name in sorted(of_file[base]):
                if name in tails.get(base, ()) or name == base:  # a tail, or the function absent
                    out[(f"host:{node_name}", module, name)] = (bid, "")
                elif room is not None and len(clones) < room:
                    t = UprobeTarget(binary, name, "" if module == binary else module)
                    clones.append(t)
                    label = UprobeTarget(binary, base, t.module).label()
                    if label in period_of:
                        clone_periods.append((t.label(), period_of[label]))
                else:
                    out[(f"host:{node_name}", module, name)] = (bid, "")
    return HostFunctions(out, tuple(clones), tuple(clone_periods))


def _absent_by_lookup(
    binary: str, module: str, symbols: set[str], *, node_name: str, debug_files: bool
) -> Facts:
    """The functions asked that the probes' own lookup (native/symaddr.py, streamed within 1 GiB and
    120 s, as the attach reads them) does not find either, as facts, for a file whose tables were
    past the symbolizer's budget (500,000 functions, 64 MiB, 2 s): its attach fails and no probe
    watches them. Its tails stay unknown; a file the lookup cannot read either gives nothing."""
    absent = []
    for s in sorted(symbols):
        try:
            find_address(binary, s, debug_files=debug_files)
        except SymbolNotFound:
            absent.append(s)
        except Exception:  # unreadable, damaged, the agent stopping (symcancel.Cancelled): unknown
            return {}
    if not absent:
        return {}
    try:
        fd, _st = open_path(binary)  # as the file was opened above (rootopen rules)
        with os.fdopen(fd, "rb") as f:
            bid = file_build_id(f)[0]
    except (OSError, ElfError):
        return {}
    return {(f"host:{node_name}", module, s): (bid, "") for s in absent}
