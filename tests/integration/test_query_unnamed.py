"""``query observed`` never answers "not observed" over code that ran under no name (store/unnamed.py).

A stack frame nobody could name (a stripped file without its debug file) is stored under its
offset, ``0x<offset>``. The function asked about may be that code, so while such rows exist in
the scope of the question (the image, the package asked about, the build of a function ID) and
the period, the answer is *unknown* (exit 3), naming the files. Real stores, SQLite and
PostgreSQL, through the CLI's own main.
"""

from __future__ import annotations

import json

import pytest

from stellaops_runtime.cli import exitcodes
from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.engine import open_store
from tests.integration.test_query_cli import cli
from tests.node_alive import alive_after

S = 1_000_000_000
T0 = 1_740_787_200 * S  # 2025-03-01T00:00:00Z
T1 = T0 + 120 * S  # a second window, with every frame named
IMG = "sha256:" + "e" * 64
JIT_IMG = "sha256:" + "f" * 64
LIBXML = "/usr/lib/x86_64-linux-gnu/libxml2.so.2.9.14"
LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"
XML_PURL = "pkg:deb/debian/libxml2@2.9.14%2Bdfsg-1.3?arch=amd64"
LIBC_PURL = "pkg:deb/debian/glibc@2.36-9?arch=amd64"
XML_BUILD = "ab" * 20
OTHER_BUILD = "cd" * 20
CRYPTO = "/usr/lib/x86_64-linux-gnu/libcrypto.so.3"
CRYPTO_PURL = "pkg:deb/debian/openssl@3.0.15-1?arch=amd64"
CRYPTO_BUILD = "0f" * 20
APP = "/opt/app/server"
APP_BUILD = "5a" * 20
APP_PURL = "pkg:generic/acme-server@4.1"
LATER = "2025-03-01T00:01:30Z"  # only the second window


def row(image: str, module: str, fn: str, count: int, start: int, purl: str, **kw: object) -> HotSymbolDelta:
    return HotSymbolDelta(
        key=HotSymbolKey(image, module, fn, kw.pop("evidence", EvidenceKind.ON_STACK)),  # type: ignore[arg-type]
        window_start_ns=start,
        invocation_count=count,
        first_seen_ns=start + S,
        last_seen_ns=start + 2 * S,
        purl=purl,
        node_name="node-1",
        confidence=1.0,
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def url(url: str) -> str:  # tests/integration/conftest.py's store (SQLite, PostgreSQL), seeded here
    u = url
    with open_store(u) as store:
        store.write(
            [
                # libxml2 stripped, no debug file: two offsets ran under no name, in the first window
                row(IMG, LIBXML, "xmlParseDocument", 7, T0, XML_PURL, build_id=XML_BUILD),
                row(IMG, LIBXML, "0x4a1f0", 30, T0, XML_PURL, build_id=XML_BUILD),
                row(IMG, LIBXML, "0x4b002", 10, T0, XML_PURL, build_id=XML_BUILD),
                row(IMG, LIBC, "malloc", 90, T0, LIBC_PURL),
                row(IMG, LIBC, "free", 80, T1, LIBC_PURL),
                # JIT code: no file, so no symbol could ever name it
                row(JIT_IMG, "", "0x7f00dead", 50, T0, ""),
                row(JIT_IMG, LIBC, "malloc", 5, T0, LIBC_PURL),
            ],
            [
                ObservationWindow(IMG, "node-1", T0, 500, Posture.EBPF_DEEP, 60, "tetragon"),
                ObservationWindow(IMG, "node-1", T1, 400, Posture.EBPF_DEEP, 60, "tetragon"),
                ObservationWindow(JIT_IMG, "node-1", T0, 55, Posture.EBPF_DEEP, 60, "tetragon"),
                *alive_after("node-1", T0 + 86_400 * S),  # its agent ran on: T0's day is not open
            ],
        )
    return u


def ask(url: str, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, object]]:
    code = cli("query", "observed", *args, "--store", url, "--json")
    return code, json.loads(capsys.readouterr().out)


