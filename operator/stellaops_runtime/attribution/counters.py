"""What the attributor counts: answers by source, bad input by kind, index builds, ambiguity.

The :class:`~stellaops_runtime.attribution.attributor.Attributor` keeps one
:class:`AttributionCounters` and changes it only under its own lock; the
lookups it runs (``file_lookup``, ``function_packages``) report into it.
:class:`AttributionStats` is the snapshot it hands out, which the agent
exports as metrics. Warnings go to the attributor's logger, so the log names
one component whichever part of it found the problem.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from stellaops_runtime.attribution.binaries import BinaryInfo
from stellaops_runtime.attribution.model import CORRUPT_KIND, ErrorKind, Source
from stellaops_runtime.attribution.osdb import BuildResult

log = logging.getLogger("stellaops_runtime.attribution.attributor")


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


class AttributionCounters:
    """The attributor's running counts; not thread-safe by itself (the attributor's lock guards it)."""

    __slots__ = (
        "ambiguous",
        "errors",
        "evictions",
        "files",
        "functions",
        "index_builds",
        "index_entries",
        "mismatch",
    )

    def __init__(self) -> None:
        self.files: Counter[str] = Counter()  # cold file answers by source
        self.functions: Counter[str] = Counter()  # cold function answers by source
        self.errors: Counter[str] = Counter()
        self.index_builds: Counter[str] = Counter()
        self.index_entries: Counter[str] = Counter()
        self.ambiguous = 0
        self.mismatch = 0  # SBOM version mismatches
        self.evictions = 0

    def error(self, kind: ErrorKind, count: int = 1) -> None:
        self.errors[kind.value] += count

    def report_build(self, source: Source, result: BuildResult) -> None:
        """One index build of ``source`` (an image's database): its size, and what was wrong with it."""
        self.index_builds[source.value] += 1
        if result.index is not None:
            self.index_entries[source.value] += len(result.index)
        if result.fatal:
            self.error(CORRUPT_KIND[source])
            log.warning("%s", result.fatal)
        if result.errors:
            self.error(CORRUPT_KIND[source], len(result.errors))
            log.warning(
                "%s: %d entries skipped, first: %s", source.value, len(result.errors), result.errors[0]
            )

    def npm_error(self, message: str) -> None:
        self.error(ErrorKind.NPM_CORRUPT)
        log.warning("npm: %s", message)

    def binary_errors(self, info: BinaryInfo) -> None:
        """A binary the attributor refused to read, or metadata in it that did not parse."""
        if info.refused:
            self.error(ErrorKind(info.refused))
        for kind, message in info.errors:
            self.error(CORRUPT_KIND[Source(kind)])
            log.warning("%s", message)

    def snapshot(self, *, cached_files: int, cached_functions: int, images: int) -> AttributionStats:
        return AttributionStats(
            files=dict(self.files),
            functions=dict(self.functions),
            errors=dict(self.errors),
            index_builds=dict(self.index_builds),
            index_entries=dict(self.index_entries),
            ambiguous=self.ambiguous,
            sbom_version_mismatch=self.mismatch,
            cached_files=cached_files,
            cached_functions=cached_functions,
            images=images,
            evictions=self.evictions,
        )
