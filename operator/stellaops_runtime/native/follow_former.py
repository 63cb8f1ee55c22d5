"""The load's scan for former files of the targets, as native/follow.py's TargetWatch runs it.

Split from native/follow.py (whose docstring says why former files matter):
a load, and each later look while the scan lasts, reads processes' maps
(native/former.py) for files a target's path named before (deleted, or
renamed away and known by identity) that live processes still run, and
attaches the target's programs to each such file through
``/proc/<pid>/map_files/`` (the very inode). One that cannot be probed makes
every look a gap while a process running it lives.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from stellaops_runtime.canonical.rootopen import open_regular
from stellaops_runtime.native import former
from stellaops_runtime.native.follow_files import Followed, Ident, Target, path_of
from stellaops_runtime.native.follow_files import lacks as _lacks
from stellaops_runtime.native.follow_files import starttime as _starttime
from stellaops_runtime.native.former import Former, still_maps

log = logging.getLogger("stellaops_runtime.native.follow")

Key = tuple[str, int]  # ("uprobe" | "usdt", target index)


class FormerFiles:
    """The former-file part of TargetWatch (a mixin: the state is TargetWatch's fields)."""

    if TYPE_CHECKING:
        _scan: former.Scan | None
        _scan_keys: list[Key]
        idents: dict[Key, Ident]
        probed: dict[Key, set[tuple[int, int]]]
        known: dict[str, dict[tuple[int, int], tuple[int, int]]]
        unprobed: dict[tuple[int, str], str]
        blind: set[Key]

        def _target(self, key: Key) -> Target: ...
        def _attach_fd(self, bpf: Any, key: Key, t: Target, fd: int, what: str) -> str: ...
        def _know(self, key: Key, ident: tuple[int, int], contents: tuple[int, int]) -> None: ...

    def former(self, bpf: Any, proc: str = "/proc", seconds: float | None = None) -> Followed:
        """Probe the deleted former files of the targets that live processes still run; with
        ``seconds``, scan the processes that long and leave the rest to the next looks
        (:meth:`follow`), whose finds make the time since the load unwatched."""
        res = Followed()
        if self._scan is None:
            self._scan_keys = keys = list(self.idents)
            paths = [path_of(self._target(key)) for key in keys]
            known = [  # files earlier loads probed at the path, but the one there now
                {i: c for i, c in self.known.get(p, {}).items() if i != self.idents[k]}
                for k, p in zip(keys, paths, strict=True)
            ]
            self._scan = former.Scan(paths, proc=proc, known=known)
        self._former_step(bpf, res, seconds)
        self._check_unprobed(res)
        return res

    def _former_step(self, bpf: Any, res: Followed, seconds: float | None) -> bool:
        """One step of the scan into ``res``: whether it found a file run unprobed until now."""
        assert self._scan is not None
        keys = self._scan_keys
        skip = {(n, ident) for n, key in enumerate(keys) for ident in self.probed.get(key, ())}
        missed = False
        for first in self._scan.step(skip, seconds):
            key = keys[first.want]
            t = self._target(key)
            how = "renamed" if first.contents is not None else "deleted"
            opened = self._open_former(first)
            if opened is None:
                continue  # no process seen maps it now: a later read of one reports it again
            f, fd, st = opened
            what = f"the {how} former file of {t.binary} run by pid {f.pid}"
            if fd is None:
                why = f"{what} cannot be opened: {st.strerror or st}"
            else:
                if f.contents is None and st.st_nlink:  # a file named "<path> (deleted)", still linked
                    os.close(fd)
                    continue
                if f.contents is not None and f.contents != (st.st_size, st.st_mtime_ns):
                    os.close(fd)  # the inode number used again by another file (or rewritten since)
                    continue
                why = self._attach_fd(bpf, key, t, fd, what)
                if not why:
                    for ident in (f.ident, (st.st_dev, st.st_ino)):
                        self.probed.setdefault(key, set()).add(ident)
                        self._know(key, ident, (st.st_size, st.st_mtime_ns))
                    res.former += 1
                    missed = True
                    log.warning("native probe %s: %s is probed too", t.label(), what)
                    continue
            if _lacks(why):
                res.failed.append((t.label(), why))  # that version lacks it: nothing to miss
                continue
            label = f"{t.label()} ({how} former file, pid {f.pid})"
            res.failed.append((label, why))
            missed = True
            log.warning("native probe %s: %s: its calls are a gap while it runs", t.label(), why)
            start = _starttime(f.pid)
            if start:
                self.unprobed[(f.pid, start)] = t.label()
        return missed

    def _open_former(self, f: Former) -> tuple[Former, int | None, Any] | None:
        """Open ``f``'s file through its process, or through another one seen mapping it when that
        one exited or exec'd since the scan read it (its entry gone, or naming another file now):
        (the process used, descriptor, stat), or (it, None, the error) when a process still mapping
        it refused; None when none seen maps it any more (the scan forgets it)."""
        assert self._scan is not None
        for c in (f, *self._scan.others(f)):
            try:
                fd, st = open_regular(c.map_file)
            except OSError as e:
                if still_maps(c):
                    return c, None, e
                continue
            if not still_maps(c):  # exec'd meanwhile: the entry may have been another file
                os.close(fd)
                continue
            return c, fd, st
        self._scan.forget(f)
        return None

    def _check_unprobed(self, res: Followed) -> None:
        """Processes running an unprobed former file: unwatched while any lives."""
        for pid, start in list(self.unprobed):
            if _starttime(pid) != start:
                del self.unprobed[(pid, start)]
        if self.unprobed or self.blind:
            res.unwatched = True
