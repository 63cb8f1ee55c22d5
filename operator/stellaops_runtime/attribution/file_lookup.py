"""The cold lookup of one file's package in one image, source by source, first claim wins.

The order (the SBOM, then the OS package databases, then the language
ecosystems and what a binary says about itself) and why it is that order
are in :mod:`~stellaops_runtime.attribution.attributor` and
docs/attribution.md. These functions do the lookup for a path already
resolved inside the image's root; the attributor caches their answers and
holds its lock while they run, so they may change its counters.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import replace

from stellaops_runtime.attribution import langdb, purls
from stellaops_runtime.attribution.binaries import BinaryInfo
from stellaops_runtime.attribution.counters import AttributionCounters
from stellaops_runtime.attribution.function_packages import go_module_package
from stellaops_runtime.attribution.image import ImageIndex
from stellaops_runtime.attribution.model import CORRUPT_KIND, Attribution, ErrorKind, Package, Source
from stellaops_runtime.attribution.owners import Hit
from stellaops_runtime.attribution.rootfs import RootFS
from stellaops_runtime.attribution.sbomindex import SbomIndex

log = logging.getLogger("stellaops_runtime.attribution.attributor")


def lookup_file(
    image: ImageIndex,
    fs: RootFS,
    path: str,
    resolved: str,
    link: str,
    counters: AttributionCounters,
    *,
    max_hash_bytes: int,
) -> Attribution:
    """The package of ``path`` (``resolved``: its target, ``link``: the path with its last symlink kept).

    The link's owner is asked only when the link leads to no file: a package's link that an
    image repointed (``ln -sf /usr/local/bin/python3.12 /usr/bin/python3``) does not give the
    bytes it now leads to, unowned or another source's (pip's RECORD), to the link's package.
    """
    keys = (resolved,) if link == resolved or fs.lstat(resolved) is not None else (resolved, link)
    sbom = image.sbom(fs)
    if sbom is not None:
        hit = sbom.by_path(*keys)
        if hit is not None and hit.claimants > 1:
            return _sbom_tie(image, fs, path, resolved, keys, hit, sbom, counters)
        if hit is not None:
            return _from_hit(path, resolved, Source.SBOM, "path", hit, counters)
        if sbom.algorithms:
            pkg = _by_digest(sbom, fs, resolved, counters, max_hash_bytes)
            if pkg is not None:
                return Attribution(
                    path, pkg.purl, Source.SBOM.value, pkg.name, pkg.version, "hash", resolved=resolved
                )

    att = _in_image(image, fs, path, resolved, keys, counters)
    if att is None:
        # the messages name their source already ("dpkg: ..."); one without is given it
        reasons = "; ".join(v if v.startswith(f"{k}: ") else f"{k}: {v}" for k, v in image.fatal.items())
        return Attribution(path, None, Source.NONE.value, resolved=resolved, error=reasons or None)
    return with_sbom_purl(sbom, att, counters)


def _sbom_tie(
    image: ImageIndex,
    fs: RootFS,
    path: str,
    resolved: str,
    keys: tuple[str, ...],
    hit: Hit,
    sbom: SbomIndex,
    counters: AttributionCounters,
) -> Attribution:
    """A path the SBOM gives to several packages (syft lists a Go binary's path for each of its
    modules): the image's own answer decides, but only among the packages the SBOM named."""
    choices = {purls.identity(p) for p in (hit.package.purl, *hit.others)}
    att = _in_image(image, fs, path, resolved, keys, counters)
    if att is not None and att.purl is not None and purls.identity(att.purl) in choices:
        return with_sbom_purl(sbom, att, counters)
    return _from_hit(path, resolved, Source.SBOM, "path", hit, counters)  # unknown, counted ambiguous


def with_sbom_purl(sbom: SbomIndex | None, att: Attribution, counters: AttributionCounters) -> Attribution:
    """``att`` with the SBOM's PURL when the SBOM lists the same package (``evidence="package:<source>"``)."""
    if sbom is None or att.purl is None:
        return att
    pkg, mismatch = sbom.by_identity(att.purl)
    if pkg is None:
        if mismatch:
            counters.mismatch += 1
        return att
    return replace(att, purl=pkg.purl, source=Source.SBOM.value, evidence=f"package:{att.source}")


