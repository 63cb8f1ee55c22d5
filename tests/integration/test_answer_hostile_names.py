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

from stellaops_runtime.contracts.hotsymbols import EvidenceKind
from stellaops_runtime.store import queries
from stellaops_runtime.store.engine import create_store_engine, open_store
from stellaops_runtime.store.function_refs import function_query
from stellaops_runtime.store.refs import PurlQuery
from tests.integration.test_answer_unattributed import cli
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


def test_a_question_longer_than_sqlites_like_pattern_is_answered_on_both_backends(url: str) -> None:
    """A Rust path (``mycrate::Foo::<name>``) or a ``--prefix`` of more than SQLite's 50,000-byte LIKE
    pattern: SQLite refused the query ("LIKE or GLOB pattern too complex", exit 2 "cannot query
    store") where PostgreSQL answered. The stored name and purl are now compared as text (no
    pattern) on both backends."""
    long = "a" * 60_000
    with open_store(url) as s:
        s.write([delta("crc32", 3, 12), delta(f"<mycrate::Foo>::x{long}", 3, 2)], watched(range(5)))
    engine = create_store_engine(url)
    try:
        with engine.connect() as conn:
            assert queries.observed(conn, image=IMG, function=function_query(f"mycrate::Foo::{long}")) == []
            assert queries.functions(conn, image=IMG, purl_prefix=f"pkg:deb/{long}") == []
            found = queries.observed(conn, image=IMG, function=function_query("mycrate::Foo::crc32"))
            assert found == []
            if conn.dialect.name == "sqlite":  # PostgreSQL's key index refuses such a name (quarantined)
                rows = queries.observed(conn, image=IMG, function=function_query(f"mycrate::Foo::x{long}"))
                assert [r.invocation_count for r in rows] == [2]
    finally:
        engine.dispose()


def test_a_row_of_no_calls_is_no_observation(url: str) -> None:
    """The store takes a row of 0 calls (rowcheck: a count is a non-negative integer; a spool or an
    export written by another tool may hold one; the agent writes none). ``query observed`` answered
    "observed" (exit 0, "on_stack 0") on it, while ``evidence`` counted no call and the same question
    with --since/--until read no call: a call no one saw. No call is no observation."""
    with open_store(url) as s:
        s.write([delta("crc32", 3, 12), delta("inflate", 3, 0, EvidenceKind.ON_STACK)], watched(range(5)))
    code, doc = cli(url, "query", "observed", "--image", IMG, "--function", "inflate")
    assert (code, doc["answer"], doc["records"]) == (1, "not_observed", []), doc
    engine = create_store_engine(url)
    try:
        with engine.connect() as conn:  # nor is it a function that ran, or a hot one
            ran = queries.functions(conn, image=IMG, purl=PurlQuery.parse("pkg:deb/debian/zlib1g"))
            assert [r.function_name for r in ran] == ["crc32"]
            assert [r.function_name for r in queries.hot(conn, image=IMG)] == ["crc32"]
    finally:
        engine.dispose()
