"""What users type for images, packages, functions and times, read the way the store holds them."""

from __future__ import annotations

import datetime as dt

import pytest

from stellaops_runtime.adapter.common import image_digest
from stellaops_runtime.canonical.demangle import demangle
from stellaops_runtime.contracts.events import ContainerInfo, EventKind, ProcessInfo, RuntimeCallEvent
from stellaops_runtime.store.function_refs import function_query
from stellaops_runtime.store.refs import PurlQuery, RefError, image_key, parse_rfc3339

HEX = "0123456789abcdef" * 4
DIGEST = "sha256:" + HEX
ZLIB = "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64&distro=debian-12"


@pytest.mark.parametrize(
    "ref",
    [
        DIGEST,
        HEX,
        HEX.upper(),
        "SHA256:" + HEX.upper(),
        "docker.io/library/nginx@" + DIGEST,
        "registry.example.com:5000/team/app@" + DIGEST,
        "nginx:1.25@" + DIGEST,
        "registry.example.com:5000/team/app:v1@sha256:" + HEX.upper(),
        f"  {DIGEST}\n",
    ],
)
def test_every_spelling_of_an_image_is_the_stored_digest(ref: str) -> None:
    assert image_key(ref) == DIGEST


def test_the_key_is_what_the_agent_stores_for_the_same_image() -> None:
    # The adapter turns Tetragon's image id into the digest; RuntimeCallEvent.image_key files by it.
    tetragon_id = "docker.io/library/nginx@" + DIGEST
    event = RuntimeCallEvent(
        kind=EventKind.EXEC,
        timestamp_ns=1,
        node_name="n",
        process=ProcessInfo(),
        container=ContainerInfo(image_id=tetragon_id, image_digest=image_digest(tetragon_id)),
    )
    assert event.image_key == image_key(tetragon_id) == image_key(HEX)


def test_agent_keys_without_a_digest_are_kept() -> None:
    assert image_key("host:node-1") == "host:node-1"
    assert image_key("container:abc123") == "container:abc123"


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("", "empty image reference"),
        ("   ", "empty image reference"),
        ("sha256:", "digest is empty"),
        ("sha256:abc", "needs 64 hex digits, got 3"),
        ("sha256:" + HEX + "0", "needs 64 hex digits, got 65"),
        ("sha256:" + "g" * 64, "must be hexadecimal"),
        ("abc", "a bare digest needs 64 hex digits"),
        (HEX[:-1], "a bare digest needs 64 hex digits"),
        ("nginx", "has no digest"),
        ("nginx:1.25", "has no digest"),
        ("docker.io/library/nginx:latest", "has no digest"),
        ("nginx@", "expected sha256:<64 hex digits>"),
        ("nginx@sha256:zz", "must be hexadecimal"),
        ("md5:" + "a" * 32, "unknown algorithm 'md5'"),
        ("sha256:" + HEX[:32] + " " + HEX[33:], "whitespace"),
    ],
)
def test_malformed_images_say_why(ref: str, message: str) -> None:
    with pytest.raises(RefError, match=message):
        image_key(ref)


