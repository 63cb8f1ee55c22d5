"""Everything the attributor has learned about one image, built lazily and once.

One :class:`ImageIndex` per image digest holds the os-release, the owner
index of each OS package database, the SBOM index, one index per Python
site-packages directory met so far, the npm package of each directory met
so far, and what each inspected binary says about itself. Each is built the
first time a lookup needs it, from the root filesystem of that lookup, and
kept until the image is evicted; the per-directory and per-binary maps are
bounded (oldest first out).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from stellaops_runtime.attribution import binaries, langdb, osdb
from stellaops_runtime.attribution.binaries import BinaryInfo
from stellaops_runtime.attribution.model import AttributionError, ErrorKind, Package, Source
from stellaops_runtime.attribution.osdb import BuildResult
from stellaops_runtime.attribution.osrelease import LOCATIONS, UNKNOWN, OsRelease, parse_os_release
from stellaops_runtime.attribution.rootfs import RootFS, split
from stellaops_runtime.attribution.sbom import SbomData
from stellaops_runtime.attribution.sbomindex import SbomIndex
from stellaops_runtime.canonical.rootopen import NotRegularFile

Report = Callable[[Source, BuildResult], None]

log = logging.getLogger("stellaops_runtime.attribution.attributor")


def _bounded_put(d: dict[Any, Any], key: Any, value: Any, limit: int) -> None:
    if len(d) >= limit:
        del d[next(iter(d))]
    d[key] = value


class ImageIndex:
    __slots__ = (
        "_apk",
        "_binaries",
        "_dist_dirs",
        "_dpkg",
        "_limit",
        "_npm_dirs",
        "_os",
        "_report",
        "_rpm",
        "_sbom",
        "_sbom_docs",
        "_sites",
        "fatal",
        "key",
        "pythons",
    )

    def __init__(self, key: str, *, sbom_docs: list[SbomData], report: Report, limit: int) -> None:
        self.key = key
        self._sbom_docs = sbom_docs
        self._report = report
        self._limit = limit
        self._os: OsRelease | None = None
        self._dpkg: BuildResult | None = None
        self._apk: BuildResult | None = None
        self._rpm: BuildResult | None = None
        self._sbom: SbomIndex | None = None
        self._sites: dict[str, BuildResult] = {}
        self._npm_dirs: dict[str, Package | None] = {}
        self._dist_dirs: dict[str, bool] = {}  # directory -> holds a *.dist-info (pip --target)
        self._binaries: dict[str, BinaryInfo] = {}
        self.fatal: dict[str, str] = {}  # source -> why its database could not be used
        self.pythons: dict[str, list[str]] = {}  # <prefix>/lib -> its python3*/site-packages

    def os_release(self, fs: RootFS) -> OsRelease:
        if self._os is None:
            self._os = UNKNOWN
            for location in LOCATIONS:
                try:
                    data = fs.read_bytes(location, limit=64 << 10)
                except (OSError, AttributionError):
                    continue
                self._os = parse_os_release(data.decode("utf-8", "replace"))
                break
        return self._os

    def _build(self, source: Source, build: Callable[[], BuildResult]) -> BuildResult:
        """Run one index build; a bug it hits makes that database unusable, once.

        Without this, an exception would escape every lookup of the image and
        the build would be retried (the whole database re-read) on each.
        """
        try:
            result = build()
        except Exception as e:  # a bug here must cost one database, not the image
            log.exception("building the %s index of image %s failed", source.value, self.key)
            result = BuildResult(
                fatal=f"{source.value}: internal error reading the database: {type(e).__name__}"
            )
        return self._built(source, result)

    def _built(self, source: Source, result: BuildResult) -> BuildResult:
        if result.fatal:
            self.fatal[source.value] = result.fatal
        self._report(source, result)
        return result

    def sbom(self, fs: RootFS) -> SbomIndex | None:
        if self._sbom is None and self._sbom_docs:
            self._sbom = SbomIndex(self._sbom_docs, fs)
            self._report(Source.SBOM, BuildResult(index=self._sbom.paths))
        return self._sbom

    @property
    def built_sbom(self) -> SbomIndex | None:
        return self._sbom

    def dpkg(self, fs: RootFS) -> BuildResult:
        if self._dpkg is None:
            self._dpkg = self._build(Source.DPKG, lambda: osdb.build_dpkg(fs, self.os_release(fs)))
        return self._dpkg

    def apk(self, fs: RootFS) -> BuildResult:
        if self._apk is None:
            self._apk = self._build(Source.APK, lambda: osdb.build_apk(fs, self.os_release(fs)))
        return self._apk

    def rpm(self, fs: RootFS) -> BuildResult:
        if self._rpm is None:
            self._rpm = self._build(Source.RPM, lambda: osdb.build_rpm(fs, self.os_release(fs)))
        return self._rpm

    def site_packages(self, fs: RootFS, site: str) -> BuildResult:
        hit = self._sites.get(site)
        if hit is None:
            hit = self._build(Source.PYPI, lambda: langdb.build_site_packages(fs, site))
            _bounded_put(self._sites, site, hit, 256)
        return hit

    def has_dist_info(self, fs: RootFS, directory: str) -> bool:
        """Whether ``directory`` holds a ``*.dist-info`` (listed once per image, bounded)."""
        hit = self._dist_dirs.get(directory)
        if hit is None:
            hit = langdb.has_dist_info(fs, directory)
            _bounded_put(self._dist_dirs, directory, hit, self._limit)
        return hit

    def npm_owner(self, fs: RootFS, resolved: str, on_error: Callable[[str], None]) -> Package | None:
        """The package of the nearest enclosing directory with a named ``package.json``."""
        directory = split(resolved)[0]
        visited: list[str] = []
        found: Package | None = None
        while True:
            if directory in self._npm_dirs:
                found = self._npm_dirs[directory]
                break
            visited.append(directory)
            try:
                found = langdb.read_package_json(fs, directory)
            except (ValueError, OSError, AttributionError) as e:
                on_error(str(e))  # the nearest package is unreadable: stop, do not claim it for the one above
                break
            if found is not None:
                break
            if directory == "/" or split(directory)[1] == "node_modules":
                break
            directory = split(directory)[0]
        for d in visited:  # every directory walked through resolves to what was found above it
            _bounded_put(self._npm_dirs, d, found, self._limit)
        return found

    def binary(self, fs: RootFS, resolved: str) -> BinaryInfo:
        hit = self._binaries.get(resolved)
        if hit is None:
            hit = read_binary(fs, resolved)
            _bounded_put(self._binaries, resolved, hit, self._limit)
        return hit


def read_binary(fs: RootFS, resolved: str) -> BinaryInfo:
    """What a file in the root says about itself; a missing or unreadable file is plain.

    A FIFO, device or socket is never read (``refused="not_regular"``).
    """
    try:
        fd = fs.open(resolved, resolved=True)
    except NotRegularFile:
        return binaries.BinaryInfo(refused=ErrorKind.NOT_REGULAR.value)
    except OSError:
        return binaries.PLAIN
    try:
        return binaries.read_binary_info(fd, name=resolved)
    except OSError:
        return binaries.PLAIN
    finally:
        os.close(fd)
