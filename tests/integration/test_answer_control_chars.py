"""A question holding a control character is a usage error (exit 2), never a "not observed".

No stored name or purl holds a control character (attribution/purls.py refuses them in
purls; no compiler writes one into a symbol), so a question holding one matches nothing. Before
the fix ``query observed --function $'crc32\\x01'`` printed ``not observed: crc32 in …`` (the
character invisible on a terminal) and exited 1: a "no" about crc32, which ran. A purl's
percent-encoded NUL or escape (``zlib%00g``, ``?arch=%1b``) was decoded into the question and
answered "no functions observed" (exit 1), although docs/evidence.md promised exit 2 for a
purl holding a NUL. Now each is exit 2, a message on stderr naming the character (after
argparse's usage lines for an option argparse reads), and the good questions around them still
get their answers.

The questions are asked through the CLI's own entry point in this process (tests/cli_run.py
``cli_in_process``: same argv, stdout, stderr and exit status); one case, a C1 control at the
end of a name, keeps a real subprocess, so the character also crosses a real argv.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stellaops_runtime.contracts.hotsymbols import EvidenceKind
from stellaops_runtime.store.engine import open_store
from tests.cli_run import cli_in_process
from tests.integration.test_vex import IMG, ROOT, delta, vex_cli, watched

ZLIB = "pkg:deb/debian/zlib1g"


def cli(url: str, *argv: str, real: bool = False) -> subprocess.CompletedProcess[str]:
    """``stella-runtime <argv> --store url``: in this process, or ``real``ly as a subprocess."""
    if not real:
        return cli_in_process(*argv, "--store", url)
    return subprocess.run(
        [sys.executable, "-m", "stellaops_runtime.cli.main", *argv, "--store", url],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip


def seeded(url: str) -> str:
    with open_store(url) as s:
        s.write([delta("", 0, 1, EvidenceKind.LOADED), delta("crc32", 3, 12)], watched(range(5)))
    return url


@pytest.mark.parametrize(
    "argv",
    [
        ("query", "observed", "--image", IMG, "--function", "crc32\x01"),
        ("query", "observed", "--image", IMG, "--function", "crc\x1b[0m32"),
        ("query", "observed", "--image", IMG, "--function", "crc\n32"),
        ("query", "observed", "--image", IMG, "--function", "crc32\u202e"),
        ("query", "observed", "--image", IMG, "--function", "crc\x8532"),
        ("query", "observed", "--image", IMG, "--function", "crc32\x85"),  # at the end: str.strip() took it
        ("query", "observed", "--image", IMG, "--function", "crc32", "--purl", f"\x1f{ZLIB}\u2028"),
        ("query", "observed", "--image", IMG, "--function", "crc32", "--purl", f"{ZLIB}?arch=%1b"),
        ("query", "functions", "--image", IMG, "--purl", "pkg:deb/debian/zlib%00g"),
        ("query", "functions", "--image", IMG, "--purl", f"{ZLIB}@1.2%0a13"),
        ("query", "functions", "--image", IMG, "--purl", f"{ZLIB}#lib%07"),
        ("query", "functions", "--image", IMG, "--purl", "pkg:deb/debian/zlib\x011g", "--prefix"),
        ("evidence", "--image", IMG, "--function", "crc32\x07", "--purl", ZLIB),
        ("evidence", "--image", IMG, "--function", "crc32", "--purl", f"{ZLIB}?arch=amd%0964"),
        ("query", "hot", "--image", "host:node\x1b[2J"),
    ],
    ids=[
        "function SOH", "function ESC", "function newline", "function RLO", "function NEL",
        "function trailing NEL", "purl between US and LS",
        "purl qualifier %1b", "purl name %00", "purl version %0a", "purl subpath %07",
        "prefix SOH", "evidence function BEL", "evidence purl %09", "host key ESC",
    ],
)  # fmt: skip
def test_a_control_character_in_a_question_is_a_usage_error(url: str, argv: tuple[str, ...]) -> None:
    r = cli(seeded(url), *argv, real=argv[-1] == "crc32\x85")  # the case 8dfb4f1 fixed: a real argv
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    last = r.stderr.strip().splitlines()[-1]  # argparse's usage lines, then the one message
    assert "control character" in last and "Traceback" not in r.stderr and r.stdout == "", r.stderr


def test_the_questions_around_them_still_answer(url: str) -> None:
    seeded(url)
    assert cli(url, "query", "observed", "--image", IMG, "--function", "crc32").returncode == 0
    assert cli(url, "query", "observed", "--image", IMG, "--function", "adler32").returncode == 1
    blanks = cli(url, "query", "observed", "--image", IMG, "--function", "\tcrc32\u00a0\n", "--json")
    assert blanks.returncode == 0 and '"function": "crc32"' in blanks.stdout, blanks.stderr  # blanks around
    ev = cli(url, "evidence", "--image", IMG, "--function", "crc32", "--purl", f"{ZLIB}?arch=amd64")
    assert ev.returncode == 0 and "DynamicReachable" in ev.stdout, ev.stderr
    fn = cli(url, "query", "functions", "--image", IMG, "--purl", "pkg:deb/debian/zlib%31g")  # %31 = "1"
    assert fn.returncode == 0 and "crc32" in fn.stdout, fn.stderr


def test_a_vex_input_function_with_a_control_character_is_the_inputs_error(tmp_path: Path, url: str) -> None:
    affected = [{"purl": ZLIB, "functions": ["crc32\x1b"]}]
    vulns = {"vulnerabilities": [{"id": "CVE-CTRL", "affected": affected}]}
    r = vex_cli(tmp_path, seeded(url), vulns)
    assert r.returncode == 2 and "CVE-CTRL" in r.stderr and "control character" in r.stderr, r.stderr
