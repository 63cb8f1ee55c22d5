"""A Go vulnerability record's import without symbols is every function of that package: never "not_affected".

The Go vulnerability database (OSV ``ecosystem_specific.imports``) lists, per affected package
path, the vulnerable ``symbols``; an import whose ``symbols`` is empty or left out means every
function of that package is vulnerable (golang.org/x/vuln's osv.EcosystemSpecific: "If omitted,
any program which imports this [package] will be marked vulnerable"; vulncheck "packages whose
every symbol is vulnerable"). A record naming symbols for one import and none for another lost
the second: its functions were never asked about, and an image whose ``http2`` code ran every
day was declared ``not_affected`` because the one named ``html`` symbol never ran. The real
``vex`` CLI (its own entry point in this process, tests/cli_run.py ``cli_in_process``) on a store
written by the real writer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey
from stellaops_runtime.evidence.vex_input import VexInputError, parse
from stellaops_runtime.store.engine import open_store
from tests.integration.test_vex import DAY, IMG, T0, S, statements, watched

NET = "pkg:golang/golang.org/x/net@v0.17.0"
READ_FRAME = "golang.org/x/net/http2.(*Framer).ReadFrame"  # as the agent stores a Go method


def _record(vid: str, *imports: dict[str, Any]) -> dict[str, Any]:
    return {"id": vid, "affected": [{"package": {"ecosystem": "Go", "name": "golang.org/x/net"},
                                     "ecosystem_specific": {"imports": list(imports)}}]}  # fmt: skip


HTML = {"path": "golang.org/x/net/html", "symbols": ["ParseFragment"]}  # named, never run below


def test_an_import_without_symbols_is_kept_as_a_whole_package() -> None:
    for http2 in ({"path": "golang.org/x/net/http2"}, {"path": "golang.org/x/net/http2", "symbols": []}):
        [v] = parse({"vulns": [_record("GO-MIXED", HTML, http2)]})
        [t] = v.targets
        assert t.functions == ("golang.org/x/net/html.ParseFragment",)
        assert t.whole_packages == ("golang.org/x/net/http2",)
    [v] = parse({"vulns": [_record("GO-NAMED", HTML)]})
    assert v.targets[0].whole_packages == ()


def test_a_record_with_a_symbol_less_import_is_never_not_affected(tmp_path: Path) -> None:
    start = T0 + 3 * DAY
    ran = HotSymbolDelta(
        key=HotSymbolKey(IMG, "/app/server", READ_FRAME, EvidenceKind.ON_STACK),
        window_start_ns=start, invocation_count=5, first_seen_ns=start + S, last_seen_ns=start + 2 * S,
        purl=NET, node_name="node-1",
    )  # fmt: skip
    url = f"sqlite:///{tmp_path}/hot.db"
    with open_store(url) as s:
        s.write([ran], watched())  # 40 days at EbpfDeep, gap-free: x/net loaded, ParseFragment never ran
    vulns = {
        "vulns": [
            _record("GO-MIXED", HTML, {"path": "golang.org/x/net/http2"}),
            _record("GO-MIXED-EMPTY", HTML, {"path": "golang.org/x/net/http2", "symbols": []}),
            _record("GO-NAMED", HTML),  # every vulnerable function named: not_affected stays
            # a named function ran: affected, whatever the symbol-less import beside it
            _record(
                "GO-RAN",
                {"path": "golang.org/x/net/http2", "symbols": ["Framer.ReadFrame"]},
                {"path": "golang.org/x/net/idna"},
            ),
        ]
    }
    st = statements(tmp_path, url, vulns)
    for vid in ("GO-MIXED", "GO-MIXED-EMPTY"):
        assert st[vid]["status"] == "under_investigation", (vid, st[vid]["status_notes"])
        assert "every function of golang.org/x/net/http2" in st[vid]["status_notes"]
    assert st["GO-NAMED"]["status"] == "not_affected", st["GO-NAMED"]["status_notes"]
    assert st["GO-RAN"]["status"] == "affected", st["GO-RAN"]["status_notes"]


@pytest.mark.parametrize(
    "bad",
    [{}, {"path": 5}, {"path": ["golang.org/x/net/http2"]}, {"path": ""}, {"path": None, "symbols": []}],
)
def test_an_import_without_a_readable_path_is_an_input_error(bad: dict[str, Any]) -> None:
    """An import whose ``path`` is missing or not a string was dropped when it listed no symbol: the
    package it stands for whole was never asked about, and the named ``html`` symbol alone could
    make the record ``not_affected``. Wrong types are the file's error (exit 2), as everywhere."""
    with pytest.raises(VexInputError, match="without a package path"):
        parse({"vulns": [_record("GO-BAD", HTML, bad)]})


def test_an_import_path_and_symbols_padded_with_spaces_name_the_package_and_functions() -> None:
    """A padded path named ``golang.org/x/net/html .Parse``, which nothing stored matches: the
    record read as never run (a purl is stripped likewise)."""
    padded = {"path": " golang.org/x/net/html\n", "symbols": [" Parse "]}
    [v] = parse({"vulns": [_record("GO-PAD", padded, {"path": "\tgolang.org/x/net/http2 "})]})
    [t] = v.targets
    assert t.functions == ("golang.org/x/net/html.Parse",)
    assert t.whole_packages == ("golang.org/x/net/http2",)
    with pytest.raises(VexInputError, match="non-empty strings"):  # a blank symbol names nothing
        parse({"vulns": [_record("GO-BLANK", {"path": "golang.org/x/net/html", "symbols": [" "]})]})
