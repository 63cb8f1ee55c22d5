"""Symbolizer: (file, offset), (pid, address) or kernel (symbol, offset) -> canonical function.

The edge that reads files. Three ways in, one way out:

- :meth:`Symbolizer.resolve_file` takes a file and a file offset (what a
  Tetragon user frame carries);
- :meth:`Symbolizer.resolve_pid` takes an address in a live process, finds its
  mapping in ``/proc/<pid>/maps``, turns it into the same file offset
  (``address - mapping start + mapping file offset``) and continues as
  ``resolve_file`` on ``/proc/<pid>/root/<path>``, so the same function seen by
  address and by (module, file offset) gets the same ID;
- :meth:`Symbolizer.resolve_kernel` / :meth:`resolve_kernel_address` use kallsyms.

Each returns a :class:`~stellaops_runtime.canonical.resolution.Resolution`
and bumps one counter (``resolved_<source>`` or the failure outcome); nothing
raises for a bad file or a vanished process.

File offsets are resolved by the base class (canonical/fileresolver.py);
files are opened, identified, parsed and cached by its base
(canonical/filecache.py): a file is resolved inside its root and must be a
regular file; parsed binaries are cached by content identity (build-id +
stat identity, or + SHA-256 once two files claim one build-id:
canonical/buildidclaims.py), never by build-id alone; refused files are
remembered. With a
parse-worker gate (canonical/parseworker.py) a resolution whose file is still
being parsed ends with ``parse_pending``. Blocking file I/O: call from a
worker thread, never from an event loop.

``index_cache_dir`` (off by default) keeps the indexed symbol tables of
each file on disk (canonical/indexcache.py), so a restarted process loads
them instead of indexing the file again.

Warm path (canonical/recentfiles.py): ``resolve_file`` answers from the
Binary it last resolved at the same (root, path) without ``stat``-ing the
file again for ``recheck_seconds`` (default 1 s): a file replaced at a path
is seen at most that much later; ``recheck_seconds=0`` checks on every call.
"""

from __future__ import annotations

import logging
from time import time_ns

from stellaops_runtime.canonical.buildidclaims import Clock
from stellaops_runtime.canonical.filecache import FileId, open_file, stat_file
from stellaops_runtime.canonical.fileresolver import FileResolver
from stellaops_runtime.canonical.fill import KERNEL_MODULE, apply_hit, fill, kernel_hit, module_label
from stellaops_runtime.canonical.kallsyms import KernelSymbols
from stellaops_runtime.canonical.limits import DEFAULT_LIMITS, Limits
from stellaops_runtime.canonical.parseworker import ParseGate
from stellaops_runtime.canonical.procmaps import (
    Mapping,
    ProcessError,
    find_mapping,
    map_files_path,
    process_alive,
    process_root,
    read_maps,
)
from stellaops_runtime.canonical.recentfiles import DEFAULT_RECHECK_SECONDS
from stellaops_runtime.canonical.resolution import Outcome, Resolution

__all__ = [
    "KERNEL_MODULE",
    "FileId",
    "Symbolizer",
    "apply_hit",
    "fill",
    "module_label",
    "open_file",
    "stat_file",
]

log = logging.getLogger(__name__)


