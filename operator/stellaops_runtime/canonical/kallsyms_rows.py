"""The lines of ``/proc/kallsyms`` as flat buffers: the parse behind canonical/kallsyms.py.

Why a module of its own: how the file is read decides what the agent's
kernel symbol table costs for the rest of its life, not only while it loads
(issue 13). Python's small-object allocator returns a 1 MiB arena to the
system only when every object in it is freed, so a parse that makes ~120,000
rows of lists and field objects and keeps a few of them (or keeps anything
made while they lived) leaves megabytes resident after the table is built.
Here no object made per line outlives the ~200 lines it was split with: the
rows go into arrays and one bytearray, re-sorted and ranked in place, and
the name hashes are taken while the field objects exist. The helpers of the
table's name index and compressed names live here too.
"""

from __future__ import annotations

import sys
import zlib
from array import array
from bisect import bisect_left
from collections.abc import Iterable
from itertools import accumulate, compress, islice, repeat
from operator import eq, itemgetter, le, or_, rshift, sub
from typing import BinaryIO

from stellaops_runtime.canonical.symnative import kallsyms

READ_BYTES = 1 << 18  # read at a time (each read of /proc/kallsyms walks the kernel's table) ...
SPLIT_BYTES = 1 << 13  # ... and split into lines and fields at a time (~200 lines)
BLOCK_SHIFT = 5
BLOCK_NAMES = 1 << BLOCK_SHIFT  # names compressed together
_WBITS = 12  # deflate window: 4 KiB, more than a block's names
_LEVEL = 6  # deflate's level and memory level
_MEM_LEVEL = 6
_REORDER_ROWS = 4096  # names moved at a time when the file is not in address order
_TEXT_TYPES = frozenset((b"t", b"T", b"w", b"W"))
_HASH_MASK = 0xFFFFFFFF  # bits of a name's hash kept (a bucket takes at most 29)


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


def alias_rank(name: bytes) -> tuple[int, int, str]:
    """Aliases at one address: the name with the fewest leading underscores, then the
    shortest, then the alphabetically first, is the one the address resolves to."""
    text = name.decode("utf-8", "replace")
    return (len(text) - len(text.lstrip("_")), len(text), text)


