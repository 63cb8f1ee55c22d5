"""Owner indexes: a package list plus a :class:`PathIndex` keyed by paths as the image resolves them.

Package databases record paths as the package installed them; the loader
reports them as the filesystem resolves them. On Debian 12 (merged ``/usr``)
dpkg lists ``/lib/x86_64-linux-gnu/libz.so.1.2.13`` while ``/proc/<pid>/maps``
shows ``/usr/lib/x86_64-linux-gnu/libz.so.1.2.13``, because ``/lib`` is a
symlink to ``usr/lib`` (likewise ``/bin``, ``/sbin``, ``/lib64``). So every
recorded path is keyed by its *directory* resolved inside the image root
(memoized: a database has far fewer directories than files) plus its own
name, unresolved: a symlink that a package ships (``libz.so.1``) keeps its
own key. A lookup resolves the asked path fully first (who owns the bytes),
then tries the path with only its directories resolved (who owns the link).

Packages of one identity that differ in qualifiers (``libc6:amd64`` and
``libc6:i386``; ``foo.noarch`` and ``foo.x86_64``, which rpm installs side by
side) are one claimant of the files they share; the PURL given is chosen by
:func:`preference`, never by database (install) order, so one image's README
has one PURL whoever installed first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from packageurl import PackageURL

from stellaops_runtime.attribution import purls
from stellaops_runtime.attribution.model import AttributionError, Package
from stellaops_runtime.attribution.pathindex import PathIndex
from stellaops_runtime.attribution.rootfs import RootFS, join, normalize, split


@dataclass(slots=True)
class KeyBuilder:
    """Turns recorded paths into index keys for one root; collects the ones it had to skip."""

    fs: RootFS
    skipped: int = 0
    first_problem: str | None = None

    def key(self, path: str) -> str | None:
        try:
            if "/." in path or "//" in path or not path.startswith("/"):
                path = normalize(path)
            parent, name = split(path)
            return join(self.fs.resolve_dir(parent), name)
        except AttributionError as e:
            self.skipped += 1
            if self.first_problem is None:
                self.first_problem = str(e)
            return None

    def entries(self, pairs: Iterable[tuple[str, int]]) -> Iterable[tuple[str, int]]:
        for path, owner in pairs:
            k = self.key(path)
            if k is not None:
                yield k, owner


ARCH_INDEPENDENT = frozenset({"noarch", "all", "any"})
WIDE_ARCHES = frozenset(
    {
        "amd64",
        "x86_64",
        "arm64",
        "aarch64",
        "ppc64el",
        "ppc64le",
        "s390x",
        "riscv64",
        "loong64",
        "loongarch64",
    }
)


def preference(purl: str, native: str | None = None) -> tuple[int, str]:
    """Sort key among PURLs of one package that differ in qualifiers: the image's native
    architecture first (when known), then an architecture-specific one, a 64-bit architecture
    before a 32-bit one, then the PURL's text."""
    try:
        quals = PackageURL.from_string(purl).qualifiers
    except ValueError:
        return (3, purl)
    arch = (quals.get("arch", "") if isinstance(quals, dict) else "").lower()
    if native is not None and arch == native.lower():
        return (-1, purl)
    rank = 2 if arch in ARCH_INDEPENDENT else 0 if arch in WIDE_ARCHES else 1
    return (rank, purl)


# The JARs an index notes (owner -> path) are kept as text for the index's life, beside a path
# index of 12 bytes a file: a path longer than PATH_MAX names no file (the package's next JAR is
# taken), and past MAX_JAR_CHARS (tens of thousands of packages listing one) none is noted. A
# package not noted keeps "not observed" as a whole, as it would had its database listed no JAR.
MAX_JAR_PATH = 4096
MAX_JAR_CHARS = 4 << 20
_JAR_COST = 100  # a kept path's own bytes besides its characters (its str, its dict slot)


@dataclass(frozen=True, slots=True)
class Hit:
    package: Package
    claimants: int  # how many distinct packages list the path (1 unless shared)
    others: tuple[str, ...] = ()  # the other claimants' PURLs (sorted), when shared
    jar: str = ""  # a ``.jar`` the package also lists (its first, as the image resolves it), or ""


class OwnerIndex:
    """Packages of one source in one image, and which of them lists which path."""

    __slots__ = ("index", "jars", "native_arch", "packages")

    def __init__(
        self,
        packages: list[Package],
        entries: Iterable[tuple[str, int]],
        *,
        keys: KeyBuilder,
        native_arch: str | None = None,
    ) -> None:
        self.packages = packages
        self.native_arch = native_arch  # the image's own architecture, preferred for shared files
        # owner -> the first ``.jar`` it lists: a JNI library's JAR beside it, whose Java code no
        # row ever stands for (evidence/interpreted.py); noted as the entries stream, no second pass
        self.jars: dict[int, str] = {}
        self.index = PathIndex(self._noting_jars(keys.entries(entries)))

    def _noting_jars(self, entries: Iterable[tuple[str, int]]) -> Iterable[tuple[str, int]]:
        """The entries, noting each owner's first ``.jar`` within the bounds (:data:`MAX_JAR_PATH`,
        :data:`MAX_JAR_CHARS`): the database is the image maker's, and the index lives long."""
        jars = self.jars
        budget = MAX_JAR_CHARS
        for key, owner in entries:
            if key.endswith(".jar") and owner not in jars and len(key) <= min(MAX_JAR_PATH, budget):
                jars[owner] = key
                budget -= len(key) + _JAR_COST
            yield key, owner

    def __len__(self) -> int:
        return len(self.index)

    def lookup(self, *keys: str) -> Hit | None:
        """The owner of the first key that has one.

        When packages of different identities (type, namespace, name,
        version) list it, ``claimants`` says how many and ``others`` names
        the rest: the caller must not pick one (which one is first is
        database order, which whoever writes the database chooses). Packages
        that differ only in qualifiers (``libc6:amd64`` and ``libc6:i386`` of
        one version sharing their documentation) are one claimant.
        """
        for key in keys:
            owners = self.index.owners(key)
            if owners:
                first = self.packages[owners[0]]
                jar = next((self.jars[o] for o in owners if o in self.jars), "")
                if len(owners) == 1:
                    return Hit(first, 1, jar=jar)
                mine = purls.identity(first.purl)
                others = {self.packages[o].purl for o in owners}
                others = {p for p in others if purls.identity(p) != mine}
                claimants = 1 + len({purls.identity(p) for p in others})
                if claimants == 1:  # one package in several qualifiers: a fixed choice, not db order
                    first = min(
                        (self.packages[o] for o in owners), key=lambda p: preference(p.purl, self.native_arch)
                    )
                return Hit(first, claimants, tuple(sorted(others)), jar=jar if claimants == 1 else "")
        return None
