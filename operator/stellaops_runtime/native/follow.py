"""Probed binaries replaced on disk: the uprobes follow the new file and keep the old one.

A uprobe is set on a file (its inode), not on a path. A package upgrade, a
``cp`` to a temporary name then ``mv``, an image rebuilt on the node: each
puts a new file at a probed path, and the probe stays on the old one. The
processes started from the new file were then never seen, however often they
called the function, while the node went on reporting the posture of a node
whose uprobes are attached: a "not observed" said over calls nobody watched.

So each uprobe target's file is identified (device, inode) before the probes
attach, and looked at again at every read of the counters (about once a
second, on the probes' thread). When its path names another file (or a file
appeared where none was at the load), that file is opened, and the same
programs (same target index: the events name the same path and symbol) are
attached to it too, through ``/proc/self/fd/<n>`` of the descriptor held, so
the file probed is the one looked at. The old file keeps its probe: the
processes still running it are counted as before. A call is counted once (a
process runs one of the two files). Between the last look that found the old
file and the new attach, a new process may have called the function unseen:
that span is returned for the caller to mark as a gap.

USDT targets are not followed (their programs are compiled from the file's
notes); docs/native-probes.md says so.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import stat
from dataclasses import dataclass, field
from typing import Any

from stellaops_runtime.canonical.rootopen import open_in_root
from stellaops_runtime.native.config import UprobeTarget

log = logging.getLogger(__name__)

MAX_FOLLOWED = 64  # new files attached per load; past it a replacement is only reported

Ident = tuple[int, int] | None  # (st_dev, st_ino) of a regular file; None: no regular file there


def identity(path: str) -> Ident:
    """(device, inode) of the regular file at ``path``, or None (missing, unreadable, not regular)."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else None


def followable(t: UprobeTarget) -> bool:
    """A target named by a path (not by a descriptor held elsewhere: native/purl_wiring.py's)."""
    return not t.binary.startswith("/proc/self/fd/")


@dataclass(slots=True)
class Followed:
    """What one look found: targets now probed in a new file too, those that could not be."""

    attached: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


@dataclass(slots=True)
class TargetWatch:
    """The files of a load's uprobe targets, as they were just before the probes attached."""

    targets: tuple[UprobeTarget, ...]
    idents: dict[int, Ident] = field(default_factory=dict)  # target index -> file now probed (latest)
    fds: list[int] = field(default_factory=list)  # descriptors of the files attached since the load
    given_up: set[int] = field(default_factory=set)  # targets whose latest file could not be probed

    @classmethod
    def before_attach(cls, targets: tuple[UprobeTarget, ...]) -> TargetWatch:
        w = cls(targets)
        for i, t in enumerate(targets):
            if followable(t):
                w.idents[i] = identity(t.binary)
        return w

    def changed(self) -> list[int]:
        """Indexes of the targets whose path names another regular file than the one probed."""
        out = []
        for i, was in self.idents.items():
            now = identity(self.targets[i].binary)
            if now is not None and now != was:
                out.append(i)
        return out

    def follow(self, bpf: Any) -> Followed:
        """Attach each replaced target's programs to its new file too (see the module docstring)."""
        res = Followed()
        for i in self.changed():
            t = self.targets[i]
            why = self._attach(bpf, i, t)
            if why:
                res.failed.append((t.label(), why))
                if i not in self.given_up:
                    log.warning("native probe %s: %s", t.label(), why)
                self.given_up.add(i)
            else:
                res.attached.append(t.label())
                self.given_up.discard(i)
                log.warning(
                    "native probe %s: %s was replaced by another file: its processes are probed too "
                    "(the old file's keep their probe)",
                    t.label(), t.binary,
                )  # fmt: skip
        return res

    def _attach(self, bpf: Any, i: int, t: UprobeTarget) -> str:
        """'' when attached, else why not; the target's identity moves to the file looked at."""
        try:  # checked through O_PATH first: a device put there is never opened for reading
            fd, st = open_in_root("/", t.binary)
        except OSError as e:
            self.idents[i] = identity(t.binary)  # looked at: not tried again until it changes
            return f"the new file at {t.binary} cannot be opened: {e.strerror or e}"
        keep = False
        try:
            self.idents[i] = (st.st_dev, st.st_ino)  # looked at: not tried again until it changes
            if len(self.fds) >= MAX_FOLLOWED:
                return (
                    f"{t.binary} was replaced, more than {MAX_FOLLOWED} new files since the load: not probed"
                )
            path, sym = f"/proc/self/fd/{fd}".encode(), t.symbol.encode()
            try:
                found = bpf.get_user_addresses(path, f"^{re.escape(t.symbol)}$".encode())
            except Exception as e:  # BCC raises bare Exception for a file it cannot read as ELF
                return f"the new file at {t.binary} cannot be read: {e}"
            if not found:
                return f"symbol {t.symbol} not found in the new file at {t.binary}"
            try:
                bpf.attach_uprobe(name=path, sym=sym, fn_name=f"stella_up_enter_{i}".encode())
            except Exception as e:
                return f"attach to the new file at {t.binary} failed: {e}"
            keep = True  # the entry probe holds the file; the descriptor stays open with it
            try:
                bpf.attach_uretprobe(
                    name=path, sym=t.symbol.encode(), fn_name=f"stella_up_return_{i}".encode()
                )
            except Exception as e:
                with contextlib.suppress(Exception):
                    bpf.detach_uprobe(name=path, sym=sym)
                keep = False
                return f"attach to the new file at {t.binary} failed: {e}"
            return ""
        finally:
            if keep:
                self.fds.append(fd)
            else:
                os.close(fd)

    def close(self) -> None:
        """Close the descriptors (after the probes using them were detached)."""
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds.clear()