def test_unnamed_code_makes_an_absence_unknown(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = ask(url, capsys, "--image", IMG, "--function", "xmlParseCharRef")
    assert code == exitcodes.UNKNOWN and doc["answer"] == "unknown" and doc["observed"] is None
    assert doc["unnamed"] == [{"module": LIBXML, "offsets": 2, "calls": 40}]
    assert f"{LIBXML} (2 offsets, 40 on stacks)" in str(doc["reason"])
    # the same question as a table
    assert cli("query", "observed", "--image", IMG, "--function", "xmlParseCharRef", "--store", url) == 3
    out = capsys.readouterr().out
    assert out.startswith(f"unknown: xmlParseCharRef in {IMG}: ") and "no symbol names" in out


def test_named_functions_are_still_observed(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = ask(url, capsys, "--image", IMG, "--function", "xmlParseDocument", "--purl", XML_PURL)
    assert code == exitcodes.OK and doc["observed"] is True and doc["unnamed"] == []


def test_the_package_asked_about_scopes_it(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = ask(url, capsys, "--image", IMG, "--function", "xmlParseCharRef", "--purl", XML_PURL)
    assert code == exitcodes.UNKNOWN and doc["unnamed"] == [{"module": LIBXML, "offsets": 2, "calls": 40}]
    # glibc's code in the image was all named: a glibc function not found is not observed
    code, doc = ask(url, capsys, "--image", IMG, "--function", "realloc", "--purl", LIBC_PURL)
    assert code == exitcodes.NOT_FOUND and doc["answer"] == "not_observed" and doc["unnamed"] == []


def test_the_build_of_a_function_id_scopes_it(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = ask(url, capsys, "--image", IMG, "--function", f"{XML_BUILD}:xmlParseCharRef+0x0")
    assert code == exitcodes.UNKNOWN and len(doc["unnamed"]) == 1  # type: ignore[arg-type]
    # another build's unnamed code is not it; that build is in no row of the image, so the answer
    # is unknown for that reason alone (file_not_seen), never "not observed"
    code, doc = ask(url, capsys, "--image", IMG, "--function", f"{OTHER_BUILD}:xmlParseCharRef+0x0")
    assert code == exitcodes.UNKNOWN and doc["unnamed"] == [] and doc["file_not_seen"] == []


def test_a_file_offset_asked_about_is_unknown_while_other_code_of_its_file_ran(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unresolved ID ``<build-id>:+0x<offset>`` (static analysis' start of a stripped function)
    matches only the frame stored at exactly that offset. A sampled frame is a return address inside
    the function, never its start, so the other offsets of the build may be that function; and a
    function of the build stored under its name (a debug file named it here) may hold the offset,
    which the store cannot place (it keeps no file offsets of named functions). Before the fix both
    were "not observed" (exit 1)."""
    with open_store(url) as store:  # a stripped binary: every frame under no name
        store.write([row(IMG, APP, "0x9a10", 25, T0, APP_PURL, build_id=APP_BUILD)], [])
    code, doc = ask(url, capsys, "--image", IMG, "--function", f"{APP_BUILD}:+0x9a00")
    assert (code, doc["answer"]) == (exitcodes.UNKNOWN, "unknown")
    assert doc["unnamed"] == [{"module": APP, "offsets": 1, "calls": 25}] and "offset_unplaced" not in doc
    # libxml2 ran under no name and under a name: either may be the function at 0x4c000
    code, doc = ask(url, capsys, "--image", IMG, "--function", f"{XML_BUILD}:+0x4c000")
    assert (code, doc["answer"]) == (exitcodes.UNKNOWN, "unknown")
    assert [r["function_name"] for r in doc["offset_unplaced"]] == ["xmlParseDocument"]  # type: ignore[index]
    # the exact offset that ran is observed
    code, doc = ask(url, capsys, "--image", IMG, "--function", f"{XML_BUILD}:+0x4a1f0")
    assert (code, doc["observed"]) == (exitcodes.OK, True)
    with open_store(url) as store:  # libcrypto: every frame named through its debug file
        store.write(
            [
                row(IMG, CRYPTO, "EVP_DigestInit_ex", 12, T0, CRYPTO_PURL, build_id=CRYPTO_BUILD),
                row(IMG, CRYPTO, "", 1, T0, CRYPTO_PURL, evidence=EvidenceKind.LOADED, build_id=CRYPTO_BUILD),
            ],
            [],
        )
    for extra in ((), ("--purl", CRYPTO_PURL)):
        code, doc = ask(url, capsys, "--image", IMG, "--function", f"{CRYPTO_BUILD}:+0x1c0", *extra)
        assert (code, doc["answer"], doc["unnamed"]) == (exitcodes.UNKNOWN, "unknown", []), extra
        assert [r["function_name"] for r in doc["offset_unplaced"]] == ["EVP_DigestInit_ex"]  # type: ignore[index]
        assert "file offset 0x1c0" in str(doc["reason"])
    # evidence and vex read the same doubts: no PotentiallyReachable "not called" (exit 1)
    fid = f"{CRYPTO_BUILD}:+0x1c0"
    assert cli("evidence", "--image", IMG, "--purl", CRYPTO_PURL, "--function", fid, "--store", url) == 3
    assert "may have run (offset_unplaced)" in capsys.readouterr().out
    # a period in which nothing of that file ran: the offset did not run either
    code, doc = ask(url, capsys, "--image", IMG, "--function", f"{CRYPTO_BUILD}:+0x1c0", "--since", LATER)
    assert (code, doc["answer"]) == (exitcodes.NOT_FOUND, "not_observed")
    assert "offset_unplaced" not in doc
    # a name of that file is asked by name: its absence is not in doubt
    code, doc = ask(url, capsys, "--image", IMG, "--function", f"{CRYPTO_BUILD}:EVP_MD_CTX_new+0x0")
    assert (code, doc["answer"]) == (exitcodes.NOT_FOUND, "not_observed")


def test_code_under_no_name_in_a_file_of_no_package_may_be_the_packages(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stripped file whose attribution failed (purl ""): its unnamed frames may be the function
    asked of any package, as a named call there is (doubts.unattributed), yet the question's purl
    left them out. Before the fix: glibc's ``realloc`` "not observed" (exit 1)."""
    with open_store(url) as store:
        store.write([row(IMG, APP, "0x9a10", 25, T0, "", build_id=APP_BUILD)], [])
    code, doc = ask(url, capsys, "--image", IMG, "--function", "realloc", "--purl", LIBC_PURL)
    assert (code, doc["answer"]) == (exitcodes.UNKNOWN, "unknown")
    assert doc["unnamed"] == [{"module": APP, "offsets": 1, "calls": 25}]
    # another package's unnamed code is still not glibc's
    code, doc = ask(url, capsys, "--image", JIT_IMG, "--function", "realloc", "--purl", LIBC_PURL)
    assert (code, doc["unnamed"]) == (exitcodes.NOT_FOUND, [])


def test_a_period_without_unnamed_code_is_not_observed(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    since = "2025-03-01T00:01:30Z"  # only the second window, where every frame was named
    code, doc = ask(url, capsys, "--image", IMG, "--function", "xmlParseCharRef", "--since", since)
    assert code == exitcodes.NOT_FOUND and doc["unnamed"] == []
    code, doc = ask(url, capsys, "--image", IMG, "--function", "xmlParseCharRef", "--until", since)
    assert code == exitcodes.UNKNOWN and doc["unnamed"] == [{"module": LIBXML, "offsets": 2, "calls": 40}]


def test_code_outside_any_file_does_not_count(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = ask(url, capsys, "--image", JIT_IMG, "--function", "xmlParseCharRef")
    assert code == exitcodes.NOT_FOUND and doc["unnamed"] == []
