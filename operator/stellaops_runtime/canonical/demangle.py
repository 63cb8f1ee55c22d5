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
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from stellaops_runtime.canonical.cxx_gnu import canonicalize_gnu_cxx, unparenthesize_callees
from stellaops_runtime.canonical.cxx_gnu import gnu_cxa_demangle as _gnu_cxa_demangle

log = logging.getLogger(__name__)

try:  # the fast bindings (see perf-baselines: direct calls, dispatched here on the prefix)
    from pycxxfilt import itanium_demangle as _llvm_itanium
    from pycxxfilt import rust_demangle as _llvm_rust
    from pyderust import demangle as _rustc_demangle

    BINDINGS_AVAILABLE = True
except ImportError:  # pragma: no cover - exercised only where the wheels are missing
    BINDINGS_AVAILABLE = False
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
    "go_package_path",
    "install_fallback",
    "is_legacy_rust",
    "language_of",
    "reset_stats",
    "rust_crate_name",
    "strip_symbol_decorations",
    "unparenthesize_callees",
]

CACHE_SIZE = 32_768
"""Most distinct names kept by the warm-call cache (an LRU; ~8 MB when full of long Rust v0 names)."""

_HEX = "0123456789abcdef"
_LLVM_SUFFIX = ".llvm."
# LTO's ".llvm.<decimal hash>" as a whole suffix (then the end or another ".suffix"), never the name
_LLVM_HASH = re.compile(r"(?<=.)\.llvm\.[0-9]+(?=\.|\Z)", re.DOTALL)


class Demangler(Protocol):
    """What a demangling backend offers: BindingsDemangler, or GNU c++filt (canonical.cxxfilt)."""

    def demangle(self, name: str) -> str: ...

    def demangle_many(self, names: Iterable[str]) -> list[str]: ...


@dataclass(slots=True)
class _Counters:
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


def is_legacy_rust(name: str) -> bool:
    """True when a ``_ZN`` symbol is legacy Rust: its last path element is ``17h<16 hex>`` + ``E``.

    A ``.suffix`` after the final ``E`` (``.llvm.123``, ``.cold``) is allowed.
    """
    if not name.startswith("_ZN"):
        return False
    end = len(name) - 1
    if name[end] != "E":
        end = name.find("E.", 3)
        while end != -1 and not _legacy_hash_before(name, end):
            end = name.find("E.", end + 1)
        return end != -1
    return _legacy_hash_before(name, end)


def _legacy_hash_before(name: str, end: int) -> bool:
    # name[end] == "E"; the 20 characters before it must be "17h" + 16 lower-case hex digits
    # and at least one path element ("1a") must come between "_ZN" and the hash element
    return end >= 24 and name[end - 19 : end - 16] == "17h" and not name[end - 16 : end].strip(_HEX)


def strip_symbol_decorations(name: str) -> str:
    """Drop an ELF symbol version (``@VER``/``@@VER``), every LTO ``.llvm.<digits>`` suffix and
    Mach-O's extra leading underscore (``__Z``/``__R`` -> ``_Z``/``_R``)."""
    at = name.find("@")
    if at > 0:
        name = name[:at]
    if _LLVM_SUFFIX in name:
        name = _drop_llvm_suffix(name)
    if name[:2] == "__" and (name[2:3] == "Z" or name[2:3] == "R"):
        name = name[1:]
    return name


def canonicalize_go(name: str) -> str:
    """Drop a linker ABI suffix, and replace the type arguments of every generic instantiation by ``[...]``.

    ``crypto/sha256.block.abi0`` -> ``crypto/sha256.block`` (the symbol table's name for an
    assembly body that has an ABIInternal wrapper; ``.gopclntab`` and DWARF call both
    ``crypto/sha256.block``), likewise ``.abiinternal`` (shared-library builds) and any other
    ``.abi<N>``; the suffix is only dropped when a ``pkg.`` qualifier stays (``pkg.abi0`` is a function).
    ``pkg.Map[go.shape.string,go.shape.int]`` -> ``pkg.Map[...]``;
    ``pkg.(*List[go.shape.*uint8]).Push.func1`` -> ``pkg.(*List[...]).Push.func1``.
    Brackets nest (``[go.shape.[]int]``), so they are matched, not searched with a regex.
    """
    if ".abi" in name:
        name = _drop_go_abi_suffix(name)
    start = name.find("[")
    if start < 0:
        return name
    out: list[str] = []
    pos = 0
    while start >= 0:
        depth = 0
        stop = -1
        for i in range(start, len(name)):
            c = name[i]
            if c == "[":
                depth += 1
            elif c == "]":
                depth -= 1
                if depth == 0:
                    stop = i
                    break
        if stop < 0:  # unbalanced: leave the rest as it is
            break
        out.append(name[pos:start])
        out.append("[...]")
        pos = stop + 1
        start = name.find("[", pos)
    out.append(name[pos:])
    return "".join(out)