def _in_image(
    image: ImageIndex,
    fs: RootFS,
    path: str,
    resolved: str,
    keys: tuple[str, ...],
    counters: AttributionCounters,
) -> Attribution | None:
    for source, build in ((Source.DPKG, image.dpkg), (Source.APK, image.apk), (Source.RPM, image.rpm)):
        index = build(fs).index
        if index is not None:
            hit = index.lookup(*keys)
            if hit is not None:
                return _from_hit(path, resolved, source, "db", hit, counters)

    targets = (d for d in langdb.target_dirs(resolved) if image.has_dist_info(fs, d))
    for site in itertools.chain(langdb.site_package_dirs(fs, resolved, image.pythons), targets):
        index = image.site_packages(fs, site).index
        if index is not None:
            hit = index.lookup(*keys)
            if hit is not None:
                return _from_hit(path, resolved, Source.PYPI, "record", hit, counters)

    if langdb.npm_eligible(resolved):
        pkg = image.npm_owner(fs, resolved, counters.npm_error)
        if pkg is not None:
            return Attribution(
                path, pkg.purl, Source.NPM.value, pkg.name, pkg.version, "package.json", resolved=resolved
            )

    info = image.binary(fs, resolved)
    counters.binary_errors(info)
    return _self_described(path, resolved, info, counters)


def _self_described(
    path: str, resolved: str, info: BinaryInfo, counters: AttributionCounters
) -> Attribution | None:
    claims: list[tuple[Source, str, Callable[[], Package]]] = []
    if info.go is not None and info.go.main is not None:
        main = info.go.main
        claims.append((Source.GOMOD, "buildinfo", lambda: go_module_package(main)))
    if info.crates:
        roots = [c for c in info.crates if c.root]
        if len(roots) == 1:
            root = roots[0]
            claims.append((Source.CARGO, "dep-v0", lambda: purls.cargo(name=root.name, version=root.version)))
    if info.jar is not None:
        jar = info.jar
        claims.append(
            (
                Source.MAVEN,
                "pom.properties",
                lambda: purls.maven(group_id=jar.group_id, artifact_id=jar.artifact_id, version=jar.version),
            )
        )
    for source, evidence, make in claims:
        try:
            pkg = make()
        except ValueError as e:  # a name no PURL can carry: that claim is damaged, not the file's others
            counters.error(CORRUPT_KIND[source])
            log.warning("%s: %s: %s", source.value, resolved, e)
            continue
        return Attribution(path, pkg.purl, source.value, pkg.name, pkg.version, evidence, resolved=resolved)
    if info.jar is None and info.jar_artifacts > 0:
        counters.ambiguous += 1  # a shaded JAR whose own artifact is not recognizable (maven.py)
    return None


def _from_hit(
    path: str, resolved: str, source: Source, evidence: str, hit: Hit, counters: AttributionCounters
) -> Attribution:
    pkg = hit.package
    if hit.claimants > 1:  # unknown, never the first in database order: the image writes its databases
        counters.ambiguous += 1
        named = sorted((pkg.purl, *hit.others))
        claimants = ", ".join(named[:4]) + (f" and {len(named) - 4} more" if len(named) > 4 else "")
        return Attribution(
            path,
            None,
            Source.NONE.value,
            resolved=resolved,
            error=f"ambiguous: {source.value} lists {resolved} in {hit.claimants} packages: {claimants}",
        )
    return Attribution(
        path, pkg.purl, source.value, pkg.name, pkg.version, evidence, resolved=resolved, jar=hit.jar or None
    )


def _by_digest(
    sbom: SbomIndex, fs: RootFS, resolved: str, counters: AttributionCounters, max_hash_bytes: int
) -> Package | None:
    digests = _digests(fs, resolved, sbom.algorithms, counters, max_hash_bytes)
    if not digests:
        return None
    pkg, ambiguous = sbom.by_digest(digests)
    if ambiguous:
        counters.ambiguous += 1
    return pkg


def _digests(
    fs: RootFS, resolved: str, algorithms: Iterable[str], counters: AttributionCounters, max_hash_bytes: int
) -> dict[str, str]:
    try:
        fd = fs.open(resolved, resolved=True)  # confined, regular files only, never blocks
    except OSError:
        return {}
    try:
        st = os.fstat(fd)
        if st.st_size > max_hash_bytes:
            return {}
        hashers = {alg: hashlib.new(alg) for alg in algorithms}
        with os.fdopen(os.dup(fd), "rb") as f:
            while chunk := f.read(1 << 20):
                for h in hashers.values():
                    h.update(chunk)
        return {alg: h.hexdigest() for alg, h in hashers.items()}
    except OSError as e:
        counters.error(ErrorKind.IO)
        log.warning("cannot hash %s: %s", resolved, e)
        return {}
    finally:
        os.close(fd)
