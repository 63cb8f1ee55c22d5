"""(file, file offset) -> canonical function: the Symbolizer's side that reads user-space files.

Split from canonical/symbolizer.py, whose Symbolizer (what callers use) adds
live processes (an address found in ``/proc/<pid>/maps``, turned into a file
offset and resolved here) and the kernel (kallsyms). This module resolves a
file offset inside a file seen under a root, and bumps one counter per
answer; nothing raises for a bad file:

- the warm path (canonical/recentfiles.py): ``resolve_file`` answers from
  the Binary it last resolved at the same (root, path) without ``stat``-ing
  the file again for ``recheck_seconds``;
- a batch (``resolve_file_many``) checks the file once, after its first
  offset, and pauses the cyclic collector while it runs;
- otherwise the file is opened inside its root, identified, parsed and
  cached by the base class (canonical/filecache.py), and the answer filled
  from the Binary (canonical/fill.py); a file still being parsed by the
  parse worker ends with ``parse_pending``.
"""

from __future__ import annotations

import gc
from itertools import repeat
from operator import is_
from time import monotonic, time_ns
from typing import cast

from stellaops_runtime.canonical.buildidclaims import Clock
from stellaops_runtime.canonical.elflayout import ElfError
from stellaops_runtime.canonical.filecache import BinaryCache
from stellaops_runtime.canonical.fill import fill
from stellaops_runtime.canonical.limits import DEFAULT_LIMITS, Limits
from stellaops_runtime.canonical.parseworker import ParseGate, ParsePending
from stellaops_runtime.canonical.recentfiles import DEFAULT_RECHECK_SECONDS, FLUSH_AT, RecentFiles
from stellaops_runtime.canonical.resolution import Outcome, Resolution
from stellaops_runtime.canonical.rootopen import NotRegularFile


