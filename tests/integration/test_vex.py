"""``stella-runtime vex`` on stores written by the real writer: statuses, witnesses, schemas.

Three vulnerabilities against one image, as issue 15 asks: one whose
function ran (affected), one whose function never ran in a fully watched
window (not_affected, vulnerable_code_not_in_execute_path), one whose image
was watched only part of the time (under_investigation). Plus a package
never loaded and a vulnerability without function data (both
under_investigation, never not_affected). OpenVEX output validates against
the published schema (tests/fixtures/openvex), CycloneDX output with
cyclonedx-python-lib, and each cited witness verifies.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.evidence.vex_input import VexInputError, parse
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.refs import PurlQuery
from stellaops_runtime.store.schema import datetime_to_ns
from tests.cli_run import cli_in_process
from tests.native.rust_names import crate_names
from tests.node_alive import alive_after

ROOT = Path(__file__).resolve().parents[2]
OPENVEX_SCHEMA = json.loads(
    (ROOT / "tests" / "fixtures" / "openvex" / "openvex_json_schema.json").read_text()
)
# formats too (``format: iri``, ``date-time``): jsonschema.validate alone does not check them
OPENVEX = jsonschema.Draft202012Validator(
    OPENVEX_SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
)
S = 1_000_000_000
DAY = 86_400 * S
T0 = datetime_to_ns(dt.datetime(2026, 6, 1, tzinfo=dt.UTC))
IMG = "sha256:" + "d" * 64
ZLIB = "/usr/lib/x86_64-linux-gnu/libz.so.1"
PURL = "pkg:deb/debian/zlib1g@1.2.13.dfsg-1?arch=amd64"
VULNS = {
    "vulnerabilities": [
        {"id": "CVE-RAN", "affected": [{"purl": "pkg:deb/debian/zlib1g", "functions": ["crc32", "adler32"]}]},
        {"id": "CVE-NEVER", "description": "heap overflow in inflateGetHeader",
         "affected": [{"purl": "pkg:deb/debian/zlib1g", "functions": ["inflateGetHeader"]}]},
        {"id": "CVE-OPENSSL", "affected": [{"purl": "pkg:deb/debian/openssl", "functions": ["SSL_read"]}]},
        {"id": "CVE-NOFUNC", "affected": [{"purl": "pkg:deb/debian/zlib1g"}]},
    ]
}  # fmt: skip


def delta(fn: str, day: int, count: int, kind: EvidenceKind = EvidenceKind.INVOKED) -> HotSymbolDelta:
    start = T0 + day * DAY
    return HotSymbolDelta(
        key=HotSymbolKey(IMG, ZLIB, fn, kind), window_start_ns=start, invocation_count=count,
        first_seen_ns=start + S, last_seen_ns=start + 2 * S, purl=PURL, node_name="node-1",
    )  # fmt: skip


def store(tmp: Path, days: range, *, gap_day: int | None = None) -> str:
    url = f"sqlite:///{tmp}/hot.db"
    windows = []
    for d in days:
        extra = {"gap_start_ns": T0 + d * DAY + S, "gap_end_ns": T0 + d * DAY + 2 * S} if d == gap_day else {}
        windows.append(
            ObservationWindow(IMG, "node-1", T0 + d * DAY, 9, Posture.EBPF_DEEP, 60, "tetragon", **extra)
        )  # type: ignore[arg-type]
    windows += alive_after("node-1", T0 + (days[-1] + 1) * DAY)  # its agent ran on: the last day is whole
    with open_store(url) as s:
        s.write([delta("", days[0], 1, EvidenceKind.LOADED), delta("crc32", days[0] + 3, 12)], windows)
    return url


def vex_cli(
    tmp: Path, url: str, vulns: Any, *extra: str, image: str = IMG, process: bool = False
) -> subprocess.CompletedProcess[str]:
    """``stella-runtime vex`` on ``vulns`` (a key made once per directory), through the CLI's own entry
    point in this process (tests/cli_run.py ``cli_in_process``: same argv, exit status, stdout and
    stderr; a new interpreter is ~0.35 s of CPU per question); ``process`` runs it as a real
    subprocess, for what lives at the process level (an uncaught exception's exit status)."""
    (tmp / "vulns.json").write_text(json.dumps(vulns))
    key = tmp / "w.key"
    if not key.exists():
        made = cli_in_process("witness", "keygen", "--private", str(key), "--public", str(tmp / "w.pub"))
        assert made.returncode == 0, made.stderr
    argv = ["vex", "--store", url, "--image", image, "--vulns", str(tmp / "vulns.json"),
            "--key", str(key), "--witness-dir", str(tmp / "w"), *extra]  # fmt: skip
    if not process:
        return cli_in_process(*argv)
    return subprocess.run(
        [sys.executable, "-m", "stellaops_runtime.cli.main", *argv],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip


def run_vex(tmp: Path, url: str, fmt: str = "openvex", *extra: str) -> dict[str, Any]:
    r = vex_cli(tmp, url, VULNS, "--format", fmt, *extra, image=f"registry.example/shop/app@{IMG}")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def watched(days: range = range(40)) -> list[ObservationWindow]:
    """A window at EbpfDeep on each day (the 30-day window ends at the last), and a record of node-1
    the day after the last (tests/node_alive.py): its agent ran on, so the last day is watched whole,
    not open (store/coverage_open.py)."""
    windows = [
        ObservationWindow(IMG, "node-1", T0 + d * DAY, 9, Posture.EBPF_DEEP, 60, "tetragon") for d in days
    ]
    return windows + (alive_after("node-1", T0 + (days[-1] + 1) * DAY) if days else [])


def by_vuln(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["vulnerability"]["name"]: s for s in doc["statements"]}


def statements(tmp: Path, url: str, vulns: Any) -> dict[str, dict[str, Any]]:
    """``vex`` on ``vulns`` (exit 0, a valid OpenVEX document): its statements by vulnerability."""
    r = vex_cli(tmp, url, vulns)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    OPENVEX.validate(doc)
    return by_vuln(doc)


def test_three_statuses_from_a_fully_watched_window(tmp_path: Path) -> None:
    doc = run_vex(tmp_path, store(tmp_path, range(40)))
    OPENVEX.validate(doc)
    s = by_vuln(doc)
    assert s["CVE-RAN"]["status"] == "affected" and "crc32 (12 calls)" in s["CVE-RAN"]["status_notes"]
    assert "action_statement" in s["CVE-RAN"]
    never = s["CVE-NEVER"]
    assert (never["status"], never["justification"]) == (
        "not_affected",
        "vulnerable_code_not_in_execute_path",
    )
    assert "2026-06-11..2026-07-10: all 30 days watched gap-free" in never["status_notes"]
    assert "posture EbpfDeep" in never["status_notes"] and "nodes node-1" in never["status_notes"]
    assert "impact_statement" not in never and never["vulnerability"]["description"].startswith("heap")
    assert s["CVE-OPENSSL"]["status"] == "under_investigation"
    assert "never seen loaded" in s["CVE-OPENSSL"]["status_notes"]
    assert s["CVE-NOFUNC"]["status"] == "under_investigation"
    assert doc["statements"][0]["products"][0]["@id"] == f"pkg:oci/app@sha256%3A{'d' * 64}"
    # Every cited witness exists and verifies with the public key.
    cited = re.findall(r"witness (sha256:[0-9a-f]{64}) \(([^)]+)\)", json.dumps(doc))
    assert len(cited) == 4  # crc32, adler32, inflateGetHeader, SSL_read
    for _digest, name in cited:
        r = subprocess.run([sys.executable, "-m", "stellaops_runtime.cli.main", "witness", "verify",
                            str(tmp_path / "w" / name), "--key", str(tmp_path / "w.pub"), "--image", IMG],
                           capture_output=True, text=True, cwd=ROOT)  # fmt: skip
        assert r.returncode == 0, r.stderr


def test_a_gap_or_a_partial_watch_is_never_not_affected(tmp_path: Path) -> None:
    (tmp_path / "gap").mkdir()
    s = by_vuln(run_vex(tmp_path / "gap", store(tmp_path / "gap", range(40), gap_day=25)))
    assert s["CVE-NEVER"]["status"] == "under_investigation"
    assert "1 of 30 days not watched gap-free (first 2026-06-26)" in s["CVE-NEVER"]["status_notes"]
    (tmp_path / "part").mkdir()
    s = by_vuln(run_vex(tmp_path / "part", store(tmp_path / "part", range(10))))
    assert s["CVE-NEVER"]["status"] == "under_investigation" and s["CVE-RAN"]["status"] == "affected"
    # A shorter window the image was fully watched for is enough.
    s = by_vuln(
        run_vex(tmp_path / "part", store(tmp_path / "part", range(10)), "openvex", "--window-days", "7")
    )
    assert s["CVE-NEVER"]["status"] == "not_affected"


def test_cyclonedx_output_validates_and_maps_the_states(tmp_path: Path) -> None:
    doc = run_vex(tmp_path, store(tmp_path, range(40)), "cyclonedx")
    err = JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(doc))
    assert err is None, str(err)[:500]
    states = {v["id"]: v["analysis"] for v in doc["vulnerabilities"]}
    assert states["CVE-RAN"]["state"] == "exploitable"
    assert states["CVE-NEVER"] == states["CVE-NEVER"] | {
        "state": "not_affected",
        "justification": "code_not_reachable",
    }
    assert states["CVE-OPENSSL"]["state"] == "in_triage"
    assert doc["metadata"]["component"]["hashes"] == [{"alg": "SHA-256", "content": "d" * 64}]


def test_osv_records_with_function_data() -> None:
    osv = {
        "id": "GO-2024-0001", "aliases": ["CVE-2024-0001"], "summary": "bad parse",
        "affected": [{"package": {"ecosystem": "Go", "name": "golang.org/x/net"},
                      "ecosystem_specific": {"imports": [{"path": "golang.org/x/net/html",
                                                          "symbols": ["Parse", "ParseFragment"]}]}}],
    }  # fmt: skip
    [v] = parse({"vulns": [osv]})
    assert (v.id, v.aliases, v.description) == ("GO-2024-0001", ("CVE-2024-0001",), "bad parse")
    [t] = v.targets
    assert (t.purl, t.functions) == (
        "pkg:golang/golang.org/x/net",
        ("golang.org/x/net/html.Parse", "golang.org/x/net/html.ParseFragment"),
    )
    assert t.names_of("golang.org/x/net/html.Parse") == ("golang.org/x/net/html.Parse[...]",)
    [v] = parse(
        {
            **osv,
            "affected": [
                {"package": {"purl": "pkg:pypi/jinja2"}, "ecosystem_specific": {"functions": ["f"]}}
            ],
        }
    )
    assert v.targets[0].purl == "pkg:pypi/jinja2"


@pytest.mark.parametrize(
    ("ecosystem", "name", "stored"),
    [
        ("Maven", "org.example:log4j-core", "pkg:maven/org.example/log4j-core@2.14.1"),
        ("npm", "@angular/core", "pkg:npm/%40angular/core@17.0.0"),
        ("npm", "lodash", "pkg:npm/lodash@4.17.20"),
        ("PyPI", "Jinja2", "pkg:pypi/jinja2@3.1.2"),
        ("crates.io", "smallvec", "pkg:cargo/smallvec@1.6.0"),
        ("Go", "golang.org/x/net", "pkg:golang/golang.org/x/net@v0.17.0"),
    ],
)
def test_an_osv_package_by_ecosystem_and_name_is_the_package_the_agent_stores(
    ecosystem: str, name: str, stored: str
) -> None:
    """OSV names a Maven package ``<groupId>:<artifactId>``; the agent stores
    ``pkg:maven/<groupId>/<artifactId>@…`` (docs/attribution.md). Read as one name it matched
    nothing: the package was "never seen loaded" whatever ran."""
    [v] = parse({"id": "X", "affected": [{"package": {"ecosystem": ecosystem, "name": name}}]})
    assert PurlQuery.parse(v.targets[0].purl).matches(stored), v.targets[0].purl


@pytest.mark.parametrize(
    "bad",
    [[], {"vulnerabilities": [{"affected": []}]}, {"id": "X", "affected": [{"purl": "not-a-purl"}]},
     {"id": "X", "affected": [{"purl": "pkg:deb/debian/z", "functions": [1]}]}, 7,
     # wrong types anywhere are errors, never a traceback nor silently no function (under_investigation)
     {"vulnerabilities": None}, {"vulns": {"id": "X"}}, {"id": "X", "affected": 5},
     {"id": "X", "affected": {"purl": "pkg:deb/debian/z"}},
     {"id": "X", "affected": [{"package": {"purl": "pkg:golang/x"}, "ecosystem_specific": [1]}]},
     {"id": "X", "affected": [{"package": {"purl": "pkg:golang/x"}, "ecosystem_specific": {"imports": "x"}}]},
     {"id": "X", "affected": [{"package": {"purl": "pkg:golang/x"}, "ecosystem_specific": {"imports": [1]}}]},
     {"id": "X", "affected": [{"package": {"purl": "pkg:golang/x"},
                               "ecosystem_specific": {"imports": {"path": "p"}}}]},
     {"id": "X", "affected": [{"package": "pkg:golang/x"}]},
     {"id": "X", "details": {"a": 1}, "affected": [{"purl": "pkg:deb/debian/z", "functions": ["f"]}]}],
)  # fmt: skip
def test_malformed_input_is_a_clear_error(bad: Any) -> None:
    with pytest.raises(VexInputError) as e:
        parse(bad)
    assert str(e.value)  # the message says where


def test_a_function_id_in_another_spelling_is_the_function_it_names(tmp_path: Path) -> None:
    """An upper-case ID of a function that ran was read as a name nothing matched: not_affected."""
    bid = "1f95d5498d283b79505861523e20b3db2afdf518"
    url = f"sqlite:///{tmp_path}/hot.db"
    ran = dataclasses.replace(delta("crc32", 3, 12), function_id=f"{bid}:crc32+0x0", build_id=bid)
    windows = watched()
    with open_store(url) as s:
        s.write([delta("", 0, 1, EvidenceKind.LOADED), ran], windows)

    def vex_of(functions: list[str]) -> subprocess.CompletedProcess[str]:
        affected = [{"purl": "pkg:deb/debian/zlib1g", "functions": functions}]
        return vex_cli(tmp_path, url, {"vulnerabilities": [{"id": "CVE-X", "affected": affected}]})

    for text in (f"{bid}:crc32+0x0", f"{bid.upper()}:crc32+0x0", f"{bid}:crc32+0X1F"):
        r = vex_of([text])
        assert r.returncode == 0, r.stderr
        assert by_vuln(json.loads(r.stdout))["CVE-X"]["status"] == "affected", text
    r = vex_of(["crc32", f"{bid}:crc32+0xZZ"])  # an ID that does not read: the file's error, no statement
    assert (r.returncode, r.stdout) == (2, "") and "CVE-X: malformed function ID" in r.stderr, r.stderr


def test_go_vulnerability_database_symbols_match_the_names_the_agent_stores(tmp_path: Path) -> None:
    """OSV's Go symbols (``Parse``, ``Tokenizer.Next``) are unqualified and receiver-blind; the agent
    stores ``golang.org/x/net/html.(*Tokenizer).Next``. Asked as given, no symbol matched anything,
    and a watched image whose module was loaded was declared not_affected."""
    net, std = "pkg:golang/golang.org/x/net@v0.17.0", "pkg:golang/stdlib@1.21.5"
    app = "/app/server"

    def ran(fn: str, purl: str) -> HotSymbolDelta:
        start = T0 + 3 * DAY
        return HotSymbolDelta(
            key=HotSymbolKey(IMG, app, fn, EvidenceKind.ON_STACK), window_start_ns=start, invocation_count=5,
            first_seen_ns=start + S, last_seen_ns=start + 2 * S, purl=purl, node_name="node-1",
        )  # fmt: skip

    url = f"sqlite:///{tmp_path}/hot.db"
    windows = watched()
    with open_store(url) as s:
        s.write(
            [
                ran("golang.org/x/net/html.(*Tokenizer).Next", net),
                ran("golang.org/x/net/html.Parse", net),
                ran("golang.org/x/net/http2.Framer.ReadFrame", net),  # a value receiver
                ran("golang.org/x/net/idna.Map[...]", net),  # a generic function
                ran("net/http.(*Server).Serve", std),
            ],
            windows,
        )

    def osv(vid: str, module: str, path: str, *symbols: str) -> dict[str, Any]:
        imports = [{"path": path, "symbols": list(symbols)}]
        return {"id": vid, "affected": [{"package": {"ecosystem": "Go", "name": module},
                                         "ecosystem_specific": {"imports": imports}}]}  # fmt: skip

    vulns = {
        "vulns": [
            osv("GO-POINTER", "golang.org/x/net", "golang.org/x/net/html", "Tokenizer.Next"),
            osv("GO-VALUE", "golang.org/x/net", "golang.org/x/net/http2", "Framer.ReadFrame"),
            osv("GO-GENERIC", "golang.org/x/net", "golang.org/x/net/idna", "Map"),
            osv("GO-STDLIB", "stdlib", "net/http", "Server.Serve"),
            osv("GO-NOTRUN", "golang.org/x/net", "golang.org/x/net/html", "ParseFragment", "Tokenizer.Raw"),
        ]
    }
    s = statements(tmp_path, url, vulns)
    for vid in ("GO-POINTER", "GO-VALUE", "GO-GENERIC", "GO-STDLIB"):
        assert s[vid]["status"] == "affected", (vid, s[vid].get("status_notes"))
    assert "golang.org/x/net/html.Tokenizer.Next (5 calls)" in s["GO-POINTER"]["status_notes"]
    # Parse ran, ParseFragment did not: a prefix never matches.
    assert (s["GO-NOTRUN"]["status"], s["GO-NOTRUN"]["justification"]) == (
        "not_affected",
        "vulnerable_code_not_in_execute_path",
    )


def test_go_symbols_without_their_package_path_are_an_input_error() -> None:
    pkg = {"ecosystem": "Go", "name": "golang.org/x/net"}
    rec = {
        "id": "GO-1",
        "affected": [{"package": pkg, "ecosystem_specific": {"imports": [{"symbols": ["Parse"]}]}}],
    }
    with pytest.raises(VexInputError, match="symbols without a package path"):
        parse(rec)


def test_a_cxx_function_named_without_its_parameters_is_each_overload(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/hot.db"
    windows = watched()
    with open_store(url) as s:
        s.write(
            [
                delta("", 0, 1, EvidenceKind.LOADED),
                delta("Poco::Net::HTTPRequest::read(std::istream&)", 3, 4),
            ],
            windows,
        )
    fns = {"CVE-CXX": ["Poco::Net::HTTPRequest::read"], "CVE-OTHER": ["Poco::Net::HTTPRequest::readHeader"]}
    doc = {
        "vulnerabilities": [
            {"id": k, "affected": [{"purl": "pkg:deb/debian/zlib1g", "functions": v}]} for k, v in fns.items()
        ]
    }
    s = statements(tmp_path, url, doc)
    assert s["CVE-CXX"]["status"] == "affected"  # was not_affected: the name matched no stored name
    assert s["CVE-OTHER"]["status"] == "not_affected"


def test_rustsec_function_paths_match_the_names_of_a_real_rust_build(tmp_path: Path, url: str) -> None:
    """RustSec's OSV records name ``smallvec::SmallVec::insert_many`` under
    ``ecosystem_specific.affects.functions`` (or ``affected_functions``); the agent stores what
    rustc-demangle prints for a real v0 build (``<smallvec::SmallVec<u8>>::insert_many::<…>``).
    Before, the OSV record was under_investigation (its functions were not read) and the same path
    in our format was signed not_affected for a function that ran. SQLite and PostgreSQL alike."""
    app, cargo = "/app/server", "pkg:cargo/smallvec@1.6.0"

    def ran(fn: str, count: int, kind: EvidenceKind = EvidenceKind.ON_STACK) -> HotSymbolDelta:
        start = T0 + 3 * DAY
        return HotSymbolDelta(
            key=HotSymbolKey(IMG, app, fn, kind), window_start_ns=start, invocation_count=count,
            first_seen_ns=start + S, last_seen_ns=start + 2 * S, purl=cargo, node_name="node-1",
        )  # fmt: skip

    names = crate_names("v0")
    assert any(n.startswith("<smallvec::SmallVec<u8>>::insert_many::<") for n in names), names
    with open_store(url) as s:
        s.write([ran("", 1, EvidenceKind.LOADED), *(ran(n, 3) for n in names)], watched())

    def rustsec(vid: str, *functions: str, field: str = "affects") -> dict[str, Any]:
        pkg = {"ecosystem": "crates.io", "name": "smallvec", "purl": "pkg:cargo/smallvec"}
        es = {"affects": {"arch": [], "os": [], "functions": list(functions)}}
        if field != "affects":
            es = {field: list(functions)}
        return {"id": vid, "affected": [{"package": pkg, "ecosystem_specific": es}]}

    ours = {
        "id": "OURS",
        "affected": [{"purl": "pkg:cargo/smallvec", "functions": ["smallvec::SmallVec::insert_many"]}],
    }
    vulns = [
        rustsec("RUSTSEC-2021-0003", "smallvec::SmallVec::insert_many"),
        rustsec("RUSTSEC-DROP", "smallvec::SmallVec::drop", field="affected_functions"),
        rustsec("RUSTSEC-PROVIDED", "smallvec::Shape::describe"),  # a trait's provided method
        rustsec("RUSTSEC-NOTRUN", "smallvec::SmallVec::grow", "smallvec::SmallVec::insert_man"),
        ours,
    ]
    st = statements(tmp_path, url, vulns)
    for vid in ("RUSTSEC-2021-0003", "RUSTSEC-DROP", "RUSTSEC-PROVIDED", "OURS"):
        assert st[vid]["status"] == "affected", (vid, st[vid])
    assert "smallvec::SmallVec::insert_many (6 calls)" in st["OURS"]["status_notes"]  # function, closure
    assert (st["RUSTSEC-NOTRUN"]["status"], st["RUSTSEC-NOTRUN"]["justification"]) == (
        "not_affected",
        "vulnerable_code_not_in_execute_path",
    )


def test_a_rustsec_affects_that_is_not_an_object_is_an_input_error() -> None:
    es = {"affects": ["smallvec::SmallVec::insert_many"]}
    rec = {
        "id": "RUSTSEC-1",
        "affected": [{"package": {"ecosystem": "crates.io", "name": "smallvec"}, "ecosystem_specific": es}],
    }
    with pytest.raises(VexInputError, match=r"ecosystem_specific\.affects: expected an object"):
        parse(rec)
