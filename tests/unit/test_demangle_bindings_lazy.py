"""The demangler's bindings (pycxxfilt, pyderust) load with the first C++ or Rust name (issue 13).

Their libraries were ~0.45 MB of every idle agent's RSS (docs/benchmarks.md, twenty-second pass),
mapped at import although only C++ and Rust names call them: a node whose frames are C, Go and
kernel names never needs them. A fresh interpreter (this process has them loaded) checks that
importing canonical/demangle.py and demangling C and Go names loads neither, that the first mangled
names load them and demangle exactly as the bindings called directly do, and that threads meeting
their first names at once all get those answers.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

NAMES = [
    "_ZN4llvm5APInt7udivremERKS0_S2_RS0_S3_",  # C++
    "_ZNSt6vectorIiSaIiEE9push_backERKi",  # C++
    "_ZN4core3fmt5write17h0123456789abcdefE",  # Rust legacy
    "_RNvCs1234_7mycrate3foo",  # Rust v0
]


def _run(code: str) -> list:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.splitlines()[-1])


def test_the_bindings_load_with_the_first_mangled_name_and_answer_as_called_directly() -> None:
    loaded_at_import, loaded_after_plain, ours, theirs = _run(
        f"""
        import json, sys
        from stellaops_runtime.canonical import demangle as dm
        bindings = ("pycxxfilt", "pyderust")
        at_import = [m for m in bindings if m in sys.modules]
        plain = [dm.demangle(n) for n in ("memcpy@GLIBC_2.14", "main.main", "net/http.(*Server).Serve")]
        after_plain = [m for m in bindings if m in sys.modules]
        ours = [dm.demangle(n) for n in {NAMES!r}]
        import pycxxfilt, pyderust
        theirs = [pycxxfilt.itanium_demangle({NAMES[0]!r}), pycxxfilt.itanium_demangle({NAMES[1]!r}),
                  pyderust.demangle({NAMES[2]!r}), pycxxfilt.rust_demangle({NAMES[3]!r})]
        print(json.dumps([at_import, after_plain, ours, theirs]))
        """
    )
    assert loaded_at_import == [] and loaded_after_plain == []
    assert ours == theirs and all(o != n for o, n in zip(ours, NAMES, strict=True))


def test_threads_meeting_their_first_mangled_names_at_once_all_get_the_bindings_answers() -> None:
    answers, expected = _run(
        f"""
        import json, threading
        from stellaops_runtime.canonical import demangle as dm
        names = {NAMES!r}
        start = threading.Barrier(8)
        answers = [None] * 8
        def one(i):
            start.wait()
            answers[i] = [dm.demangle_uncached(n) for n in names]
        threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
        for t in threads: t.start()
        for t in threads: t.join()
        print(json.dumps([answers, [dm.demangle_uncached(n) for n in names]]))
        """
    )
    assert all(a == expected for a in answers)
    assert expected[0].startswith("llvm::APInt::udivrem(") and expected[2] == "core::fmt::write"


def test_a_binding_installed_but_not_loadable_is_found_at_the_first_mangled_name(tmp_path) -> None:
    # Installed (found without loading), so the set-up installs no c++filt fallback; its load fails
    # at the first mangled name: a Rust v0 name then stays as it came, counted as a failure, with a
    # warning (a C++ name would still have libstdc++'s __cxa_demangle).
    (tmp_path / "pycxxfilt").mkdir()
    (tmp_path / "pycxxfilt" / "__init__.py").write_text("raise ImportError('a broken wheel')\n")
    available_before, out, failures, available_after, warned = _run(
        f"""
        import json, logging, sys
        sys.path.insert(0, {str(tmp_path)!r})
        seen = []
        class Seen(logging.Handler):
            def emit(self, record):
                seen.append(record.getMessage())
        logging.getLogger().addHandler(Seen())
        from stellaops_runtime.canonical import demangle as dm
        before = dm.BINDINGS_AVAILABLE
        out = dm.demangle_uncached({NAMES[3]!r})
        print(json.dumps([before, out, dm.demangle_stats().failures, dm.BINDINGS_AVAILABLE,
                          any("do not load" in m and "a broken wheel" in m for m in seen)]))
        """
    )
    assert (available_before, out, failures, available_after, warned) == (True, NAMES[3], 1, False, True)
