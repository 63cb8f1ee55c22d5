"""OS package databases inside a root filesystem -> owner indexes (dpkg, apk, rpm).

An edge module: it reads the databases through :class:`RootFS` (never
outside the root) and builds one :class:`OwnerIndex` per source. A source
whose database is absent yields no index; one whose database is unusable
(not sqlite, unreadable) yields a *fatal* message; individual damaged
entries are skipped and listed in ``errors``. PURL namespaces and the
``distro`` qualifier come from the root's os-release (docs/attribution.md).
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from dataclasses import dataclass, field

from stellaops_runtime.attribution import apk, dpkg, purls, rpmdb
from stellaops_runtime.attribution.model import AttributionError, Package
from stellaops_runtime.attribution.osrelease import OsRelease
from stellaops_runtime.attribution.owners import KeyBuilder, OwnerIndex
from stellaops_runtime.attribution.rootfs import RootFS

MAX_DB_BYTES = 512 << 20
MAX_LIST_BYTES = 64 << 20

DPKG_STATUS = "/var/lib/dpkg/status"
DPKG_STATUS_D = "/var/lib/dpkg/status.d"
DPKG_INFO = "/var/lib/dpkg/info"
APK_INSTALLED = ("/lib/apk/db/installed", "/usr/lib/apk/db/installed")
RPM_SQLITE = ("/var/lib/rpm/rpmdb.sqlite", "/usr/lib/sysimage/rpm/rpmdb.sqlite")
RPM_OTHER = ("/var/lib/rpm/Packages", "/var/lib/rpm/Packages.db", "/usr/lib/sysimage/rpm/Packages.db")


@dataclass(slots=True)
class BuildResult:
    index: OwnerIndex | None = None  # None: no database of this kind in the image (or fatal)
    errors: list[str] = field(default_factory=list)  # entries skipped
    fatal: str | None = None  # the database is there but could not be used


def _read_text(fs: RootFS, path: str, *, limit: int = MAX_DB_BYTES) -> str | None:
    """File content as text (``None`` if absent); undecodable bytes are kept as surrogates."""
    try:
        return fs.read_bytes(path, limit=limit).decode("utf-8", "surrogateescape")
    except (FileNotFoundError, NotADirectoryError):
        return None


def _exists(fs: RootFS, path: str) -> bool:
    try:
        return fs.lstat(fs.resolve(path)) is not None
    except AttributionError:
        return False


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
    except (OSError, AttributionError) as e:
        result.fatal = f"dpkg: cannot read the database: {e}"
        return result
    if status is None and not status_d:
        return result

    # (name, arch) -> package; a status file lists every state, only installed ones have files.
    by_key: dict[tuple[str, str | None], dpkg.DpkgPackage] = {}
    by_name: dict[str, dpkg.DpkgPackage] = {}
    lists: list[tuple[dpkg.DpkgPackage, str]] = []  # (package, in-root path of its file list)
    if status is not None:
        packages, errors = dpkg.parse_status(status, origin=DPKG_STATUS)
        result.errors.extend(errors)
        if not packages and status.strip():
            result.fatal = f"dpkg: {DPKG_STATUS} has no readable package stanza" + (
                f" ({errors[0]})" if errors else ""
            )
            return result
        for p in packages:
            if p.installed:
                by_key[(p.name, p.arch)] = p
                by_name.setdefault(p.name, p)
        for entry in sorted(fs.listdir(DPKG_INFO)):
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
        for p in installed:
            by_key.setdefault((p.name, p.arch), p)
        if len(installed) == 1 and f"{entry}.md5sums" in names:
            lists.append((installed[0], f"{origin}.md5sums"))

    pkgs: list[Package] = []
    entries: list[tuple[str, int]] = []
    distro = osr.distro
    for owner, list_path in lists:
        try:
            text = _read_text(fs, list_path, limit=MAX_LIST_BYTES) or ""
        except (OSError, AttributionError) as e:
            result.errors.append(f"dpkg: {list_path}: {e}")
            continue
        paths = dpkg.parse_md5sums(text) if list_path.endswith(".md5sums") else dpkg.parse_list(text)
        idx = len(pkgs)
        pkgs.append(
            purls.deb(
                namespace=namespace, name=owner.name, version=owner.version, arch=owner.arch, distro=distro
            )
        )
        entries.extend((p, idx) for p in paths)
    keys = KeyBuilder(fs)
    result.index = OwnerIndex(pkgs, entries, keys=keys)
    return _finish(result, keys, "dpkg")


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
    packages, errors = apk.parse_installed(text, origin=origin)
    result.errors.extend(errors)
    if not packages and text.strip():
        result.fatal = f"apk: {origin} has no readable package record" + (f" ({errors[0]})" if errors else "")
        return result
    namespace = osr.id or "alpine"
    pkgs: list[Package] = []
    entries: list[tuple[str, int]] = []
    for p in packages:
        idx = len(pkgs)
        pkgs.append(
            purls.apk(namespace=namespace, name=p.name, version=p.version, arch=p.arch, distro=osr.distro)
        )
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
    try:
        rows = _rpm_rows(fs, db_path)
    except (OSError, AttributionError, sqlite3.Error) as e:
        result.fatal = f"rpm: {db_path}: not a readable sqlite rpmdb: {e}"
        return result
    pkgs: list[Package] = []
    entries: list[tuple[str, int]] = []
    for hnum, blob in rows:
        try:
            p = rpmdb.package_of(bytes(blob))
        except ValueError as e:
            result.errors.append(f"rpm: {db_path}: package #{hnum}: {e}")
            continue
        if p.name == "gpg-pubkey" or not p.files:
            continue  # imported signing keys are headers without files
        idx = len(pkgs)
        pkgs.append(
            purls.rpm(
                namespace=osr.id,
                name=p.name,
                version=p.version,
                release=p.release,
                epoch=p.epoch,
                arch=p.arch,
                distro=osr.distro,
            )
        )
        entries.extend((f, idx) for f in p.files)
    keys = KeyBuilder(fs)
    result.index = OwnerIndex(pkgs, entries, keys=keys)
    return _finish(result, keys, "rpm")


def _rpm_rows(fs: RootFS, db_path: str) -> list[tuple[int, bytes]]:
    """All (hnum, blob) rows. The database (and its WAL, if any) is copied out of the root first:
    sqlite opens by path, and a path into a container's root is not one we trust to stay put."""
    with tempfile.TemporaryDirectory(prefix="stella-rpmdb-") as tmp:
        local = os.path.join(tmp, "rpmdb.sqlite")
        with open(local, "wb") as f:
            f.write(fs.read_bytes(db_path, limit=MAX_DB_BYTES))
        try:
            wal = fs.read_bytes(db_path + "-wal", limit=MAX_DB_BYTES)
        except (FileNotFoundError, NotADirectoryError):
            wal = None
        if wal:
            with open(local + "-wal", "wb") as f:
                f.write(wal)
        conn = sqlite3.connect(local)
        try:
            return list(conn.execute("SELECT hnum, blob FROM Packages ORDER BY hnum"))
        finally:
            conn.close()
