"""Kernel symbols from ``/proc/kallsyms`` and kernel build-ids from sysfs notes.

Tetragon already symbolizes kernel frames from kallsyms (symbol + offset from
its start), so for them this module only confirms the symbol exists on this
kernel, tells which object it belongs to (the kernel itself or a module, which
Tetragon leaves blank) and supplies that object's build-id:
``/sys/kernel/notes`` for the kernel, ``/sys/module/<name>/notes/.note.gnu.build-id``
for a module. Resolving a raw kernel address (our own probes, the CLI) needs
the addresses, which the kernel shows only to privileged readers; otherwise
they read as zeros and :attr:`KernelSymbols.addresses_visible` is False.

Only text symbols (types t/T/w/W) are kept, loaded once on first use. The
table is compact because the agent holds it for its whole life (about 120,000
entries: as Python lists and a dict they cost ~33 MB, issue 13): sorted
addresses in one ``array('Q')``; the names raw-deflated in blocks of 32 records
(neighbours by address share most of their text: 2.8 MB of names take 0.74 MB;
a block is inflated, ~40,000 instructions, only when a lookup needs it); each entry's
module as runs of equal modules (a module's symbols are contiguous); names
found by binary search over sorted ``hash bucket | record`` keys in an
``array``, with 8 more hash bits per record so that a lookup decompresses
only the block of a likely match (recent answers cached). Every answer is the
one the lists and dict gave (tests/unit/test_kallsyms_compact.py,
test_kallsyms_blocks.py).

Loading leaves nothing behind but the table (~2.7 MB; docs/benchmarks.md,
"Agent memory"): the file is parsed into flat buffers (canonical/kallsyms_rows.py; natively,
canonical/_kallsyms.c, when the extension is built: ~0.15 s instead of ~0.26 s here, most of it
with the GIL released)
and the table's own objects are made before the parse or after every
temporary is freed, so that no small-object arena stays pinned half-empty
(tests/unit/test_kallsyms_load_memory.py; a loaded table used to cost the
idle agent ~2 MB more than its bytes, ~11 MB more with modules' symbols).
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from array import array
from bisect import bisect_right
from collections.abc import Iterable
from itertools import compress, islice
from operator import ne

from stellaops_runtime.canonical.elflayout import build_id_from_notes, parse_notes
from stellaops_runtime.canonical.kallsyms_rows import (
    BLOCK_NAMES,
    BLOCK_SHIFT,
    Rows,
    block_names,
    bucket_range,
    compress_names,
    name_hash,
    name_index_and_check,
    parse,
)
from stellaops_runtime.canonical.symnative import kallsyms
from stellaops_runtime.regular_file import open_regular

log = logging.getLogger(__name__)

KERNEL_OBJECT = "kernel"
NAME_CACHE_ENTRIES = 4096  # find_name answers kept (at most ~2 MB: names of at most...)
KSYM_NAME_LEN = 512  # ... the kernel's own limit on a symbol name


def _fill(dst: array[int], items: Iterable[int]) -> None:
    """Append ``items`` to ``dst`` in its own buffer: ``dst`` (made before the parse) stays the
    table's object, the array the items are gathered in goes."""
    dst.frombytes(memoryview(array(dst.typecode, items)).cast("B"))


class _Names:
    """``names[i]``: the name entry ``i`` resolves to, decoded from the blob on access."""

    __slots__ = ("_ks",)

    def __init__(self, ks: KernelSymbols) -> None:
        self._ks = ks

    def __len__(self) -> int:
        return len(self._ks.addrs)

    def __getitem__(self, i: int) -> str:
        return self._ks._record_name(self._ks._entry_rec[self._ks._entry(i)])


