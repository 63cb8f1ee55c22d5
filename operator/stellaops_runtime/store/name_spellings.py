"""Spellings of one function's name that a question by name must meet: its compiler clones and
its parameter list spaced otherwise (store/refs.py ``FunctionQuery.matches_name``, and the SQL
that narrows rows to them, store/queries.py). Split from store/refs.py. Pure.
"""

from __future__ import annotations

# A clone's suffix holds only these words and numbers, one word at least: a numbered local copy alone
# (``hash.1``) may be another static function of that name in another file, so it is not one.
# GCC's (gonames._CLONE_WORDS) and LLVM's (``f.specialized.1``, ``f.argelim``).
_CLONE_NAMED = frozenset(
    {"cold", "part", "isra", "constprop", "lto_priv", "localalias", "clone", "hot", "warm", "specialized"}
) | {"argelim"}


def clone_of(stored: str, name: str) -> bool:
    """Whether ``stored`` is a GCC clone of ``name``: ``name`` then a clone suffix, in C's spelling
    (``deflate_stored.isra.0``, ``f.part.0``, ``f.cold``) or C++'s (``f(int) (.isra.0.cold)``,
    docs/function-ids.md). Such code is the function's: a specialised copy called instead of it,
    its outlined tail, its cold path."""
    if not stored.startswith(name):
        return False
    rest = stored[len(name) :]
    if rest.startswith(" (.") and rest.endswith(")"):
        rest = rest[2:-1]
    elif not rest.startswith("."):
        return False
    words = rest[1:].split(".")
    return all(w in _CLONE_NAMED or w.isdigit() for w in words) and any(w in _CLONE_NAMED for w in words)


def spaceless(name: str) -> str:
    """A function name without its spaces: one spelling of a C++ name however its parameter list
    was spaced (``f(std::istream &)``, ``f( std::istream& )``, the demangler's ``f(std::istream&)``)."""
    return name.replace(" ", "")
