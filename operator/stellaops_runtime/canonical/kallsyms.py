"""Kernel symbols from ``/proc/kallsyms`` and kernel build-ids from sysfs notes.

Tetragon already symbolizes kernel frames from kallsyms (symbol + offset from
its start), so for them this module only confirms the symbol exists on this
kernel, tells which object it belongs to (the kernel itself or a module, which
Tetragon leaves blank) and supplies that object's build-id:
``/sys/kernel/notes`` for the kernel, ``/sys/module/<name>/notes/.note.gnu.build-id``
for a module. Resolving a raw kernel address (our own probes, the CLI) needs
the addresses, which the kernel shows only to privileged readers; otherwise
they read as zeros and :attr:`KernelSymbols.addresses_visible` is False.

Only text symbols (types t/T/w/W) are kept: two sorted parallel lists for
address lookups and a name -> index dict, loaded once (about 120,000 entries,
a few hundred milliseconds) on first use.
"""

from __future__ import annotations

import logging
import os
import sys
from bisect import bisect_right

from stellaops_runtime.canonical.elflayout import build_id_from_notes, parse_notes

log = logging.getLogger(__name__)

KERNEL_OBJECT = "kernel"
_TEXT_TYPES = frozenset("tTwW")


class KernelSymbols:
    """The running kernel's text symbols."""

    def __init__(
        self,
        *,
        kallsyms_path: str = "/proc/kallsyms",
        notes_path: str = "/sys/kernel/notes",
        sys_module_path: str = "/sys/module",
    ) -> None:
        self.kallsyms_path = kallsyms_path
        self.notes_path = notes_path
        self.sys_module_path = sys_module_path
        self.addrs: list[int] = []
        self.names: list[str] = []
        self.modules: list[str] = []  # "" for the kernel itself
        self.by_name: dict[str, int] = {}
        self.addresses_visible = False
        self._build_ids: dict[str, str] = {}
        self._load()

    def _load(self) -> None:
        rows: list[tuple[int, str, str]] = []
        with open(self.kallsyms_path, "rb") as f:
            for raw in f:
                parts = raw.split()
                if len(parts) < 3 or parts[1].decode("ascii", "replace") not in _TEXT_TYPES:
                    continue
                module = parts[3].strip(b"[]").decode("utf-8", "replace") if len(parts) > 3 else ""
                try:
                    addr = int(parts[0], 16)
                except ValueError:
                    continue
                rows.append((addr, parts[2].decode("utf-8", "replace"), module))
        # Aliases at one address: the name with the fewest leading underscores, then the
        # shortest, then the alphabetically first, is the one an address resolves to.
        rows.sort(key=lambda r: (r[0], len(r[1]) - len(r[1].lstrip("_")), len(r[1]), r[1]))
        addrs: list[int] = []
        names: list[str] = []
        modules: list[str] = []
        by_name: dict[str, int] = {}
        visible = any(r[0] for r in rows)
        for addr, name, module in rows:
            if not addrs or addrs[-1] != addr or not visible:
                addrs.append(addr)
                names.append(name)
                modules.append(module)
            i = len(addrs) - 1
            # A name in both the kernel and a module (or several modules): the kernel's wins.
            j = by_name.get(name)
            if j is None or (modules[j] and not module):
                by_name[name] = i
        self.addrs, self.names, self.modules, self.by_name = addrs, names, modules, by_name
        self.addresses_visible = visible

    def __len__(self) -> int:
        return len(self.addrs)

    def find_name(self, symbol: str) -> int:
        return self.by_name.get(symbol, -1)

    def size(self, i: int) -> int:
        """Distance to the next symbol's address (0 when unknown: hidden addresses, last symbol)."""
        if not self.addresses_visible or i + 1 >= len(self.addrs):
            return 0
        return self.addrs[i + 1] - self.addrs[i]

    def find_address(self, address: int) -> int:
        """Index of the symbol at or before ``address``, or -1 (needs visible addresses)."""
        if not self.addresses_visible:
            return -1
        i = bisect_right(self.addrs, address) - 1
        return i

    def build_id(self, module: str = "") -> str:
        """GNU build-id of the kernel ("" module) or of a loaded module; "" when unreadable."""
        key = module or KERNEL_OBJECT
        cached = self._build_ids.get(key)
        if cached is not None:
            return cached
        if module:
            path = os.path.join(self.sys_module_path, module, "notes", ".note.gnu.build-id")
        else:
            path = self.notes_path
        bid = ""
        try:
            with open(path, "rb") as f:
                data = f.read(1 << 16)
            bid, kind = build_id_from_notes(parse_notes(data, little=sys.byteorder == "little"))
            if kind != "gnu":
                bid = ""
        except OSError as e:
            log.debug("kernel build-id for %s unreadable: %s", key, e)
        self._build_ids[key] = bid
        return bid
