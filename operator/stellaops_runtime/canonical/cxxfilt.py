"""GNU c++filt behind the demangler interface: the well-known fallback for the young bindings.

DESIGN asks for a well-kept fallback wherever the fast path is a young binding. GNU c++filt
(binutils) demangles C++ and both Rust manglings; it runs (with ``-i``: no verbose expansion of
``std::string`` and friends) as ONE coprocess fed names over stdin
(c++filt flushes after every line), or once over a whole batch. Its output is mapped to the
canonical text of canonical.demangle (``canonicalize_gnu_cxx`` for C++; crate hashes ``[...]`` and
legacy ``::h<hash>`` removed and clone suffixes put back for Rust), so either backend gives the
same function IDs. Go and plain C names need no demangler and take the same pure rules.

This module starts a process, so it is an edge; canonical.demangle (a transform) only learns of it
through :func:`canonical.demangle.install_fallback`, called by the wiring when the bindings are
missing.
"""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Iterable

from stellaops_runtime.canonical.demangle import (
    canonicalize_gnu_cxx,
    canonicalize_go,
    language_of,
    strip_symbol_decorations,
)

__all__ = ["CxxfiltDemangler", "CxxfiltError", "canonicalize_gnu_rust"]

_CRATE_HASH = re.compile(r"(?<=[A-Za-z0-9_])\[[0-9a-f]+\]")
_LEGACY_HASH_TAIL = re.compile(r"::h[0-9a-f]{16}$")
_LEGACY_END = re.compile(r"17h[0-9a-f]{16}E")


# The longest name written to the coprocess (a few bytes a character at most): a line longer than a
# pipe's 64 KiB made both processes wait, c++filt writing its answer while we were still writing the
# name. ELF and pclntab names are cut at 16 KiB (symtab/gopclntab MAX_NAME_BYTES); a name a user
# asks about (the CLI) has no such bound, so a longer one gets a run of its own.
COPROCESS_MAX_CHARS = 16_384


class CxxfiltError(RuntimeError):
    """c++filt is missing, died, or answered out of step."""


def canonicalize_gnu_rust(mangled: str, text: str) -> str:
    """Map c++filt's demangling of a Rust symbol (already stripped of version/.llvm) to canonical text.

    Drops v0 crate disambiguators (``core[3c1c0]::foo`` -> ``core::foo``) and the legacy
    ``::h<hash>``; puts back a ``.suffix`` (``.cold``, ``.2321``) that c++filt leaves out and
    rustc-demangle keeps.
    """
    if "[" in text:
        text = _CRATE_HASH.sub("", text)
    text = _LEGACY_HASH_TAIL.sub("", text)
    suffix = _rust_suffix(mangled)
    if suffix and not text.endswith(suffix):
        text += suffix
    return text


def _rust_suffix(mangled: str) -> str:
    if mangled[:2] == "_R" or mangled[:3] == "__R":
        dot = mangled.find(".")
        return "" if dot < 0 else mangled[dot:]
    last = None
    for last in _LEGACY_END.finditer(mangled):  # noqa: B007 - the last match is wanted
        pass
    if last is None:
        return ""
    return mangled[last.end() :]


class CxxfiltDemangler:
    """Canonical names through GNU c++filt: per name over a coprocess, or per batch in one run.

    Thread-safe; the coprocess starts on first use and is restarted once if it dies.
    ``failures`` counts mangled names c++filt could not demangle (returned as they came in).
    """

    def __init__(self, *, executable: str = "c++filt") -> None:
        import shutil  # only where the demangler bindings are missing (issue 13)

        path = shutil.which(executable)
        if path is None:
            raise CxxfiltError(f"{executable} not found in PATH (Debian package binutils)")
        self.executable = path
        self.failures = 0
        self.demangled = 0
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()

    # -- the Demangler protocol --

    def demangle(self, name: str) -> str:
        try:
            base = strip_symbol_decorations(name)
            lang = language_of(base)
            if lang == "go":
                return canonicalize_go(base)
            if lang == "plain":
                return base
            if "\n" in base or "\r" in base:
                self.failures += 1
                return base
            if len(base) > COPROCESS_MAX_CHARS:  # one run: it reads c++filt's answer while writing
                return self.demangle_many([base])[0]
            with self._lock:
                raw = self._ask(base)
            return self._canonical(base, lang, raw)
        except (CxxfiltError, OSError, ValueError):
            self.failures += 1
            return name if isinstance(name, str) else repr(name)

    def demangle_many(self, names: Iterable[str]) -> list[str]:
        """Canonical names of a batch, through one c++filt run over all mangled names in it."""
        bases = [strip_symbol_decorations(n) for n in names]
        langs = [language_of(b) for b in bases]
        mangled = [i for i, lang in enumerate(langs) if lang not in ("go", "plain")]
        todo = [i for i in mangled if "\n" not in bases[i]]  # a newline would shift every answer
        self.failures += len(mangled) - len(todo)
        raw: list[str] = []
        if todo:
            text = "".join(bases[i] + "\n" for i in todo)
            proc = subprocess.run(
                [self.executable, "-i"],
                input=text,
                capture_output=True,
                text=True,
                errors="replace",
                check=False,
            )
            if proc.returncode != 0:
                raise CxxfiltError(f"c++filt exited {proc.returncode}: {proc.stderr.strip()[:300]}")
            raw = proc.stdout.split("\n")
            if raw and raw[-1] == "":
                raw.pop()
            if len(raw) != len(todo):
                raise CxxfiltError(f"c++filt answered {len(raw)} lines for {len(todo)} names")
        out = [b if lang == "plain" else canonicalize_go(b) for b, lang in zip(bases, langs, strict=True)]
        for i, line in zip(todo, raw, strict=True):
            out[i] = self._canonical(bases[i], langs[i], line)
        return out

    def close(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is not None:
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()

    def __enter__(self) -> CxxfiltDemangler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals --

    def _canonical(self, base: str, lang: str, raw: str) -> str:
        if raw == base:
            self.failures += 1
            return base
        self.demangled += 1
        if lang == "cxx":
            return canonicalize_gnu_cxx(raw)
        return canonicalize_gnu_rust(base, raw)

    def _ask(self, name: str) -> str:
        for attempt in (0, 1):
            proc = self._proc
            if proc is None or proc.poll() is not None:
                proc = self._proc = subprocess.Popen(
                    [self.executable, "-i"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    errors="replace",
                    bufsize=1,
                )
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(name + "\n")
                proc.stdin.flush()
                line = proc.stdout.readline()
            except (BrokenPipeError, OSError):
                line = ""
            if line.endswith("\n"):
                return line[:-1]
            self._proc = None  # died: restart once
            if attempt:
                break
        raise CxxfiltError("c++filt coprocess stopped answering")
