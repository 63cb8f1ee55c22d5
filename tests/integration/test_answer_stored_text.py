"""What a workload put in the store cannot forge a line of an answer or drive the user's terminal.

Function names, file paths and node names reach the store from the workloads watched (a file
may be named ``x\\nobserved: …``; a hostile binary's symbol may hold escape sequences). Before
the fix ``query hot``, ``functions``, ``observed`` and ``evidence`` printed them as they were: a
newline in a module path printed a second line reading ``observed: forged line``, and ``ESC [2J``
cleared the user's screen. Now the tables and answer lines show such characters escaped
(``\\n``, ``\\x1b``), one line per row; ``--json`` was and stays JSON-escaped.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey
from stellaops_runtime.store.engine import open_store
from tests.cli_run import stella
from tests.integration.test_vex import IMG, PURL, T0, S, watched

EVIL_FN = "evil\x1b[2J\x1b[31mFAKE"
EVIL_MODULE = "/tmp/x\nobserved: forged line"
EVIL_NODE = "n\x1b]0;title\x07"
ZLIB = "/usr/lib/x86_64-linux-gnu/libz.so.1"


def row(fn: str, module: str, node: str = "node-1", kind: EvidenceKind = EvidenceKind.INVOKED) -> Any:
    return HotSymbolDelta(
        key=HotSymbolKey(IMG, module, fn, kind), window_start_ns=T0, invocation_count=5,
        first_seen_ns=T0 + S, last_seen_ns=T0 + 2 * S, purl=PURL, node_name=node,
    )  # fmt: skip


def cli(url: str, *argv: str, real: bool = False) -> subprocess.CompletedProcess[str]:
    """``stella-runtime <argv> --store url`` in this process, or ``real``ly as a subprocess whose
    stdout is a pipe (tests/cli_run.py ``stella``)."""
    return stella(*argv, "--store", url, real=real)


def seeded(url: str) -> str:
    with open_store(url) as s:
        s.write(
            [
                row(EVIL_FN, ZLIB),
                row("crc32", EVIL_MODULE, node=EVIL_NODE),
                row("", ZLIB, kind=EvidenceKind.LOADED),
            ],
            watched(range(3)),
        )
    return url


def clean(out: str) -> None:
    assert not any(c in out for c in "\x1b\x07"), out
    assert not any(line.startswith("observed: forged") for line in out.splitlines()), out


def test_tables_show_stored_control_characters_escaped(url: str) -> None:
    seeded(url)
    hot = cli(url, "query", "hot", "--image", IMG, real=True)
    assert hot.returncode == 0
    clean(hot.stdout)
    assert len(hot.stdout.splitlines()) == 1 + 2, hot.stdout  # the header and one line per function row
    assert "evil\\x1b[2J\\x1b[31mFAKE" in hot.stdout and "/tmp/x\\nobserved: forged line" in hot.stdout
    fns = cli(url, "query", "functions", "--image", IMG, "--purl", "pkg:deb/debian/zlib1g")
    assert fns.returncode == 0 and len(fns.stdout.splitlines()) == 1 + 2, fns.stdout
    clean(fns.stdout)
    obs = cli(url, "query", "observed", "--image", IMG, "--function", "crc32")
    assert obs.returncode == 0 and len(obs.stdout.splitlines()) == 4, obs.stdout  # answer, table, coverage
    clean(obs.stdout)
    assert "n\\x1b]0;title\\x07" in obs.stdout


def test_json_keeps_the_stored_text_exact(url: str) -> None:
    seeded(url)
    doc = json.loads(cli(url, "query", "hot", "--image", IMG, "--json").stdout)
    assert {EVIL_FN, "crc32"} <= {r["function_name"] for r in doc["hot"]}, doc


def test_answer_lines_show_a_gap_node_and_a_purl_escaped(url: str) -> None:
    """The reasons name nodes (gaps) and files (code under no name): each stays one line."""
    from stellaops_runtime.contracts.hotsymbols import ObservationWindow
    from stellaops_runtime.contracts.posture import Posture

    gap = ObservationWindow(IMG, EVIL_NODE, T0, 0, None, 60, "tetragon", T0, T0 + 60 * S, throttles=1)
    with open_store(url) as s:
        s.write([row("", ZLIB, kind=EvidenceKind.LOADED)], [*watched(range(3)), gap])
        s.write([], [ObservationWindow(IMG, EVIL_NODE, T0, 3, Posture.EBPF_DEEP, 60, "tetragon")])
    r = cli(url, "query", "observed", "--image", IMG, "--function", "adler32")
    assert r.returncode == 3 and len(r.stdout.splitlines()) == 1, r.stdout
    clean(r.stdout)
    assert "n\\x1b]0;title\\x07" in r.stdout
    ev = cli(url, "evidence", "--image", IMG, "--function", "adler32", "--purl", "pkg:deb/debian/zlib1g")
    clean(ev.stdout)
    gaps = [line for line in ev.stdout.splitlines() if line.startswith("gap: ")]
    assert gaps and gaps[0].startswith("gap: on node n\\x1b]0;title\\x07"), ev.stdout