class FileResolver(BinaryCache):
    """Resolves file offsets against real files, with per-identity caches (canonical/filecache.py), the
    warm path and counters; canonical/symbolizer.py's Symbolizer is one."""

    def __init__(
        self,
        *,
        max_binaries: int = 64,
        max_paths: int = 4096,
        file_lines: bool = False,
        limits: Limits = DEFAULT_LIMITS,
        gate: ParseGate | None = None,
        recheck_seconds: float = DEFAULT_RECHECK_SECONDS,
        index_cache_dir: str | None = None,
        clock: Clock = time_ns,
    ) -> None:
        super().__init__(
            max_binaries=max_binaries,
            max_paths=max_paths,
            limits=limits,
            gate=gate,
            index_cache_dir=index_cache_dir,
            clock=clock,  # CLOCK_REALTIME ns, against file ctimes (canonical/buildidclaims.py)
        )
        self.recent = RecentFiles(self._lock, self.counters, recheck_seconds, max_paths)  # warm path
        self._recent_entries = self.recent.entries  # read by resolve_file's warm path (never replaced)
        self._recent_hits = self.recent.hits
        self.file_lines = file_lines

    def count(self, res: Resolution) -> Resolution:
        self.bump(str(res.error) if res.error else f"resolved_{res.source}")
        return res

    # -- user space ------------------------------------------------------------

    def resolve_file(
        self,
        path: str,
        file_offset: int,
        *,
        root: str = "/",
        expected_build_id: str = "",
        input: str = "",
    ) -> Resolution:
        """Resolve a file offset inside ``path`` (as seen under ``root``).

        The warm path first (canonical/recentfiles.py): the Binary last resolved at
        (root, path), still trusted, answers from its loaded tables through its warm
        lookup (canonical/quicklookup.py ``QuickLookup.find``), without a ``stat``.
        """
        root = root or "/"
        warm = self._recent_entries.get((root, path))
        if warm is not None and (
            warm.deadline <= monotonic()
            or warm.evictions != self._binaries.evictions
            or (expected_build_id and expected_build_id != warm.build_id)
        ):
            warm = None
        if warm is not None and not self.file_lines:
            found = warm.quick.find(file_offset)
            if found is not None:
                symbol, offset, function_id, source, key = found
                hits = self._recent_hits
                hits.append(key)
                if len(hits) >= FLUSH_AT:
                    self.recent.flush()
                return Resolution(
                    input or f"{path}+{hex(file_offset)}",
                    path,
                    warm.build_id,
                    symbol,
                    offset,
                    function_id,
                    source,
                    file_offset,
                )
        label = input or f"{path}+{hex(file_offset)}"
        if warm is not None:  # trusted, but no loaded table names it: the remembered Binary (no stat)
            res = Resolution(label, path, warm.build_id, file_offset=file_offset)
            try:
                fill(res, warm.binary, file_offset, file_lines=self.file_lines)
            except ParsePending as e:
                res.error, res.detail = Outcome.PARSE_PENDING, f"{path}: {e}"
            if warm.quick.stale:  # a lazy source was loaded
                warm.refresh_tables()
            return self.count(res)
        res = Resolution(label, path, file_offset=file_offset)
        return self.count(
            self._resolve_in(
                res, path, file_offset, root=root, expected_build_id=expected_build_id, warm=True
            )
        )

    def resolve_file_many(
        self,
        path: str,
        offsets: list[int],
        *,
        root: str = "/",
        expected_build_id: str = "",
        inputs: list[str] | None = None,
    ) -> list[Resolution]:
        """Resolve several file offsets inside ``path``: what ``resolve_file`` gives for each, in order.

        The file is checked (``stat``, identity) once for the batch when its
        first offset has been resolved, rather than per call.

        The cyclic garbage collector is paused for the batch (back on after it
        if it was on): each few hundred kept answers made it walk the freshly
        built index and the answers again (docs/symbolization.md). The lookups
        make no reference cycles; others' cyclic garbage waits for the batch.
        """
        if len(offsets) < 2:
            return self._resolve_file_many(path, offsets, root, expected_build_id, inputs)
        collecting = gc.isenabled()
        if collecting:
            gc.disable()
        try:
            return self._resolve_file_many(path, offsets, root, expected_build_id, inputs)
        finally:
            if collecting:
                gc.enable()

    def _resolve_file_many(
        self,
        path: str,
        offsets: list[int],
        root: str,
        expected_build_id: str,
        inputs: list[str] | None,
    ) -> list[Resolution]:
        root = root or "/"
        labels = inputs or [f"{path}+{hex(o)}" for o in offsets]
        if not offsets:
            return []
        first = self.resolve_file(
            path, offsets[0], root=root, expected_build_id=expected_build_id, input=labels[0]
        )
        recent, answers = (
            (None, [])
            if self.file_lines
            else self.recent.resolve_many(
                root, path, offsets[1:], labels[1:], self._binaries.evictions, expected_build_id
            )
        )
        if recent is None:
            rest = zip(offsets[1:], labels[1:], strict=True)
            return [first] + [
                self.resolve_file(path, o, root=root, expected_build_id=expected_build_id, input=s)
                for o, s in rest
            ]
        if not any(map(is_, answers, repeat(None))):  # every offset answered by a loaded table
            answers.insert(0, first)
            return cast("list[Resolution]", answers)  # no None in it: checked just above
        out = [first]
        for o, s, res in zip(offsets[1:], labels[1:], answers, strict=True):
            if res is None:  # no loaded table names it: the Binary (a lazy source, or no symbol)
                res = Resolution(s, path, recent.build_id, file_offset=o)
                try:
                    fill(res, recent.binary, o)
                except ParsePending as e:
                    res.error, res.detail = Outcome.PARSE_PENDING, f"{path}: {e}"
                if recent.quick.stale:
                    recent.refresh_tables()
                self.count(res)
            out.append(res)
        return out

    def stats(self) -> dict[str, int]:
        self.recent.flush()  # warm answers are counted in batches (canonical/recentfiles.py)
        return super().stats()

    def close(self) -> None:
        self.recent.flush()
        self.recent.clear()
        super().close()

    def _resolve_in(
        self,
        res: Resolution,
        path: str,
        file_offset: int,
        *,
        root: str = "/",
        expected_build_id: str = "",
        warm: bool = False,
    ) -> Resolution:
        try:
            b = self.binary(path, root=root)
        except FileNotFoundError as e:
            res.error, res.detail = Outcome.UNREADABLE_FILE, f"no such file: {e.filename}"
            return res
        except NotRegularFile as e:
            res.error, res.detail = Outcome.NOT_REGULAR, f"{path}: {e.strerror}"
            return res
        except OSError as e:
            res.error, res.detail = Outcome.UNREADABLE_FILE, f"{path}: {e.strerror or e}"
            return res
        except ElfError as e:
            res.error, res.detail = e.reason, f"{path}: {e}"
            return res
        except ParsePending as e:
            res.error, res.detail = Outcome.PARSE_PENDING, f"{path}: {e}"
            return res
        res.build_id = b.build_id
        if expected_build_id and b.build_id != expected_build_id:
            res.error = Outcome.BUILD_ID_MISMATCH
            res.detail = f"{path} has build-id {b.build_id}, expected {expected_build_id}"
            return res
        try:
            fill(res, b, file_offset, file_lines=self.file_lines)
        except ParsePending as e:  # a lazy source (DWARF, .gopclntab) is still being read
            res.error, res.detail = Outcome.PARSE_PENDING, f"{path}: {e}"
            return res
        if warm:  # resolve_file: the next calls for this path may skip the stat (canonical/recentfiles.py)
            self.recent.put(root, path, b, self._binaries.evictions)
        return res
