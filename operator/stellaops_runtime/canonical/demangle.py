"""Canonical demangled names for C, C++, Rust (legacy and v0) and Go symbols.

A function ID (`<build-id>:<symbol>+0x<offset>`) is only useful if static analysis computes the
same ``symbol`` for the same code, so every symbol is turned into exactly one canonical text here.
The rules (docs/function-ids.md has the worked examples):

* ELF symbol versions are dropped: ``memcpy@GLIBC_2.14`` and ``memcpy@@GLIBC_2.14`` -> ``memcpy``.
* LLVM's LTO promotion suffix ``.llvm.<digits>`` is dropped wherever it is among the suffixes
  (``f.llvm.123.cold`` -> ``f.cold``): it is a per-module hash, not part of the function's identity.
* C++ (Itanium ``_Z``, also Mach-O ``__Z``): LLVM's Itanium demangler (pycxxfilt's direct call);
  the few GNU-only forms it rejects (``_ZGTt`` transaction clones), and names with constructs LLVM
  prints differently from c++filt (inheriting constructors, ``decltype`` expressions, local names,
  TLS wrappers; canonical/cxx_gnu.py), go to libstdc++'s own ``__cxa_demangle``. GNU tools
  spell a few things differently (``> >``, ``{lambda()#1}``, ``[clone .cold]``,
  ``decltype(nullptr)``); :func:`canonicalize_gnu_cxx` maps their output to the canonical text,
  which then equals ``c++filt -i`` output on every real corpus tested.
* Rust legacy (``_ZN ... 17h<16 hex>E``): rustc-demangle (pyderust) without the ``::h<hash>``.
  A ``_ZN`` symbol is legacy Rust exactly when its last path element is ``h`` + 16 lower-case hex
  digits (the element's length prefix is then ``17``) and the name ends right after it (or a ``.``
  suffix follows). C++ nested names end in ``E`` followed by parameter types, so they never match.
* Rust v0 (``_R``): LLVM's Rust demangler (pycxxfilt's direct call), which leaves out the crate
  disambiguator hashes ``[...]``, so a name does not change with the compiler's hash.
* Compiler clone suffixes (``.cold``, ``.part.0``, ``.isra.0``, ``.constprop.0``, ``.lto_priv.0``)
  are kept: a clone is separate code with its own start, so dropping the suffix would make the
  offsets of two different code ranges collide under one name. C++ renders them the LLVM way,
  ``f() (.cold)``; Rust appends them as rustc-demangle does, ``a::b.cold``; C keeps ``f.cold``.
* Go names are not mangled and are kept as the linker wrote them (package path, ``%2e`` escapes,
  receivers ``pkg.(*T).M`` / ``pkg.T.M``, closures ``.func1``/``.func1.2``/``.gowrap1``, method
  values ``-fm``) except ABI suffixes, which are dropped (``pkg.F.abi0``, ``pkg.F.abiinternal`` ->
  ``pkg.F``: only the symbol table has them, ``.gopclntab`` and DWARF do not), and generic
  instantiations, whose type arguments (``[go.shape.int_0]``, ``[go.shape.string]``, ``[...]``,
  whatever the Go version) become ``[...]``.
* Anything else (C, kernel symbols) is returned as it is.

:func:`demangle` never raises. A name that looks mangled but does not demangle is returned as it
came in (after the version/``.llvm.`` normalization) and counted as a failure.

This module dispatches and caches; the rules shared with other readers live
apart and are re-exported here: decorations (canonical/namedecor.py), Go names
and package paths (canonical/gonames.py), Rust crates (canonical/rustcrates.py),
GNU C++ spellings (canonical/cxx_gnu.py), and the backend protocol and counters'
records (canonical/demangle_types.py).
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import threading
from collections.abc import Callable, Iterable

from stellaops_runtime.canonical.cxx_gnu import canonicalize_gnu_cxx, unparenthesize_callees
from stellaops_runtime.canonical.cxx_gnu import gnu_cxa_demangle as _gnu_cxa_demangle
from stellaops_runtime.canonical.demangle_types import Counters as _Counters
from stellaops_runtime.canonical.demangle_types import Demangler, DemangleStats
from stellaops_runtime.canonical.gonames import canonicalize_go, go_after_dot, go_package_path, looks_go
from stellaops_runtime.canonical.namedecor import (
    HEX,
    LLVM_SUFFIX,
    drop_llvm_suffix,
    is_legacy_rust,
    strip_symbol_decorations,
)
from stellaops_runtime.canonical.rustcrates import rust_crate_name

log = logging.getLogger(__name__)

# The fast bindings (see perf-baselines: direct calls, dispatched here on the prefix) are loaded
# with the first C++ or Rust name, not with this module (issue 13): their libraries are ~0.45 MB of
# the agent's RSS, and a node whose frames are C and Go (and kernel) names never calls them.
# Installed or not is known without loading them, so the agent's set-up still installs the c++filt
# fallback where they are missing; a wheel installed but not loadable is found at the first name.
BINDINGS_AVAILABLE = all(importlib.util.find_spec(m) is not None for m in ("pycxxfilt", "pyderust"))
if not BINDINGS_AVAILABLE:  # pragma: no cover - exercised only where the wheels are missing
    log.warning("pycxxfilt/pyderust are not importable: demangling needs install_fallback()")

__all__ = [
    "BINDINGS_AVAILABLE",
    "CACHE_SIZE",
    "BindingsDemangler",
    "DemangleStats",
    "Demangler",
    "canonicalize_gnu_cxx",
    "canonicalize_go",
    "clear_cache",
    "current_fallback",
    "demangle",
    "demangle_stats",
    "demangle_uncached",
    "fallback_if_bindings_fail",
    "go_package_path",
    "install_fallback",
    "is_legacy_rust",
    "language_of",
    "load_bindings",
    "reset_stats",
    "rust_crate_name",
    "strip_symbol_decorations",
    "unparenthesize_callees",
]

CACHE_SIZE = 32_768
"""Most distinct names kept by the warm-call cache (an LRU; ~8 MB when full of long Rust v0 names)."""


_COUNTS = _Counters()
_LOGGED_FAILURES = 20  # unexpected failures logged before only the counter tells
_fallback: Demangler | None = None


def current_fallback() -> Demangler | None:
    """The fallback backend installed with :func:`install_fallback`, if any."""
    return _fallback


def install_fallback(demangler: Demangler | None) -> None:
    """Install the backend :func:`demangle` uses for mangled names when the bindings are missing.

    The runtime wiring passes a canonical.cxxfilt.CxxfiltDemangler when BINDINGS_AVAILABLE is
    false; with the bindings present it is never consulted. ``None`` uninstalls it. Clears the
    cache, so no name keeps an answer from the previous backend.
    """
    global _fallback
    _fallback = demangler
    clear_cache()


def demangle_uncached(name: str) -> str:
    """:func:`demangle` without its cache, for callers that keep each answer themselves.

    An address table memoizes the name of each entry it has answered for
    (canonical/addrindex.py); going through the shared LRU as well made a cold
    lookup's demangling slower (bench/symbolize_batch.py) and kept a second
    copy of every name. Same answers, same per-language counters.
    """
    # One function on purpose: every Python call level costs ~5% of the cold throughput.
    try:
        if "@" in name:
            at = name.find("@")
            if at > 0:
                name = name[:at]
        if LLVM_SUFFIX in name:
            name = drop_llvm_suffix(name)
        c = _COUNTS
        head = name[:2]
        if head == "__" and (name[2:3] == "Z" or name[2:3] == "R"):  # Mach-O's extra underscore
            name = name[1:]
            head = name[:2]
        if head == "_Z":
            # Legacy Rust: "_ZN...17h<16 hex>E", or with a ".suffix" (is_legacy_rust); the last
            # character first, the cheapest test that rejects most C++ names
            if (
                name[-1] == "E"
                and name[2:3] == "N"
                and name[-20:-17] == "17h"
                and not name[-17:-1].strip(HEX)
                and len(name) > 24
            ) or ("." in name and is_legacy_rust(name)):
                try:
                    out = _rustc_demangle(name)
                except Exception:  # pyderust.DemangleError
                    out = None
                if out is None:
                    c.failures += 1
                    return name
                c.rust_legacy += 1
                return out
            out = None
            # GNU's own demangler first where LLVM's text differs from c++filt's (cxx_gnu.py). A
            # two-character search costs several one-character ones (a long name is scanned by
            # a slower loop), so each waits for its first character to be found.
            gnu = (
                ("C" in name and "CI" in name)
                or ("D" in name and ("Dt" in name or "DT" in name))
                or name.rfind("Z") > 1  # a "Z" after "_Z": a local name
                or (name[2:3] == "T" and (name[3:4] == "H" or name[3:4] == "W"))
            )
            if gnu:
                out = _gnu_cxa_demangle(name)
                gnu = out is not None
            if out is None:
                try:
                    out = _llvm_itanium(name)
                except ValueError:
                    out = None
                # LLVM rejects a few GNU-only forms (_ZGTt transaction clones) and keeps a
                # qualifier that reference collapsing removes ("T const const&")
                if out is None or " const const" in out:
                    alt = _gnu_cxa_demangle(name)
                    if alt is not None:
                        out, gnu = alt, True
                if out is None:
                    c.failures += 1
                    return name
            if gnu:
                c.cxx_gnu += 1
            c.cxx += 1
            return out
        if head == "_R":
            dot = name.find(".")
            try:
                if dot < 0:
                    out = _llvm_rust(name)
                else:  # rustc-demangle's form: the suffix appended as it is
                    out = _llvm_rust(name[:dot])
                    if out is not None:
                        out += name[dot:]
            except ValueError:
                out = None
            if out is None:
                c.failures += 1
                return name
            c.rust_v0 += 1
            return out
        dot = name.find(".")
        if dot > 0 and go_after_dot(name, dot):
            c.go += 1
            return canonicalize_go(name) if "[" in name or ".abi" in name else name
        c.plain += 1
        return name
    except Exception as exc:  # a non-str argument or a binding bug must not take the agent down
        return _unexpected_failure(name, exc)


def _unexpected_failure(name: object, exc: Exception) -> str:
    _COUNTS.failures += 1
    text = name if isinstance(name, str) else repr(name)
    if _COUNTS.failures <= _LOGGED_FAILURES:
        log.warning("demangler failed on %.200r: %s: %s", text, type(exc).__name__, exc)
    return text


def _fallback_only(name: str) -> str | None:
    """Used for every mangled name when the bindings are missing: the installed fallback, if any."""
    if _fallback is None:
        return None
    out = _fallback.demangle(name)
    return None if out == name else out


_load_lock = threading.Lock()
_loaded = False
_bound: list[Callable[[str], str | None]] = []  # what load_bindings bound the three calls to
_fallback_factory: Callable[[], Demangler] | None = None


def fallback_if_bindings_fail(factory: Callable[[], Demangler] | None) -> None:
    """Name the fallback to install at the first C++ or Rust name if the bindings do not load.

    The agent's wiring installs its fallback at once where they are missing and names it here
    otherwise, so a broken wheel's names get the fallback's answers rather than staying mangled; the
    CLI names it in every case (cli/main.py), so c++filt starts only for a name that needs it.
    """
    global _fallback_factory
    _fallback_factory = factory


def load_bindings() -> None:
    """Bind the three calls below to the bindings (to the fallback where they do not load), once.

    Each call's first use runs it; any thread may, and a second waits for the first. A load that
    fails (any error) is not tried again; the fallback named for it is installed, if none is.
    """
    global BINDINGS_AVAILABLE, _loaded, _llvm_itanium, _llvm_rust, _rustc_demangle
    with _load_lock:
        if _loaded:
            return
        calls: tuple[Callable[[str], str | None], ...]
        try:
            from pycxxfilt import itanium_demangle, rust_demangle
            from pyderust import demangle as rustc_demangle

            calls = (itanium_demangle, rust_demangle, rustc_demangle)
        except BaseException as e:  # ImportError, or whatever else a broken wheel's import raises
            if isinstance(e, (KeyboardInterrupt, SystemExit)):  # not the wheel's (pyo3 panics are Base)
                raise
            now = _install_named_fallback()  # missing at import (the CLI names it lazily) or broken
            if BINDINGS_AVAILABLE:  # found installed at import: its failure is news
                BINDINGS_AVAILABLE = False
                log.warning("pycxxfilt/pyderust do not load (%s: %s): %s", type(e).__name__, e, now)
            calls = (_fallback_only,) * 3
        _bound[:] = calls
        _llvm_itanium, _llvm_rust, _rustc_demangle = calls
        _loaded = True


def _install_named_fallback() -> str:
    if _fallback is None and _fallback_factory is not None:
        try:
            install_fallback(_fallback_factory())
        except Exception as e:  # c++filt missing too: as if none had been named
            log.warning("the demangling fallback does not start: %s: %s", type(e).__name__, e)
    if _fallback is not None:
        return f"demangling through the fallback {type(_fallback).__name__}"
    return "no fallback: Rust names stay as they came (failures); C++ has __cxa_demangle"


def _first_use(i: int) -> Callable[[str], str | None]:
    def first(name: str) -> str | None:
        load_bindings()
        return _bound[i](name)  # not the global: one restored to this function would call it again

    return first


# The calls demangle_uncached makes, bound to the bindings at the first of them (load_bindings).
FIRST_USE = (_first_use(0), _first_use(1), _first_use(2))
_llvm_itanium: Callable[[str], str | None] = FIRST_USE[0]
_llvm_rust: Callable[[str], str | None] = FIRST_USE[1]
_rustc_demangle: Callable[[str], str | None] = FIRST_USE[2]


demangle = functools.lru_cache(maxsize=CACHE_SIZE)(demangle_uncached)
"""The canonical demangled name of a C/C++/Rust/Go symbol (see the module docstring).

