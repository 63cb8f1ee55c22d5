"""On-disk copies of indexed symbol tables, so a restarted agent does not index the same file again.

Why this module exists: indexing ``.symtab``/``.dynsym`` is most of a binary's
cold cost (0.05-0.1 s for containerd or libLLVM, bench/symbolize_batch.py),
and an agent that restarts meets the same files again. :class:`IndexCache`
keeps, per content identity (canonical/buildidclaims.py: build-id + stat
identity, or + SHA-256; never a build-id alone), the address tables built
from a file's own symbol tables: sorted starts, ends, and the chosen name of
each entry as an offset into a copy of the string table. Loading one is a
read, a checksum and a few array conversions.

The cache is only a shortcut: every file is checked before use and anything
wrong with it (bad magic or version, a size that does not add up, a CRC-32
mismatch, another identity, an offset outside its string table, starts out
of order) makes it ignored, counted and rewritten from the binary itself,
never trusted and never a crash. Files are written to a temporary name and
renamed, so a reader never sees half a file; a file over ``max_file_bytes``
is neither written nor read, and past ``max_files`` files nothing more is
written. A file's name is a digest of the identity and of the source of the
modules whose rules decide a table's contents (:func:`rules_fingerprint`), so
an agent with other indexing rules never reads an older agent's files.
File layout (little-endian)::

    header   magic "STLIDX\\0\\1", version u32, table count u32, payload bytes u64, CRC-32 u32
    payload  identity (u32 length + UTF-8), then per table:
             source (u32 length + ASCII), entries n u64, name bytes cap u32, string table bytes s u64,
             starts n*u64, ends n*u64, name offsets n*u32, string table s bytes
"""

from __future__ import annotations

import contextlib
import hashlib
import operator
import os
import stat
import struct
import sys
import zlib
from array import array
from collections.abc import Callable
from itertools import islice
from typing import Any

from stellaops_runtime.atomic_file import write_atomically
from stellaops_runtime.canonical.addrindex import AddressTable, StrtabNames

MAGIC = b"STLIDX\x00\x01"
VERSION = 1
_HEADER = struct.Struct("<8sIIQI")
_TABLE = struct.Struct("<QIQ")
_U32 = struct.Struct("<I")
DEFAULT_MAX_FILES = 4096
DEFAULT_MAX_FILE_BYTES = 256 << 20
_LITTLE = sys.byteorder == "little"


class CacheFileError(ValueError):
    """A cache file that must not be used (damaged, truncated, for another file, or hostile)."""


def rules_fingerprint() -> str:
    """A digest of the code that decides what a table holds (canonical/symtab.py, addrindex.py,
    symcolumns.py, symnative.py, this module, and the built C extension when it indexes:
    canonical/_symindex.c's shared object): it names every cache file, so a file written by other
    rules, or by another build of the extension, is never found."""
    from stellaops_runtime.canonical import addrindex, symcolumns, symnative, symtab

    h = hashlib.sha256(f"{VERSION}".encode())
    modules: list[Any] = [symtab, addrindex, symcolumns, symnative, sys.modules[__name__]]
    if symnative.loaded():
        h.update(b"native")
        modules.append(symnative._NATIVE)
    for module in modules:
        try:
            with open(module.__file__ or "", "rb") as f:
                h.update(f.read())
        except OSError:  # no source to read (a frozen build): the package version stands in
            from stellaops_runtime import __version__

            h.update(f"{module.__name__}={__version__}".encode())
    return h.hexdigest()


def _array(code: str, data: memoryview) -> array[int]:
    out = array(code)
    out.frombytes(data)
    if not _LITTLE:
        out.byteswap()
    return out


def _le_bytes(code: str, values: object) -> bytes:
    out = array(code, values)  # type: ignore[call-overload]
    if not _LITTLE:
        out.byteswap()
    return out.tobytes()


def encode(identity: str, tables: list[AddressTable]) -> bytes:
    """The cache file for ``tables`` (every one must have string-table names: :meth:`AddressTable.saved`)."""
    parts = [_U32.pack(len(identity.encode())), identity.encode()]
    for t in tables:
        saved = t.saved()
        if saved is None:
            raise ValueError(f"table {t.source} has no string-table names to save")
        strtab, offsets, max_bytes = saved
        source = t.source.encode("ascii")
        parts += [_U32.pack(len(source)), source, _TABLE.pack(len(t.starts), max_bytes, len(strtab))]
        parts += [_le_bytes("Q", t.starts), _le_bytes("Q", t.ends), _le_bytes("I", offsets), strtab]
    payload = b"".join(parts)
    return _HEADER.pack(MAGIC, VERSION, len(tables), len(payload), zlib.crc32(payload)) + payload


