"""GNU's C++ demangling: libstdc++'s ``__cxa_demangle``, and GNU spelling mapped to the canonical one.

canonical.demangle uses LLVM's Itanium demangler (pycxxfilt) for speed, but the canonical text of
a C++ name is GNU ``c++filt -i``'s (docs/function-ids.md). LLVM prints a few constructs
differently from GNU; names with them are demangled by libstdc++'s own ``__cxa_demangle`` (the
libiberty code c++filt uses), reached here through ctypes, and its spelling is mapped with
:func:`canonicalize_gnu_cxx` as c++filt's is:

* inheriting constructors (``CI1``/``CI2``): LLVM names the derived class, GNU the base class
  whose constructor is inherited, as the source does;
* ``decltype`` expressions (``DT``/``Dt``): spacing and parentheses differ;
* local names (``Z<function>E<entity>``, lambdas of template functions): LLVM prints the enclosing
  template function's return type and resolves its template parameters against the wrong scope;
* TLS wrappers (``_ZTH``/``_ZTW``): ``TLS init function for`` / ``TLS wrapper function for``;
* a qualifier reference collapsing removes (LLVM: ``T const const&``).

The mapping and the library call are pure, in-process functions (the library is loaded once on
first use); this module imports nothing of the project, so canonical.demangle can import it.
"""

from __future__ import annotations

import ctypes
import logging
import re
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

__all__ = ["canonicalize_gnu_cxx", "gnu_cxa_demangle", "unparenthesize_callees"]


def canonicalize_gnu_cxx(text: str) -> str:
    """Map GNU's spelling of a demangled C++ name (``c++filt -i``, ``__cxa_demangle``) to the canonical one.

    The canonical spelling is LLVM's; the two differ only in:

    * a space between two angle brackets: ``A<B<int> >`` -> ``A<B<int>>``, ``operator<< <char>`` ->
      ``operator<<<char>``;
    * ``decltype(nullptr)`` -> ``std::nullptr_t``;
    * closures and unnamed types: ``{lambda(int)#1}`` -> ``'lambda'(int)``, ``#2`` -> ``'lambda0'``,
      ``#3`` -> ``'lambda1'``; ``{unnamed type#1}`` -> ``'unnamed'``, ``#2`` -> ``'unnamed0'``;
    * clone suffixes: ``f() [clone .isra.0] [clone .cold]`` -> ``f() (.isra.0.cold)``;
    * a called name in an expression (``decltype``) in parentheses, as binutils 2.40 prints it:
      ``(std::declval<T&>)()`` -> ``std::declval<T&>()`` (:func:`unparenthesize_callees`).

    GNU's *verbose* mode (plain ``c++filt`` without ``-i``) also expands ``std::string``,
    ``std::istream``, ``std::ostream`` and ``std::iostream`` to their ``basic_*<...>`` templates; that
    cannot be undone from the text, so compare with ``c++filt -i``.
    """
    if "> " in text or "< " in text:
        text = _ANGLE_SPACE.sub("", text)
    if "decltype(nullptr)" in text:
        text = text.replace("decltype(nullptr)", "std::nullptr_t")
    if "{lambda(" in text:
        text = _replace_numbered(text, "{lambda(", "'lambda", paren=True)
    if "{unnamed type#" in text:
        text = _replace_numbered(text, "{unnamed type", "'unnamed", paren=False)
    if ")(" in text:
        text = unparenthesize_callees(text)
    if " [clone " in text:
        head, _, rest = text.partition(" [clone ")
        suffix = "".join(part.split("]", 1)[0] for part in rest.split(" [clone "))
        text = f"{head} ({suffix})"
    return text


_ANGLE_SPACE = re.compile(r"(?<=[<>]) (?=[<>])")
_CALLEE = re.compile(r"[A-Za-z_~][A-Za-z0-9_:~]*")


def unparenthesize_callees(text: str) -> str:
    """``(name<args>)(call args)`` -> ``name<args>(call args)``: the callee of a call expression.

    binutils 2.40's demangler puts a called template-id in parentheses, libstdc++ 12's does not.
    Only a parenthesised qualified name with template arguments directly followed by ``(`` loses
    its parentheses; ``(anonymous namespace)``, ``(*)(int)`` and casts ``(int)(x)`` stay.
    """
    out: list[str] = []
    pos = 0
    i = text.find("(")
    while i >= 0:
        j = _name_end(text, i + 1)
        if j > i + 1 and text.startswith(")(", j):
            out.append(text[pos:i])
            out.append(text[i + 1 : j])
            pos = j + 1
            i = text.find("(", pos + 1)
        else:
            i = text.find("(", i + 1)
    out.append(text[pos:])
    return "".join(out)


