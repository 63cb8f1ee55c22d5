"""OS package databases inside a root filesystem -> owner indexes (dpkg, apk, rpm).

An edge module: it reads the databases through :class:`RootFS` (never
outside the root) and builds one :class:`OwnerIndex` per source. A source
whose database is absent yields no index; one whose database is unusable
(not sqlite, unreadable) yields a *fatal* message; individual damaged
entries are skipped and listed in ``errors``. PURL namespaces and the
``distro`` qualifier come from the root's os-release (docs/attribution.md).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field

from stellaops_runtime.attribution import apk, dpkg, purls, rpmdb
from stellaops_runtime.attribution.model import AttributionError, ErrorKind, Package
from stellaops_runtime.attribution.osrelease import OsRelease
from stellaops_runtime.attribution.owners import KeyBuilder, OwnerIndex
from stellaops_runtime.attribution.rootfs import RootFS
from stellaops_runtime.canonical.rootopen import NotRegularFile

# Bounds on what one image's database may cost the agent (its memory limit is 1 GiB by default,
# and every byte here is written by whoever controls the image). This machine's dpkg database:
# a 0.7 MB status, 8 MB of file lists (the largest 4 MB), 137,000 recorded paths.
MAX_DB_BYTES = 512 << 20  # the rpm sqlite file, copied to a temporary file in chunks
MAX_TEXT_BYTES = 32 << 20  # dpkg status (and each status.d entry), apk installed
MAX_LIST_BYTES = 32 << 20  # one dpkg file list
MAX_PATHS = 1_000_000  # recorded paths per database: more makes the database unusable, not half-read
MAX_LINES = 1_000_000  # lines of a status or installed file (this machine's status: 16,700)
MAX_RPM_PACKAGES = 100_000  # rows of an rpmdb (a Fedora workstation has about 3,000)
MAX_RPM_STEPS = 20_000  # sqlite progress callbacks (every 10,000 VM steps) before a query is interrupted

DPKG_STATUS = "/var/lib/dpkg/status"
DPKG_STATUS_D = "/var/lib/dpkg/status.d"
DPKG_INFO = "/var/lib/dpkg/info"
DPKG_DIVERSIONS = "/var/lib/dpkg/diversions"
DPKG_ARCH = "/var/lib/dpkg/arch"
APK_INSTALLED = ("/lib/apk/db/installed", "/usr/lib/apk/db/installed")
RPM_SQLITE = ("/var/lib/rpm/rpmdb.sqlite", "/usr/lib/sysimage/rpm/rpmdb.sqlite")
RPM_OTHER = ("/var/lib/rpm/Packages", "/var/lib/rpm/Packages.db", "/usr/lib/sysimage/rpm/Packages.db")


@dataclass(slots=True)
class BuildResult:
    index: OwnerIndex | None = None  # None: no database of this kind in the image (or fatal)
    errors: list[str] = field(default_factory=list)  # entries skipped
    fatal: str | None = None  # the database is there but could not be used


def _read_text(fs: RootFS, path: str, *, limit: int = MAX_TEXT_BYTES, lines: int = MAX_LINES) -> str | None:
    """File content as text (``None`` if absent); undecodable bytes are kept as surrogates.

    ``AttributionError`` (``io``) past ``limit`` bytes or ``lines`` lines: parsing splits
    the text into lines and stanzas, and a 31 MB status of tiny stanzas cost 1 GB resident.
    """
    try:
        data = fs.read_bytes(path, limit=limit)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if data.count(b"\n") >= lines:
        raise AttributionError(ErrorKind.IO, f"{path}: more than {lines} lines")
    return data.decode("utf-8", "surrogateescape")


def _exists(fs: RootFS, path: str) -> bool:
    try:
        return fs.lstat(fs.resolve(path)) is not None
    except AttributionError:
        return False


class TooManyPaths(ValueError):
    """A database records more than :data:`MAX_PATHS` paths: refused whole, never half-indexed."""


def count_paths(total: int, text: str, origin: str) -> int:
    """``total`` plus the lines of ``text`` (counted before they are split into strings)."""
    total += text.count("\n") + 1
    if total > MAX_PATHS:
        raise TooManyPaths(f"{origin}: more than {MAX_PATHS} recorded paths")
    return total


def _finish(result: BuildResult, keys: KeyBuilder, source: str) -> BuildResult:
    if keys.skipped:
        result.errors.append(f"{source}: {keys.skipped} recorded paths skipped, first: {keys.first_problem}")
    return result


# -- dpkg -------------------------------------------------------------------------


def build_dpkg(fs: RootFS, osr: OsRelease) -> BuildResult:
    """``/var/lib/dpkg/status`` + ``info/*.list``, or distroless ``status.d/`` + ``*.md5sums``."""
    result = BuildResult()
    namespace = osr.id or "debian"
    try:
        status = _read_text(fs, DPKG_STATUS)
        status_d = [n for n in fs.listdir(DPKG_STATUS_D) if not n.startswith(".")]
        info = fs.listdir(DPKG_INFO) if status is not None else []
    except (OSError, AttributionError) as e:
        result.fatal = f"dpkg: cannot read the database: {e}"
        return result
    if status is None and not status_d:
        return result

    # A status file lists every state, only installed ones have files.
    lists: list[tuple[dpkg.DpkgPackage, str]] = []  # (package, in-root path of its file list)
    native: str | None = None  # the image's own architecture, for files two arches share
    if status is not None:
        packages, errors = dpkg.parse_status(status, origin=DPKG_STATUS)
        result.errors.extend(errors)
        try:
            native = dpkg.native_arch(_read_text(fs, DPKG_ARCH, limit=4096), packages)
        except (OSError, AttributionError):  # unreadable or huge: the dpkg package's arch
            native = dpkg.native_arch(None, packages)
        if not packages and status.strip():
            result.fatal = f"dpkg: {DPKG_STATUS} has no readable package stanza" + (
                f" ({errors[0]})" if errors else ""
            )
            return result
        by_key, by_name = _installed(packages, result)
        for entry in sorted(info):
            if not entry.endswith(".list"):
                continue
            name, arch = dpkg.list_file_name(entry)
            owner = by_key.get((name, arch)) if arch else by_name.get(name)
            if owner is not None:
                lists.append((owner, f"{DPKG_INFO}/{entry}"))
    names = set(status_d)
    for entry in sorted(status_d):
        if entry.endswith(".md5sums"):
            continue
        origin = f"{DPKG_STATUS_D}/{entry}"
        try:
            text = _read_text(fs, origin) or ""
        except (OSError, AttributionError) as e:
            result.errors.append(f"dpkg: {origin}: {e}")
            continue
        packages, errors = dpkg.parse_status(text, origin=origin)
        result.errors.extend(errors)
        installed = [p for p in packages if p.installed]
        if len(installed) == 1 and f"{entry}.md5sums" in names:
            lists.append((installed[0], f"{origin}.md5sums"))

    diversions = _diversions(fs, result)
    pkgs: list[Package] = []
    texts: list[tuple[int, str, str, str]] = []  # (package index, name, list path, its text)
    distro = osr.distro
    total = 0
    for owner, list_path in lists:
        try:
            pkg = purls.deb(
                namespace=namespace, name=owner.name, version=owner.version, arch=owner.arch, distro=distro
            )
            text = _read_text(fs, list_path, limit=MAX_LIST_BYTES, lines=MAX_PATHS) or ""
            total = count_paths(total, text, list_path)
        except TooManyPaths as e:
            result.fatal = f"dpkg: {e}"
            return result
        except (OSError, ValueError, AttributionError) as e:
            result.errors.append(f"dpkg: {list_path}: {e}")
            continue
        texts.append((len(pkgs), owner.name, list_path, text))
        pkgs.append(pkg)
    keys = KeyBuilder(fs)
    result.index = OwnerIndex(pkgs, _dpkg_entries(texts, diversions), keys=keys, native_arch=native)
    return _finish(result, keys, "dpkg")


def _dpkg_entries(
    texts: list[tuple[int, str, str, str]], diversions: dict[str, tuple[str, str | None]]
) -> Iterator[tuple[str, int]]:
    """(recorded path, owner) of every file list, split one list at a time (a million path
    strings held at once would cost the agent hundreds of MB)."""
    for idx, name, list_path, text in texts:
        paths = dpkg.parse_md5sums(text) if list_path.endswith(".md5sums") else dpkg.parse_list(text)
        for p in paths:
            yield dpkg.diverted(p, name, diversions), idx


def _installed(
    packages: list[dpkg.DpkgPackage], result: BuildResult
) -> tuple[dict[tuple[str, str | None], dpkg.DpkgPackage], dict[str, dpkg.DpkgPackage]]:
    """Installed packages by (name, arch) and by name (for ``<name>.list``), conflicts left out.

    dpkg itself refuses a status file with two instances of one package that
    cannot be co-installed ("multiple non-coinstallable package instances").
    Which stanza is true cannot be told, and a forged second one could name
    a fixed version: both are left out (their files unattributed), and counted.
    """
    groups: dict[tuple[str, str | None], list[dpkg.DpkgPackage]] = {}
    for p in packages:
        if p.installed:
            groups.setdefault((p.name, p.arch), []).append(p)
    by_key: dict[tuple[str, str | None], dpkg.DpkgPackage] = {}
    names: dict[str, list[dpkg.DpkgPackage]] = {}
    for (name, arch), same in groups.items():
        if len({p.version for p in same}) > 1:
            versions = ", ".join(sorted({p.version for p in same}))
            result.errors.append(f"dpkg: {name}:{arch}: several installed stanzas ({versions}); none used")
            continue
        by_key[(name, arch)] = same[0]
        names.setdefault(name, []).append(same[0])
    by_name: dict[str, dpkg.DpkgPackage] = {}
    for name, candidates in names.items():
        if len(candidates) == 1:
            by_name[name] = candidates[0]
        elif not all(p.multi_arch == "same" for p in candidates):
            archs = ", ".join(sorted(p.arch or "?" for p in candidates))
            result.errors.append(
                f"dpkg: {name}: installed for several architectures ({archs}); {name}.list not used"
            )
    return by_key, by_name


def _diversions(fs: RootFS, result: BuildResult) -> dict[str, tuple[str, str | None]]:
    try:
        text = _read_text(fs, DPKG_DIVERSIONS, limit=MAX_LIST_BYTES)
    except (OSError, AttributionError) as e:
        result.errors.append(f"dpkg: {DPKG_DIVERSIONS}: {e}")
        return {}
    if text is None:
        return {}
    diversions, errors = dpkg.parse_diversions(text, origin=DPKG_DIVERSIONS)
    result.errors.extend(errors)
    return diversions


# -- apk --------------------------------------------------------------------------


def build_apk(fs: RootFS, osr: OsRelease) -> BuildResult:
    result = BuildResult()
    text = None
    origin = APK_INSTALLED[0]
    try:
        for origin in APK_INSTALLED:
            text = _read_text(fs, origin)
            if text is not None:
                break
    except (OSError, AttributionError) as e:
        result.fatal = f"apk: cannot read {origin}: {e}"
        return result
    if text is None:
        return result
    try:
        count_paths(0, text, origin)
    except TooManyPaths as e:
        result.fatal = f"apk: {e}"
        return result
    packages, errors = apk.parse_installed(text, origin=origin)
    result.errors.extend(errors)
    if not packages and text.strip():
        result.fatal = f"apk: {origin} has no readable package record" + (f" ({errors[0]})" if errors else "")
        return result
    namespace = osr.id or "alpine"
    pkgs: list[Package] = []
    entries: list[tuple[str, int]] = []
    for p in packages:
        try:
            pkg = purls.apk(
                namespace=namespace, name=p.name, version=p.version, arch=p.arch, distro=osr.distro
            )
        except ValueError as e:
            result.errors.append(f"apk: {origin}: {e}")
            continue
        idx = len(pkgs)
        pkgs.append(pkg)
        entries.extend((f, idx) for f in p.files)
    keys = KeyBuilder(fs)
    result.index = OwnerIndex(pkgs, entries, keys=keys)
    return _finish(result, keys, "apk")


# -- rpm --------------------------------------------------------------------------


def build_rpm(fs: RootFS, osr: OsRelease) -> BuildResult:
    """The sqlite rpmdb (rpm >= 4.16); BerkeleyDB/NDB databases are reported, not read."""
    result = BuildResult()
    db_path = next((p for p in RPM_SQLITE if _exists(fs, p)), None)
    if db_path is None:
        other = next((p for p in RPM_OTHER if _exists(fs, p)), None)
        if other is not None:
            result.fatal = f"rpm: {other} is a BerkeleyDB/NDB rpmdb; only the sqlite backend is read"
        return result
    import sqlite3  # only here: an agent on PostgreSQL keeps SQLite's ~0.9 MB out where no image has one

    pkgs: list[Package] = []
    entries: list[tuple[str, int]] = []
    arches: list[tuple[str, str | None]] = []  # (name, arch) of every package, for the native arch
    try:
        with tempfile.TemporaryDirectory(prefix="stella-rpmdb-") as tmp:
            for hnum, blob in _rpm_rows(fs, db_path, tmp):
                try:
                    if not isinstance(blob, bytes):  # sqlite columns take any type; bytes(10**12) allocates
                        raise ValueError(f"the header is a {type(blob).__name__}, not a blob")
                    p = rpmdb.package_of(blob)
                except ValueError as e:
                    result.errors.append(f"rpm: {db_path}: package #{hnum}: {e}")
                    continue
                if p.name == "gpg-pubkey" or not p.files:
                    continue  # imported signing keys are headers without files
                if len(entries) + len(p.files) > MAX_PATHS:
                    raise TooManyPaths(f"{db_path}: more than {MAX_PATHS} recorded paths")
                arches.append((p.name, p.arch))
                _rpm_package(p, osr, db_path, hnum, pkgs, entries, result)
    except TooManyPaths as e:
        result.fatal = f"rpm: {e}"
        return result
    except (OSError, AttributionError, sqlite3.Error) as e:
        result.fatal = f"rpm: {db_path}: not a readable sqlite rpmdb: {e}"
        return result
    keys = KeyBuilder(fs)
    result.index = OwnerIndex(pkgs, entries, keys=keys, native_arch=rpmdb.native_arch(arches))
    return _finish(result, keys, "rpm")


def _rpm_package(
    p: rpmdb.RpmPackage,
    osr: OsRelease,
    db_path: str,
    hnum: object,
    pkgs: list[Package],
    entries: list[tuple[str, int]],
    result: BuildResult,
) -> None:
    try:
        pkg = purls.rpm(
            namespace=osr.id,
            name=p.name,
            version=p.version,
            release=p.release,
            epoch=p.epoch,
            arch=p.arch,
            distro=osr.distro,
        )
    except ValueError as e:
        result.errors.append(f"rpm: {db_path}: package #{hnum}: {e}")
        return
    idx = len(pkgs)
    pkgs.append(pkg)
    entries.extend((f, idx) for f in p.files)


def _rpm_rows(fs: RootFS, db_path: str, tmp: str) -> Iterator[tuple[object, object]]:
    """Every (hnum, blob) row, one at a time. The database (and its WAL, if any) is copied out of
    the root first, in chunks: sqlite opens by path, and a path into a container's root is not one
    we trust to stay put."""
    import sqlite3  # loaded by build_rpm already

    local = os.path.join(tmp, "rpmdb.sqlite")
    _copy_out(fs, db_path, local)
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        _copy_out(fs, db_path + "-wal", local + "-wal")
    conn = sqlite3.connect(local)
    try:
        # The file is the image's: "Packages" could be a view of an endless recursive query
        # (a 4 KB file that hung attribution) or of zeroblob(10**9). Only a plain table is
        # read, its rows are counted, and a query running too long is interrupted.
        row = conn.execute("SELECT type, sql FROM sqlite_master WHERE name = 'Packages'").fetchone()
        if row is None or row[0] != "table" or "VIRTUAL" in str(row[1]).upper():
            raise sqlite3.DatabaseError("no plain Packages table")
        steps = [0]

        def interrupt() -> int:
            steps[0] += 1
            return 1 if steps[0] > MAX_RPM_STEPS else 0

        conn.set_progress_handler(interrupt, 10_000)
        for n, (hnum, blob) in enumerate(conn.execute("SELECT hnum, blob FROM Packages ORDER BY hnum")):
            if n >= MAX_RPM_PACKAGES:
                raise TooManyPaths(f"{db_path}: more than {MAX_RPM_PACKAGES} packages")
            yield hnum, blob
    finally:
        conn.close()


def _copy_out(fs: RootFS, path: str, local: str) -> None:
    try:
        fd = fs.open(path)
    except NotRegularFile as e:
        raise AttributionError(ErrorKind.NOT_REGULAR, f"{path}: {e.strerror}") from None
    try:
        size = os.fstat(fd).st_size
        if size > MAX_DB_BYTES:
            raise AttributionError(ErrorKind.IO, f"{path}: {size} bytes, more than the {MAX_DB_BYTES} read")
        copied = 0
        with open(local, "wb") as out:
            while copied <= MAX_DB_BYTES and (chunk := os.read(fd, 1 << 20)):
                out.write(chunk)
                copied += len(chunk)
        if copied > MAX_DB_BYTES:
            raise AttributionError(ErrorKind.IO, f"{path}: grew past the {MAX_DB_BYTES} read")
    finally:
        os.close(fd)
