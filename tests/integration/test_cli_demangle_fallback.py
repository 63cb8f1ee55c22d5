"""The CLI demangles the names a user asks about through GNU c++filt where the bindings cannot.

``query``, ``evidence``, ``vex``, ``witness`` and ``attribute`` demangle the names they are given
(store/function_refs.py, cli/attribute.py). Without the bindings (pycxxfilt, pyderust missing, or
installed and failing to load) a mangled Rust name stayed mangled: it matched none of the demangled
names the agent stores. The CLI now names c++filt as the fallback (cli/main.py), started only at the
first C++ or Rust name (a plain name starts nothing). The real CLI entry point in a new interpreter,
the bindings hidden or broken there, a SQLite store holding the function under its demangled name.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey
from stellaops_runtime.store.engine import open_store
from tests.integration.test_vex import DAY, IMG, PURL, T0, S, watched

ROOT = Path(__file__).resolve().parents[2]
V0 = "_RNvCs1234_7mycrate3qux"
LEGACY = "_ZN7mycrate3qux17h0123456789abcdefE"

# main() twice in one interpreter: a plain name (c++filt must not start), then the mangled one
SCRIPT = """
    import contextlib, io, json, sys
    {hide}
    from stellaops_runtime.canonical import demangle
    from stellaops_runtime.cli.main import main
    def ask(fn):
        with contextlib.redirect_stdout(io.StringIO()):
            return main(["query", "observed", "--store", {url!r}, "--image", {image!r}, "--function", fn])
    plain = ask("crc32")
    started = type(demangle.current_fallback()).__name__
    mangled = ask({name!r})
    import os  # the CLI's own children left when main returns: c++filt, unless it ended and was reaped
    mine = [p for p in os.listdir("/proc") if p.isdigit() and os.path.exists(f"/proc/{{p}}/stat")]
    ppid = {{p: open(f"/proc/{{p}}/stat").read().rpartition(")")[2].split()[1] for p in mine}}
    children = sum(v == str(os.getpid()) for v in ppid.values())
    print(json.dumps([plain, started, mangled, type(demangle.current_fallback()).__name__, children]))
"""


def run(url: str, name: str, hide: str, pythonpath: str = "") -> list:  # type: ignore[type-arg]
    code = textwrap.dedent(SCRIPT).format(hide=hide, url=url, image=IMG, name=name)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (pythonpath, os.environ.get("PYTHONPATH")) if p),
    }
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.splitlines()[-1])


def test_a_mangled_rust_name_is_demangled_through_cxxfilt_without_the_bindings(
    tmp_path: Path, sqlite_at_head: Callable[[Path], str]
) -> None:
    url = sqlite_at_head(tmp_path / "hot.db")
    start = T0 + 3 * DAY
    keys = [
        HotSymbolKey(IMG, "/usr/lib/libapp.so", fn, EvidenceKind.INVOKED) for fn in ("crc32", "mycrate::qux")
    ]
    rows = [
        HotSymbolDelta(k, start, 4, start + S, start + 2 * S, purl=PURL, node_name="node-1") for k in keys
    ]
    with open_store(url) as s:  # as the agent stores them: demangled
        s.write(rows, watched())
    missing = "sys.modules['pycxxfilt'] = sys.modules['pyderust'] = None  # not installed"
    assert run(url, V0, missing) == [0, "NoneType", 0, "CxxfiltDemangler", 0]  # c++filt ended with main
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "pyderust.py").write_text("raise OSError('a damaged wheel')\n")  # installed, does not load
    assert run(url, LEGACY, "", pythonpath=str(shadow)) == [0, "NoneType", 0, "CxxfiltDemangler", 0]