# -- package URLs -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "stored", "match"),
    [
        ("pkg:deb/debian/zlib1g", ZLIB, True),
        ("pkg:deb/debian/zlib1g", "pkg:deb/debian/zlib1g-dev@1:1.2.13.dfsg-1?arch=amd64", False),
        ("pkg:deb/debian/zlib", ZLIB, False),
        ("pkg:deb/ubuntu/zlib1g", ZLIB, False),
        ("pkg:rpm/debian/zlib1g", ZLIB, False),
        ("pkg:DEB/Debian/ZLIB1G", ZLIB, True),  # type, and deb's namespace and name, ignore case
        ("pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1", ZLIB, True),  # a version, whatever the qualifiers
        ("pkg:deb/debian/zlib1g@1%3A1.2.13.dfsg-1", ZLIB, True),  # percent-encoded, the same version
        ("pkg:deb/debian/zlib1g@1.2.13", ZLIB, False),
        ("pkg:deb/debian/zlib1g?arch=amd64", ZLIB, True),
        ("pkg:deb/debian/zlib1g?arch=arm64", ZLIB, False),
        ("pkg:deb/debian/zlib1g?arch=amd64&distro=debian-12", ZLIB, True),
        ("pkg:deb/debian/zlib1g?distro=debian-11", ZLIB, False),
        ("pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64", ZLIB, True),
        ("pkg:deb/debian/zlib1g?foo=bar", ZLIB, False),
        ("pkg:pypi/Foo_Bar", "pkg:pypi/foo-bar@1.0", True),  # pypi names normalise
        ("pkg:pypi/zope-interface", "pkg:pypi/zope.interface@6.0", True),  # as PEP 503 compares them
        ("pkg:pypi/Zope.Interface", "pkg:pypi/zope-interface@6.0", True),
        ("pkg:pypi/zope--interface", "pkg:pypi/zope._interface@6.0", True),
        ("pkg:pypi/zopeinterface", "pkg:pypi/zope.interface@6.0", False),
        ("pkg:cargo/serde-json", "pkg:cargo/serde_json@1.0.108", True),  # one crate on crates.io
        ("pkg:cargo/serde.json", "pkg:cargo/serde_json@1.0.108", False),
        ("pkg:npm/left-pad", "pkg:npm/left_pad@1.0.0", False),  # other registries: as written
        ("pkg:deb/debian/zlib1g", "", False),
        ("pkg:deb/debian/zlib1g", "not a purl", False),
    ],
)
def test_purls_match_as_purls(query: str, stored: str, match: bool) -> None:
    assert PurlQuery.parse(query).matches(stored) is match


@pytest.mark.parametrize("bad", ["", "zlib1g", "pkg:", "pkg:deb", "http://example.com/x"])
def test_malformed_purls_are_errors(bad: str) -> None:
    with pytest.raises(RefError):
        PurlQuery.parse(bad)


# -- functions ----------------------------------------------------------------------

BID = "93ac61ec5a8eb1396f9fbd350e3169a558528a40"


def test_a_plain_or_canonical_name_is_itself() -> None:
    q = function_query("crc32")
    assert (q.names, q.is_function_id) == (("crc32",), False)
    cxx = "std::vector<int, std::allocator<int> >::push_back(int const&)"
    assert function_query(cxx).names == (cxx,)
    assert function_query("a::operator+(A const&)").names == ("a::operator+(A const&)",)


def test_a_name_without_a_parameter_list_also_names_its_overloads() -> None:
    assert function_query("foo::bar").overloads == ("foo::bar",)
    assert function_query("crc32").overloads == ("crc32",)
    assert function_query("foo::bar(int)").overloads == ()
    assert function_query("_ZN3foo3barEv").overloads == ("_ZN3foo3barEv",)  # demangles to foo::bar()
    assert function_query(f"{BID}:crc32+0x0").overloads == ()  # an ID is one function


def test_a_mangled_name_is_demangled_the_way_the_agent_does() -> None:
    q = function_query("_ZN3foo3barEv")
    assert q.names[0] == demangle("_ZN3foo3barEv") == "foo::bar()"
    assert q.names == ("foo::bar()", "_ZN3foo3barEv")
    assert function_query("memcpy@@GLIBC_2.14").names[0] == "memcpy"


def test_a_function_id_names_the_function_whatever_the_offset() -> None:
    entry = function_query(f"{BID}:crc32+0x0")
    inside = function_query(f"{BID}:crc32+0x1f")
    assert entry.is_function_id and inside.is_function_id
    assert entry.entry_id == inside.entry_id == f"{BID}:crc32+0x0"
    assert inside.build_id == BID and inside.names == ("crc32",)


def test_a_function_id_with_a_cxx_symbol() -> None:
    q = function_query(f"{BID}:a::operator+(A const&)+0x10")
    assert q.entry_id == f"{BID}:a::operator+(A const&)+0x0" and q.names == ("a::operator+(A const&)",)


def test_an_unresolved_function_id_names_the_file_offset_key() -> None:
    q = function_query(f"{BID}:+0x1a2b")
    assert (q.build_id, q.entry_id, q.names) == (BID, "", ("0x1a2b",))


