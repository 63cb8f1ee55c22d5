"""What an attribution answer looks like, and the names every part agrees on.

Plain data only (layer 1): the :class:`Attribution` record the agent stores
next to a hot symbol, the source names the CLI prints, and the error type
the readers raise. Nothing here touches a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Source(StrEnum):
    """Who claimed a file, in the order the attributor asks (``NONE`` last: nobody)."""

    SBOM = "sbom"
    DPKG = "dpkg"
    APK = "apk"
    RPM = "rpm"
    PYPI = "pypi"
    NPM = "npm"
    GOMOD = "gomod"
    CARGO = "cargo"
    MAVEN = "maven"
    NONE = "none"


class Scope(StrEnum):
    """Whether a PURL names the package of a whole file or of one function in it."""

    FILE = "file"  # the package that shipped the file
    FUNCTION = "function"  # the module/crate a function of a statically linked binary comes from


class ErrorKind(StrEnum):
    """Kinds of bad input, each a counter in :attr:`Attributor.stats`."""

    BAD_ROOT = "bad_root"  # the root filesystem does not exist or is not a directory
    OUTSIDE_ROOT = "outside_root"  # the path climbs above the root ("../../etc/passwd")
    SYMLINK_ESCAPE = "symlink_escape"  # a relative symlink inside the root points above it
    SYMLINK_LOOP = "symlink_loop"  # too many symlinks (a loop)
    BAD_PATH = "bad_path"  # a path with a NUL byte (names no file) or nested too deep to resolve
    IO = "io"  # a file could not be read (permissions, vanished process, ...)
    NOT_REGULAR = "not_regular"  # a FIFO, device, socket where a file was expected: refused, never read
    BUDGET_EXCEEDED = "budget_exceeded"  # a binary needs more bytes or time than its parse budget
    SBOM_MALFORMED = "sbom_malformed"  # not a readable CycloneDX/SPDX JSON document
    DPKG_CORRUPT = "dpkg_corrupt"
    APK_CORRUPT = "apk_corrupt"
    RPM_CORRUPT = "rpm_corrupt"
    PYPI_CORRUPT = "pypi_corrupt"
    NPM_CORRUPT = "npm_corrupt"
    GOMOD_CORRUPT = "gomod_corrupt"
    CARGO_CORRUPT = "cargo_corrupt"
    MAVEN_CORRUPT = "maven_corrupt"


# The "<source>_corrupt" kind of each source that reads a database or metadata file.
CORRUPT_KIND: dict[Source, ErrorKind] = {
    Source.SBOM: ErrorKind.SBOM_MALFORMED,
    Source.DPKG: ErrorKind.DPKG_CORRUPT,
    Source.APK: ErrorKind.APK_CORRUPT,
    Source.RPM: ErrorKind.RPM_CORRUPT,
    Source.PYPI: ErrorKind.PYPI_CORRUPT,
    Source.NPM: ErrorKind.NPM_CORRUPT,
    Source.GOMOD: ErrorKind.GOMOD_CORRUPT,
    Source.CARGO: ErrorKind.CARGO_CORRUPT,
    Source.MAVEN: ErrorKind.MAVEN_CORRUPT,
}


class AttributionError(Exception):
    """Bad input: a malformed database or SBOM, a path outside the root, an unreadable file.

    ``kind`` is the counter it is reported under; the message says what and where.
    """

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Package:
    """One package a source knows about: its PURL and the parts people read."""

    purl: str
    name: str
    version: str | None


@dataclass(frozen=True, slots=True)
class Attribution:
    """The answer for one file (or one function of a file) in one image.

    ``purl`` is ``None`` and ``source`` is ``"none"`` when no source claims the
    file; ``error`` then says why if something was wrong (a path outside the
    root, a corrupt database that might have claimed it). ``evidence`` says how
    the source knew: ``path`` (the SBOM lists the file), ``hash`` (the file's
    digest is in the SBOM), ``package:<source>`` (the in-image owner below, with
    the SBOM's PURL for that same package), ``db`` (a package database lists
    it), ``record`` (a wheel's RECORD), ``package.json``, ``buildinfo`` (Go),
    ``dep-v0`` (cargo-auditable), ``pom.properties`` (Maven). ``resolved`` is
    the path inside the root after following symlinks. ``jar`` is a ``.jar``
    the owning package's database (or SBOM) also lists, when it lists one: a
    JNI library's JAR (the agent stores it as a ``listed`` row; not in the
    CLI's JSON).
    """

    path: str
    purl: str | None
    source: str
    name: str | None = None
    version: str | None = None
    evidence: str = ""
    scope: str = Scope.FILE.value
    resolved: str | None = None
    error: str | None = None
    jar: str | None = None

    @property
    def attributed(self) -> bool:
        return self.purl is not None

    def to_json(self) -> dict[str, object]:
        """The CLI's ``--json`` object (``path``, ``purl``, ``source`` first)."""
        out: dict[str, object] = {"path": self.path, "purl": self.purl, "source": self.source}
        if self.name is not None:
            out["name"] = self.name
        if self.version is not None:
            out["version"] = self.version
        if self.evidence:
            out["evidence"] = self.evidence
        out["scope"] = self.scope
        if self.resolved is not None and self.resolved != self.path:
            out["resolved"] = self.resolved
        if self.error is not None:
            out["error"] = self.error
        return out
