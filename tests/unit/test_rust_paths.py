"""RustSec's generic-free paths against the names rustc-demangle prints for a real build."""

from __future__ import annotations

import pytest

from stellaops_runtime.store.rust_paths import generic_free_paths, matches, names_type, query_path
from tests.native.rust_names import crate_names

# query -> (legacy names it must match, v0 names it must match); "*" stands for v0 turbofish
# arguments (they spell std's types, which move between rustc releases).
EXPECTED: dict[str, tuple[set[str], set[str]]] = {
    "smallvec::SmallVec::insert_many": (
        {"smallvec::SmallVec<A>::insert_many", "smallvec::SmallVec<A>::insert_many::{{closure}}"},
        {
            "<smallvec::SmallVec<u8>>::insert_many::<*>>",
            "<smallvec::SmallVec<u8>>::insert_many::<*>>::{closure#0}",
        },
    ),
    "smallvec::SmallVec::insert": ({"smallvec::SmallVec<A>::insert"}, {"<smallvec::SmallVec<u8>>::insert"}),
    "smallvec::Other::insert_many": ({"smallvec::Other::insert_many"}, {"<smallvec::Other>::insert_many"}),
    "smallvec::SmallVec::drop": (
        {"<smallvec::SmallVec<A> as core::ops::drop::Drop>::drop"},
        {"<smallvec::SmallVec<u8> as core::ops::drop::Drop>::drop"},
    ),
    # a provided trait method: legacy prints the trait's path, v0 the implementing type's
    "smallvec::Shape::describe": (
        {"smallvec::Shape::describe"},
        {"<smallvec::SmallVec<u8> as smallvec::Shape>::describe"},
    ),
    "smallvec::SmallVec::insert_man": (set(), set()),
    "smallvec::SmallVec::Insert_many": (set(), set()),
    "smallvec::Other": ({"smallvec::Other::insert_many"}, {"<smallvec::Other>::insert_many"}),  # a type
}


def _fits(pattern: str, name: str) -> bool:
    head, star, tail = pattern.partition("*")
    if not star:
        return name == pattern
    closure = name.endswith("::{closure#0}")  # the instance or its closure, not both
    return name.startswith(head) and name.endswith(tail) and closure == tail.endswith("{closure#0}")


@pytest.mark.parametrize("mangling", ["legacy", "v0"])
@pytest.mark.parametrize("query", sorted(EXPECTED))
def test_a_generic_free_path_names_what_rustc_demangle_prints(mangling: str, query: str) -> None:
    names = crate_names(mangling)
    assert query_path(query) == query
    found = {n for n in names if matches((query,), n)}
    want = EXPECTED[query][mangling == "v0"]
    for pattern in want:
        assert sum(_fits(pattern, n) for n in found) == 1, (pattern, sorted(found))
    assert len(found) == len(want), sorted(found)


@pytest.mark.parametrize(
    ("stored", "paths"),
    [
        ("iri_string::path::PathSegment::segment.5586", {"iri_string::path::PathSegment::segment"}),
        ("<rustc_hir::FnCtxt>::normalize::<rustc_middle::Ty>.warm", {"rustc_hir::FnCtxt::normalize"}),
        ("core::ops::function::FnOnce::call_once{{vtable.shim}}", {"core::ops::function::FnOnce::call_once"}),
        ("a::f::<fn(u8) -> u8>", {"a::f"}),  # the arrow's > closes nothing
        ("a::f::{async_fn_env#0}", {"a::f"}),  # an async fn's body
        ("<dyn core::any::Any as core::fmt::Debug>::fmt", {"core::any::Any::fmt", "core::fmt::Debug::fmt"}),
        ("<dyn a::Lower>::lower::{closure#0}.cold", {"a::Lower::lower"}),  # impl dyn Lower
        ("<dyn a::B + core::marker::Send as a::T>::m", {"a::T::m"}),
        ("<a::f::Local>::m", {"a::f::Local::m"}),
        ("<<a::D<_>>::f::Queue>::push", set()),  # a type declared in a function: no path names it
        ("<&a::B as core::fmt::Debug>::fmt", {"core::fmt::Debug::fmt"}),
        ("core::slice::<impl [T]>::len", set()),  # not mod::len, which would be another function
        ("<[T]>::len", set()),
        ("a::f::{{closure}}::g", set()),  # a closure inside, not at the end
        ("a::B<T", set()),  # brackets that do not balance
        ("main", set()),
        ("foo::bar(int)", set()),  # C++
        ("stella::run(int) (.cold)", set()),
        ("golang.org/x/net/html.(*Tokenizer).Next", set()),  # Go
    ],
)  # fmt: skip
def test_generic_free_paths_of_names_the_agent_stores(stored: str, paths: set[str]) -> None:
    assert generic_free_paths(stored) == paths


def test_only_a_path_of_identifiers_is_asked_as_a_rust_path() -> None:
    assert query_path("smallvec::SmallVec::insert_many") == "smallvec::SmallVec::insert_many"
    assert query_path("r#try::r#match") == "try::match"  # rustc stores raw identifiers without r#
    for text in ("insert_many", "a::b<T>", "a::b()", "<a::B as c::D>::e", "a::b::", "a b::c", "a::b.cold"):
        assert query_path(text) is None, text


def test_a_path_ending_in_upper_camel_case_names_a_type() -> None:
    assert names_type("smallvec::SmallVec")
    assert not names_type("smallvec::SmallVec::insert_many")
    assert matches(("a::B",), "<a::B<u8>>::f") and not matches(("a::B",), "<a::BC<u8>>::f")
    assert not matches(("a::b",), "a::b::inner")  # a function's path never names its nested items