def _name_end(text: str, start: int) -> int:
    """End of a qualified name with template arguments (balanced ``<...>``) starting at ``start``;
    -1 when there is none."""
    m = _CALLEE.match(text, start)
    if m is None:
        return -1
    j = m.end()
    while j < len(text) and text[j] == "<":
        depth = 0
        k = j
        while k < len(text):
            ch = text[k]
            if ch == "<":
                depth += 1
            elif ch == ">":
                depth -= 1
                if depth == 0:
                    break
            k += 1
        if depth:
            return -1
        j = k + 1
        m2 = _CALLEE.match(text, j + 2) if text.startswith("::", j) else None
        if m2 is not None:
            j = m2.end()
    return j if j > m.end() else -1  # template arguments seen: binutils parenthesises only those


def _replace_numbered(text: str, opener: str, label: str, *, paren: bool) -> str:
    out: list[str] = []
    pos = 0
    while True:
        start = text.find(opener, pos)
        if start < 0:
            break
        i = start + len(opener)
        args = ""
        if paren:  # opener ends with "(": find the matching ")"
            depth = 1
            j = i
            while j < len(text) and depth:
                if text[j] == "(":
                    depth += 1
                elif text[j] == ")":
                    depth -= 1
                j += 1
            args = "(" + text[i : j - 1] + ")"
            i = j
        close = text.find("}", i)
        if close < 0 or text[i : i + 1] != "#" or not text[i + 1 : close].isdigit():
            out.append(text[pos : start + 1])
            pos = start + 1
            continue
        number = int(text[i + 1 : close])
        tag = label + ("" if number <= 1 else str(number - 2)) + "'"
        out.append(text[pos:start])
        out.append(tag + args)
        pos = close + 1
    out.append(text[pos:])
    return "".join(out)


def _load_library(soname: str, name: str) -> ctypes.CDLL:
    """The library by its usual soname (one ``dlopen``), else wherever ``find_library`` finds it.

    ``find_library`` runs ``ldconfig -p`` in a subprocess (~10 ms): paid only where the soname differs.
    """
    try:
        return ctypes.CDLL(soname)
    except OSError:
        # Imported only here: ctypes.util loads tempfile (and with it ~0.5 MB of modules) into
        # every agent, for a fallback that runs only where the usual soname is missing.
        from ctypes.util import find_library

        found = find_library(name)
        if not found:
            raise
        return ctypes.CDLL(found)


class _CxaDemangle:
    """libstdc++'s own ``__cxa_demangle`` through ctypes: the second chance for C++ names LLVM rejects.

    An in-process pure function call (no I/O after the library is loaded on first use); its GNU
    spelling is mapped to the canonical one with :func:`canonicalize_gnu_cxx`.
    """

    def __init__(self) -> None:
        self._fn: Callable[..., int | None] | None = None
        self._free: Callable[[int], None] | None = None
        self._tried = False
        self._lock = threading.Lock()

    def _load(self) -> None:
        with self._lock:
            if self._tried:
                return
            self._tried = True
            try:
                lib = _load_library("libstdc++.so.6", "stdc++")
                libc = _load_library("libc.so.6", "c")
            except OSError as exc:
                log.info("libstdc++ not loadable, no second-chance C++ demangling: %s", exc)
                return
            fn = getattr(lib, "__cxa_demangle")  # not lib.__cxa_demangle: a class body mangles dunder names
            fn.restype = ctypes.c_void_p
            fn.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)]
            free = libc.free
            free.argtypes = [ctypes.c_void_p]
            free.restype = None
            self._free = free
            self._fn = fn

    def __call__(self, name: str) -> str | None:
        if not self._tried:
            self._load()
        fn, free = self._fn, self._free
        if fn is None or free is None:
            return None
        status = ctypes.c_int(0)
        ptr = fn(name.encode("utf-8", "surrogateescape"), None, None, ctypes.byref(status))
        if not ptr:
            return None
        try:
            text = ctypes.string_at(ptr).decode("utf-8", "replace")
        finally:
            free(ptr)
        return canonicalize_gnu_cxx(text) if status.value == 0 else None


gnu_cxa_demangle = _CxaDemangle()
"""libstdc++'s ``__cxa_demangle`` in canonical spelling; None when it rejects the name or is missing."""
