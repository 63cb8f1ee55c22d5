"""Spellings of one function's name that a question by name must meet: its compiler clones and
its parameter list spaced otherwise (store/function_refs.py ``FunctionQuery.matches_name``, and the SQL
that narrows rows to them, store/queries.py). Split from store/refs.py (now store/function_refs.py). Pure.
"""

from __future__ import annotations

import re

# A clone's suffix holds only these words and numbers: GCC's (gonames._CLONE_WORDS; ``_omp_fn``, the
# outlined body of an OpenMP parallel region, ``par._omp_fn.0``) and LLVM's (``f.specialized.1``,
# ``f.argelim``). Numbers alone are a function named so in the source, renamed where two share the
# name: LLVM's module linking (full LTO) names a second static ``hash`` ``hash.1`` as GCC's LTO names
# it ``hash.lto_priv.1``, GCC numbers nested functions ``inner.0`` (test_clone_names_compiled.py).
# clang's ``-funique-internal-linkage-names`` renames a static ``f(int) (.__uniq.<digits>)``, and a
# C++20 coroutine's body runs in its LLVM parts ``work(int) (.resume)``, ``.destroy``, ``.cleanup``.
_CLONE_NAMED = frozenset(
    {"cold", "part", "isra", "constprop", "lto_priv", "localalias", "clone", "hot", "warm", "specialized"}
) | {"argelim", "_omp_fn", "__uniq", "resume", "destroy", "cleanup"}
# ``target_clones`` bodies, one per target, no body named as the function (an ifunc picks one): GCC
# writes ``tc.avx2``, ``tc.arch_haswell``, ``tc.sse4_2``, ``tc.aes``, ``tc.default``; clang
# ``tc.avx2.0``, ``tc.sse4.2.2``, ``tc.arch_x86-64-v2.4``, ``tc.amx-tile.3``, ``tc.default.3``.
# ``default`` is a keyword of C and Go, never a name of their own; the x86 targets are their ISA
# extensions' names (GCC's and clang's ``target`` attribute lists; the AVX, AMX and SSE families by
# their start). Not ``tc.resolver`` nor ``tc.ifunc``, which run no code of ``tc``.
_TARGET = re.compile(r"default|arch_[a-z0-9_-]+|(?:avx|amx|sse)[a-z0-9_-]*|ssse3")
_ISA = frozenset(
    {
        "3dnow", "3dnowa", "abm", "adx", "aes", "bmi", "bmi2", "cldemote", "clflushopt", "clwb",
        "clzero", "cmpccxadd", "crc32", "cx16", "enqcmd", "f16c", "fma", "fma4", "fsgsbase", "fxsr",
        "gfni", "hle", "hreset", "kl", "lwp", "lzcnt", "mmx", "movbe", "movdir64b", "movdiri", "mwait",
        "mwaitx", "pclmul", "pconfig", "pku", "popcnt", "prefetchi", "prefetchwt1", "prfchw",
        "ptwrite", "raoint", "rdpid", "rdrnd", "rdseed", "rtm", "sahf", "serialize", "sgx", "sha",
        "sha512", "shstk", "sm3", "sm4", "tbm", "tsxldtrk", "uintr", "usermsr", "vaes", "vpclmulqdq",
        "waitpkg", "wbnoinvd", "widekl", "xop", "xsave", "xsavec", "xsaveopt", "xsaves",
    }
)  # fmt: skip


def clone_of(stored: str, name: str) -> bool:
    """Whether ``stored`` is a GCC clone of ``name``: ``name`` then a clone suffix, in C's spelling
    (``deflate_stored.isra.0``, ``f.part.0``, ``f.cold``) or C++'s (``f(int) (.isra.0.cold)``,
    docs/function-ids.md), or a numbered copy (``hash.1``). Such code is the function's: a
    specialised copy called instead of it, its outlined tail, its cold path, a function of that
    name renamed beside another."""
    if not stored.startswith(name):
        return False
    rest = stored[len(name) :]
    if rest.startswith(" (.") and rest.endswith(")"):
        rest = rest[2:-1]
    elif not rest.startswith("."):
        return False
    words = rest[1:].split(".")
    _, dot, last = name.rpartition(".")
    if dot and _number(words[0]) and _clone_word(last):
        return False  # ``f.part`` and ``f.part.0``: the number is the clone's, no function is ``f.part``
    return all(_clone_word(w) or _number(w) for w in words)


# Clone words of code that is not entered as a call of the function: its cold or hot part and the
# tail partial inlining splits off (``f`` itself jumps to ``f.part.0`` while other callers run f's
# inlined head and call it), an OpenMP body libgomp enters once per thread, a coroutine's resumption.
_NOT_ENTRY = frozenset({"cold", "hot", "warm", "part", "_omp_fn", "resume", "destroy", "cleanup"})


def entry_clone_of(stored: str, name: str) -> bool:
    """Whether ``stored`` is a clone of ``name`` (:func:`clone_of`) entered once per call of it: a
    whole copy called instead of it (``crc32.isra.0``, ``crc32.constprop.0``, ``hash.lto_priv.0``),
    never its cold part or the tail ``f`` calls (``.cold``, ``.part.N``): a probe on those would
    count no call, or one ``f``'s probe already counted."""
    return clone_of(stored, name) and _NOT_ENTRY.isdisjoint(stored[len(name) :].strip(" ()").split("."))


def _clone_word(word: str) -> bool:
    return word in _CLONE_NAMED or word in _ISA or _TARGET.fullmatch(word) is not None


def _number(word: str) -> bool:
    return word.isascii() and word.isdigit()


def spaceless(name: str) -> str:
    """A function name without its spaces: one spelling of a C++ name however its parameter list
    was spaced (``f(std::istream &)``, ``f( std::istream& )``, the demangler's ``f(std::istream&)``)."""
    return name.replace(" ", "")


_C_NAME = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*\(")


def c_function_of(name: str) -> str | None:
    """The C function a name with a parameter list may be: ``crc32`` for ``crc32()``, ``crc32(void)``
    or a prototype's ``crc32(uLong crc, const Bytef *buf, uInt len)`` (how advisories write C
    functions), also with a function pointer's nested list (``qsort(..., int (*compar)(const void *,
    const void *))``). A C symbol is stored without a list (only a demangled C++ name carries one), so
    such a question matched nothing. None for a qualified name (``ns::f()``, ``m.f()``), no list, or
    anything after the list's closing parenthesis."""
    m = _C_NAME.match(name)
    rest = name[m.end() :].rstrip() if m else ""
    depth = 1
    for i, ch in enumerate(rest):
        depth += (ch == "(") - (ch == ")")
        if depth == 0:
            return m.group(1) if m and i == len(rest) - 1 else None
    return None