class Rows:
    """Text symbol rows (address, UTF-8 name, module, name hash), in file order until
    :meth:`sort` puts them in address order, the preferred alias first."""

    def __init__(self) -> None:
        self.addrs: array[int] = array("Q")
        self.names = bytearray()  # back to back, each ended by a line feed (no name holds one)
        self.name_off: array[int] = array("Q", [0])  # row r's name: names[off[r]:off[r + 1] - 1]
        self.hashes: array[int] = array("I")  # hash(name) & _HASH_MASK
        self.mods: array[int] = array("I")  # row -> index in mod_fields (0: the kernel itself)
        self.mod_fields: list[bytes] = [b""]  # the raw ``[module]`` fields
        self._mod_ids: dict[bytes, int] = {b"": 0}
        self.ordered = False  # already sorted by sort()'s rules (the native parse)

    def __len__(self) -> int:
        return len(self.addrs)

    def add(self, rows: list[list[bytes]]) -> None:
        """Append split lines (address, type, name, optional module); a line whose address is
        not a 64-bit hexadecimal number is skipped."""
        got = _addresses([p[0] for p in rows])
        if got is None:
            rows = [p for p in rows if _is_hex(p[0])]
            got = _addresses([p[0] for p in rows])
            assert got is not None
        self.addrs.extend(got)
        names = [p[2] for p in rows]
        try:  # a separator between names: no sequence cut in two can pass for a whole one
            b"\n".join(names).decode("utf-8")
        except UnicodeDecodeError:  # as the text each name decodes to, with U+FFFD for bad bytes
            names = [n.decode("utf-8", "replace").encode("utf-8") for n in names]
        if names:
            self.names += b"\n".join(names) + b"\n"
        ends = accumulate(map((1).__add__, map(len, names)), initial=self.name_off[-1])
        self.name_off.extend(islice(ends, 1, None))
        self.hashes.extend(map(_HASH_MASK.__and__, map(hash, names)))
        fields = [p[3] if len(p) > 3 else b"" for p in rows]
        ids = self._mod_ids
        for m in sorted(set(fields) - ids.keys()):
            ids[m] = len(self.mod_fields)
            self.mod_fields.append(m)
        self.mods.extend(map(ids.__getitem__, fields))

    def name(self, r: int) -> bytes:
        return bytes(self.names[self.name_off[r] : self.name_off[r + 1] - 1])

    def sort(self) -> None:
        """Address order (stable: the file's order among equal addresses), then each run of
        equal addresses by :func:`alias_rank`."""
        if self.ordered:
            return
        a = self.addrs
        if not all(map(le, a, islice(a, 1, None))):  # the kernel's own symbols come sorted
            self._reorder(sorted(range(len(a)), key=a.__getitem__))
            a = self.addrs
        dups = list(compress(range(1, len(a)), map(eq, a, islice(a, 1, None))))
        i = 0
        while i < len(dups):  # each run of equal addresses, once
            j = i
            while j + 1 < len(dups) and dups[j + 1] == dups[j] + 1:
                j += 1
            self._rank(dups[i] - 1, dups[j] + 1)
            i = j + 1

    def _reorder(self, order: list[int]) -> None:
        take = itemgetter(*order)  # at least two rows: the rows were out of order
        off = self.name_off
        starts = array("Q", take(off))
        ends = array("Q", take(off[1:]))
        names = bytes(self.names)
        self.names = bytearray()
        for i in range(0, len(order), _REORDER_ROWS):  # C-level joins of a few thousand names
            part = map(slice, starts[i : i + _REORDER_ROWS], ends[i : i + _REORDER_ROWS])
            self.names += b"".join(map(names.__getitem__, part))
        del names
        self.name_off = array("Q", accumulate(map(sub, ends, starts), initial=0))
        self.addrs = array("Q", take(self.addrs))
        self.hashes = array("I", take(self.hashes))
        self.mods = array("I", take(self.mods))

    def _rank(self, lo: int, hi: int) -> None:
        names = [self.name(r) for r in range(lo, hi)]
        perm = sorted(range(hi - lo), key=lambda k: alias_rank(names[k]))
        off = self.name_off
        self.names[off[lo] : off[hi]] = b"".join(names[k] + b"\n" for k in perm)  # the same length
        off[lo : hi + 1] = array("Q", accumulate((len(names[k]) + 1 for k in perm), initial=off[lo]))
        self.hashes[lo:hi] = array("I", [self.hashes[lo + k] for k in perm])
        self.mods[lo:hi] = array("I", [self.mods[lo + k] for k in perm])


def parse(f: BinaryIO) -> Rows:
    """The file's text symbol rows: natively (canonical/_kallsyms.c, the GIL released for most of
    it, already sorted) when the extension is built, else :func:`parse_python`."""
    native = kallsyms()
    if native is None:
        return parse_python(f)
    addrs, names, name_off, hashes, mods, mod_fields = native.rows(f.fileno())  # read there, the GIL released
    out = Rows()
    for dst, raw in ((out.addrs, addrs), (out.hashes, hashes), (out.mods, mods)):
        dst.frombytes(raw)
    out.name_off = array("Q")
    out.name_off.frombytes(name_off)
    out.names = bytearray(names)
    out.mod_fields = mod_fields
    out.ordered = True
    return out


def parse_python(f: BinaryIO) -> Rows:
    """The text symbol lines (address, type t/T/w/W, name, optional ``[module]``, split on
    ASCII whitespace) of the file, in file order; split ``SPLIT_BYTES`` at a time, so the
    lists and field objects of ~200 lines are all that exist at once (the whole file at
    once: ~37 MB of them) and they fit the allocator's free pools."""
    out = Rows()
    rest = b""
    while True:
        chunk = f.read(READ_BYTES)
        data = rest + chunk
        if chunk:
            cut = data.rfind(b"\n") + 1
            data, rest = data[:cut], data[cut:]
        if not data:
            if chunk:
                continue  # no line end yet in a long line: read on
            break
        i = 0
        while i < len(data):
            j = data.find(b"\n", i + SPLIT_BYTES) + 1 or len(data)  # whole lines
            lines = data[i:j].split(b"\n")
            out.add([p for p in map(bytes.split, lines) if len(p) >= 3 and p[1] in _TEXT_TYPES])
            del lines
            i = j
        if not chunk:
            break
    return out