Never raises for a ``str``: returns the name as it came in (after dropping an ELF symbol version
and an ``.llvm.<n>`` suffix) when it is not mangled or does not demangle (counted as a failure).
Warm calls are answered from a bounded LRU cache (CACHE_SIZE names)."""


class BindingsDemangler:
    """The primary backend (the bindings, with :func:`demangle`'s cache) as a :class:`Demangler`."""

    def demangle(self, name: str) -> str:
        return demangle(name)

    def demangle_many(self, names: Iterable[str]) -> list[str]:
        return [demangle(n) for n in names]


def language_of(name: str) -> str:
    """Which rule set :func:`demangle` applies: cxx, rust_legacy, rust_v0, go or plain."""
    name = strip_symbol_decorations(name)
    if name[:2] == "_Z":
        return "rust_legacy" if name[2:3] == "N" and is_legacy_rust(name) else "cxx"
    if name[:2] == "_R":
        return "rust_v0"
    return "go" if looks_go(name) else "plain"


def clear_cache() -> None:
    """Empty the warm-call cache (benchmarks measure cold throughput after this)."""
    demangle.cache_clear()


def demangle_stats() -> DemangleStats:
    """Current counters and cache figures."""
    info = demangle.cache_info()
    c = _COUNTS
    return DemangleStats(
        cxx=c.cxx,
        cxx_gnu=c.cxx_gnu,
        rust_legacy=c.rust_legacy,
        rust_v0=c.rust_v0,
        go=c.go,
        plain=c.plain,
        failures=c.failures,
        cache_hits=info.hits,
        cache_misses=info.misses,
        cache_size=info.currsize,
    )


def reset_stats() -> None:
    """Zero the per-language and failure counters (the cache figures reset with clear_cache)."""
    global _COUNTS
    _COUNTS = _Counters()
