"""The node files Tetragon's probes were first seen on during this boot, kept for the agent's next start.

Tetragon puts a ``binaryPath`` function's uprobe on the file its policy's path named when the
policy was loaded (its inode), not on the path (agent/node_file_gaps.py). An agent that notices the
file at the path replaced marks the node unwatched until Tetragon loads the policy anew; but the next agent of
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
whose modification time alone moved, with the bytes of the kept identity's content digest (kept
beside the identities, ``digests``: agent/node_file_digest.py), is a touch: kept as found, no gap.
A baseline file that cannot be read or parsed is logged and taken as empty (as before this file
existed); writes are atomic. Two agents overlapping on the node (a rollout) may each write: the
later write wins.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from stellaops_runtime.agent.node_file_digest import digest, touch_only
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
    return _load(path)[0]


def _digests(doc: dict, files: dict[str, Stat]) -> dict[str, str]:
    """The content digests of ``files`` the document keeps (agent/node_file_digest.py); a malformed
    set is none (each file's digest is taken again), never a reason to drop the identities."""
    got = doc.get("digests")
    if not isinstance(got, dict):
        return {}
    out = {k: v for k, v in got.items() if k in files and isinstance(v, str) and len(v) == 64}
    return out if len(out) == len(got) else {}


def _load(path: str) -> tuple[dict[str, Stat], dict[str, str]]:
    if not path:
        return {}, {}
    boot = this_boot()
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return {}, {}
    except OSError as e:
        log.warning("node files of Tetragon's probes %s not read: %s", path, e)
        return {}, {}
    try:
        if len(data) > MAX_BYTES:
            raise ValueError("too large")
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ValueError("not this file's format")
        if not boot or doc.get("boot_id") != boot:
            return {}, {}  # another boot: Tetragon loaded its policies anew
        files = doc.get("files")
        if not isinstance(files, dict) or len(files) > MAX_PATHS:
            raise ValueError("no files")
        out: dict[str, Stat] = {}
        for name, v in files.items():
            if not (isinstance(v, list) and len(v) == 4 and all(type(x) is int and x >= 0 for x in v)):
                raise ValueError(f"bad entry for {name!r}")
            out[name] = (v[0], v[1], v[2], v[3])
        return out, _digests(doc, out)
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        log.warning("node files of Tetragon's probes %s ignored: %s", path, e)
        return {}, {}


def write(path: str, files: dict[str, Stat], digests: dict[str, str] | None = None) -> None:
    """Replace the file at ``path`` (atomic); a failure is logged, never raised."""
    if not path:
        return
    doc: dict = {"format": FORMAT, "boot_id": this_boot(), "files": {k: list(v) for k, v in files.items()}}
    if digests:  # beside "files": an agent that does not know them reads the identities alone
        doc["digests"] = {k: v for k, v in digests.items() if k in files}
    try:
        write_atomically(path, json.dumps(doc, sort_keys=True).encode(), mode=0o600, durable=False)
    except OSError as e:
        log.warning("node files of Tetragon's probes not kept at %s: %s", path, e)


class Baseline:
    """The identities kept at ``path`` (see the module docstring)."""

    def __init__(self, path: str = "") -> None:
        self.path = path
        self.files, self.digests = _load(path)  # digests: of the contents of each kept identity

    def check(
        self, files: Sequence[str], ids: Sequence[tuple[int, ...] | None]
    ) -> list[tuple[str, Stat, Stat]]:
        """A read's ``files`` and their identities: (file, kept, found) for those no longer the file
        kept; files new here are kept, files not read any more dropped (and written when so)."""
        kept: dict[str, Stat] = {}
        changed: list[tuple[str, Stat, Stat]] = []
        digests = dict(self.digests)
        for name, ident in zip(files, ids, strict=False):
            was = self.files.get(name)
            now = None if ident is None else (ident[0], ident[1], ident[2], ident[3])
            if was is not None and now is not None and now != was and self._touched(name, was, now):
                was = now  # the same bytes, touched: the probe sits where it did
            if was is not None:
                kept[name] = was
                if now is not None and now != was:
                    changed.append((name, was, now))
            elif now is not None:
                kept[name] = now
            if now is not None and kept.get(name) == now and name not in self.digests:
                d = digest(name, now)  # once per identity kept (a file too large: never)
                if d is not None:
                    self.digests[name] = d
        self.digests = {k: v for k, v in self.digests.items() if k in kept}
        if kept != self.files or self.digests != digests:
            self.files = kept
            write(self.path, kept, self.digests)
        return changed

    def _touched(self, name: str, was: Stat, now: Stat) -> bool:
        """Whether the file kept as ``was`` is ``now`` by a touch alone: its modification time moved,
        its bytes are those of the kept identity's digest (agent/node_file_digest.py)."""
        kept = self.digests.get(name)
        return kept is not None and touch_only(was, now) and digest(name, now) == kept

    def touched(
        self,
        files: Sequence[str],
        before: Sequence[tuple[int, ...] | None],
        after: Sequence[tuple[int, ...] | None],
    ) -> set[str]:
        """Of ``files`` looked at as ``before`` then ``after``, those that are the file kept, touched
        only: kept as ``after`` from now on (written), so no read or agent counts them replaced."""
        out: set[str] = set()
        for name, b, a in zip(files, before, after, strict=False):
            if b is None or a is None or self.files.get(name) != tuple(b[:4]):
                continue
            now = (a[0], a[1], a[2], a[3])
            if now != self.files[name] and self._touched(name, self.files[name], now):
                self.files[name] = now
                out.add(name)
        if out:
            write(self.path, self.files, self.digests)
        return out

    def move(self, files: dict[str, Stat]) -> None:
        """Tetragon's probes of ``files`` were loaded anew on these identities (agent/node_file_gaps.py
        ``reloaded``): they are the baseline from now on (written)."""
        kept = {**self.files, **{f: v for f, v in files.items() if f in self.files}}
        if kept != self.files:
            for f in files:  # other bytes: their digest is taken anew
                self.digests.pop(f, None)
                d = digest(f, kept[f]) if f in kept else None
                if d is not None:
                    self.digests[f] = d
            self.files = kept
            write(self.path, kept, self.digests)