def name_index(hashes: Iterable[int], n: int) -> tuple[array[int], int, int]:
    """Name lookup without a dict: ``bucket << shift | record`` for every record, sorted
    (record order within a bucket), where a name's bucket is the low bits of its hash. A
    lookup is two binary searches, then, for the bucket's records whose check byte matches
    (see check_bytes), a block inflated and a name comparison. Keys
    below 2**30 (13 bucket bits for up to 131,071 names: ~15 per bucket) keep the sort on
    one-digit integers, which Python compares fastest; built with C-level maps and one
    sort, no Python loop per record."""
    shift = max(1, n.bit_length())
    bits = max(30 - shift, 13)
    keyed = sorted(map(or_, map((1 << shift).__mul__, map(((1 << bits) - 1).__and__, hashes)), range(n)))
    return array("I" if shift + bits <= 32 else "Q", keyed), shift, bits


def bucket_range(keys: array[int], shift: int, bits: int, h: int) -> tuple[int, int]:
    """The positions in ``keys`` of the records in the bucket of a name of hash ``h``."""
    b = h & ((1 << bits) - 1)
    lo = bisect_left(keys, b << shift)
    return lo, bisect_left(keys, (b + 1) << shift, lo)


def name_hash(name: bytes) -> int:
    """The bits of a name's hash the index uses (bucket, then check byte)."""
    return hash(name) & _HASH_MASK


def name_index_and_check(hashes: array[int], n: int) -> tuple[array[int], int, int, array[int]]:
    """:func:`name_index` and :func:`check_bytes` of the rows' hashes (natively when built)."""
    native = kallsyms()
    if native is None:
        keys, shift, bits = name_index(hashes, n)
        return keys, shift, bits, check_bytes(hashes, bits)
    shift = max(1, n.bit_length())
    bits = max(30 - shift, 13)
    raw_keys, raw_check = native.name_index(hashes, shift, bits)
    keys = array("I" if shift + bits <= 32 else "Q")
    keys.frombytes(raw_keys)
    return keys, shift, bits, array("B", raw_check)


def check_bytes(hashes: Iterable[int], bits: int) -> array[int]:
    """Per record, the 8 hash bits above its bucket's: a lookup decompresses a name only
    when they match too (1 record in 256 of the bucket's others)."""
    return array("B", map(0xFF.__and__, map(rshift, hashes, repeat(bits))))


def compress_names(names: bytes | bytearray, off: array[int]) -> tuple[bytes, array[int]]:
    """The line-fed names in blocks of ``BLOCK_NAMES`` records, each block raw-deflated on its
    own (neighbours by address share most of their text: ~4 times smaller), back to back;
    and where each block starts (one more offset: the end). Natively when built: the same
    calls of zlib, so the same bytes."""
    native = kallsyms()
    if native is not None and off.typecode == "Q":
        zblob, raw = native.blocks(names, off, BLOCK_NAMES, _LEVEL, -_WBITS, _MEM_LEVEL)
        zoff = array("I")
        zoff.frombytes(raw)
        return zblob, zoff
    n = len(off) - 1
    out = bytearray()
    starts: array[int] = array("I", [0])
    # One stream, flushed in full after each block: a block is inflated on its own, and the
    # deflate state is allocated once (a zlib.compress per block allocates ~270 KB, above the
    # mmap threshold the agent sets: mmap and munmap calls tripled the time).
    z = zlib.compressobj(_LEVEL, zlib.DEFLATED, -_WBITS, _MEM_LEVEL)
    for i in range(0, n, BLOCK_NAMES):
        out += z.compress(names[off[i] : off[min(i + BLOCK_NAMES, n)]])
        out += z.flush(zlib.Z_FULL_FLUSH)
        starts.append(len(out))
    return bytes(out), starts


def block_names(zblob: bytes, zoff: array[int], block: int) -> list[bytes]:
    """The names of a block of records (the last item is empty)."""
    return zlib.decompressobj(-_WBITS).decompress(zblob[zoff[block] : zoff[block + 1]]).split(b"\n")