def decode(data: bytes, identity: str, max_entries: int = 1 << 32) -> list[AddressTable]:
    """The tables of a cache file written for ``identity``; CacheFileError when it must not be used.

    A table of more than ``max_entries`` entries (the parse budget's ``max_symbols``) is refused.
    """
    if len(data) < _HEADER.size:
        raise CacheFileError("shorter than its header")
    magic, version, count, length, crc = _HEADER.unpack_from(data)
    if magic != MAGIC or version != VERSION:
        raise CacheFileError("not a cache file of this version")
    if length != len(data) - _HEADER.size:
        raise CacheFileError(f"payload is {len(data) - _HEADER.size} bytes, header says {length}")
    view = memoryview(data)[_HEADER.size :]
    if zlib.crc32(view) != crc:
        raise CacheFileError("checksum mismatch")
    pos = 0

    def take(n: int) -> memoryview:
        nonlocal pos
        if n < 0 or pos + n > len(view):
            raise CacheFileError("a field ends past the end of the file")
        out = view[pos : pos + n]
        pos += n
        return out

    (n,) = _U32.unpack(take(4))
    try:
        stored = bytes(take(n)).decode()
    except UnicodeDecodeError:
        raise CacheFileError("identity is not UTF-8") from None
    if stored != identity:
        raise CacheFileError("written for another file")
    tables: list[AddressTable] = []
    for _ in range(count):
        (n,) = _U32.unpack(take(4))
        try:
            source = bytes(take(n)).decode("ascii")
        except UnicodeDecodeError:
            raise CacheFileError("source name is not ASCII") from None
        entries, max_bytes, strtab_len = _TABLE.unpack(take(_TABLE.size))
        if entries > len(view) // 20:  # 8 + 8 + 4 bytes per entry must be there
            raise CacheFileError(f"{entries} entries cannot fit in the file")
        if entries > max_entries:
            raise CacheFileError(f"{entries} entries, over the {max_entries}-symbol budget")
        starts = _array("Q", take(8 * entries)).tolist()
        ends = _array("Q", take(8 * entries)).tolist()
        offsets = _array("I", take(4 * entries)).tolist()
        strtab = bytes(take(strtab_len))
        if offsets and max(offsets) >= strtab_len:
            raise CacheFileError("a name offset is outside the string table")
        if not all(map(operator.le, starts, islice(starts, 1, None))):
            raise CacheFileError("starts are not sorted")
        tables.append(AddressTable.restored(source, starts, ends, StrtabNames(strtab, offsets, max_bytes)))
    if pos != len(view):
        raise CacheFileError("bytes left after the last table")
    return tables


class IndexCache:
    """A directory of cache files, one per content identity; never raises for what it reads."""

    def __init__(
        self,
        directory: str,
        *,
        max_files: int = DEFAULT_MAX_FILES,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
        max_entries: int = 500_000,
        bump: Callable[[str], None] | None = None,
    ) -> None:
        self.directory = directory
        self.max_entries = max_entries
        self.max_files = max_files
        self.max_file_bytes = max_file_bytes
        self._bump = bump or (lambda _key: None)
        self.rules = rules_fingerprint()

    def path_for(self, identity: str) -> str:
        digest = hashlib.sha256(f"{self.rules}\0{identity}".encode()).hexdigest()
        return os.path.join(self.directory, f"{digest}.idx")

    def load(self, identity: str) -> list[AddressTable] | None:
        """The cached tables of ``identity``; None when there is no usable file (counted why)."""
        path = self.path_for(identity)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            self._bump("index_cache_misses")
            return None
        except OSError:
            self._bump("index_cache_unreadable")
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise CacheFileError("not a regular file")
            size = st.st_size
            if size > self.max_file_bytes:
                raise CacheFileError(f"{size} bytes, over the {self.max_file_bytes}-byte cap")
            data = os.pread(fd, size, 0)
            tables = decode(data, identity, self.max_entries)
        except CacheFileError:
            self._bump("index_cache_rejected")
            self._remove(path)
            return None
        except OSError:  # an I/O error: ignored, rebuilt
            self._bump("index_cache_unreadable")
            return None
        except Exception:  # a decoding failure not foreseen: the file is not trusted, the binary is read
            self._bump("index_cache_rejected")
            self._remove(path)
            return None
        finally:
            os.close(fd)
        self._bump("index_cache_hits")
        return tables

    def save(self, identity: str, tables: list[AddressTable]) -> None:
        """Write the tables of ``identity`` (atomically); failures are counted, not raised."""
        if not tables or any(t.saved() is None for t in tables):
            return
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            if len(os.listdir(self.directory)) >= self.max_files:
                self._bump("index_cache_full")
                return
            data = encode(identity, tables)
            if len(data) > self.max_file_bytes:
                self._bump("index_cache_too_big")
                return
            # Not durable: a cache entry lost to a power cut is parsed again; a torn one is never read.
            write_atomically(self.path_for(identity), data, mode=0o600, durable=False)
        except Exception:  # a full disk, a read-only directory, anything: the cache is only a shortcut
            self._bump("index_cache_write_failed")
            return
        self._bump("index_cache_written")

    @staticmethod
    def _remove(path: str) -> None:
        with contextlib.suppress(OSError):
            os.unlink(path)
