"""The demangler's bindings (pycxxfilt, pyderust) load with the first C++ or Rust name (issue 13).

Their libraries were ~0.45 MB of every idle agent's RSS (docs/benchmarks.md, twenty-second pass),
mapped at import although only C++ and Rust names call them: a node whose frames are C, Go and
kernel names never needs them. A fresh interpreter (this process has them loaded) checks that
importing canonical/demangle.py and demangling C and Go names loads neither, that the first mangled
names load them and demangle exactly as the bindings called directly do, and that threads meeting
their first names at once all get those answers. Through the agent's wiring: bindings not installed
get GNU c++filt at start; bindings installed but failing to load (any error) get it at that first
name, once, whatever the number of threads meeting it, with the bindings' own answers.
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


# What the agent's wiring (agent/canonicalizer_setup.py) makes of bindings it cannot use: GNU c++filt,
# with the bindings' own answers. sys.modules[...] = None is how an interpreter hides a module
# (find_spec answers None: not installed).
_THROUGH_THE_WIRING = """
import json, logging, sys
{setup}
seen = []
class Seen(logging.Handler):
    def emit(self, record):
        seen.append(record.getMessage())
logging.getLogger().addHandler(Seen())
from stellaops_runtime.agent.canonicalizer_setup import make_canonicalizer
from stellaops_runtime.canonical import demangle as dm
from stellaops_runtime.canonical.cxxfilt import CxxfiltDemangler
from stellaops_runtime.contracts.config import parse_config
make_canonicalizer(parse_config({{}}), node_name="n")
at_start = type(dm.current_fallback()).__name__
import threading
start, outs = threading.Barrier(4), [None] * 4
def one(i):
    start.wait()  # four threads meet their first mangled names at once
    outs[i] = [dm.demangle_uncached(n) for n in {names!r}]
threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
for t in threads: t.start()
for t in threads: t.join()
out = outs[0] if all(o == outs[0] for o in outs) else outs
cxxfilt = isinstance(dm.current_fallback(), CxxfiltDemangler)
warned = [m for m in seen if "pycxxfilt/pyderust" in m]
print(json.dumps([at_start, out, dm.demangle_stats().failures, cxxfilt, warned]))
"""


def _expected() -> list[str]:
    from stellaops_runtime.canonical.demangle import demangle_uncached

    return [demangle_uncached(n) for n in NAMES]  # the bindings' answers (this process has them)


def test_the_wiring_starts_cxxfilt_at_once_where_the_bindings_are_not_installed() -> None:
    setup = "sys.modules['pycxxfilt'] = sys.modules['pyderust'] = None"
    at_start, out, failures, cxxfilt, warned = _run(_THROUGH_THE_WIRING.format(setup=setup, names=NAMES))
    assert (at_start, cxxfilt, failures) == ("CxxfiltDemangler", True, 0)
    assert out == _expected() and len(warned) == 1


def test_a_binding_installed_but_not_loadable_hands_its_names_to_cxxfilt(tmp_path) -> None:
    # Found installed at start (so no fallback then), it fails at the first mangled name: with an
    # ImportError (a wheel built for another glibc) or any other error of its import (an OSError of
    # a damaged file, pyo3's PanicException, a BaseException, of a Rust module's failed start). The
    # wiring's c++filt then answers every name, byte for byte as the bindings would have, the import
    # is tried once, and a warning says so. Seen failing before: the Rust names stayed mangled (and,
    # for the OSError, every C++ name too, its import tried per name; the panic escaped demangle).
    tries = tmp_path / "tries"
    panic = "type('PanicException', (BaseException,), {})"
    for i, (name, error) in enumerate(
        (("pycxxfilt", "ImportError"), ("pyderust", "OSError"), ("pyderust", panic))
    ):
        broken = tmp_path / str(i) / "broken"
        (broken / name).mkdir(parents=True)
        (broken / name / "__init__.py").write_text(
            f"open({str(tries)!r}, 'a').write('x')\nraise {error}('a broken wheel')\n"
        )
        setup = f"sys.path.insert(0, {str(broken)!r})"
        at_start, out, failures, cxxfilt, warned = _run(_THROUGH_THE_WIRING.format(setup=setup, names=NAMES))
        assert (at_start, cxxfilt, failures) == ("NoneType", True, 0), name
        assert out == _expected(), name
        assert len(warned) == 1 and "a broken wheel" in warned[0], name
    assert tries.read_text() == "xxx"  # each broken import tried once, by one of the four threads


def test_a_call_restored_to_its_first_use_form_after_the_load_still_demangles(monkeypatch) -> None:
    # A caller (a test's monkeypatch, a bench's default argument) that took a call before the load
    # and puts it back after: it loads nothing again and answers. Before, it called itself without
    # end (RecursionError, so the name came back mangled, counted as a failure).
    from stellaops_runtime.canonical import demangle as dm

    dm.load_bindings()
    expected = [dm.demangle_uncached(n) for n in NAMES]
    for call, first_use in zip(("_llvm_itanium", "_llvm_rust", "_rustc_demangle"), dm.FIRST_USE, strict=True):
        monkeypatch.setattr(dm, call, first_use)
    failures = dm.demangle_stats().failures
    assert [dm.demangle_uncached(n) for n in NAMES] == expected
    assert dm.demangle_stats().failures == failures
