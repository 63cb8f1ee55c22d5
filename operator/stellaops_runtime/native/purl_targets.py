"""Uprobe targets for functions named by PURL, resolved inside each running container's root.

Tetragon resolves uprobe paths in its own filesystem and cannot reach a file
that exists only in a pod's image (cilium/tetragon#5105). The native probes
can: for a container whose process ``pid`` is running, the package's files are
read from its database through ``/proc/<pid>/root`` (``purl_files.py``), each
ELF file among them is searched for the symbol, and every file that defines it
becomes a uprobe target; so does each GCC clone of it entered once per call
(``crc32.isra.0``, ``crc32.constprop.0``: a static function may be compiled
into those only), probed under its own name (``function_offsets``). Each
function gets a report per container: attached, not found (no such package
installed), not in package (installed, but none of its files defines the
symbol), unsupported, or an error with the reason.

Two rules keep counts exact:

- **No escape.** Files are opened confined to the container's root
  (``rootopen``); the probe is attached through ``/proc/self/fd/<fd>`` of
  that very descriptor, so a container that swaps a directory for a symlink
  after the lookup cannot point the probe at a host file. The plan keeps the
  descriptors open until ``close()``.
- **One probe per file.** A uprobe fires for every process mapping the inode,
  whatever container it is in, and two probes on one file would count each
  call twice. Containers of the same image share their layers' files, so
  files are keyed by (inode, size, mtime, ctime) as seen through the overlay
  (overlayfs reports the layer file's inode number; the device differs per
  container and is left out) and a file already planned is not probed again.
  Events name the container by the calling process's cgroup, not by the probe.
  The file is looked at for replacements in every container sharing it
  (``UprobeTarget.shared``): an upgrade inside any of them runs a file no
  probe is on (native/follow_shared.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from stellaops_runtime.attribution.model import AttributionError
from stellaops_runtime.attribution.rootfs import RootFS
from stellaops_runtime.canonical.elflayout import ElfError
from stellaops_runtime.canonical.rootopen import open_in_root
from stellaops_runtime.native.config import MAX_UPROBE_TARGETS, UprobeTarget
from stellaops_runtime.native.func_offsets import build_id_of
from stellaops_runtime.native.func_offsets import function_offsets as function_offsets  # re-exported
from stellaops_runtime.native.func_offsets import split_tail_of as split_tail_of  # re-exported
from stellaops_runtime.native.func_offsets import symbol_offsets as symbol_offsets  # re-exported
from stellaops_runtime.native.purl_debug import debug_symbols, with_debug
from stellaops_runtime.native.purl_files import PackageLookupError, package_files

ATTACHED = "attached"
RESOLVED = "resolved"  # files found, not attached yet
NOT_FOUND = "not_found"
NOT_IN_PACKAGE = "not_in_package"
UNSUPPORTED = "unsupported"
ERROR = "error"
ATTACH_FAILED = "attach_failed"

FileKey = tuple[int, int, int, int]  # st_ino, st_size, st_mtime_ns, st_ctime_ns


@dataclass(frozen=True, slots=True)
class FunctionFile:
    path: str  # in-root path, symlinks resolved (what the container's maps show)
    host_path: str  # the same file through /proc/<pid>/root
    offset: int  # file offset of the symbol (where the uprobe sits)
    key: FileKey
    symbol: str = ""  # the clone probed for the function (``crc32.isra.0``); "" for its own symbol


@dataclass(frozen=True, slots=True)
class UnprobedTail:
    """A split tail of the function left unprobed in one of its files (``split_tail_of``)."""

    path: str  # in-root path of the file, as events name it
    symbol: str  # ``crc32.part.0``
    build_id: str  # the file's (elflayout.file_build_id): a question by function ID matches it


@dataclass(slots=True)
class FunctionReport:
    container: str
    pid: int
    purl: str
    symbol: str
    status: str
    detail: str = ""
    packages: list[str] = field(default_factory=list)  # PURLs of the installed packages matched
    files: list[FunctionFile] = field(default_factory=list)
    unprobed: list[UnprobedTail] = field(default_factory=list)  # in the files probed: probed in part
    jar: str = ""  # the first JAR the matched packages list: their Java code (agent/listed_jars.py)

    @property
    def locations(self) -> list[tuple[str, int]]:
        """(host path via /proc/<pid>/root, symbol file offset) of every file defining the symbol."""
        return [(f.host_path, f.offset) for f in self.files]

    def to_dict(self) -> dict[str, object]:
        return {
            "container": self.container, "pid": self.pid, "purl": self.purl, "symbol": self.symbol,
            "status": self.status, "detail": self.detail, "packages": self.packages,
            "files": [{"path": f.path, "offset": f.offset} | ({"symbol": f.symbol} if f.symbol else {})
                      for f in self.files],
        }  # fmt: skip


def _open_files(fs: RootFS, paths: Sequence[str]) -> tuple[list[tuple[str, int, FileKey]], int]:
    """(resolved path, fd, key) of each distinct regular file listed; and how many could not be opened."""
    out: list[tuple[str, int, FileKey]] = []
    seen: set[str] = set()
    unreadable = 0
    for p in paths:
        try:
            resolved = fs.resolve(p)
        except AttributionError:
            unreadable += 1
            continue
        if resolved in seen:
            continue
        seen.add(resolved)
        try:
            fd, st = open_in_root(fs.root, resolved)
        except OSError:  # gone, a directory, a device: not a function's file
            continue
        out.append((resolved, fd, (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)))
    return out, unreadable


_MAX_WHY = 3  # debug-file reasons kept in a report's detail (a package of many stripped files)


def resolve(
    pid: int,
    purl: str,
    symbols: Sequence[str],
    *,
    container: str = "",
    proc_root: str = "/proc",
    debug_files: bool = True,
) -> tuple[list[FunctionReport], dict[FileKey, int]]:
    """Reports for each symbol of ``purl`` in the root of ``pid``, and an open fd per file found.

    The caller owns the descriptors (``PurlProbePlan`` closes them). ``debug_files``: a stripped
    file's local functions, entry clones and split tails are read from its separate debug file
    (native/purl_debug.py; the agent's ``symbols.debugFiles``).
    """
    root = os.path.join(proc_root, str(pid), "root")

    def all_(status: str, detail: str, packages: Sequence[str] = ()) -> list[FunctionReport]:
        return [FunctionReport(container, pid, purl, s, status, detail, list(packages)) for s in symbols]

    try:
        fs = RootFS(root)
        pkg = package_files(fs, purl)
    except ValueError as e:
        return all_(UNSUPPORTED, str(e)), {}
    except (AttributionError, PackageLookupError, OSError) as e:
        return all_(ERROR, f"cannot read the package database through {root}: {e}"), {}
    if not pkg.purls:
        return all_(NOT_FOUND, f"no installed package matches {purl} in the root of pid {pid}"), {}
    opened, unreadable = _open_files(fs, pkg.files)
    reports = {
        s: FunctionReport(container, pid, purl, s, NOT_IN_PACKAGE, "", list(pkg.purls), jar=pkg.jar)
        for s in symbols
    }
    fds: dict[FileKey, int] = {}
    elf_files = 0
    why: list[str] = []  # debug files refused or unreadable, said where a function is not found
    for path, fd, key in opened:
        tails: dict[str, set[str]] = {}
        try:
            found, clones = function_offsets(fd, symbols, tails)
            elf_files += 1
            said: list[str] = []
            debug = debug_symbols(fd, root, path, symbols, function_offsets, said) if debug_files else None
            why += [f"{path}: {w}" for w in said][: max(0, _MAX_WHY - len(why))]
            if debug:
                found, clones, tails = with_debug(found, clones, tails, debug)
        except ElfError:  # not ELF, damaged, or over the parse budget: not a function's file
            found, clones, tails = {}, {}, {}
        except Exception:  # any other surprise in a hostile file: skip the file, keep the descriptor safe
            os.close(fd)
            continue
        bid = build_id_of(fd) if tails else ""
        for sym, of_tails in tails.items():  # beside its probe, or alone: its head inlined everywhere
            reports[sym].unprobed += [UnprobedTail(path, t, bid) for t in sorted(of_tails)]
        for sym, off in found.items():
            reports[sym].files.append(FunctionFile(path, fs.host_path(path), off, key))
        for sym, of in clones.items():
            reports[sym].files += [FunctionFile(path, fs.host_path(path), o, key, c) for c, o in of.items()]
        if (found or clones) and key not in fds:
            fds[key] = fd
        else:
            os.close(fd)
    for r in reports.values():
        if r.files:
            r.status = RESOLVED
        else:
            r.detail = (
                f"none of the {elf_files} ELF file(s) of {', '.join(pkg.purls)} defines {r.symbol}"
                + (f" ({unreadable} listed path(s) unreadable)" if unreadable else "")
                + "".join(f"; {w}" for w in why)
            )
    return list(reports.values()), fds


def resolve_function(pid: int, purl: str, symbol: str, *, proc_root: str = "/proc") -> FunctionReport:
    """One function in one container: its report, with ``locations`` (host path, offset)."""
    reports, fds = resolve(pid, purl, [symbol], proc_root=proc_root)
    for fd in fds.values():
        os.close(fd)
    return reports[0]


class PurlProbePlan:
    """Functions by PURL over the running containers: one uprobe target per distinct file.

    ``add`` resolves in one container; ``targets()`` gives the UprobeTargets
    (through ``/proc/self/fd``; ``module`` is the in-root path events report);
    after loading, ``mark`` turns RESOLVED into ATTACHED or ATTACH_FAILED.
    """

    def __init__(self, *, proc_root: str = "/proc", debug_files: bool = True) -> None:
        self.proc_root = proc_root
        self.debug_files = debug_files  # a stripped file's tails from its debug file (resolve)
        self.reports: list[FunctionReport] = []
        self._fds: dict[FileKey, int] = {}
        self._targets: dict[tuple[FileKey, str], UprobeTarget] = {}

    def add(self, container: str, pid: int, purl: str, symbols: Sequence[str]) -> list[FunctionReport]:
        reports, fds = resolve(
            pid, purl, symbols, container=container, proc_root=self.proc_root, debug_files=self.debug_files
        )
        for key, fd in fds.items():
            if key in self._fds:
                os.close(fd)  # the same file as another container's: already probed once
            else:
                self._fds[key] = fd
        for r in reports:
            root = os.path.join(self.proc_root, str(pid), "root")  # looked at for replacements
            for f in r.files:
                tk = (f.key, f.symbol or r.symbol)
                if (t := self._targets.get(tk)) is not None:  # another container's file: probed once,
                    if root != t.root and (root, f.path) not in t.shared:  # looked at in each container
                        t = self._targets[tk] = dataclasses.replace(t, shared=(*t.shared, (root, f.path)))
                    if container not in t.containers:  # whose calls the probe counts
                        self._targets[tk] = dataclasses.replace(t, containers=(*t.containers, container))
                    continue
                if len(self._targets) >= MAX_UPROBE_TARGETS:
                    r.status, r.detail = ERROR, f"more than {MAX_UPROBE_TARGETS} uprobe targets: not probed"
                    continue
                self._targets[tk] = UprobeTarget(
                    f"/proc/self/fd/{self._fds[f.key]}", tk[1], module=f.path, root=root,
                    containers=(container,),
                )  # fmt: skip
        self.reports += reports
        return reports

    def targets(self) -> tuple[UprobeTarget, ...]:
        return tuple(self._targets.values())

    def mark(self, attached: Sequence[str], failed: Sequence[tuple[str, str]]) -> None:
        """Attach results of the loader (``ProbeSet.attached``, ``.failed``) into the reports."""
        why = dict(failed)
        ok = {a.removeprefix("uprobe ") for a in attached}
        for r in self.reports:
            if r.status not in (RESOLVED, ATTACHED, ATTACH_FAILED):
                continue
            labels = [
                self._targets[(f.key, f.symbol or r.symbol)].label()
                for f in r.files
                if (f.key, f.symbol or r.symbol) in self._targets
            ]
            bad = [why.get(lb, "the probe was not attached") for lb in labels if lb not in ok]
            if labels and not bad:
                r.status, r.detail = ATTACHED, ""
            else:
                r.status, r.detail = ATTACH_FAILED, "; ".join(bad) or "no probe planned"

    def close(self) -> None:
        for fd in self._fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()
