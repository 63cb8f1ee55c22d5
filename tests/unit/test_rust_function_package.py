"""Which .dep-v0 package a demangled Rust function is filed under (function_packages.py).

The promises of docs/attribution.md "Functions of Go and Rust binaries" in pure
logic: a crate name no runtime package has (a renamed ``[[bin]]`` such as
ripgrep's ``rg``, a build-only crate) is unknown with its reason, never the root
crate; the toolchain's crates (std and std's own dependencies) keep the file's
answer; a crate of such a name that the application lists is unknown too: rustc
compiles std's private copy (hashbrown, memchr, libc, ...) under the same crate
name, and a demangled name does not carry the crate's disambiguator that tells
the copies apart (tests/integration/test_attribution_rust_std_private.py).
"""

from __future__ import annotations

from stellaops_runtime.attribution import purls
from stellaops_runtime.attribution.cargo_auditable import Crate
from stellaops_runtime.attribution.function_packages import rust_function_package

CRATES = (
    Crate("ripgrep", "14.1.0", "crates.io", "runtime", True),
    Crate("grep-searcher", "0.1.13", "crates.io", "runtime", False),
    Crate("libc", "0.2.155", "crates.io", "runtime", False),
    Crate("cc", "1.0.98", "crates.io", "build", False),
)


def _purl(function: str) -> str | None:
    pkg, why = rust_function_package(CRATES, function)
    assert why is None, function
    return pkg.purl if pkg is not None else None


def test_a_listed_crate_is_its_package() -> None:
    assert _purl("grep_searcher::searcher::Searcher::search_path") == "pkg:cargo/grep-searcher@0.1.13"
    assert _purl("<grep_searcher::sink::SinkMatch as core::fmt::Debug>::fmt") == (
        "pkg:cargo/grep-searcher@0.1.13"
    )


def test_the_toolchain_s_crates_keep_the_file_s_answer() -> None:
    for function in (
        "std::io::stdio::_print",
        "core::fmt::write",
        "hashbrown::raw::RawTable::reserve_rehash",
        "gimli::read::unit::Unit::new",
        "addr2line::Context::find_frames",
        "malloc",
    ):
        assert rust_function_package(CRATES, function) == (None, None), function


def test_a_renamed_bin_or_a_build_crate_is_unknown_never_the_root() -> None:
    for function, crate in (
        ("rg::main", "rg"),
        ("rg::flags::parse::parse", "rg"),
        ("cc::Build::compile", "cc"),
    ):
        pkg, why = rust_function_package(CRATES, function)
        assert pkg is None, function
        assert why is not None and why.startswith(f"crate {crate} is no runtime package"), function


def test_two_versions_of_one_crate_name_both() -> None:
    two = (*CRATES, Crate("grep-searcher", "0.1.11", "crates.io", "runtime", False))
    pkg, why = rust_function_package(two, "grep_searcher::Searcher::new")
    assert pkg is None
    assert why == "crate grep_searcher is 2 packages of .dep-v0: grep-searcher@0.1.11, grep-searcher@0.1.13"


def test_a_listed_crate_std_also_has_a_private_copy_of_is_unknown() -> None:
    """std's own hashbrown/libc/memchr run as ``hashbrown::...`` too: not the application's package."""
    listed = (*CRATES, Crate("hashbrown", "0.15.0", "crates.io", "runtime", False))
    for function, crate in (
        ("libc::unix::linux_like::linux::gnu::f", "libc"),
        ("hashbrown::raw::RawTable::reserve_rehash", "hashbrown"),
        ("<hashbrown::raw::RawTable<T,A> as core::ops::drop::Drop>::drop", "hashbrown"),
    ):
        pkg, why = rust_function_package(listed, function)
        assert pkg is None, function
        assert why is not None and why.startswith(f"crate {crate} is both std's private copy and "), why
    # an unlisted one still keeps the file's answer
    assert rust_function_package(CRATES, "memchr::memchr::fallback::memchr") == (None, None)


