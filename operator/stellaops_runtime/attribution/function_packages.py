"""The package of one function of a statically linked Go or Rust binary, from the binary's own metadata.

A Go binary's build info names its modules: a function belongs to the
module whose path is the longest prefix of the function's package, and a
package without a dot in its first element is the standard library
(``pkg:golang/stdlib@<go version>``). A Rust binary built with
cargo-auditable lists its crates: a function belongs to the one runtime
crate of its name. When the metadata cannot say, the function gets its
file's attribution (``scope="file"``); see
:mod:`~stellaops_runtime.attribution.attributor`.

A Rust function whose crate is listed twice (two versions), or is in no
listed package and is not the toolchain's, or is both listed and one std carries a
private copy of (hashbrown, memchr, libc, ...; not getopts/unicode-width, libtest's only, in a
binary whose symbol table names no libtest code), is unknown (``purl`` ``None``,
``scope="function"``), never its file's root crate: ``.dep-v0`` names
packages (``foo-sys``) and symbols name libraries (``foo_ffi`` for ``[lib]
name = "foo_ffi"``), so such a function may be a dependency's, and filing it
under the root crate would answer "not observed" for the package whose code ran.
"""

from __future__ import annotations

import logging

from stellaops_runtime.attribution import binaries, purls
from stellaops_runtime.attribution.binaries import BinaryInfo
from stellaops_runtime.attribution.counters import AttributionCounters
from stellaops_runtime.attribution.gobuildinfo import DEVEL, GoBuildInfo, GoModule
from stellaops_runtime.attribution.model import CORRUPT_KIND, Attribution, Package, Scope, Source
from stellaops_runtime.canonical.demangle import go_package_path, rust_crate_name

log = logging.getLogger("stellaops_runtime.attribution.attributor")


def function_package(
    path: str, file_att: Attribution, info: BinaryInfo, function: str, counters: AttributionCounters
) -> Attribution:
    """The package of ``function`` (``scope="function"``) as the binary's metadata says, else ``file_att``."""
    pkg: Package | None = None
    source = Source.NONE
    try:
        unknown: str | None = None
        if info.go is not None:
            source, evidence = Source.GOMOD, "buildinfo"
            pkg, unknown = go_function_package(info.go, function)
        elif info.crates:
            source, evidence = Source.CARGO, "dep-v0"
            pkg, unknown = rust_function_package(info.crates, function, libtest=info.libtest)
        if unknown is not None:
            counters.ambiguous += 1
            return Attribution(
                path,
                None,
                Source.NONE.value,
                scope=Scope.FUNCTION.value,
                resolved=file_att.resolved,
                error=f"{source.value}: {unknown}",
            )
    except ValueError as e:  # a module or crate name no PURL can carry: the binary's metadata is damaged
        counters.error(CORRUPT_KIND[source])
        log.warning("%s: %s: %s", source.value, path, e)
        return file_att
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


def go_module_package(module: GoModule) -> Package:
    """PURL of a module as compiled: a versioned replacement's, else the module's own.

    ``(devel)`` (an unversioned main module) and a local-directory
    replacement have no version: the PURL then has none rather than a made-up one.
    """
    rep = module.replaced_by
    if rep is not None and not module.is_local_replacement:
        return purls.golang(module=rep.path, version=rep.version)
    version = None if module.is_local_replacement or module.version in ("", DEVEL) else module.version
    return purls.golang(module=module.path, version=version)


def go_function_package(info: GoBuildInfo, function: str) -> tuple[Package | None, str | None]:
    """(the module a Go function comes from, why it is unknown); ``pkg:golang/stdlib@<v>`` for
    the standard library.

    ``(None, None)`` when the build info cannot say (a GOPATH-mode binary's own
    packages, linker-generated symbols): the caller falls back to the file. A
    module-mode build lists every module compiled in, the main one included, so
    a dotted package path in none of them is unknown, never the main module's.
    """
    if function.startswith("vendor/"):  # GOROOT/src/vendor: the standard library's own copies
        return purls.golang_stdlib(go_version=info.go_version), None
    package = go_package_path(function)
    if not package:
        return None, None
    if package == "main":
        return (go_module_package(info.main) if info.main is not None else None), None
    module = info.module_for(package)
    if module is not None:
        return go_module_package(module), None
    if "." not in package.split("/", 1)[0]:
        return purls.golang_stdlib(go_version=info.go_version), None
    if info.main is not None:
        return None, f"package {package} is in no module of the build info"
    return None, None