@pytest.mark.parametrize(
    "typed",
    [
        f"{BID.upper()}:crc32+0x0",
        f"{BID}:crc32+0X0",
        f"{BID}:crc32+0x00",
        f"{BID.upper()}:crc32+0X1F",
        f"  {BID[:20].upper()}{BID[20:]}:crc32+0x1f\n",
    ],
)
def test_a_function_id_in_another_spelling_names_the_same_function(typed: str) -> None:
    # Read as a plain name, such text matched nothing: "not observed" for a function that ran.
    q = function_query(typed)
    assert (q.build_id, q.entry_id, q.names) == (BID, f"{BID}:crc32+0x0", ("crc32",))


def test_fallback_and_go_build_ids_in_another_spelling() -> None:
    fallback = "sha256-" + "ab" * 20
    q = function_query(f"SHA256-{'AB' * 20}:main+0X0")
    assert (q.build_id, q.entry_id) == (fallback, f"{fallback}:main+0x0")
    go = "Ab_9-x/Yz0/Qr/Tu"  # a Go build-id's letters are case-sensitive: kept as typed
    q = function_query(f"{go}:main.main+0X10")
    assert (q.build_id, q.entry_id) == (go, f"{go}:main.main+0x0")
    assert function_query(f"{go}:main.main+0x10").build_id == go


@pytest.mark.parametrize(
    "bad",
    [
        f"{BID}:crc32",
        f"{BID}:crc32+0x",
        f"{BID}:crc32+0xZZ",
        f"{BID}:crc32+16",
        f"{BID.upper()}:crc32+0x1g",
        f"sha256-{'ab' * 20}:main",
    ],
)
def test_a_hex_build_id_with_a_broken_offset_is_an_error_not_a_name(bad: str) -> None:
    with pytest.raises(RefError, match="malformed function ID"):
        function_query(bad)


def test_names_with_colons_stay_names() -> None:
    for name in ("std::string::find(char) const", "go:itab.*os.File,io.Writer", "abc::def+0x1A", "ab:cd"):
        q = function_query(name)
        assert not q.is_function_id and q.names[-1] == name


def test_empty_function_is_an_error() -> None:
    with pytest.raises(RefError):
        function_query("  ")


# -- time ---------------------------------------------------------------------------


def test_rfc3339() -> None:
    want = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    assert parse_rfc3339("2026-12-01T00:00:00Z") == want
    assert parse_rfc3339("2026-12-01T01:00:00+01:00") == want
    assert parse_rfc3339("2026-12-01T00:00:00.000z") == want
    with pytest.raises(RefError, match="no UTC offset"):
        parse_rfc3339("2026-12-01T00:00:00")
    with pytest.raises(RefError, match="not an RFC 3339"):
        parse_rfc3339("yesterday")


def test_a_generic_free_rust_path_is_also_asked_as_a_rust_path() -> None:
    assert function_query("smallvec::SmallVec::insert_many").rust_paths == (
        "smallvec::SmallVec::insert_many",
    )
    q = function_query("smallvec::SmallVec::insert_many")
    assert q.matches_name("<smallvec::SmallVec<u8>>::insert_many::<core::iter::Empty<u8>>")
    assert not q.matches_name("<smallvec::SmallVec<u8>>::insert")
    assert function_query("smallvec::SmallVec<A>::insert_many").rust_paths == ()  # as stored: exact
    assert function_query("foo::bar(int)").rust_paths == ()
    assert function_query("crc32").rust_paths == ()
    assert function_query(f"{BID}:crc32+0x0").rust_paths == ()  # an ID is one function


def test_a_c_prototype_with_a_function_pointer_parameter_names_the_bare_c_function() -> None:
    """``qsort(void *base, size_t n, size_t size, int (*compar)(const void *, const void *))``: a
    prototype whose parameter is a function pointer holds nested parentheses; it names ``qsort``
    stored bare as ``crc32()`` names ``crc32`` (store/function_refs.py c_names). Unbalanced or qualified
    lists name no C function."""
    proto = "qsort(void *base, size_t n, size_t size, int (*compar)(const void *, const void *))"
    assert function_query(proto).c_names == ("qsort",)
    assert function_query("signal(int sig, void (*func)(int))").c_names == ("signal",)
    for other in ("qsort(int (*f)(void)", "qsort)(", "ns::qsort(int (*f)(void))", "f(a) (b)"):
        assert function_query(other).c_names == (), other