def _drop_go_abi_suffix(name: str) -> str:
    # the Go linker's mangleABIName: "<name>.abi<version>" (".abi0") or "<name>.abiinternal"
    dot = name.rfind(".abi")
    tail = name[dot + 4 :]
    if dot > 0 and (tail == "internal" or tail.isdigit()):
        slash = name.rfind("/", 0, dot)  # the qualifier's dot is after the import path's last "/"
        if name.find(".", slash + 1, dot) > slash + 1:
            return name[:dot]
    return name


# linker-generated Go symbols (no package: "type" and "go" are keywords) and cgo's C glue
_GO_GENERATED_PREFIXES = ("type:", "type.", "go:", "go.", "gclocals", "_cgo_", "x_cgo_")


def _looks_go(name: str) -> bool:
    # a dot that is not a C compiler clone suffix: "pkg.F", "a/b.(*T).M", but not "f.cold", "f.1234"
    dot = name.find(".")
    return dot > 0 and _go_after_dot(name, dot)


def _go_after_dot(name: str, dot: int) -> bool:
    end = name.find(".", dot + 1)
    word = name[dot + 1 :] if end < 0 else name[dot + 1 : end]
    if word in _CLONE_WORDS or word.isdigit():
        return not _is_clone_suffix(name[dot:])
    return True


_CLONE_WORDS = frozenset(
    {"cold", "part", "isra", "constprop", "lto_priv", "localalias", "clone", "hot", "warm"}
)


def _is_clone_suffix(suffix: str) -> bool:
    # ".cold", ".part.0", ".isra.0.cold", ".constprop.0.isra.0", ".lto_priv.0", ".1234"
    return all(word in _CLONE_WORDS or word.isdigit() for word in suffix[1:].split("."))


def _drop_llvm_suffix(name: str) -> str:
    # wherever it is among the suffixes: "f.llvm.123", "f.llvm.123.cold", "f.llvm.1.llvm.2.warm"
    return _LLVM_HASH.sub("", name)


