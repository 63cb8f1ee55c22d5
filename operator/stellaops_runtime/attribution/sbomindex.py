"""The SBOMs of one image, indexed for lookups: by path, by file digest, by package identity.

Several documents may describe one image (a CycloneDX from the build and an
SPDX from a scanner); their claims are merged. A digest claims a file only
when exactly one package (PURL) in the merged SBOMs has it.
"""

from __future__ import annotations

from packageurl import PackageURL

from stellaops_runtime.attribution import purls
from stellaops_runtime.attribution.model import Package
from stellaops_runtime.attribution.owners import Hit, KeyBuilder, OwnerIndex
from stellaops_runtime.attribution.rootfs import RootFS
from stellaops_runtime.attribution.sbom import SbomData


class SbomIndex:
    __slots__ = (
        "_by_purl",
        "_hashes",
        "_identities",
        "_versions",
        "algorithms",
        "origins",
        "packages",
        "paths",
    )

    def __init__(self, docs: list[SbomData], fs: RootFS) -> None:
        self.origins = [d.origin for d in docs]
        packages: list[Package] = []
        entries: list[tuple[str, int]] = []
        self._hashes: dict[tuple[str, str], set[str]] = {}
        for doc in docs:
            offset = len(packages)
            packages.extend(doc.packages)
            entries.extend((p, i + offset) for p, i in doc.paths)
            for key, owners in doc.hashes.items():
                self._hashes.setdefault(key, set()).update(doc.packages[o].purl for o in owners)
        self.packages = packages
        self._by_purl = {p.purl: p for p in packages}
        self.paths = OwnerIndex(packages, entries, keys=KeyBuilder(fs))
        self.algorithms = frozenset(alg for alg, _ in self._hashes)
        self._identities: dict[purls.Identity, list[Package]] = {}
        self._versions: dict[tuple[str, str, str], set[str]] = {}
        seen: set[str] = set()
        for pkg in packages:
            if pkg.purl in seen:
                continue
            seen.add(pkg.purl)
            ident = purls.identity(pkg.purl)
            self._identities.setdefault(ident, []).append(pkg)
            self._versions.setdefault(ident[:3], set()).add(ident[3])

    def by_path(self, *keys: str) -> Hit | None:
        return self.paths.lookup(*keys)

    def by_digest(self, digests: dict[str, str]) -> tuple[Package | None, bool]:
        """(package, ambiguous) for a file's ``{"sha256": hex, "sha1": hex}``."""
        for alg in ("sha256", "sha1"):
            value = digests.get(alg)
            owners = self._hashes.get((alg, value)) if value else None
            if owners:
                if len(owners) > 1:
                    return None, True
                return self._by_purl[next(iter(owners))], False
        return None, False

    def by_identity(self, purl: str) -> tuple[Package | None, bool]:
        """(the SBOM's package with the same type/namespace/name/version, version_mismatch).

        Among several (one per architecture), the one whose ``arch`` qualifier
        matches; ``version_mismatch`` is true when the SBOM lists the package
        only at other versions (a stale SBOM).
        """
        ident = purls.identity(purl)
        candidates = self._identities.get(ident)
        if not candidates:
            return None, ident[:3] in self._versions
        if len(candidates) == 1:
            return candidates[0], False
        arch = purls.qualifier(purl, "arch")
        for c in candidates:
            if purls.qualifier(PackageURL.from_string(c.purl), "arch") == arch:
                return c, False
        return candidates[0], False
