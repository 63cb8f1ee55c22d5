"""The node files Tetragon's probes were first seen on during this boot, kept for the agent's next start.

Tetragon puts a ``binaryPath`` function's uprobe on the file its policy's path named when the
policy was loaded (its inode), not on the path (agent/node_file_gaps.py). An agent that notices the
file at the path replaced marks the node unwatched for the rest of its life; but the next agent of
the node (a restart, an upgrade of the agent, an OOM kill) used to take the file it found as its
baseline, and read the node watched again while Tetragon's probe was still on the old file. A file
replaced while no agent ran was never noticed at all.

So the identity (device, inode, size, modification time) each node file had when an agent of this
boot first read it is kept beside the agent's other node state (``<store.spoolPath>.tetragon-files``,
as native/known_files.py keeps the BCC probes' files), and every later read, by this agent or the
next, compares the file at the path with it: another file is a node-wide gap again
(:meth:`NodeFileGaps.compare <stellaops_runtime.agent.node_file_gaps.NodeFileGaps.compare>`), from
the agent's start when its first read finds it. An entry is moved to the new file only when what
the agent reads says Tetragon loaded the policies probing it anew (:meth:`Baseline.move`: then the
file now at the path is the baseline), or the boot ends (the file carries the boot id, and one of
another boot is ignored). A file the probe ConfigMap no longer names (its policy
unloaded) loses its entry; when named again, the file then at the path is the new baseline. A file
that cannot be read or parsed is logged and taken as empty (as before this file existed); writes
are atomic. Two agents overlapping on the node (a rollout) may each write: the later write wins.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from stellaops_runtime.atomic_file import write_atomically
from stellaops_runtime.boot_id import this_boot

log = logging.getLogger(__name__)

SUFFIX = ".tetragon-files"
FORMAT = "stellaops-runtime-tetragon-files"
MAX_PATHS = 1024  # the ConfigMap names at most MAX_UPROBE_TARGETS files; a larger file is not ours
MAX_BYTES = 1 << 20

Stat = tuple[int, int, int, int]  # (device, inode, size, modification time ns)


def baseline_path(spool_path: str) -> str:
    """Where the baseline is kept ('' when the agent keeps no spool: nothing is kept)."""
    return spool_path + SUFFIX if spool_path else ""


def read(path: str) -> dict[str, Stat]:
    """The entries of this boot at ``path``; empty when there is none, or it is of another boot,
    unreadable or malformed (logged)."""
    if not path:
        return {}
    boot = this_boot()
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return {}
    except OSError as e:
        log.warning("node files of Tetragon's probes %s not read: %s", path, e)
        return {}
    try:
        if len(data) > MAX_BYTES:
            raise ValueError("too large")
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ValueError("not this file's format")
        if not boot or doc.get("boot_id") != boot:
            return {}  # another boot: Tetragon loaded its policies anew
        files = doc.get("files")
        if not isinstance(files, dict) or len(files) > MAX_PATHS:
            raise ValueError("no files")
        out: dict[str, Stat] = {}
        for name, v in files.items():
            if not (isinstance(v, list) and len(v) == 4 and all(type(x) is int and x >= 0 for x in v)):
                raise ValueError(f"bad entry for {name!r}")
            out[name] = (v[0], v[1], v[2], v[3])
        return out
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        log.warning("node files of Tetragon's probes %s ignored: %s", path, e)
        return {}


def write(path: str, files: dict[str, Stat]) -> None:
    """Replace the file at ``path`` (atomic); a failure is logged, never raised."""
    if not path:
        return
    doc = {"format": FORMAT, "boot_id": this_boot(), "files": {k: list(v) for k, v in files.items()}}
    try:
        write_atomically(path, json.dumps(doc, sort_keys=True).encode(), mode=0o600, durable=False)
    except OSError as e:
        log.warning("node files of Tetragon's probes not kept at %s: %s", path, e)


class Baseline:
    """The identities kept at ``path`` (see the module docstring)."""

    def __init__(self, path: str = "") -> None:
        self.path = path
        self.files = read(path)

    def check(
        self, files: Sequence[str], ids: Sequence[tuple[int, ...] | None]
    ) -> list[tuple[str, Stat, Stat]]:
        """A read's ``files`` and their identities: (file, kept, found) for those no longer the file
        kept; files new here are kept, files not read any more dropped (and written when so)."""
        kept: dict[str, Stat] = {}
        changed: list[tuple[str, Stat, Stat]] = []
        for name, ident in zip(files, ids, strict=False):
            was = self.files.get(name)
            now = None if ident is None else (ident[0], ident[1], ident[2], ident[3])
            if was is not None:
                kept[name] = was
                if now is not None and now != was:
                    changed.append((name, was, now))
            elif now is not None:
                kept[name] = now
        if kept != self.files:
            self.files = kept
            write(self.path, kept)
        return changed

    def move(self, files: dict[str, Stat]) -> None:
        """Tetragon's probes of ``files`` were loaded anew on these identities (agent/node_file_gaps.py
        ``reloaded``): they are the baseline from now on (written)."""
        kept = {**self.files, **{f: v for f, v in files.items() if f in self.files}}
        if kept != self.files:
            self.files = kept
            write(self.path, kept)