# The toolchain's crates (the sysroot and std's own dependencies, as rustc 1.95's rustlib
# holds them): never in ``.dep-v0``; their functions keep the file's attribution. std's
# dependencies are crates.io crates compiled into std under their own names, so a listed crate of
# one of these names is unknown: a demangled name drops the crate disambiguator (v0's
# ``Cs<hash>_9hashbrown``) that is all that tells std's private copy from the application's.
RUST_TOOLCHAIN_CRATES = frozenset(
    {
        "std", "core", "alloc", "proc_macro", "test", "panic_unwind", "panic_abort", "unwind",
        "compiler_builtins", "std_detect", "rustc_std_workspace_core", "rustc_std_workspace_alloc",
        "rustc_std_workspace_std", "profiler_builtins", "hashbrown", "addr2line", "gimli", "object",
        "miniz_oxide", "adler", "adler2", "memchr", "cfg_if", "libc", "rustc_demangle", "getopts",
        "unicode_width", "dlmalloc", "wasi", "hermit_abi", "r_efi", "r_efi_alloc", "fortanix_sgx_abi",
        "rustc_literal_escaper", "sysroot",
    }
)  # fmt: skip


# crates.io packages whose library (``[lib] name``, what symbols show) is not the package's name
# with ``-`` as ``_``, from their Cargo.toml: md-5's library is ``md5`` like the md5 package's,
# sha-1's is ``sha1`` like the sha1 package's (RustCrypto), rust-argon2's is ``argon2`` like
# RustCrypto's argon2, xml-rs's ``xml``, rust-ini's ``ini``. ``.dep-v0`` records no library
# names, so other renamed libraries stay unknown.
KNOWN_LIB_NAMES = {
    "md-5": "md5",
    "sha-1": "sha1",
    "rust-argon2": "argon2",
    "xml-rs": "xml",
    "rust-ini": "ini",
}


def lib_name(crate: binaries.Crate) -> str:
    """The crate name a package's functions are demangled under, as far as it is known."""
    return KNOWN_LIB_NAMES.get(crate.name, crate.crate_name)


def rust_function_package(
    crates: tuple[binaries.Crate, ...], function: str, *, libtest: bool | None = None
) -> tuple[Package | None, str | None]:
    """(the crate a demangled Rust function comes from, why it is unknown): only runtime crates count.

    Two versions (or sources) of one crate, or two packages of one library name
    (md-5 and md5), linked into one binary cannot be told apart by name; a crate
    name no listed package has (a renamed ``[lib]`` or ``[[bin]]``) may be any
    package's; a listed crate std also has a private copy of may be std's: all
    are unknown, with the reason, unless the crate is one only libtest links
    (getopts, unicode-width) and ``libtest`` is False (the binary's symbol table
    names no libtest code). ``(None, None)``: the name says no crate, or
    the toolchain's (the file's answer stands).
    """
    crate = rust_crate_name(function)
    if not crate:
        return None, None
    matches = {(c.name, c.version, c.source) for c in crates if c.kind != "build" and lib_name(c) == crate}
    if len(matches) > 1:
        sources = len({(n, v) for n, v, _ in matches}) < len(matches)  # one name@version, two sources
        return None, f"crate {crate} is {len(matches)} packages of .dep-v0: " + ", ".join(
            f"{n}@{v} ({s})" if sources else f"{n}@{v}" for n, v, s in sorted(matches)
        )
    if not matches:
        if crate in RUST_TOOLCHAIN_CRATES:
            return None, None
        return (
            None,
            f"crate {crate} is no runtime package of .dep-v0 (a [lib] or [[bin]] renamed from its package)",
        )
    name, version, _ = next(iter(matches))
    if crate in RUST_TOOLCHAIN_CRATES and not (name in binaries.LIBTEST_PACKAGES and libtest is False):
        return None, (
            f"crate {crate} is both std's private copy and {name}@{version} of .dep-v0 "
            "(a demangled name does not say which)"
        )
    return purls.cargo(name=name, version=version), None
