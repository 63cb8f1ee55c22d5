"""The crate a demangled Rust function belongs to, for package attribution (issue #4).

Why it exists: attribution maps a Rust frame to the crate (and so the
package) that holds its code, which for trait impls is not simply the first
path element. Split from canonical/demangle.py; pure string functions over
demangled names.
"""

from __future__ import annotations

__all__ = ["rust_crate_name"]

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
