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

Caching is per *view*: an image digest seen through one root filesystem,
named by that root directory's (``st_dev``, ``st_ino``). Every container has
its own root, and every file in it, package databases included, is writable
by whoever runs in it: an index or answer built from one container's root
must never answer for another container of the same image (a compromised
container would decide its neighbours' attribution). Answers are cached per
(view, path) and per (view, path, function) in bounded dicts (oldest out
first); a warm lookup is one ``stat`` of the root and one dict hit. Source
indexes are built once per view, lazily, and at most ``max_images`` views
are kept. Cold work runs under one lock, so the
attributor may be shared by threads; it does blocking file I/O and ELF
parsing, so call it from a worker thread, never from an event loop.

This module holds the caches and the lock; the lookups are in
:mod:`.file_lookup` (files) and :mod:`.function_packages` (functions), the
counts behind :attr:`Attributor.stats` in :mod:`.counters`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from stellaops_runtime.attribution.binaries import BinaryInfo
from stellaops_runtime.attribution.counters import AttributionCounters, AttributionStats
from stellaops_runtime.attribution.file_lookup import lookup_file, with_sbom_purl
from stellaops_runtime.attribution.function_packages import function_package
from stellaops_runtime.attribution.image import ImageIndex, read_binary
from stellaops_runtime.attribution.model import (
    Attribution,
    AttributionError,
    ErrorKind,
    Scope,
    Source,
)
from stellaops_runtime.attribution.rootfs import RootFS
from stellaops_runtime.attribution.sbom import SbomData, parse_sbom
from stellaops_runtime.regular_file import read_regular

__all__ = ["AttributionStats", "Attributor"]  # AttributionStats: the agent imports it from here

log = logging.getLogger(__name__)

DEFAULT_MAX_IMAGES = 64
DEFAULT_MAX_ENTRIES = 100_000
DEFAULT_MAX_HASH_BYTES = 256 << 20
DEFAULT_MAX_SBOM_BYTES = 256 << 20
SBOM_SUFFIXES = (".json", ".cdx.json", ".spdx.json")
_ROOT_CACHE = 64
_MEMO_KEEP = 4096  # resolved directories kept per root between lookups
_GONE_KEEP = 4096  # roots whose last view is remembered

View = tuple[str, int, int]  # (image key, st_dev, st_ino of the root directory)


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
        self._files: dict[tuple[View, str], Attribution] = {}
        self._functions: dict[tuple[View, str, str], Attribution] = {}
        self._images: OrderedDict[View, ImageIndex] = OrderedDict()
        self._roots: dict[tuple[str, View | None], RootFS] = {}
        # (image key, root) -> the view it named at its last cold lookup: when the root is gone
        # (its process exited), the answers cached for that view still answer through it.
        self._gone: dict[tuple[str, str], View] = {}
        self._registered: dict[str, list[SbomData]] = {}
        self._counters = AttributionCounters()

    # -- the hot path ----------------------------------------------------------------

    def attribute_file(self, *, image_digest: str, root: str, path: str) -> Attribution:
        """The package of the file at ``path`` (inside ``root``) of image ``image_digest``."""
        view = _view(image_digest or root, root)
        seen = view or self._gone.get((image_digest or root, root))
        hit = self._files.get((seen, path)) if seen is not None else None
        if hit is not None:
            return hit
        return self._resolve_file(view, image_digest, root, path)

    def attribute_function(
        self, *, image_digest: str, root: str, path: str, function: str, build_id: str = ""
    ) -> Attribution:
        """The package of ``function`` (canonical name) in the binary at ``path``.

        ``build_id`` is accepted and not used: a build-id is what a file *claims*, and a
        container can craft a binary claiming another image's build-id with forged build
        info, so parsed metadata is never shared across images by it.
        """
        view = _view(image_digest or root, root)
        seen = view or self._gone.get((image_digest or root, root))
        hit = self._functions.get((seen, path, function)) if seen is not None else None
        if hit is not None:
            return hit
        return self._resolve_function(view, image_digest, root, path, function, build_id)

    # -- SBOMs -------------------------------------------------------------------------

    def register_sbom(self, image_digest: str, path: str) -> SbomData:
        """Parse an SBOM file now (``AttributionError`` if malformed) and use it for an image.

        Answers already cached for that image are dropped, so they are
        recomputed with the SBOM.
        """
        data = self._load_sbom(Path(path))
        with self._lock:
            self._registered.setdefault(image_digest, []).append(data)
            for view in [v for v in self._images if v[0] == image_digest]:
                del self._images[view]
            for fkey in [k for k in self._files if k[0][0] == image_digest]:
                del self._files[fkey]
            for gkey in [k for k in self._functions if k[0][0] == image_digest]:
                del self._functions[gkey]
        return data

    def _load_sbom(self, path: Path) -> SbomData:
        try:  # a FIFO or device (``--sbom /dev/zero``) is an error, never a wait or an endless read
            raw = read_regular(path, self._max_sbom_bytes)
        except OSError as e:
            raise AttributionError(ErrorKind.SBOM_MALFORMED, f"{path}: cannot read: {e.strerror}") from None
        if len(raw) > self._max_sbom_bytes:
            too_large = f"{path}: more than {self._max_sbom_bytes} bytes"
            raise AttributionError(ErrorKind.SBOM_MALFORMED, too_large)
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
            return self._counters.snapshot(
                cached_files=len(self._files), cached_functions=len(self._functions), images=len(self._images)
            )

    def count_ambiguous(self) -> None:
        """Count an answer left unknown because its claimants disagree (:mod:`.agreement`)."""
        with self._lock:
            self._counters.ambiguous += 1

    def image_errors(self, image_digest: str) -> dict[str, str]:
        """Sources whose database in this image could not be used, with why (any of its views)."""
        with self._lock:
            out: dict[str, str] = {}
            for view, image in self._images.items():
                if view[0] == image_digest:
                    for source, why in image.fatal.items():
                        out.setdefault(source, why)
            return out

    def clear(self) -> None:
        """Forget every cached answer and index (counters are kept)."""
        with self._lock:
            self._files.clear()
            self._functions.clear()
            self._images.clear()
            self._roots.clear()
            self._gone.clear()

    def clear_answers(self) -> None:
        """Forget cached answers but keep the per-image indexes (what a benchmark's cold pass wants)."""
        with self._lock:
            self._files.clear()
            self._functions.clear()

    # -- cold path: files ----------------------------------------------------------------

    def _put(self, cache: dict[Any, Attribution], key: Any, value: Attribution) -> None:
        if len(cache) >= self._max_entries:
            del cache[next(iter(cache))]
            self._counters.evictions += 1
        cache[key] = value

    def _rootfs(self, root: str, view: View | None) -> RootFS:
        """The root's reader, kept per (root path, view): its directory memo is that root's
        (``/proc/<pid>/root`` of a reused pid is another container's root)."""
        fs = self._roots.get((root, view))
        if fs is not None:
            if os.path.isdir(root):  # a container's /proc/<pid>/root goes away with its process
                return fs
            del self._roots[(root, view)]
        fs = RootFS(root)
        if len(self._roots) >= _ROOT_CACHE:
            del self._roots[next(iter(self._roots))]
        self._roots[(root, view)] = fs
        return fs

    def _image(self, view: View, image_digest: str) -> ImageIndex:
        image = self._images.get(view)
        if image is not None:
            self._images.move_to_end(view)
            return image
        docs = list(self._registered.get(image_digest, ()))
        failures: list[str] = []
        for p in self._sbom_files(image_digest):
            try:
                docs.append(self._load_sbom(p))
            except AttributionError as e:
                self._counters.error(e.kind)
                failures.append(str(e))
                log.warning("SBOM for image %s not used: %s", image_digest, e)
        for doc in docs:
            if doc.warnings:
                log.warning(
                    "SBOM %s: %d entries skipped, first: %s", doc.origin, len(doc.warnings), doc.warnings[0]
                )
        image = ImageIndex(
            view[0], sbom_docs=docs, report=self._counters.report_build, limit=self._max_entries
        )
        if failures:
            image.fatal[Source.SBOM.value] = "; ".join(failures)
        if len(self._images) >= self._max_images:
            self._images.popitem(last=False)
        self._images[view] = image
        return image

    def _resolve_file(self, view: View | None, image_digest: str, root: str, path: str) -> Attribution:
        with self._lock:
            hit = self._files.get((view, path)) if view is not None else None
            if hit is not None:
                return hit
            if view is not None and self._gone.get((view[0], root)) != view:
                if len(self._gone) >= _GONE_KEEP:
                    del self._gone[next(iter(self._gone))]
                self._gone[(view[0], root)] = view
            try:
                fs = self._rootfs(root, view)
                if view is None:
                    raise AttributionError(ErrorKind.BAD_ROOT, f"root filesystem {root!r} went away")
            except AttributionError as e:  # not cached: the root may come back (a restarted container)
                self._counters.error(e.kind)
                self._counters.files[Source.NONE.value] += 1
                return Attribution(path, None, Source.NONE.value, error=str(e))
            try:
                resolved = fs.resolve(path)
                link = fs.resolve(path, follow_final=False)
            except AttributionError as e:
                self._counters.error(e.kind)
                att = Attribution(path, None, Source.NONE.value, error=str(e))
            else:
                image = self._image(view, image_digest)
                att = lookup_file(
                    image, fs, path, resolved, link, self._counters, max_hash_bytes=self._max_hash_bytes
                )
                if fs.memo_size > _MEMO_KEEP:  # an index build resolved every directory of a database
                    fs.forget()
                if _view(view[0], root) != view:
                    # The process exited during the lookup (or its pid now names another root):
                    # what its root gave may be partial (a database half-read, files "missing").
                    # Neither that answer nor the view's indexes are kept.
                    self._images.pop(view, None)
                    self._roots.pop((root, view), None)
                    self._counters.error(ErrorKind.BAD_ROOT)
                    self._counters.files[Source.NONE.value] += 1
                    return Attribution(
                        path,
                        None,
                        Source.NONE.value,
                        error=f"root filesystem {root!r} went away during the lookup",
                    )
            self._counters.files[att.source] += 1
            self._put(self._files, (view, path), att)
            return att

    # -- cold path: functions ----------------------------------------------------------

    def _resolve_function(
        self, view: View | None, image_digest: str, root: str, path: str, function: str, build_id: str
    ) -> Attribution:
        file_att = self.attribute_file(image_digest=image_digest, root=root, path=path)
        if view is None:  # no root: the file's answer (unattributed, not cached) is the function's
            with self._lock:
                self._counters.functions[Source.NONE.value] += 1
            return file_att
        with self._lock:
            fkey = (view, path, function)
            hit = self._functions.get(fkey)
            if hit is not None:
                return hit
            att = file_att
            if file_att.resolved is not None:
                info = self._function_binary(view, root, file_att.resolved, build_id)
                if info is not None:
                    att = function_package(path, file_att, info, function, self._counters)
            if att.scope == Scope.FUNCTION.value:
                image = self._images.get(view)  # its SBOM index was built by the file lookup just made
                att = with_sbom_purl(image.built_sbom if image is not None else None, att, self._counters)
                self._counters.functions[att.source] += 1
            else:
                self._counters.functions["file" if att.purl else Source.NONE.value] += 1
            if (view, path) in self._files:  # not when the root was missing: that answer is not cached either
                self._put(self._functions, fkey, att)
            return att

    def _function_binary(self, view: View, root: str, resolved: str, build_id: str) -> BinaryInfo | None:
        try:
            fs = self._rootfs(root, view)
        except AttributionError:
            return None
        image = self._images.get(view)
        return image.binary(fs, resolved) if image is not None else read_binary(fs, resolved)


def _view(key: str, root: str) -> View | None:
    """The view of image ``key`` through ``root``; ``None`` if the root is gone.

    ``os.stat`` follows ``/proc/<pid>/root`` to the container's root directory: two
    processes of one container share it, two containers never do, and a reused pid
    names its new container's root.
    """
    try:
        st = os.stat(root)
    except (OSError, ValueError):
        return None
    return (key, st.st_dev, st.st_ino)
