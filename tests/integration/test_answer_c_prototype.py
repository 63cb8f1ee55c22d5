"""A C function asked with its prototype's parameter list is the C function the store names bare.

Advisories name C functions with parentheses or a prototype: "the inflateGetHeader() function",
``crc32(uLong crc, const Bytef *buf, uInt len)``. The agent stores a C symbol without a parameter
list (``crc32``: C names carry none; only a demangled C++ name has one), so such a question matched
nothing and an image that called ``crc32`` 5,000 times answered "not observed" (exit 1), and
``evidence`` PotentiallyReachable. A name whose part before its parameter list is a plain C
identifier now also names that identifier stored bare (and its clones); a qualified name
(``ns::crc32()``, ``zlib.crc32()``) and a C++ overload stored with another list are not it.
In-process CLI, SQLite and PostgreSQL.
"""

from __future__ import annotations

import json

import pytest

from stellaops_runtime.contracts.hotsymbols import EvidenceKind
from stellaops_runtime.store.engine import open_store
from tests.integration.test_answer_unattributed import row
from tests.integration.test_query_cli import cli
from tests.integration.test_vex import IMG, PURL, watched

ASKED = ("crc32()", "crc32(void)", "crc32(uLong crc, const Bytef *buf, uInt len)", " crc32 ( ) ")


def ask(url: str, capsys: pytest.CaptureFixture[str], fn: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    code = cli(
        "query", "observed", "--image", IMG, "--purl", PURL, "--function", fn, "--store", url, "--json"
    )
    return code, json.loads(capsys.readouterr().out)


def test_a_c_function_asked_with_a_parameter_list_is_observed(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with open_store(url) as s:
        s.write(
            [
                row("", EvidenceKind.LOADED, PURL, day=0, n=1),
                row("crc32", EvidenceKind.INVOKED, PURL, n=5000),
                row("adler32.part.0", EvidenceKind.ON_STACK, PURL, n=3),  # a GCC clone of a C function
                row("deflate(int)", EvidenceKind.ON_STACK, PURL, n=2),  # a C++ overload, stored with its list
            ],
            watched(),
        )
    for fn in ASKED:
        code, doc = ask(url, capsys, fn)
        assert (code, [r["function_name"] for r in doc["records"]]) == (0, ["crc32"]), fn
    code, doc = ask(url, capsys, "adler32(uLong adler, const Bytef *buf, uInt len)")
    assert (code, [r["function_name"] for r in doc["records"]]) == (0, ["adler32.part.0"])
    for other in ("zlib::crc32()", "zlib.crc32()", "crc32x()", "deflate(long)"):
        code, doc = ask(url, capsys, other)
        assert (code, doc["answer"]) == (1, "not_observed"), other
    code = cli("evidence", "--image", IMG, "--purl", PURL, "--function", ASKED[2], "--store", url, "--json")
    assert (code, json.loads(capsys.readouterr().out)["data"]["invocation_count"]) == (0, 5000)