def _demangle_uncached(name: str) -> str:
    # One function on purpose: every Python call level costs ~5% of the cold throughput.
    try:
        if "@" in name:
            at = name.find("@")
            if at > 0:
                name = name[:at]
        if _LLVM_SUFFIX in name:
            name = _drop_llvm_suffix(name)
        c = _COUNTS
        head = name[:2]
        if head == "__" and (name[2:3] == "Z" or name[2:3] == "R"):  # Mach-O's extra underscore
            name = name[1:]
            head = name[:2]
        if head == "_Z":
            if name[2:3] == "N" and (
                (
                    name[-20:-17] == "17h"
                    and name[-1] == "E"
                    and not name[-17:-1].strip(_HEX)
                    and len(name) > 24
                )
                or ("." in name and is_legacy_rust(name))
            ):
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
            # GNU's own demangler first where LLVM's text differs from c++filt's (cxx_gnu.py)
            gnu = (
                "CI" in name
                or "Dt" in name
                or "DT" in name
                or name.find("Z", 2) > 0
                or name[2:4] == "TH"
                or name[2:4] == "TW"
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
        if dot > 0 and _go_after_dot(name, dot):
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


if not BINDINGS_AVAILABLE:  # pragma: no cover
    _llvm_itanium = _llvm_rust = _rustc_demangle = _fallback_only  # type: ignore[assignment]


demangle = functools.lru_cache(maxsize=CACHE_SIZE)(_demangle_uncached)
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
    return "go" if _looks_go(name) else "plain"


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


# --- package attribution helpers (used by issue #4) --------------------------------------------


def go_package_path(name: str) -> str:
    """The import path of the package a Go function belongs to; "" when it has none.

    ``github.com/containerd/containerd/v2/core/content.(*Store).Info`` ->
    ``github.com/containerd/containerd/v2/core/content``. The package ends at the first ``.``
    after the last ``/``: the linker escapes dots of the last path element as ``%2e``
    (``gopkg.in/yaml%2ev3.Unmarshal`` -> ``gopkg.in/yaml.v3``), and ``%xx`` escapes are decoded.
    Receivers ``(...)`` and type arguments ``[...]`` may be followed by other paths (a promoted
    unexported method is qualified with its own package: ``k8s.io/x/resource.(*T).gopkg.in/inf%2ev0.quo``),
    so only the text before the first ``(`` or ``[`` is searched. A ``vendor/`` prefix (Go's own
    vendored copies, or GOPATH-era ``.../vendor/...``) is removed: the result is the path of the
    code's real package. Linker-generated names (``type:.eq.*``, ``go:buildid``, ``go.shape.*``),
    cgo glue and C names give "".
    """
    name = strip_symbol_decorations(name)
    if not name or name.startswith(_GO_GENERATED_PREFIXES) or name[:2] in ("_Z", "_R"):
        return ""
    head = name
    for stop in ("(", "["):  # never part of an import path; what follows may contain paths
        cut = head.find(stop)
        if cut >= 0:
            head = head[:cut]
    slash = head.rfind("/")
    dot = head.find(".", slash + 1)
    if dot <= slash + 1:
        return ""
    path = head[:dot]
    if slash < 0 and _is_clone_suffix(head[dot:]):
        return ""  # a C clone such as "memcpy.part.0", not a Go package
    if "%" in path:
        path = _unescape_go_path(path)
    if path.startswith("vendor/"):
        path = path[len("vendor/") :]
    vendored = path.rfind("/vendor/")
    if vendored >= 0:
        path = path[vendored + len("/vendor/") :]
    return path


def _unescape_go_path(path: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(path):
        c = path[i]
        if c == "%" and i + 2 < len(path) + 0 and _is_hex2(path[i + 1 : i + 3]):
            out.append(chr(int(path[i + 1 : i + 3], 16)))
            i += 3
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _is_hex2(text: str) -> bool:
    return len(text) == 2 and not text.lower().strip(_HEX)


_SYSROOT_CRATES = frozenset(
    {"core", "alloc", "std", "proc_macro", "test", "panic_unwind", "panic_abort", "compiler_builtins"}
)


def rust_crate_name(demangled: str) -> str:
    """The crate a demangled Rust function belongs to; "" when the name does not say.

    * ``core::fmt::write`` -> ``core``; ``mycrate::a::{closure#0}`` -> ``mycrate``;
    * inherent impls ``<alloc::vec::Vec<T>>::push`` -> ``alloc``; ``<&mut mycrate::T>::f`` -> ``mycrate``;
    * trait impls ``<Self as Trait>::f`` (and ``<impl Trait for Self>``) -> the crate of ``Self``,
      unless ``Self`` has no path (a primitive, ``&T``, slice, tuple, generic parameter) or is a
      sysroot crate's type while the trait is not (Rust's orphan rule then puts the impl in the
      trait's crate): ``<u8 as serde::Serialize>::serialize`` -> ``serde``;
    * ``<[T]>::sort`` and other inherent impls of primitive types -> "".
    """
    text = demangled.strip()
    if text.startswith("_<"):
        text = text[1:]
    if not text:
        return ""
    if text[0] != "<":
        crate = _leading_crate(text)
        return crate
    inner = _first_angle_group(text)
    if inner is None:
        return ""
    if inner.startswith("impl "):
        body = inner[5:]
        self_ty, trait = _split_top(body, " for ")
        if trait is None:
            return _type_crate(body)
        trait, self_ty = self_ty, trait
    else:
        self_ty, trait = _split_top(inner, " as ")
    self_crate = _type_crate(self_ty)
    if trait is None:
        return self_crate
    trait_crate = _type_crate(trait)
    if not self_crate:
        return trait_crate
    if self_crate in _SYSROOT_CRATES and trait_crate and trait_crate not in _SYSROOT_CRATES:
        return trait_crate
    return self_crate


def _leading_crate(path: str) -> str:
    end = path.find("::")
    crate = path if end < 0 else path[:end]
    # a path segment, not a primitive/generic parameter or punctuation
    if not crate or not (crate[0].isalpha() or crate[0] == "_") or not _is_ident(crate):
        return ""
    if end < 0:  # a bare name ("u8", "T") is a type without a crate
        return ""
    return crate


def _is_ident(text: str) -> bool:
    return text.replace("_", "a").isalnum()


def _type_crate(ty: str) -> str:
    ty = ty.strip()
    while True:
        for prefix in ("&mut ", "&", "*const ", "*mut ", "dyn ", "mut "):
            if ty.startswith(prefix):
                ty = ty[len(prefix) :].lstrip()
                break
        else:
            break
    if not ty or ty[0] in "[(":
        return ""
    if ty[0] == "<":  # a qualified path as the type: <<A as T>::f as U>::g
        return rust_crate_name(ty)
    return _leading_crate(ty)


def _first_angle_group(text: str) -> str | None:
    depth = 0
    for i, c in enumerate(text):
        if c == "<":
            depth += 1
        elif c == ">":
            if i > 0 and text[i - 1] == "-":  # "->" in fn types
                continue
            depth -= 1
            if depth == 0:
                return text[1:i]
    return None


def _split_top(text: str, sep: str) -> tuple[str, str | None]:
    """Split at the first ``sep`` outside <>, [] and () brackets."""
    depth = 0
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c in "<[(":
            depth += 1
        elif c in ">])":
            if not (c == ">" and i > 0 and text[i - 1] == "-"):
                depth -= 1
        elif depth == 0 and text.startswith(sep, i):
            return text[:i], text[i + len(sep) :]
        i += 1
    return text, None
