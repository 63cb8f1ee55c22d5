"""The files of one package (named by PURL) inside a root filesystem: the inverse of attribution.

Attribution (``attribution/``) answers "which package owns this file"; a
uprobe named by PURL needs the other direction: "which files does this
package install here". The same databases are read with the same parsers
(dpkg ``status`` + ``info/<name>.list``, distroless ``status.d`` +
``.md5sums``, apk ``installed``), through :class:`RootFS`, so nothing is read
outside the root (``/proc/<pid>/root`` of a container).

A PURL matches an installed package when type and name agree (names compare
case-insensitively), and, where the PURL gives them, the namespace (the
root's os-release ``ID``), the version and the ``arch`` qualifier. Other
ecosystems (rpm, pypi, ...) are reported as unsupported, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from packageurl import PackageURL

from stellaops_runtime.attribution import apk, dpkg, purls
from stellaops_runtime.attribution.model import AttributionError
from stellaops_runtime.attribution.osrelease import LOCATIONS, UNKNOWN, OsRelease, parse_os_release
from stellaops_runtime.attribution.rootfs import RootFS

MAX_DB_BYTES = 256 << 20
MAX_LIST_BYTES = 64 << 20
PATH_MAX = 4096  # a longer JAR path is no file a JVM opens (attribution/owners.py passes it over too)
DPKG_STATUS = "/var/lib/dpkg/status"
DPKG_STATUS_D = "/var/lib/dpkg/status.d"
DPKG_INFO = "/var/lib/dpkg/info"
APK_INSTALLED = ("/lib/apk/db/installed", "/usr/lib/apk/db/installed")
SUPPORTED_TYPES = ("deb", "apk")


class PackageLookupError(Exception):
    """The root or its package database cannot be read; the message says which and why."""


@dataclass(slots=True)
class PackageFiles:
    """What a PURL names in one root: the matching installed packages' PURLs and their files."""

    purls: list[str] = field(default_factory=list)  # of the installed packages that matched ([] none)
    files: list[str] = field(default_factory=list)  # in-root paths as the database records them
    errors: list[str] = field(default_factory=list)  # damaged entries skipped

    @property
    def jar(self) -> str:
        """The first ``.jar`` the packages list ("" for none): a JNI library's Java code, which the
        agent tells the store as a ``listed`` row (agent/listed_jars.py), as attribution would."""
        return next((f for f in self.files if f.endswith(".jar") and len(f) <= PATH_MAX), "")


def _read(fs: RootFS, path: str, limit: int) -> str | None:
    try:
        return fs.read_bytes(path, limit=limit).decode("utf-8", "surrogateescape")
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, AttributionError) as e:
        raise PackageLookupError(f"{path}: {e}") from None


def os_release(fs: RootFS) -> OsRelease:
    for location in LOCATIONS:
        try:
            text = _read(fs, location, 64 << 10)
        except PackageLookupError:
            continue
        if text is not None:
            return parse_os_release(text)
    return UNKNOWN


def _wanted(want: PackageURL, osr: OsRelease, name: str, version: str, arch: str | None) -> bool:
    if name.lower() != want.name.lower():
        return False
    if want.namespace and osr.id and want.namespace.lower() != osr.id.lower():
        return False
    if want.version and want.version != version:
        return False
    want_arch = (want.qualifiers or {}).get("arch") if isinstance(want.qualifiers, dict) else None
    return not (want_arch and arch and want_arch != arch)


def _deb(fs: RootFS, want: PackageURL, osr: OsRelease, out: PackageFiles) -> None:
    namespace = osr.id or "debian"
    status = _read(fs, DPKG_STATUS, MAX_DB_BYTES)
    found: list[tuple[dpkg.DpkgPackage, list[str]]] = []  # (package, candidate list files)
    if status is not None:
        packages, errors = dpkg.parse_status(status, origin=DPKG_STATUS)
        out.errors += errors
        for p in packages:
            if p.installed and _wanted(want, osr, p.name, p.version, p.arch):
                lists = [f"{DPKG_INFO}/{p.name}:{p.arch}.list"] if p.arch else []
                found.append((p, [*lists, f"{DPKG_INFO}/{p.name}.list"]))
    try:
        status_d = sorted(n for n in fs.listdir(DPKG_STATUS_D) if not n.startswith("."))
    except (OSError, AttributionError) as e:
        raise PackageLookupError(f"{DPKG_STATUS_D}: {e}") from None
    for entry in status_d:
        if entry.endswith(".md5sums"):
            continue
        origin = f"{DPKG_STATUS_D}/{entry}"
        packages, errors = dpkg.parse_status(_read(fs, origin, MAX_DB_BYTES) or "", origin=origin)
        out.errors += errors
        for p in packages:
            if p.installed and _wanted(want, osr, p.name, p.version, p.arch):
                found.append((p, [f"{origin}.md5sums"]))
    for p, lists in found:
        out.purls.append(
            purls.deb(
                namespace=namespace, name=p.name, version=p.version, arch=p.arch, distro=osr.distro
            ).purl
        )
        for list_path in lists:
            text = _read(fs, list_path, MAX_LIST_BYTES)
            if text is None:
                continue
            paths = dpkg.parse_md5sums(text) if list_path.endswith(".md5sums") else dpkg.parse_list(text)
            out.files += paths
            break
        else:
            out.errors.append(f"dpkg: {p.name} {p.version} is installed but its file list is missing")


def _apk(fs: RootFS, want: PackageURL, osr: OsRelease, out: PackageFiles) -> None:
    for origin in APK_INSTALLED:
        text = _read(fs, origin, MAX_DB_BYTES)
        if text is None:
            continue
        packages, errors = apk.parse_installed(text, origin=origin)
        out.errors += errors
        for p in packages:
            if _wanted(want, osr, p.name, p.version, p.arch):
                out.purls.append(
                    purls.apk(
                        namespace=osr.id or "alpine", name=p.name, version=p.version, arch=p.arch,
                        distro=osr.distro,
                    ).purl
                )  # fmt: skip
                out.files += p.files
        return


def package_files(fs: RootFS, purl: str) -> PackageFiles:
    """The files of the installed packages ``purl`` names in ``fs``.

    Raises ValueError for a PURL that is not one or whose type is not
    supported, PackageLookupError when a database exists but cannot be read.
    """
    want = PackageURL.from_string(purl)  # ValueError
    if want.type not in SUPPORTED_TYPES:
        raise ValueError(
            f"{purl}: package type {want.type!r} is not resolved to files (supported: "
            f"{', '.join(SUPPORTED_TYPES)})"
        )
    osr = os_release(fs)
    out = PackageFiles()
    if want.type == "deb":
        _deb(fs, want, osr, out)
    else:
        _apk(fs, want, osr, out)
    out.files = list(dict.fromkeys(out.files))  # a file listed twice is looked at once
    return out
