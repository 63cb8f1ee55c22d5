"""Names no store can hold are usage errors, never a traceback read as "not observed".

Bytes in argv that are not UTF-8 reach Python as lone surrogates (surrogateescape). Before the
fix ``query observed --function $'crc\\xff'`` and ``evidence`` handed them to the database
driver, which raised UnicodeEncodeError: a traceback, exit 1, which a script reads as "not
observed". Now: exit 2 naming the text. A NUL in a ``vex`` input's function name (PostgreSQL's
text cannot hold one) is the input's error too, naming the vulnerability.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stellaops_runtime.store.engine import open_store
from tests.integration.test_vex import IMG, ROOT, delta, vex_cli, watched

BAD = os.fsdecode(b"crc\xff")  # what Python makes of argv bytes that are not UTF-8


@pytest.mark.parametrize(
    "argv",
    [
        ("query", "observed", "--image", IMG, "--function", BAD),
        ("query", "observed", "--image", IMG, "--function", "crc32", "--purl", "pkg:deb/debian/" + BAD),
        ("query", "functions", "--image", IMG, "--purl", "pkg:deb/debian/" + BAD),
        ("evidence", "--image", IMG, "--function", BAD, "--purl", "pkg:deb/debian/zlib1g"),
    ],
    ids=["observed", "observed --purl", "functions", "evidence"],
)
def test_text_that_was_not_utf8_is_a_usage_error(url: str, argv: tuple[str, ...]) -> None:
    with open_store(url) as s:
        s.write([delta("crc32", 3, 12)], watched(range(5)))
    r = subprocess.run(
        [sys.executable, "-m", "stellaops_runtime.cli.main", *argv, "--store", url],
        capture_output=True, text=True, timeout=60, cwd=ROOT, errors="backslashreplace",
    )  # fmt: skip
    assert r.returncode == 2 and "is not valid UTF-8" in r.stderr and "Traceback" not in r.stderr, r.stderr


@pytest.mark.parametrize("fn", ["crc\udcff32", "crc\x0032"], ids=["surrogate", "NUL"])
def test_a_vex_input_name_no_store_can_hold_is_an_input_error(tmp_path: Path, url: str, fn: str) -> None:
    with open_store(url) as s:
        s.write([delta("crc32", 3, 12)], watched(range(5)))
    vulns = {
        "vulnerabilities": [
            {"id": "CVE-N", "affected": [{"purl": "pkg:deb/debian/zlib1g", "functions": [fn]}]}
        ]
    }
    r = vex_cli(tmp_path, url, vulns)
    assert r.returncode == 2 and "CVE-N" in r.stderr and "Traceback" not in r.stderr, r.stderr