class _Modules:
    """``modules[i]``: the module of entry ``i`` ("" for the kernel itself)."""

    __slots__ = ("_ks",)

    def __init__(self, ks: KernelSymbols) -> None:
        self._ks = ks

    def __len__(self) -> int:
        return len(self._ks.addrs)

    def __getitem__(self, i: int) -> str:
        return self._ks._module_names[self._ks._module(self._ks._entry(i))]


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
        # Every object the table keeps is made here, before the parse, and filled in place.
        self.addrs: array[int] = array("Q")  # entry -> address, sorted
        self.names = _Names(self)  # entry -> name (str, decoded on access)
        self.modules = _Modules(self)  # entry -> module name, "" for the kernel itself
        self.addresses_visible = False
        # Records: every kept (address, name) row, aliases included, in sorted row order; an
        # entry's records are consecutive, the one naming it first.
        # UTF-8 names of all records, line-fed, in raw-deflated blocks of BLOCK_NAMES records;
        # block b is _zblob[_zoff[b]:_zoff[b + 1]] (see kallsyms_rows.compress_names).
        self._zblob = b""
        self._zoff: array[int] = array("I")
        self._entry_rec: array[int] = array("I")  # entry -> its first record (the one naming it)
        # Modules: entries mod_starts[j] up to the next start belong to _module_names[mod_ids[j]].
        self._mod_starts: array[int] = array("I")
        self._mod_ids: array[int] = array("I")
        self._module_names: list[str] = [""]
        # Names: sorted ``bucket << _shift | record`` (see name_index) and per record the
        # next 8 bits of its name's hash (see check_bytes).
        self._name_keys: array[int] = array("I")
        self._check: array[int] = array("B")
        self._shift = 1
        self._hash_bits = 13
        self._build_ids: dict[str, str] = {}
        self._found: dict[str, int] = {}  # recent find_name answers (kernel frames repeat)
        self._load()

    def _load(self) -> None:
        # ~120,000 rows of short-lived lists: the cyclic collector would walk them again and
        # again while they are built (a third of the load time); none can form a cycle.
        collecting = gc.isenabled()
        gc.disable()
        try:
            # A FIFO at kallsymsPath would block the agent's start for ever (and SIGTERM with it).
            with os.fdopen(open_regular(self.kallsyms_path), "rb") as f:
                rows = parse(f)
            mod_fields, mod_starts, mod_ids = self._build(rows)
            del rows
            # Made once the temporaries are gone: the module names and runs (small objects).
            text = [m.strip(b"[]").decode("utf-8", "replace") for m in mod_fields]
            self._module_names[1:] = sorted(set(text) - {""})
            ids = {m: i for i, m in enumerate(self._module_names)}
            _fill(self._mod_starts, mod_starts)
            _fill(self._mod_ids, [ids[text[t]] if t else 0 for t in mod_ids])
        finally:
            if collecting:
                gc.enable()

    def _build(self, rows: Rows) -> tuple[list[bytes], array[int], array[int]]:
        """Fill the table from the file's rows but for the modules: returned as the raw module
        fields (index 0: the kernel itself) and the runs of entries of one module (the entry
        each starts at, its index in the fields), for _load to name."""
        rows.sort()
        n = len(rows)
        zblob, zoff = compress_names(rows.names, rows.name_off)
        self._zblob = zblob
        del zblob
        _fill(self._zoff, zoff)
        del zoff
        rows.names = bytearray()
        rows.name_off = array("I")
        keys, self._shift, self._hash_bits, check = name_index_and_check(rows.hashes, n)
        _fill(self._check, check)
        del check
        rows.hashes = array("I")
        if keys.typecode == self._name_keys.typecode:
            _fill(self._name_keys, keys)
        else:  # over 2**19 records
            self._name_keys = keys
        del keys
        native = kallsyms()
        if native is not None:  # the same entries and module runs, the GIL released
            visible, entry_addrs, entry_rec, raw_starts, raw_ids = native.entries(rows.addrs, rows.mods)
            rows.addrs, rows.mods = array("Q"), array("I")
            self.addrs.frombytes(entry_addrs)
            self._entry_rec.frombytes(entry_rec)
            del entry_addrs, entry_rec
            mod_starts, mod_ids = array("I"), array("I")
            mod_starts.frombytes(raw_starts)
            mod_ids.frombytes(raw_ids)
            self.addresses_visible = visible
            return rows.mod_fields, mod_starts, mod_ids
        raddrs = rows.addrs
        visible = any(raddrs)
        # An entry starts at every record whose address differs from the one before (every
        # record when the addresses are hidden); its other records are aliases.
        starts = [True, *map(ne, islice(raddrs, 1, None), raddrs)] if visible else [True] * n
        _fill(self.addrs, compress(raddrs, starts))
        rows.addrs = raddrs = array("Q")
        _fill(self._entry_rec, compress(range(n), starts))
        del starts
        # An entry's module is that of its first record.
        emods = array("I", map(rows.mods.__getitem__, self._entry_rec))
        rows.mods = array("I")
        runs = [True, *map(ne, islice(emods, 1, None), emods)] if emods else []
        mod_starts = array("I", compress(range(len(emods)), runs))
        mod_ids = array("I", compress(emods, runs))
        self.addresses_visible = visible
        return rows.mod_fields, mod_starts, mod_ids

    def _entry(self, i: int) -> int:
        n = len(self.addrs)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("kernel symbol index out of range")
        return i

    def _module(self, e: int) -> int:
        """Index in _module_names of entry ``e``'s module (0: the kernel itself)."""
        return int(self._mod_ids[bisect_right(self._mod_starts, e) - 1])

    def _record_name(self, r: int) -> str:
        names = block_names(self._zblob, self._zoff, r >> BLOCK_SHIFT)
        return names[r & (BLOCK_NAMES - 1)].decode("utf-8", "replace")

    def __len__(self) -> int:
        return len(self.addrs)

    def find_name(self, symbol: str) -> int:
        """Index of the entry ``symbol`` resolves to, or -1.

        Several records may carry the name (static functions of one name, a name in the
        kernel and in modules): the first in address order, unless it is in a module and a
        later one is in the kernel itself, which then wins.
        """
        if not isinstance(symbol, str):
            return -1
        cached = self._found.get(symbol)
        if cached is not None:
            return cached
        found = self._find_name(symbol)
        if len(symbol) <= KSYM_NAME_LEN:  # a hostile huge name is answered, not kept
            if len(self._found) >= NAME_CACHE_ENTRIES:
                del self._found[next(iter(self._found))]  # the oldest
            self._found[symbol] = found
        return found

    def _find_name(self, symbol: str) -> int:
        try:
            nb = symbol.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: no stored name (valid UTF-8) is equal
            return -1
        keys, shift, bits = self._name_keys, self._shift, self._hash_bits
        h = name_hash(nb)
        lo, hi = bucket_range(keys, shift, bits, h)
        low = (1 << shift) - 1
        check, entry_rec = self._check, self._entry_rec
        c = (h >> bits) & 0xFF
        found = -1
        block, names = -1, []
        for k in range(lo, hi):  # in record order: a block's records come together
            r = keys[k] & low
            if check[r] != c:
                continue
            if r >> BLOCK_SHIFT != block:
                block = r >> BLOCK_SHIFT
                names = block_names(self._zblob, self._zoff, block)
            if names[r & (BLOCK_NAMES - 1)] != nb:
                continue
            e = bisect_right(entry_rec, r) - 1  # the entry whose records start at or before r
            if found < 0 or (self._module(found) and not self._module(e)):
                found = e
        return int(found)

    def size(self, i: int) -> int:
        """Distance to the next symbol's address (0 when unknown: hidden addresses, last symbol)."""
        if not self.addresses_visible or i + 1 >= len(self.addrs):
            return 0
        return int(self.addrs[i + 1] - self.addrs[i])

    def find_address(self, address: int) -> int:
        """Index of the symbol at or before ``address``, or -1 (needs visible addresses)."""
        if not self.addresses_visible:
            return -1
        return bisect_right(self.addrs, address) - 1

    def nbytes(self) -> int:
        """Bytes the table holds (arrays and the compressed names; the benchmark reports it)."""
        arrays = (
            self.addrs,
            self._zoff,
            self._entry_rec,
            self._mod_starts,
            self._mod_ids,
            self._name_keys,
            self._check,
        )
        return len(self._zblob) + sum(a.itemsize * len(a) for a in arrays)

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
            with os.fdopen(open_regular(path), "rb") as f:
                data = f.read(1 << 16)
            bid, kind = build_id_from_notes(parse_notes(data, little=sys.byteorder == "little"))
            if kind != "gnu":
                bid = ""
        except OSError as e:
            log.debug("kernel build-id for %s unreadable: %s", key, e)
        self._build_ids[key] = bid
        return bid
