"""The demangler's records: what a backend offers, and what its counters say.

Apart from canonical/demangle.py, which dispatches each name on its hot path and keeps the
counters as one of its globals there: these are what other modules see of it. The c++filt fallback
(canonical/cxxfilt.py) is a :class:`Demangler`; the agent's metrics read :class:`DemangleStats`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol


class Demangler(Protocol):
    """What a demangling backend offers: BindingsDemangler, or GNU c++filt (canonical.cxxfilt)."""

    def demangle(self, name: str) -> str: ...

    def demangle_many(self, names: Iterable[str]) -> list[str]: ...


@dataclass(slots=True)
class Counters:
    """The running per-language and failure counts (canonical/demangle.py's hot path adds to them)."""

    cxx: int = 0
    cxx_gnu: int = 0
    rust_legacy: int = 0
    rust_v0: int = 0
    go: int = 0
    plain: int = 0
    failures: int = 0


@dataclass(frozen=True, slots=True)
class DemangleStats:
    """A snapshot of the counters, for the agent's metrics.

    Per-language counts are names demangled on a cache miss (``cxx_gnu``: C++ names libstdc++'s
    ``__cxa_demangle`` answered, because LLVM rejected them or spells them differently from
    c++filt, also counted in ``cxx``); ``failures`` are names that
    looked mangled but did not demangle (they were returned as they came in).
    """

    cxx: int
    cxx_gnu: int
    rust_legacy: int
    rust_v0: int
    go: int
    plain: int
    failures: int
    cache_hits: int
    cache_misses: int
    cache_size: int
