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
addresses in one ``array('Q')``, every name in one UTF-8 blob with an offsets
array (a name is decoded only when a lookup returns it), a module number per
entry, and names found by binary search over sorted ``hash bucket | record``
keys in an ``array`` instead of a dict of strings (recent answers cached).
Every answer is the one the lists and dict gave
(tests/unit/test_kallsyms_compact.py); the file is parsed a block at a time
so that loading does not peak above the old table's size.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from itertools import accumulate, compress, islice
from operator import eq, le, ne, or_
from typing import BinaryIO

from stellaops_runtime.canonical.elflayout import build_id_from_notes, parse_notes

log = logging.getLogger(__name__)

KERNEL_OBJECT = "kernel"
NAME_CACHE_ENTRIES = 4096  # find_name answers kept (at most ~2 MB: names of at most...)
KSYM_NAME_LEN = 512  # ... the kernel's own limit on a symbol name
_TEXT_TYPES = frozenset((b"t", b"T", b"w", b"W"))


def _is_hex(field: bytes) -> bool:
    try:
        return 0 <= int(field, 16) < 1 << 64
    except ValueError:
        return False


def _addresses(fields: list[bytes]) -> array[int] | None:
    """The fields as hexadecimal numbers, or None when one is not a number."""
    a: array[int] = array("Q")
    if set(map(len, fields)) == {16}:  # 64-bit kernels: one conversion for all
        try:
            raw = bytes.fromhex(b"".join(fields).decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            pass
        else:
            a.frombytes(raw)
            if sys.byteorder == "little":
                a.byteswap()
            return a
    try:
        a.extend(int(f, 16) for f in fields)
    except (ValueError, OverflowError):
        return None
    return a


_BLOCK = 1 << 18  # bytes of the file split into lines and fields at a time


def _parse(f: BinaryIO) -> tuple[array[int], list[bytes], list[str]]:
    """Addresses, names (UTF-8) and modules of the text symbol lines (address, type t/T/w/W,
    name, optional ``[module]``, split on ASCII whitespace), in file order; a line whose
    address is not hexadecimal (or not 64-bit) is skipped.

    The file is read and split into lines and fields a block at a time: all of it at
    once would hold the text and ~230 bytes per line of lists and field objects
    (~37 MB at the agent's start-up, for a table of ~8 MB).
    """
    addrs: array[int] = array("Q")
    names: list[bytes] = []
    mods: list[str] = []
    rest = b""
    while True:
        chunk = f.read(_BLOCK)
        block = rest + chunk
        if chunk:
            cut = block.rfind(b"\n") + 1
            block, rest = block[:cut], block[cut:]
        if not block:
            if chunk:
                continue  # no line end yet in a long line: read on
            break
        rows = [p for p in map(bytes.split, block.split(b"\n")) if len(p) >= 3 and p[1] in _TEXT_TYPES]
        del block
        got = _addresses([p[0] for p in rows])
        if got is None:
            rows = [p for p in rows if _is_hex(p[0])]
            got = _addresses([p[0] for p in rows])
            assert got is not None
        addrs.extend(got)
        names += [p[2] for p in rows]
        mods += [p[3].strip(b"[]").decode("utf-8", "replace") if len(p) > 3 else "" for p in rows]
        if not chunk:
            break
    try:
        b"".join(names).decode("utf-8")
    except UnicodeDecodeError:  # as the text each name decodes to, with U+FFFD for bad bytes
        names = [n.decode("utf-8", "replace").encode("utf-8") for n in names]
    return addrs, names, mods


def _alias_rank(name: bytes) -> tuple[int, int, str]:
    text = name.decode("utf-8", "replace")
    return (len(text) - len(text.lstrip("_")), len(text), text)


def _sorted_order(addrs: array[int], names: list[bytes]) -> list[int] | None:
    """Row numbers by address (None: the rows already are); aliases at one address: the name
    with the fewest leading underscores, then the shortest, then the alphabetically first,
    is the one the address resolves to (it comes first)."""
    order: list[int] | None = None
    sa: Sequence[int] = addrs
    if not all(map(le, addrs, islice(addrs, 1, None))):  # the kernel's own symbols come sorted
        order = sorted(range(len(addrs)), key=addrs.__getitem__)
        sa = [addrs[i] for i in order]
    dups = list(compress(range(1, len(sa)), map(eq, sa, islice(sa, 1, None))))
    i = 0
    while i < len(dups):  # each run of equal addresses, once
        j = i
        while j + 1 < len(dups) and dups[j + 1] == dups[j] + 1:
            j += 1
        if order is None:
            order = list(range(len(addrs)))
        lo, hi = dups[i] - 1, dups[j] + 1
        order[lo:hi] = sorted(order[lo:hi], key=lambda r: _alias_rank(names[r]))
        i = j + 1
    return order


def _name_index(names: list[bytes]) -> tuple[array[int], int, int]:
    """Name lookup without a dict: ``bucket << shift | record`` for every record, sorted
    (record order within a bucket), where a name's bucket is the low bits of its hash. A
    lookup is two binary searches, then a name comparison per record of the bucket. Keys
    below 2**30 (13 bucket bits for up to 131,071 names: ~15 per bucket) keep the sort on
    one-digit integers, which Python compares fastest; built with C-level maps and one
    sort, no Python loop per record."""
    shift = max(1, len(names).bit_length())
    bits = max(30 - shift, 13)
    keyed = sorted(
        map(
            or_,
            map((1 << shift).__mul__, map(((1 << bits) - 1).__and__, map(hash, names))),
            range(len(names)),
        )
    )
    return array("I" if shift + bits <= 32 else "Q", keyed), shift, bits


class _Names:
    """``names[i]``: the name entry ``i`` resolves to, decoded from the blob on access."""

    __slots__ = ("_ks",)

    def __init__(self, ks: KernelSymbols) -> None:
        self._ks = ks

    def __len__(self) -> int:
        return len(self._ks.addrs)

    def __getitem__(self, i: int) -> str:
        n = len(self._ks.addrs)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("kernel symbol index out of range")
        return self._ks._record_name(self._ks._entry_rec[i])


class _Modules:
    """``modules[i]``: the module of entry ``i`` ("" for the kernel itself)."""

    __slots__ = ("_ks",)

    def __init__(self, ks: KernelSymbols) -> None:
        self._ks = ks

    def __len__(self) -> int:
        return len(self._ks.addrs)

    def __getitem__(self, i: int) -> str:
        return self._ks._module_names[self._ks._entry_mod[i]]


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
        self.addrs: array[int] = array("Q")  # entry -> address, sorted
        self.names = _Names(self)  # entry -> name (str, decoded on access)
        self.modules = _Modules(self)  # entry -> module name, "" for the kernel itself
        self.addresses_visible = False
        # Records: every kept (address, name) row, aliases included, in sorted row order.
        self._blob = b""  # UTF-8 names of all records, back to back
        self._name_off: array[int] = array("I", [0])  # record r's name is blob[off[r]:off[r+1]]
        self._rec_entry: array[int] = array("I")  # record -> the entry its address resolves to
        self._entry_rec: array[int] = array("I")  # entry -> the record naming it
        self._entry_mod: array[int] = array("H")  # entry -> index in _module_names
        self._module_names: list[str] = [""]
        # Names: sorted ``bucket << _shift | record`` (see _name_index).
        self._name_keys: array[int] = array("I")
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
            with open(self.kallsyms_path, "rb") as f:
                parsed = _parse(f)
            self._build(*parsed)
        finally:
            if collecting:
                gc.enable()

    def _build(self, raddrs: array[int], names: list[bytes], mods: list[str]) -> None:
        order = _sorted_order(raddrs, names)
        if order is not None:
            raddrs = array("Q", map(raddrs.__getitem__, order))
            names = [names[i] for i in order]
            mods = [mods[i] for i in order]
        del order
        n = len(raddrs)
        visible = any(raddrs)
        # An entry starts at every record whose address differs from the one before (every
        # record when the addresses are hidden); its other records are aliases.
        starts = [True, *map(ne, islice(raddrs, 1, None), raddrs)] if visible else [True] * n
        self.addrs = array("Q", compress(raddrs, starts))
        del raddrs
        self._entry_rec = array("I", compress(range(n), starts))
        self._rec_entry = array("I", accumulate(starts[1:], initial=0)) if n else array("I")
        module_names = ["", *sorted(set(mods) - {""})]
        self._module_names = module_names
        code = "H" if len(module_names) <= 0xFFFF else "I"
        # Most entries are the kernel's (0); an entry's module is that of its first record.
        self._entry_mod = array(code, bytes(array(code).itemsize * len(self.addrs)))
        ids = {m: i for i, m in enumerate(module_names)}
        for r in compress(range(n), mods):
            if starts[r]:
                self._entry_mod[self._rec_entry[r]] = ids[mods[r]]
        del mods, starts
        self._blob = b"".join(names)
        self._name_off = array("I", accumulate(map(len, names), initial=0))
        self.addresses_visible = visible
        self._name_keys, self._shift, self._hash_bits = _name_index(names)

    def _record_name(self, r: int) -> str:
        return self._blob[self._name_off[r] : self._name_off[r + 1]].decode("utf-8", "replace")

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
        keys, shift = self._name_keys, self._shift
        h = hash(nb) & ((1 << self._hash_bits) - 1)
        lo = bisect_left(keys, h << shift)
        hi = bisect_left(keys, (h + 1) << shift, lo)
        low = (1 << shift) - 1
        blob, off, rec_entry, entry_mod = self._blob, self._name_off, self._rec_entry, self._entry_mod
        found = -1
        for k in range(lo, hi):
            r = keys[k] & low
            if blob[off[r] : off[r + 1]] != nb:
                continue
            e = rec_entry[r]
            if found < 0 or (entry_mod[found] and not entry_mod[e]):
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
        """Bytes the table holds (arrays and the name blob; the benchmark reports it)."""
        arrays = (
            self.addrs,
            self._name_off,
            self._rec_entry,
            self._entry_rec,
            self._entry_mod,
            self._name_keys,
        )
        return len(self._blob) + sum(a.itemsize * len(a) for a in arrays)

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
