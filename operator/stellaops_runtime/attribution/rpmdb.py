"""rpm package headers, parsed from the blobs of an sqlite rpmdb (``rpmdb.sqlite``, table ``Packages``).

Since rpm 4.16 the default database is sqlite: one row per installed
package, ``Packages(hnum INTEGER PRIMARY KEY, blob BLOB)``, the blob being
the package's header in rpm's export format (without the 8-byte header
magic):

- ``il`` (uint32 BE, number of index entries), ``dl`` (uint32 BE, data size);
- ``il`` entries of 16 bytes: tag, type, offset (into the data), count, all BE;
- ``dl`` bytes of data.

Types used: CHAR (1), INT32 (4), STRING (6), STRING_ARRAY (8), I18NSTRING (9);
strings are NUL-terminated. Tags (rpm's ``rpmtag.h``): NAME 1000, VERSION 1001,
RELEASE 1002, EPOCH 1003, VENDOR 1011, ARCH 1022, OLDFILENAMES 1027,
FILESTATES 1029 (a file not installed by this package is left out), SOURCERPM
1044, DIRINDEXES 1116, BASENAMES 1117, DIRNAMES 1118. A file's
path is ``DIRNAMES[DIRINDEXES[i]] + BASENAMES[i]``; very old headers list
whole paths in OLDFILENAMES instead. Every offset and count is bounds-checked:
a damaged blob is a :class:`ValueError` naming what was wrong.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

TAG_NAME = 1000
TAG_VERSION = 1001
TAG_RELEASE = 1002
TAG_EPOCH = 1003
TAG_VENDOR = 1011
TAG_ARCH = 1022
TAG_OLDFILENAMES = 1027
TAG_FILESTATES = 1029
TAG_SOURCERPM = 1044
TAG_DIRINDEXES = 1116
TAG_BASENAMES = 1117
TAG_DIRNAMES = 1118

TYPE_CHAR = 1
TYPE_INT32 = 4
TYPE_STRING = 6
TYPE_STRING_ARRAY = 8
TYPE_I18NSTRING = 9

_MAX_ENTRIES = 1 << 16
_MAX_DATA = 256 << 20
# rpm's RPMFILE_IS_INSTALLED: a file in state "replaced" (another package's copy took its path),
# "not installed" (--excludedocs, %_install_langs) or "wrong color" (multilib) is not this
# package's file on disk, and ``rpm -qf`` does not name the package for it.
INSTALLED_FILE_STATES = frozenset({0, 3})  # normal, netshared


@dataclass(frozen=True, slots=True)
class RpmPackage:
    name: str
    version: str
    release: str
    epoch: int | None
    arch: str | None
    vendor: str | None
    source_rpm: str | None
    files: tuple[str, ...] = field(default=(), repr=False)


def _strings(data: bytes, offset: int, count: int, tag: int) -> list[str]:
    out: list[str] = []
    pos = offset
    for _ in range(count):
        end = data.find(b"\0", pos)
        if end < 0:
            raise ValueError(f"tag {tag}: string at data offset {pos} is not NUL-terminated")
        out.append(data[pos:end].decode("utf-8", "surrogateescape"))
        pos = end + 1
    return out


def parse_header(blob: bytes) -> dict[int, list[str] | list[int]]:
    """Tags used here -> values (strings or ints); other tags are skipped unread."""
    if len(blob) < 8:
        raise ValueError(f"header blob of {len(blob)} bytes is shorter than its 8-byte preamble")
    il, dl = struct.unpack_from(">II", blob, 0)
    if il == 0 or il > _MAX_ENTRIES or dl > _MAX_DATA:
        raise ValueError(f"implausible header sizes: {il} index entries, {dl} data bytes")
    data_start = 8 + 16 * il
    if data_start + dl > len(blob):
        raise ValueError(f"header claims {il} entries and {dl} data bytes but the blob has {len(blob)} bytes")
    data = blob[data_start : data_start + dl]
    wanted = {
        TAG_NAME,
        TAG_VERSION,
        TAG_RELEASE,
        TAG_EPOCH,
        TAG_VENDOR,
        TAG_ARCH,
        TAG_OLDFILENAMES,
        TAG_FILESTATES,
        TAG_SOURCERPM,
        TAG_DIRINDEXES,
        TAG_BASENAMES,
        TAG_DIRNAMES,
    }
    out: dict[int, list[str] | list[int]] = {}
    for i in range(il):
        tag, typ, offset, count = struct.unpack_from(">iIiI", blob, 8 + 16 * i)
        if tag not in wanted:
            continue
        if offset < 0 or offset >= dl or count == 0 or count > dl:
            raise ValueError(f"tag {tag}: offset {offset} / count {count} outside the {dl}-byte data")
        if typ == TYPE_CHAR:
            if offset + count > dl:
                raise ValueError(f"tag {tag}: {count} chars at offset {offset} do not fit the data")
            out[tag] = list(struct.unpack_from(f">{count}b", data, offset))
        elif typ == TYPE_INT32:
            if offset % 4 or offset + 4 * count > dl:
                raise ValueError(f"tag {tag}: {count} int32 at offset {offset} do not fit the data")
            out[tag] = list(struct.unpack_from(f">{count}I", data, offset))
        elif typ in (TYPE_STRING, TYPE_I18NSTRING):
            out[tag] = _strings(data, offset, 1, tag)
        elif typ == TYPE_STRING_ARRAY:
            out[tag] = _strings(data, offset, count, tag)
        else:
            raise ValueError(f"tag {tag} has unexpected type {typ}")
    return out


def _one(tags: dict[int, list[str] | list[int]], tag: int) -> str | None:
    v = tags.get(tag)
    return str(v[0]) if v else None


def package_of(blob: bytes) -> RpmPackage:
    """The package a header blob describes, with its file paths; ``ValueError`` if damaged."""
    tags = parse_header(blob)
    name = _one(tags, TAG_NAME)
    version = _one(tags, TAG_VERSION)
    if not name or version is None:
        raise ValueError("header has no NAME or VERSION")
    epoch_v = tags.get(TAG_EPOCH)
    epoch = int(epoch_v[0]) if epoch_v else None
    files: list[str] = []
    basenames = tags.get(TAG_BASENAMES)
    if basenames:
        dirnames = tags.get(TAG_DIRNAMES) or []
        dirindexes = tags.get(TAG_DIRINDEXES) or []
        if len(dirindexes) != len(basenames):
            raise ValueError(f"{name}: {len(basenames)} BASENAMES but {len(dirindexes)} DIRINDEXES")
        for base, di in zip(basenames, dirindexes, strict=True):
            if not isinstance(di, int) or di >= len(dirnames):
                raise ValueError(f"{name}: DIRINDEXES entry {di} but only {len(dirnames)} DIRNAMES")
            files.append(f"{dirnames[di]}{base}")
    else:
        files = [str(p) for p in tags.get(TAG_OLDFILENAMES) or []]
    states = tags.get(TAG_FILESTATES)
    if states is not None:
        if len(states) != len(files):
            raise ValueError(f"{name}: {len(files)} files but {len(states)} FILESTATES")
        files = [f for f, st in zip(files, states, strict=True) if st in INSTALLED_FILE_STATES]
    return RpmPackage(
        name=name,
        version=version,
        release=_one(tags, TAG_RELEASE) or "",
        epoch=epoch,
        arch=_one(tags, TAG_ARCH),
        vendor=_one(tags, TAG_VENDOR),
        source_rpm=_one(tags, TAG_SOURCERPM),
        files=tuple(files),
    )


# Packages built for the image's own architecture and never installed for a second one: the
# base of every rpm distribution (Fedora, RHEL, SUSE, Amazon, Azure Linux, Photon), then rpm itself.
NATIVE_ARCH_PACKAGES = ("filesystem", "rpm")
_ARCH = re.compile(r"[A-Za-z0-9_]{1,32}")  # x86_64, i686, ppc64le, aarch64, armv7hl


def native_arch(packages: Iterable[tuple[str, str | None]]) -> str | None:
    """The image's native architecture from (name, arch) of its installed packages: the one arch
    of ``filesystem``, else of ``rpm``; ``None`` when neither has exactly one (rpm records no
    platform in its database, and ``/etc/rpm/platform`` is seldom there)."""
    seen = [(n, a) for n, a in packages if n in NATIVE_ARCH_PACKAGES]
    for name in NATIVE_ARCH_PACKAGES:
        arches = {a for n, a in seen if n == name and a and a != "noarch"}
        if len(arches) == 1 and _ARCH.fullmatch(arch := arches.pop()):
            return arch
    return None
