"""Which file, and which parsed Binary, a module of an event's process is: the canonicalizer's file finder.

Why this module exists: split from canonical/frames.py, it holds the rules
for *where* a frame's module may be read, so that no container ever gets
another container's (or the host's) functions by accident:

1. the build-id comes from the ``process_loader`` event of that process and
   path (remembered per exec_id by the FrameCanonicalizer), else from the
   file itself, resolved inside ``/proc/<pid>/root`` (canonical/rootopen.py)
   while the process lives;
2. a Binary already indexed for the file's content identity is used first;
   else the process's own file; else the configured host root, only when the
   file there has exactly the build-id the loader reported (anything else is
   ``build_id_mismatch``);
3. when nothing is found, the best reason is returned (see ``_REASON_RANK``).

Reads go through the Symbolizer (canonical/filecache.py) and its parse gate:
with the agent's parse worker a file still being parsed gives the reason
``parse_pending``, which is never remembered (the next event asks again).
Runs on the caller's (pipeline) thread; its own cache is not shared.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

from stellaops_runtime.canonical.addrindex import LRU
from stellaops_runtime.canonical.binary import Binary
from stellaops_runtime.canonical.elflayout import ElfError
from stellaops_runtime.canonical.parseworker import ParsePending
from stellaops_runtime.canonical.proc_identity import Holder, holder, same_holder
from stellaops_runtime.canonical.procmaps import (
    DELETED_SUFFIX,
    ESCAPED_NEWLINE,
    ProcessError,
    map_files_path,
    process_alive,
    process_root,
    read_maps,
)
from stellaops_runtime.canonical.resolution import Outcome
from stellaops_runtime.canonical.rootopen import NotRegularFile
from stellaops_runtime.canonical.symbolizer import Symbolizer
from stellaops_runtime.contracts.events import RuntimeCallEvent

# module -> (build-id, content identity): "" when not known (yet)
Ids = dict[str, tuple[str, str]]
T = TypeVar("T")

# Failure outcomes in the order one is preferred as "the" reason of a frame.
_REASON_RANK: dict[str, int] = {
    Outcome.PARSE_PENDING: -1,  # the answer is coming: say so rather than a fallback's failure
    Outcome.BUILD_ID_MISMATCH: 0,
    Outcome.TRUNCATED_ELF: 1,
    Outcome.NOT_ELF: 1,
    Outcome.BAD_ELF: 1,
    Outcome.NOT_REGULAR: 1,
    Outcome.BUDGET_EXCEEDED: 1,
    Outcome.MALFORMED: 1,
    Outcome.DELETED_FILE: 2,
    Outcome.PROCESS_EXITED: 3,
    Outcome.UNREADABLE_FILE: 4,
    Outcome.NO_FILE: 9,
}


class BinaryLocator:
    """Finds the indexed Binary (or why there is none) for a module of an event's process."""

    def __init__(
        self,
        symbolizer: Symbolizer,
        *,
        proc_root: str | None,
        host_root: str | None,
        node_name: str,
        max_unavailable: int,
    ) -> None:
        self.symbolizer = symbolizer
        self.proc_root = proc_root
        self.host_root = host_root
        self.node_name = node_name
        # (module, build-id) -> why no file could be found, for lookups that do not depend on a
        # live process (events from other nodes, or no process root): the answer only changes
        # when the host root does, so it is kept (bounded) instead of re-reading the file per frame.
        self._unavailable: LRU[tuple[str, str], str] = LRU(max_unavailable)
        self.pid_reused = 0  # lookups refused because the event's pid now names a younger process
        self.pid_unverified = 0  # refused because the event's exec_id names another pid (bad_input)

    def local(self, ev: RuntimeCallEvent) -> bool:
        """May this event's process be looked up in this node's /proc?"""
        if self.proc_root is None or ev.process.pid <= 0:
            return False
        return not (self.node_name and ev.node_name and ev.node_name != self.node_name)

    def build_id(self, ev: RuntimeCallEvent, ids: Ids, module: str) -> tuple[str, str]:
        """(build-id, identity) of ``module`` in ``ev``'s process: loader's, else the file's own."""
        got = ids.get(module)
        if got is not None:
            return got
        got = ("", "")
        if self.local(ev):
            try:
                fid = self.through_process(
                    ev, module, lambda root, path: self.symbolizer.identify(path, root=root)
                )
                got = (fid.build_id, fid.identity)
            except ParsePending:
                return got  # not remembered: the next event asks again
            except (OSError, ElfError, ProcessError):
                pass
        # Interned: every process maps the same few paths, and one string per path (not one per
        # process) is what outlives the window whose events named it (docs/benchmarks.md, eleventh pass).
        ids[sys.intern(module)] = got
        return got

    def through_process(self, ev: RuntimeCallEvent, module: str, read: Callable[[str, str], T]) -> T:
        """``read(root, path)`` of ``module`` in ``ev``'s process, bracketed by the pid's holder
        (canonical/proc_identity.py): checked before (never through a pid that names a younger
        process) and again after, so a pid handed to another process between the check and the
        read (whose files have the same names) gives ``process_exited``, never its files."""
        assert self.proc_root is not None
        pid = ev.process.pid
        before = holder(pid, ev.process.exec_id, proc_root=self.proc_root)
        if before.reused:
            self._reused(pid)
        if before.other_pid is not None:
            self.pid_unverified += 1
            raise ProcessError(
                Outcome.BAD_INPUT,
                f"exec_id names pid {before.other_pid}, not the event's {pid}: whether pid {pid} still "
                "names its process cannot be told, so nothing is read through it",
            )
        try:
            got = read(*self.process_path(pid, module, before))
        except ParsePending:
            raise  # nothing read yet: the next event asks again, through the bracket again
        except (OSError, ProcessError, ElfError) as e:  # maybe the newcomer's file, or none
            if not same_holder(before, proc_root=self.proc_root):
                self._reused(pid, e)
            raise
        if not same_holder(before, proc_root=self.proc_root):
            self._reused(pid)
        return got

    def _reused(self, pid: int, cause: BaseException | None = None) -> NoReturn:
        self.pid_reused += 1
        raise ProcessError(
            Outcome.PROCESS_EXITED, f"process {pid} exited: its pid now names another process"
        ) from cause

    def process_path(self, pid: int, module: str, checked: Holder) -> tuple[str, str]:
        """(root, path) through which ``module`` of process ``pid`` is read (``checked``: the pid's
        holder, seen not to be a younger process by :meth:`through_process`)."""
        assert self.proc_root is not None and checked.pid == pid and not checked.reused
        deleted = module.endswith(DELETED_SUFFIX)
        if deleted or ESCAPED_NEWLINE in module:
            # The mapped file itself (map_files), never the file now at its path (a deleted one
            # replaced by an upgrade) or another file maps names the same (canonical/procmaps.py).
            path = module[: -len(DELETED_SUFFIX)] if deleted else module
            found = [
                m for m in read_maps(pid, proc_root=self.proc_root) if m.deleted == deleted and m.path == path
            ]
            if len({m.inode for m in found}) == 1:
                return "/", map_files_path(pid, found[0], proc_root=self.proc_root)
            if deleted:
                what = (
                    "no deleted mapping of it" if not found else f"{len(found)} deleted files mapped under it"
                )
                raise ProcessError(Outcome.DELETED_FILE, f"{module}: {what} in process {pid}")
            raise ProcessError(
                Outcome.UNREADABLE_FILE,
                f"{module!r}: maps shows a newline as \\012, so this name is not read by path "
                f"({len(found)} files of process {pid} mapped under it)",
            )
        return process_root(pid, proc_root=self.proc_root), module

    def find_cached(
        self, ev: RuntimeCallEvent, module: str, bid: str, ident: str = "", local: bool | None = None
    ) -> tuple[Binary | None, str]:
        """:meth:`find`, remembering failures that no live process could change.

        ``local`` is :meth:`local` of ``ev`` when the caller has it already (the canonicalizer
        asks once per event, not once per frame); None asks here.
        """
        if ident:  # no identity (no file read yet): nothing to look up
            cached = self.symbolizer.cached_binary(ident)
            if cached is not None:
                return cached, ""
        if local is None:
            local = self.local(ev)
        if local:
            return self.find(ev, module, bid)
        key = (module, bid)
        unavailable = self._unavailable.data  # LRU.get, inlined: once per frame of such a module
        known = unavailable.get(key)
        if known is not None:
            unavailable.move_to_end(key)
            return None, known
        binary, reason = self.find(ev, module, bid)
        if binary is None and reason != Outcome.PARSE_PENDING:
            self._unavailable.put(key, reason)
        return binary, reason

    def find(self, ev: RuntimeCallEvent, module: str, bid: str) -> tuple[Binary | None, str]:
        """The indexed file for (module, build-id), or None and the reason it is unavailable.

        Only a file this process maps, or a host-root file with the loader's build-id, is
        used, each through its own content identity: never another container's file.
        """
        sym = self.symbolizer
        reason: str = Outcome.NO_FILE
        if self.local(ev):
            try:
                b = self.through_process(ev, module, lambda root, path: sym.binary(path, root=root))
                if not bid or b.build_id == bid:
                    return b, ""
                reason = Outcome.BUILD_ID_MISMATCH
            except ParsePending:
                reason = _better(reason, Outcome.PARSE_PENDING)
            except ProcessError as e:
                # The process sent us events, so "no such process" means it has exited since.
                gone = e.reason == Outcome.NO_SUCH_PROCESS
                reason = _better(reason, Outcome.PROCESS_EXITED if gone else e.reason)
            except ElfError as e:
                reason = _better(reason, e.reason)
            except NotRegularFile:
                reason = _better(reason, Outcome.NOT_REGULAR)
            except OSError:
                alive = process_alive(ev.process.pid, proc_root=self.proc_root or "/proc")
                reason = _better(reason, Outcome.UNREADABLE_FILE if alive else Outcome.PROCESS_EXITED)
        if self.host_root is not None and bid and not module.endswith(DELETED_SUFFIX):
            try:
                if sym.identify(module, root=self.host_root).build_id == bid:
                    return sym.binary(module, root=self.host_root), ""
                reason = _better(reason, Outcome.BUILD_ID_MISMATCH)
            except ParsePending:
                reason = _better(reason, Outcome.PARSE_PENDING)
            except ElfError as e:
                reason = _better(reason, e.reason)
            except NotRegularFile:
                reason = _better(reason, Outcome.NOT_REGULAR)
            except OSError:
                reason = _better(reason, Outcome.UNREADABLE_FILE)
        return None, reason


def _better(current: str, new: str) -> str:
    return new if _REASON_RANK.get(new, 5) < _REASON_RANK.get(current, 5) else current