def test_a_crate_only_libtest_links_is_the_listed_one_in_a_binary_without_libtest() -> None:
    """getopts and unicode-width are in the sysroot for libtest only: with no libtest symbol in the
    binary (``libtest=False``) they are the listed package's; a test binary or not known: unknown."""
    listed = (
        *CRATES,
        Crate("getopts", "0.2.21", "crates.io", "runtime", False),
        Crate("unicode-width", "0.1.14", "crates.io", "runtime", False),
        Crate("hashbrown", "0.15.0", "crates.io", "runtime", False),
    )
    for function, purl in (
        ("getopts::Options::parse", "pkg:cargo/getopts@0.2.21"),
        ("<char as unicode_width::UnicodeWidthChar>::width", "pkg:cargo/unicode-width@0.1.14"),
    ):
        pkg, why = rust_function_package(listed, function, libtest=False)
        assert why is None and pkg is not None and pkg.purl == purl, (function, pkg, why)
        for libtest in (True, None):
            pkg, why = rust_function_package(listed, function, libtest=libtest)
            assert pkg is None and why is not None and "std's private copy" in why, (function, libtest)
    pkg, why = rust_function_package(listed, "hashbrown::raw::RawTable::reserve_rehash", libtest=False)
    assert pkg is None and why is not None  # std's own: libtest says nothing of it


def test_a_lib_name_two_listed_packages_share_is_unknown() -> None:
    """md-5's library is ``md5`` (its [lib] name), the md5 package's too: ``md5::...`` is either."""
    both = (
        *CRATES,
        Crate("md-5", "0.10.6", "crates.io", "runtime", False),
        Crate("md5", "0.7.0", "", "runtime", False),
    )
    for function in ("md5::compute", "<md5::Md5Core as digest::core_api::UpdateCore>::update_blocks"):
        pkg, why = rust_function_package(both, function)
        assert pkg is None, function
        assert why == "crate md5 is 2 packages of .dep-v0: md-5@0.10.6, md5@0.7.0", why
    # only one of them listed: the library's own package, found by its known [lib] name
    only = (*CRATES, Crate("md-5", "0.10.6", "crates.io", "runtime", False))
    assert rust_function_package(only, "md5::compress::soft::compress")[0] == purls.cargo(
        name="md-5", version="0.10.6"
    )
    sha = (*CRATES, Crate("sha-1", "0.9.8", "crates.io", "runtime", False))
    assert rust_function_package(sha, "sha1::compress")[0] == purls.cargo(name="sha-1", version="0.9.8")


def test_one_crate_name_and_version_from_two_sources_is_unknown() -> None:
    """hashbrown-like forks: a git copy and the crates.io release of one version are two crates."""
    two = (
        *CRATES,
        Crate("serde-json", "1.0.108", "crates.io", "runtime", False),
        Crate("serde-json", "1.0.108", "git", "runtime", False),
    )
    pkg, why = rust_function_package(two, "serde_json::de::from_str")
    assert pkg is None
    assert why == (
        "crate serde_json is 2 packages of .dep-v0: serde-json@1.0.108 (crates.io), serde-json@1.0.108 (git)"
    )


def test_more_known_library_renames() -> None:
    """rust-argon2's library is ``argon2`` like RustCrypto's argon2; xml-rs's ``xml``; rust-ini's ``ini``."""
    both = (
        *CRATES,
        Crate("rust-argon2", "2.1.0", "crates.io", "runtime", False),
        Crate("argon2", "0.5.3", "crates.io", "runtime", False),
    )
    pkg, why = rust_function_package(both, "argon2::hash_encoded")
    assert pkg is None and why == "crate argon2 is 2 packages of .dep-v0: argon2@0.5.3, rust-argon2@2.1.0"
    for package, function in (
        ("xml-rs", "<xml::reader::EventReader<R>>::next"),
        ("rust-ini", "ini::Ini::load_from_str"),
    ):
        listed = (*CRATES, Crate(package, "1.0.0", "crates.io", "runtime", False))
        assert rust_function_package(listed, function) == (purls.cargo(name=package, version="1.0.0"), None)
