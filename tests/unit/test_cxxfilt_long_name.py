"""A name longer than a pipe holds, through the c++filt coprocess, is answered instead of hanging.

canonical/cxxfilt.py feeds c++filt one name a line and reads its answer after writing the line. A
line longer than the pipe's 64 KiB made both wait: c++filt answering while we were still writing,
so the caller hung for good. The agent's names are cut at 16 KiB, but the CLI now demangles the
names a user asks about through c++filt where the bindings are missing (cli/main.py), and a
``--function`` has no bound. A longer name now gets a c++filt run of its own. The real c++filt,
in a new interpreter bounded by a timeout.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

CODE = """
    import sys
    from stellaops_runtime.canonical.cxxfilt import COPROCESS_MAX_CHARS, CxxfiltDemangler
    long = "_ZN" + "".join(f"{len(w)}{w}" for w in ["abcdefghij" * 30] * 800) + "E"
    assert len(long) > 3 * 65_536 > COPROCESS_MAX_CHARS
    with CxxfiltDemangler() as d:
        print(d.demangle("_ZN3foo3barEv"), d.demangle(long) == long, d.demangle("_ZN3baz3quxEi"))
"""


def test_a_name_longer_than_a_pipe_holds_does_not_hang_the_coprocess() -> None:
    r = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CODE)], capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 0, r.stderr[-2000:]
    # answered (c++filt reads it as no name: as it came), and the coprocess answers on after it
    assert r.stdout.split() == ["foo::bar()", "True", "baz::qux(int)"]
