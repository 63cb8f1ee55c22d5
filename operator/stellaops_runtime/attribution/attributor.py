"""The :class:`Attributor`: the package (PURL) of a file or a function in an image, cached.

Order of sources for a file, first claim wins (docs/attribution.md says why):

1. **SBOM** of the image: the file is listed (path), or its SHA-256/SHA-1
   digest is (hash). An SBOM is what the image's builder asserted, so it
   comes first.
2. **OS package databases**: dpkg, apk, rpm. They own what the distribution
   installed, including Python or Node code packaged by the distribution (a
   Debian ``python3-six`` is ``pkg:deb/...``, since fixes arrive as a new deb).
3. **Language ecosystems**: Python ``RECORD`` files, npm ``package.json``,
   then what the file says about itself: Go build info (main module),
   cargo-auditable (root crate), a JAR's ``pom.properties``.

When an in-image source (2 or 3) names the package and the SBOM lists that
same package (type, namespace, name, version), the SBOM's PURL is reported
(``source="sbom"``, ``evidence="package:<source>"``): the SBOM's PURL is the
one the rest of the supply chain keys on. A file nobody claims gets
``purl=None, source="none"``, never a guess.

For a function of a statically linked Go or Rust binary, the binary's own
metadata names the module (Go build info: the longest module path that
prefixes the function's package; ``pkg:golang/stdlib@<go version>`` for the
standard library) or crate (cargo-auditable); otherwise the function gets the
file's attribution (``scope="file"``).

Caching: answers per (image digest, path) and per (image digest, path,
function) in bounded dicts (oldest out first); a warm lookup is one dict
hit. Source indexes are built once per image, lazily, and at most
``max_images`` images are kept. Cold work runs under one lock, so the
attributor may be shared by threads; it does blocking file I/O and ELF
parsing, so call it from a worker thread, never from an event loop.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import Counter, OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from stellaops_runtime.attribution import binaries, langdb, purls
from stellaops_runtime.attribution.binaries import BinaryInfo
from stellaops_runtime.attribution.gobuildinfo import DEVEL, GoBuildInfo, GoModule
from stellaops_runtime.attribution.image import ImageIndex, read_binary
from stellaops_runtime.attribution.model import (
    CORRUPT_KIND,
    Attribution,
    AttributionError,
    ErrorKind,
    Package,
    Scope,
    Source,
)
from stellaops_runtime.attribution.osdb import BuildResult
from stellaops_runtime.attribution.owners import Hit
from stellaops_runtime.attribution.rootfs import RootFS
from stellaops_runtime.attribution.sbom import SbomData, parse_sbom
from stellaops_runtime.attribution.sbomindex import SbomIndex
from stellaops_runtime.canonical.demangle import go_package_path, rust_crate_name

log = logging.getLogger(__name__)

DEFAULT_MAX_IMAGES = 64
DEFAULT_MAX_ENTRIES = 100_000
DEFAULT_MAX_HASH_BYTES = 256 << 20
DEFAULT_MAX_SBOM_BYTES = 256 << 20
SBOM_SUFFIXES = (".json", ".cdx.json", ".spdx.json")
_ROOT_CACHE = 64
_MEMO_KEEP = 4096  # resolved directories kept per root between lookups


@dataclass(frozen=True, slots=True)
class AttributionStats:
    """Counters since the attributor was made (a snapshot; export them as metrics).

    ``files``/``functions``: cold answers by source (``none`` = unattributed;
    for functions ``file`` = fell back to the file's package). ``errors``: bad
    input by :class:`ErrorKind`. ``ambiguous``: a path, digest or crate name
    that several packages claim. ``sbom_version_mismatch``: the image's own
    database named a version the SBOM does not list.
    """

    files: dict[str, int] = field(default_factory=dict)
    functions: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    index_builds: dict[str, int] = field(default_factory=dict)
    index_entries: dict[str, int] = field(default_factory=dict)
    ambiguous: int = 0
    sbom_version_mismatch: int = 0
    cached_files: int = 0
    cached_functions: int = 0
    images: int = 0
    evictions: int = 0


class Attributor:
    """Attributes files and functions of images to packages; see the module docstring.

    ``sbom_dir`` holds SBOMs per image digest: ``<digest>.json``,
    ``<digest>.cdx.json`` or ``<digest>.spdx.json``, where ``<digest>`` is
    ``sha256:<hex>``, ``sha256-<hex>`` (ConfigMap keys cannot contain ``:``)
    or ``<hex>``. :meth:`register_sbom` adds one from anywhere.
    """

    def __init__(
        self,
        *,
        sbom_dir: str | None = None,
        max_images: int = DEFAULT_MAX_IMAGES,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_hash_bytes: int = DEFAULT_MAX_HASH_BYTES,
        max_sbom_bytes: int = DEFAULT_MAX_SBOM_BYTES,
    ) -> None:
        if max_images < 1 or max_entries < 1:
            raise ValueError("max_images and max_entries must be at least 1")
        self._sbom_dir = sbom_dir
        self._max_images = max_images
        self._max_entries = max_entries
        self._max_hash_bytes = max_hash_bytes
        self._max_sbom_bytes = max_sbom_bytes
        self._lock = threading.RLock()
        self._files: dict[tuple[str, str], Attribution] = {}
        self._functions: dict[tuple[str, str, str], Attribution] = {}
        self._binaries: dict[str, BinaryInfo] = {}  # by build-id
        self._images: OrderedDict[str, ImageIndex] = OrderedDict()
        self._roots: dict[str, RootFS] = {}
        self._registered: dict[str, list[SbomData]] = {}
        self._file_outcomes: Counter[str] = Counter()
        self._function_outcomes: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()
        self._index_builds: Counter[str] = Counter()
        self._index_entries: Counter[str] = Counter()
        self._ambiguous = 0
        self._mismatch = 0
        self._evictions = 0

    # -- the hot path ----------------------------------------------------------------

    def attribute_file(self, *, image_digest: str, root: str, path: str) -> Attribution:
        """The package of the file at ``path`` (inside ``root``) of image ``image_digest``."""
        hit = self._files.get((image_digest or root, path))
        if hit is not None:
            return hit
        return self._resolve_file(image_digest or root, image_digest, root, path)

    def attribute_function(
        self, *, image_digest: str, root: str, path: str, function: str, build_id: str = ""
    ) -> Attribution:
        """The package of ``function`` (canonical name) in the binary at ``path``.

        ``build_id`` (the binary's GNU/Go build-id, as in function IDs) lets
        images that share a binary share its parsed build info.
        """
        hit = self._functions.get((image_digest or root, path, function))
        if hit is not None:
            return hit
        return self._resolve_function(image_digest or root, image_digest, root, path, function, build_id)

    # -- SBOMs -------------------------------------------------------------------------

    def register_sbom(self, image_digest: str, path: str) -> SbomData:
        """Parse an SBOM file now (``AttributionError`` if malformed) and use it for an image.

        Answers already cached for that image are dropped, so they are
        recomputed with the SBOM.
        """
        data = self._load_sbom(Path(path))
        with self._lock:
            self._registered.setdefault(image_digest, []).append(data)
            self._images.pop(image_digest, None)
            for fkey in [k for k in self._files if k[0] == image_digest]:
                del self._files[fkey]
            for gkey in [k for k in self._functions if k[0] == image_digest]:
                del self._functions[gkey]
        return data

    def _load_sbom(self, path: Path) -> SbomData:
        try:
            size = path.stat().st_size
            if size > self._max_sbom_bytes:
                raise AttributionError(
                    ErrorKind.SBOM_MALFORMED, f"{path}: {size} bytes, more than {self._max_sbom_bytes}"
                )
            raw = path.read_bytes()
        except OSError as e:
            raise AttributionError(ErrorKind.SBOM_MALFORMED, f"{path}: cannot read: {e.strerror}") from None
        return parse_sbom(raw, origin=str(path))

    def _sbom_files(self, image_digest: str) -> list[Path]:
        if not self._sbom_dir or not image_digest:
            return []
        algo, sep, hexpart = image_digest.partition(":")
        stems = [image_digest] + ([f"{algo}-{hexpart}", hexpart] if sep else [])
        base = Path(self._sbom_dir)
        return [
            base / f"{stem}{suffix}"
            for stem in stems
            for suffix in SBOM_SUFFIXES
            if (base / f"{stem}{suffix}").is_file()
        ]

    # -- state ---------------------------------------------------------------------------

    @property
    def stats(self) -> AttributionStats:
        with self._lock:
            return AttributionStats(
                files=dict(self._file_outcomes),
                functions=dict(self._function_outcomes),
                errors=dict(self._errors),
                index_builds=dict(self._index_builds),
                index_entries=dict(self._index_entries),
                ambiguous=self._ambiguous,
                sbom_version_mismatch=self._mismatch,
                cached_files=len(self._files),
                cached_functions=len(self._functions),
                images=len(self._images),
                evictions=self._evictions,
            )

    def image_errors(self, image_digest: str) -> dict[str, str]:
        """Sources whose database in this image could not be used, with why."""
        with self._lock:
            image = self._images.get(image_digest)
            return dict(image.fatal) if image is not None else {}

    def clear(self) -> None:
        """Forget every cached answer and index (counters are kept)."""
        with self._lock:
            self._files.clear()
            self._functions.clear()
            self._binaries.clear()
            self._images.clear()
            self._roots.clear()

    def clear_answers(self) -> None:
        """Forget cached answers but keep the per-image indexes (what a benchmark's cold pass wants)."""
        with self._lock:
            self._files.clear()
            self._functions.clear()

    # -- cold path: files ----------------------------------------------------------------

    def _error(self, kind: ErrorKind, count: int = 1) -> None:
        self._errors[kind.value] += count

    def _put(self, cache: dict[Any, Attribution], key: Any, value: Attribution) -> None:
        if len(cache) >= self._max_entries:
            del cache[next(iter(cache))]
            self._evictions += 1
        cache[key] = value

    def _rootfs(self, root: str) -> RootFS:
        fs = self._roots.get(root)
        if fs is not None:
            if os.path.isdir(root):  # a container's /proc/<pid>/root goes away with its process
                return fs
            del self._roots[root]
        fs = RootFS(root)
        if len(self._roots) >= _ROOT_CACHE:
            del self._roots[next(iter(self._roots))]
        self._roots[root] = fs
        return fs

    def _image(self, key: str, image_digest: str) -> ImageIndex:
        image = self._images.get(key)
        if image is not None:
            self._images.move_to_end(key)
            return image
        docs = list(self._registered.get(image_digest, ()))
        failures: list[str] = []
        for p in self._sbom_files(image_digest):
            try:
                docs.append(self._load_sbom(p))
            except AttributionError as e:
                self._error(e.kind)
                failures.append(str(e))
                log.warning("SBOM for image %s not used: %s", image_digest, e)
        for doc in docs:
            if doc.warnings:
                log.warning(
                    "SBOM %s: %d entries skipped, first: %s", doc.origin, len(doc.warnings), doc.warnings[0]
                )
        image = ImageIndex(key, sbom_docs=docs, report=self._report_build, limit=self._max_entries)
        if failures:
            image.fatal[Source.SBOM.value] = "; ".join(failures)
        if len(self._images) >= self._max_images:
            self._images.popitem(last=False)
        self._images[key] = image
        return image

    def _report_build(self, source: Source, result: BuildResult) -> None:
        self._index_builds[source.value] += 1
        if result.index is not None:
            self._index_entries[source.value] += len(result.index)
        if result.fatal:
            self._error(CORRUPT_KIND[source])
            log.warning("%s", result.fatal)
        if result.errors:
            self._error(CORRUPT_KIND[source], len(result.errors))
            log.warning(
                "%s: %d entries skipped, first: %s", source.value, len(result.errors), result.errors[0]
            )

    def _resolve_file(self, key: str, image_digest: str, root: str, path: str) -> Attribution:
        with self._lock:
            hit = self._files.get((key, path))
            if hit is not None:
                return hit
            try:
                fs = self._rootfs(root)
            except AttributionError as e:  # not cached: the root may come back (a restarted container)
                self._error(e.kind)
                self._file_outcomes[Source.NONE.value] += 1
                return Attribution(path, None, Source.NONE.value, error=str(e))
            try:
                resolved = fs.resolve(path)
                link = fs.resolve(path, follow_final=False)
            except AttributionError as e:
                self._error(e.kind)
                att = Attribution(path, None, Source.NONE.value, error=str(e))
            else:
                image = self._image(key, image_digest)
                att = self._lookup_file(image, fs, path, resolved, link)
                if fs.memo_size > _MEMO_KEEP:  # an index build resolved every directory of a database
                    fs.forget()
            self._file_outcomes[att.source] += 1
            self._put(self._files, (key, path), att)
            return att

    def _lookup_file(self, image: ImageIndex, fs: RootFS, path: str, resolved: str, link: str) -> Attribution:
        keys = (resolved,) if link == resolved else (resolved, link)
        sbom = image.sbom(fs)
        if sbom is not None:
            hit = sbom.by_path(*keys)
            if hit is not None:
                return self._from_hit(path, resolved, Source.SBOM, "path", hit)
            if sbom.algorithms:
                pkg = self._by_digest(sbom, fs, resolved)
                if pkg is not None:
                    return Attribution(
                        path, pkg.purl, Source.SBOM.value, pkg.name, pkg.version, "hash", resolved=resolved
                    )

        att = self._in_image(image, fs, path, resolved, keys)
        if att is None:
            reasons = "; ".join(f"{k}: {v}" for k, v in image.fatal.items())
            return Attribution(path, None, Source.NONE.value, resolved=resolved, error=reasons or None)
        return self._with_sbom_purl(sbom, att)

    def _in_image(
        self, image: ImageIndex, fs: RootFS, path: str, resolved: str, keys: tuple[str, ...]
    ) -> Attribution | None:
        for source, build in ((Source.DPKG, image.dpkg), (Source.APK, image.apk), (Source.RPM, image.rpm)):
            index = build(fs).index
            if index is not None:
                hit = index.lookup(*keys)
                if hit is not None:
                    return self._from_hit(path, resolved, source, "db", hit)

        for site in langdb.site_package_dirs(fs, resolved):
            index = image.site_packages(fs, site).index
            if index is not None:
                hit = index.lookup(*keys)
                if hit is not None:
                    return self._from_hit(path, resolved, Source.PYPI, "record", hit)

        if langdb.npm_eligible(resolved):
            pkg = image.npm_owner(fs, resolved, self._npm_error)
            if pkg is not None:
                return Attribution(
                    path, pkg.purl, Source.NPM.value, pkg.name, pkg.version, "package.json", resolved=resolved
                )

        info = image.binary(fs, resolved)
        self._binary_errors(info)
        return self._self_described(path, resolved, info)

    def _npm_error(self, message: str) -> None:
        self._error(ErrorKind.NPM_CORRUPT)
        log.warning("npm: %s", message)

    def _binary_errors(self, info: BinaryInfo) -> None:
        if info.refused:
            self._error(ErrorKind(info.refused))
        for kind, message in info.errors:
            self._error(CORRUPT_KIND[Source(kind)])
            log.warning("%s", message)

    def _self_described(self, path: str, resolved: str, info: BinaryInfo) -> Attribution | None:
        if info.go is not None and info.go.main is not None:
            pkg = _go_module_package(info.go.main)
            return Attribution(
                path, pkg.purl, Source.GOMOD.value, pkg.name, pkg.version, "buildinfo", resolved=resolved
            )
        if info.crates:
            roots = [c for c in info.crates if c.root]
            if len(roots) == 1:
                pkg = purls.cargo(name=roots[0].name, version=roots[0].version)
                return Attribution(
                    path, pkg.purl, Source.CARGO.value, pkg.name, pkg.version, "dep-v0", resolved=resolved
                )
        if info.jar is not None:
            pkg = purls.maven(
                group_id=info.jar.group_id, artifact_id=info.jar.artifact_id, version=info.jar.version
            )
            return Attribution(
                path, pkg.purl, Source.MAVEN.value, pkg.name, pkg.version, "pom.properties", resolved=resolved
            )
        if info.jar_artifacts > 1:
            self._ambiguous += 1  # a shaded JAR whose own artifact is not recognizable by its name
        return None

    def _from_hit(self, path: str, resolved: str, source: Source, evidence: str, hit: Hit) -> Attribution:
        if hit.claimants > 1:
            self._ambiguous += 1
        pkg = hit.package
        return Attribution(path, pkg.purl, source.value, pkg.name, pkg.version, evidence, resolved=resolved)

    def _with_sbom_purl(self, sbom: SbomIndex | None, att: Attribution) -> Attribution:
        if sbom is None or att.purl is None:
            return att
        pkg, mismatch = sbom.by_identity(att.purl)
        if pkg is None:
            if mismatch:
                self._mismatch += 1
            return att
        return replace(att, purl=pkg.purl, source=Source.SBOM.value, evidence=f"package:{att.source}")

    def _by_digest(self, sbom: SbomIndex, fs: RootFS, resolved: str) -> Package | None:
        digests = self._digests(fs, resolved, sbom.algorithms)
        if not digests:
            return None
        pkg, ambiguous = sbom.by_digest(digests)
        if ambiguous:
            self._ambiguous += 1
        return pkg

    def _digests(self, fs: RootFS, resolved: str, algorithms: Iterable[str]) -> dict[str, str]:
        try:
            fd = fs.open(resolved, resolved=True)  # confined, regular files only, never blocks
        except OSError:
            return {}
        try:
            st = os.fstat(fd)
            if st.st_size > self._max_hash_bytes:
                return {}
            hashers = {alg: hashlib.new(alg) for alg in algorithms}
            with os.fdopen(os.dup(fd), "rb") as f:
                while chunk := f.read(1 << 20):
                    for h in hashers.values():
                        h.update(chunk)
            return {alg: h.hexdigest() for alg, h in hashers.items()}
        except OSError as e:
            self._error(ErrorKind.IO)
            log.warning("cannot hash %s: %s", resolved, e)
            return {}
        finally:
            os.close(fd)

    # -- cold path: functions ----------------------------------------------------------

    def _resolve_function(
        self, key: str, image_digest: str, root: str, path: str, function: str, build_id: str
    ) -> Attribution:
        file_att = self.attribute_file(image_digest=image_digest, root=root, path=path)
        with self._lock:
            fkey = (key, path, function)
            hit = self._functions.get(fkey)
            if hit is not None:
                return hit
            att = file_att
            if file_att.resolved is not None:
                info = self._function_binary(key, root, file_att.resolved, build_id)
                if info is not None:
                    att = self._function_package(path, file_att, info, function)
            if att.scope == Scope.FUNCTION.value:
                image = self._images.get(key)  # its SBOM index was built by the file lookup just made
                att = self._with_sbom_purl(image.built_sbom if image is not None else None, att)
                self._function_outcomes[att.source] += 1
            else:
                self._function_outcomes["file" if att.purl else Source.NONE.value] += 1
            if (key, path) in self._files:  # not when the root was missing: that answer is not cached either
                self._put(self._functions, fkey, att)
            return att

    def _function_binary(self, key: str, root: str, resolved: str, build_id: str) -> BinaryInfo | None:
        if build_id:
            info = self._binaries.get(build_id)
            if info is not None:
                return info
        try:
            fs = self._rootfs(root)
        except AttributionError:
            return None
        image = self._images.get(key)
        info = image.binary(fs, resolved) if image is not None else read_binary(fs, resolved)
        if build_id and (info.go is not None or info.crates is not None):
            if len(self._binaries) >= self._max_entries:
                del self._binaries[next(iter(self._binaries))]
            self._binaries[build_id] = info
        return info

    def _function_package(
        self, path: str, file_att: Attribution, info: BinaryInfo, function: str
    ) -> Attribution:
        pkg: Package | None = None
        source = Source.NONE
        if info.go is not None:
            pkg = go_function_package(info.go, function)
            source, evidence = Source.GOMOD, "buildinfo"
        elif info.crates:
            pkg, ambiguous = rust_function_package(info.crates, function)
            if ambiguous:
                self._ambiguous += 1
            source, evidence = Source.CARGO, "dep-v0"
        if pkg is None:
            return file_att
        return Attribution(
            path,
            pkg.purl,
            source.value,
            pkg.name,
            pkg.version,
            evidence,
            scope=Scope.FUNCTION.value,
            resolved=file_att.resolved,
        )


def _go_module_package(module: GoModule) -> Package:
    """PURL of a module as compiled: a versioned replacement's, else the module's own.

    ``(devel)`` (an unversioned main module) and a local-directory
    replacement have no version: the PURL then has none rather than a made-up one.
    """
    rep = module.replaced_by
    if rep is not None and not module.is_local_replacement:
        return purls.golang(module=rep.path, version=rep.version)
    version = None if module.is_local_replacement or module.version in ("", DEVEL) else module.version
    return purls.golang(module=module.path, version=version)


def go_function_package(info: GoBuildInfo, function: str) -> Package | None:
    """The module a Go function comes from, ``pkg:golang/stdlib@<v>`` for the standard library.

    ``None`` when the build info cannot say (a GOPATH-mode binary's own
    packages, linker-generated symbols): the caller falls back to the file.
    """
    if function.startswith("vendor/"):  # GOROOT/src/vendor: the standard library's own copies
        return purls.golang_stdlib(go_version=info.go_version)
    package = go_package_path(function)
    if not package:
        return None
    if package == "main":
        return _go_module_package(info.main) if info.main is not None else None
    module = info.module_for(package)
    if module is not None:
        return _go_module_package(module)
    if "." not in package.split("/", 1)[0]:
        return purls.golang_stdlib(go_version=info.go_version)
    return None


def rust_function_package(crates: tuple[binaries.Crate, ...], function: str) -> tuple[Package | None, bool]:
    """(the crate a demangled Rust function comes from, ambiguous): only runtime crates count.

    Two versions of one crate linked into the same binary cannot be told apart
    by name: that is ambiguous and gives ``None``.
    """
    crate = rust_crate_name(function)
    if not crate:
        return None, False
    matches = {(c.name, c.version) for c in crates if c.kind != "build" and c.crate_name == crate}
    if len(matches) != 1:
        return None, len(matches) > 1
    name, version = next(iter(matches))
    return purls.cargo(name=name, version=version), False
