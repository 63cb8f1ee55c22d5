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
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class Hit:
    package: Package
    claimants: int  # how many distinct packages list the path (1 unless shared)
    others: tuple[str, ...] = ()  # the other claimants' PURLs (sorted), when shared


class OwnerIndex:
    """Packages of one source in one image, and which of them lists which path."""

    __slots__ = ("index", "packages")

    def __init__(
        self, packages: list[Package], entries: Iterable[tuple[str, int]], *, keys: KeyBuilder
    ) -> None:
        self.packages = packages
        self.index = PathIndex(keys.entries(entries))

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
                if len(owners) == 1:
                    return Hit(first, 1)
                mine = purls.identity(first.purl)
                others = {self.packages[o].purl for o in owners}
                others = {p for p in others if purls.identity(p) != mine}
                claimants = 1 + len({purls.identity(p) for p in others})
                return Hit(first, claimants, tuple(sorted(others)))
        return None
