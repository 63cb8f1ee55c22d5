"""Split tails of the node's own probed files: the "probed in part" facts of the host image.

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

Only files the node's processes run are the host's: a target under a container's root
(``/proc/<pid>/root`` of another pid) or a PURL target is left out. A path in the agent's own root
(``/``) is taken as the node's (an agent run on the node, or a policy without a host root): were it
the agent image's file, its fact would only turn an answer about the host into ``unknown``. A
container that runs the node's file (a hostPath mount) has its calls stored under its own image,
where no fact of this file is stored (docs/native-probes.md, "Known limits").
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from stellaops_runtime.canonical.elflayout import file_build_id
from stellaops_runtime.native.config import UprobeTarget
from stellaops_runtime.native.follow_files import open_path, split_root
from stellaops_runtime.native.purl_debug import debug_symbols
from stellaops_runtime.native.purl_targets import function_offsets

HOST_ROOTS = ("/", "/proc/1/root")  # the agent's and the node's root (a hostPID agent)
Facts = dict[tuple[str, str, str], tuple[str, str]]  # (image, module, tail) -> (build-id, PURL "")


def host_tails(targets: Iterable[UprobeTarget], *, node_name: str, debug_files: bool = True) -> Facts:
    """The split tails, in the node's files, of the functions ``targets`` probe there, as facts of
    ``host:<node_name>`` under the path events name the file by (``module``, else ``binary``)."""
    by_file: dict[tuple[str, str], set[str]] = {}
    for t in targets:
        if t.root or split_root(t.binary)[0] not in HOST_ROOTS:
            continue  # a PURL target (a container's file), or a file under a container's root
        by_file.setdefault((t.binary, t.module or t.binary), set()).add(t.symbol)
    out: Facts = {}
    for (binary, module), symbols in sorted(by_file.items()):
        try:
            fd, _st = open_path(binary)
        except OSError:
            continue  # gone or unreadable: the probe's attach says so
        try:
            tails: dict[str, set[str]] = {}
            function_offsets(fd, symbols, tails)
            if debug_files and not tails:  # the probe finds its function's address there itself
                debug = debug_symbols(fd, *split_root(binary), symbols, function_offsets)
                tails = debug[2] if debug else {}
            with os.fdopen(os.dup(fd), "rb") as f:
                bid = file_build_id(f)[0] if tails else ""
        except Exception:  # not ELF, damaged, over budget: no tail known from it
            continue
        finally:
            os.close(fd)
        for of in tails.values():
            for tail in sorted(of):
                out[(f"host:{node_name}", module, tail)] = (bid, "")
    return out