class Symbolizer(FileResolver):
    """Resolves frames against real files, with per-identity caches (canonical/filecache.py) and counters;
    file offsets are resolved as its base's (canonical/fileresolver.py)."""

    def __init__(
        self,
        *,
        max_binaries: int = 64,
        max_paths: int = 4096,
        proc_root: str = "/proc",
        kallsyms_path: str = "/proc/kallsyms",
        kernel_notes_path: str = "/sys/kernel/notes",
        sys_module_path: str = "/sys/module",
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
            file_lines=file_lines,
            limits=limits,
            gate=gate,
            recheck_seconds=recheck_seconds,
            index_cache_dir=index_cache_dir,
            clock=clock,
        )
        self.proc_root = proc_root
        self.kallsyms_path = kallsyms_path
        self.kernel_notes_path = kernel_notes_path
        self.sys_module_path = sys_module_path
        self._kernel: KernelSymbols | None = None
        self._kernel_error = ""

    def kernel(self) -> KernelSymbols:
        """The kernel's symbols, loaded on first use; OSError when kallsyms is unreadable."""
        if self._kernel is None:
            self._kernel = KernelSymbols(
                kallsyms_path=self.kallsyms_path,
                notes_path=self.kernel_notes_path,
                sys_module_path=self.sys_module_path,
            )
        return self._kernel

    # -- processes ---------------------------------------------------------------

    def resolve_pid(self, pid: int, address: int, *, input: str = "") -> Resolution:
        """Resolve an address in the address space of live process ``pid``."""
        return self.resolve_pid_many(pid, [address], inputs=[input] if input else None)[0]

    def resolve_pid_many(
        self, pid: int, addresses: list[int], *, inputs: list[str] | None = None
    ) -> list[Resolution]:
        """Resolve several addresses of one process, reading its maps once."""
        labels = inputs or [f"{a:#x}" for a in addresses]
        try:
            maps = read_maps(pid, proc_root=self.proc_root)
        except ProcessError as e:
            return [self.count(Resolution(input=s, error=e.reason, detail=str(e))) for s in labels]
        return [
            self.count(self._resolve_address(pid, maps, a, s)) for a, s in zip(addresses, labels, strict=True)
        ]

    def _resolve_address(self, pid: int, maps: list[Mapping], address: int, label: str) -> Resolution:
        res = Resolution(input=label)
        m = find_mapping(maps, address)
        if m is None:
            res.error, res.detail = Outcome.NOT_MAPPED, f"{address:#x} is in no mapping of process {pid}"
            return res
        res.module = m.path
        if not m.file_backed:
            res.error = Outcome.NOT_FILE_BACKED
            res.detail = f"{address:#x} is in {m.path or 'anonymous memory'}, not in a file"
            return res
        off = m.file_offset(address)
        res.file_offset = off
        if m.deleted or m.ambiguous:  # the mapped file itself, never a file now at (or named like) its path
            path = map_files_path(pid, m, proc_root=self.proc_root)
            out = self._resolve_in(res, path, off)
            if out.error in (Outcome.UNREADABLE_FILE, Outcome.NO_FILE):
                if not process_alive(pid, proc_root=self.proc_root):
                    out.error, out.detail = Outcome.PROCESS_EXITED, f"process {pid} exited"
                elif m.deleted:
                    out.error = Outcome.DELETED_FILE
                    out.detail = f"{m.path} was deleted and {path} is unreadable"
                else:
                    out.detail = (
                        f"maps names {m.path!r}, which may be a name with a newline or another file "
                        f"named so; {path}, the mapped file itself, is unreadable"
                    )
            elif not out.error:
                self.bump(
                    "deleted_file_read_via_map_files" if m.deleted else "ambiguous_path_read_via_map_files"
                )
            return out
        out = self._resolve_in(res, m.path, off, root=process_root(pid, proc_root=self.proc_root))
        if out.error == Outcome.UNREADABLE_FILE and not process_alive(pid, proc_root=self.proc_root):
            out.error, out.detail = Outcome.PROCESS_EXITED, f"process {pid} exited while it was resolved"
        return out

    # -- kernel --------------------------------------------------------------------

    def resolve_kernel(self, symbol: str, offset: int, *, input: str = "") -> Resolution:
        """Normalize a kernel frame given as kallsyms symbol + offset from its start."""
        res = Resolution(input=input or f"{symbol}+{offset:#x}", module=KERNEL_MODULE, offset=offset)
        try:
            ks = self.kernel()
        except OSError as e:
            res.error, res.detail = Outcome.KALLSYMS_UNREADABLE, f"{self.kallsyms_path}: {e}"
            return self.count(res)
        i = ks.find_name(symbol)
        if i < 0:
            res.error, res.detail = Outcome.UNKNOWN_KERNEL_SYMBOL, f"{symbol} is not in {self.kallsyms_path}"
            return self.count(res)
        size = ks.size(i)
        if size and offset >= size:
            # Past the symbol's end: it is in a later symbol; resolve the address instead.
            return self.resolve_kernel_address(ks.addrs[i] + offset, input=res.input)
        return self.count(kernel_hit(res, ks, i, offset, symbol=symbol))

    def resolve_kernel_address(self, address: int, *, input: str = "") -> Resolution:
        """Resolve a kernel text address (needs kallsyms addresses, i.e. root)."""
        res = Resolution(input=input or f"{address:#x}", module=KERNEL_MODULE)
        try:
            ks = self.kernel()
        except OSError as e:
            res.error, res.detail = Outcome.KALLSYMS_UNREADABLE, f"{self.kallsyms_path}: {e}"
            return self.count(res)
        if not ks.addresses_visible:
            res.error = Outcome.KERNEL_ADDRESSES_HIDDEN
            res.detail = "kallsyms shows zero addresses (needs root / kptr_restrict)"
            return self.count(res)
        i = ks.find_address(address)
        if i < 0 or (ks.size(i) and address - ks.addrs[i] >= ks.size(i)):
            res.error, res.detail = Outcome.NO_SYMBOL, f"{address:#x} is outside kernel text symbols"
            return self.count(res)
        return self.count(kernel_hit(res, ks, i, address - ks.addrs[i]))
