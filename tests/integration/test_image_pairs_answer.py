"""A question by an image's config digest or by its manifest digest rests on the rows of both.

An image with no repo digest (``ctr import``, ``kind load``) is filed by an agent with the
containerd lifecycle part under its manifest digest, while kubectl shows its config digest
(``imageID``) and an agent with ``lifecycle.enabled: false`` files it under that config digest.
Before the fix, a call stored under the manifest digest and an EbpfDeep window stored under the
config digest (a lifecycle-off node) made ``query observed`` by the config digest answer
``not_observed`` (exit 1): a "no" resting on half of the image's rows. Now the agent records the
pairing (``image_pairs``, store/image_pairs.py), a call under either digest answers the question
by either, and a "no" rests on the windows and gaps of both digests
(store/same_image.py ``of_image``; tests/integration/test_image_pairs_windows.py); it is
``unknown`` only when more digests are paired than are read (evidence/paired_image.py).

Real rows through the store's writer (SQLite and PostgreSQL); the CLI in-process, once as a
subprocess.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.cli.main import main
from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.schema import datetime_to_ns
from stellaops_runtime.witness import keys
from tests.cli_run import cli_json

S = 1_000_000_000
MANIFEST = "sha256:" + "1" * 64  # the key the lifecycle agent files the image under
CONFIG = "sha256:" + "c" * 64  # kubectl's imageID; the key of a lifecycle-off node
OTHER = "sha256:" + "e" * 64  # an image of no pairing
ZLIB = "/usr/lib/x86_64-linux-gnu/libz.so.1"
PURL = "pkg:deb/debian/zlib1g@1.2.13.dfsg-1?arch=amd64"
# Days 1 and 2: the nodes' last day (3) may hold a node whose agent is down since (coverage_open.py).
PERIOD = ("--since", "2026-06-01T00:00:00Z", "--until", "2026-06-02T23:59:59Z")


def at(day: int) -> int:
    return datetime_to_ns(dt.datetime(2026, 6, day, 10, tzinfo=dt.UTC))


def fill(url: str, *, paired: bool = True) -> None:
    """crc32 called under the manifest digest on node-1 (lifecycle on); EbpfDeep windows of the
    image under the manifest digest on node-1 and under the config digest on node-2 (lifecycle
    off), three days each; the agent's pairing (config -> manifest) when ``paired``."""
    call = HotSymbolDelta(HotSymbolKey(MANIFEST, ZLIB, "crc32", EvidenceKind.ON_STACK), at(1), 5,
                          at(1) + S, at(1) + 2 * S, purl=PURL, node_name="node-1")  # fmt: skip
    windows = [
        ObservationWindow(image, node, at(d), 9, Posture.EBPF_DEEP, 60, "tetragon")
        for image, node in ((MANIFEST, "node-1"), (CONFIG, "node-2"))
        for d in (1, 2, 3)
    ]
    with open_store(url) as s:
        s.write([call], windows)
        if paired:
            s.record_pairs([(CONFIG, MANIFEST)])
            s.record_pairs([(CONFIG, MANIFEST)])  # idempotent: once per pairing, any number of agents


def ask(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = main(list(argv))
    return code, json.loads(capsys.readouterr().out)


def observed(url: str, capsys: pytest.CaptureFixture[str], image: str, function: str) -> tuple[int, Any]:
    argv = ("query", "observed", "--store", url, "--image", image, "--function", function, "--json")
    return ask(capsys, *argv, *PERIOD)


@pytest.mark.parametrize("image", [CONFIG, MANIFEST], ids=["by-config", "by-manifest"])
def test_a_call_under_either_digest_answers_a_question_by_either(
    url: str, capsys: pytest.CaptureFixture[str], image: str
) -> None:
    fill(url)
    code, doc = observed(url, capsys, image, "crc32")
    assert (code, doc["answer"]) == (0, "observed"), doc
    assert [r["image_digest"] for r in doc["records"]] == [MANIFEST], doc


@pytest.mark.parametrize(
    ("image", "other"), [(CONFIG, MANIFEST), (MANIFEST, CONFIG)], ids=["by-config", "by-manifest"]
)
def test_a_no_where_both_digests_hold_rows_rests_on_the_windows_of_both(
    url: str, capsys: pytest.CaptureFixture[str], image: str, other: str
) -> None:
    """Before DG3: unknown, naming the other digest, however well both were watched."""
    fill(url)
    code, doc = observed(url, capsys, image, "inflate")
    assert (code, doc["answer"]) == (1, "not_observed"), doc
    assert doc["coverage"]["nodes"] == ["node-1", "node-2"] and other not in doc["reason"], doc
    code, ev = ask(capsys, "evidence", "--store", url, "--image", image, "--purl", "pkg:deb/debian/zlib1g",
                   "--function", "inflate", "--json")  # fmt: skip
    assert ev["data"]["watched_days"] == 2 and other not in ev["reason"], ev
    code, fns = ask(capsys, "query", "functions", "--store", url, "--image", image, "--purl",
                    "pkg:deb/debian/zlib1g", "--json")  # fmt: skip
    assert code == 0 and [f["function_name"] for f in fns["functions"]] == ["crc32"], fns


def test_evidence_by_the_config_digest_counts_the_call_under_the_manifest_digest(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fill(url)
    code, doc = ask(capsys, "evidence", "--store", url, "--image", CONFIG, "--purl", "pkg:deb/debian/zlib1g",
                    "--function", "crc32", "--json")  # fmt: skip
    assert code == 0 and doc["reachability_state"] == "DynamicReachable", doc
    assert doc["data"]["invocation_count"] == 5, doc["data"]


def test_an_image_of_no_pairing_answers_as_before(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    fill(url)
    with open_store(url) as s:
        s.write(
            [],
            [ObservationWindow(OTHER, "node-1", at(d), 9, Posture.EBPF_DEEP, 60, "tetragon") for d in (1, 2)],
        )
    code, doc = observed(url, capsys, OTHER, "inflate")
    assert (code, doc["answer"]) == (1, "not_observed"), doc


def test_the_real_cli_by_the_config_digest_rests_a_no_on_both_digests(url: str) -> None:
    fill(url)
    code, doc = cli_json("query", "observed", "--store", url, "--image", f"registry.local/app@{CONFIG}",
                         "--function", "inflate", "--json", *PERIOD)  # fmt: skip
    assert (code, doc["answer"]) == (1, "not_observed"), doc
    assert doc["coverage"]["nodes"] == ["node-1", "node-2"], doc


@pytest.mark.parametrize("image", [CONFIG, MANIFEST], ids=["by-config", "by-manifest"])
def test_the_calls_per_day_under_the_other_digest_count_too(
    url: str, capsys: pytest.CaptureFixture[str], image: str
) -> None:
    """2,000 calls of crc32 in one day under the manifest digest: high frequency by either digest
    (before, by the config digest the day's calls were read under the config digest only: 0)."""
    fill(url)
    busy = HotSymbolDelta(HotSymbolKey(MANIFEST, ZLIB, "crc32", EvidenceKind.ON_STACK), at(2), 2_000,
                          at(2) + S, at(2) + 2 * S, purl=PURL, node_name="node-1")  # fmt: skip
    with open_store(url) as s:
        s.write([busy], [])
    code, doc = ask(capsys, "evidence", "--store", url, "--image", image, "--purl", "pkg:deb/debian/zlib1g",
                    "--function", "crc32", "--json")  # fmt: skip
    assert code == 0 and doc["rts"]["score"] == 1.0, doc["rts"]


def test_the_calls_per_day_are_those_of_the_rows_the_answer_counts(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The day counts read each row's own key (digest, module, function, kind), not every digest of
    the rows crossed with every key: crc32 on a stack under the config digest with no package (a
    node without attribution) is no row of zlib's, and its 2,000 calls are none of zlib's day
    (review RDG2 of d65c0f1b: max_calls_in_a_day 2,000 over an invocation_count of 5)."""
    fill(url)
    zlib = HotSymbolDelta(HotSymbolKey(CONFIG, ZLIB, "crc32", EvidenceKind.INVOKED), at(1), 3,
                          at(1) + S, at(1) + 2 * S, purl=PURL, node_name="node-2")  # fmt: skip
    none = HotSymbolDelta(HotSymbolKey(CONFIG, ZLIB, "crc32", EvidenceKind.ON_STACK), at(2), 2_000,
                          at(2) + S, at(2) + 2 * S, purl="", node_name="node-2")  # fmt: skip
    with open_store(url) as s:
        s.write([zlib, none], [])
    code, doc = ask(capsys, "evidence", "--store", url, "--image", CONFIG, "--purl", "pkg:deb/debian/zlib1g",
                    "--function", "crc32", "--json")  # fmt: skip
    assert code == 0 and doc["data"]["invocation_count"] == 5, doc["data"]
    assert doc["data"]["max_calls_in_a_day"] == 5, doc["data"]


def _many_pairings(url: str, called: str, function: str) -> str:
    """70 manifests paired with one config (more than same_image.MAX_PAIRED), ``function`` called
    under ``called``, EbpfDeep windows under the last manifest; returns that manifest (sorted after
    the others, "sha256:0...", and before the config digest)."""
    manifests = [f"sha256:{i:064x}" for i in range(1, 71)]
    called = manifests[-2] if called == "a manifest" else called
    call = HotSymbolDelta(HotSymbolKey(called, ZLIB, function, EvidenceKind.ON_STACK), at(1), 5,
                          at(1) + S, at(1) + 2 * S, purl=PURL, node_name="node-2")  # fmt: skip
    windows = [
        ObservationWindow(manifests[-1], "node-1", at(d), 9, Posture.EBPF_DEEP, 60, "tetragon")
        for d in (1, 2)
    ]
    with open_store(url) as s:
        s.write([call], windows)
        s.record_pairs([(CONFIG, m) for m in manifests])
    return manifests[-1]


def test_more_pairings_than_are_read_never_leave_out_the_config_digest(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The question by a manifest reads the config digest's calls however many manifests are
    paired (review RDG2 of 24f6f388: the digests were cut at 64 after sorting, the config digest
    sorted last and was cut, and crc32 called under it was not_observed by the asked digest)."""
    asked = _many_pairings(url, CONFIG, "crc32")
    code, doc = observed(url, capsys, asked, "crc32")
    assert (code, doc["answer"]) == (0, "observed"), doc


def test_a_no_with_more_pairings_than_are_read_is_unknown(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """adler32 called under a manifest past the cut is not read: its "no" is unknown, saying so
    (review RDG2 of 24f6f388: not_observed, no digest read holding rows)."""
    asked = _many_pairings(url, "a manifest", "adler32")
    code, doc = observed(url, capsys, asked, "adler32")
    assert (code, doc["answer"]) == (3, "unknown") and "more than 64 digests" in doc["reason"], doc


@pytest.mark.parametrize(
    ("image", "other"), [(CONFIG, MANIFEST), (MANIFEST, CONFIG)], ids=["by-config", "by-manifest"]
)
def test_no_functions_of_a_package_rests_on_the_gaps_of_both_digests(
    url: str, capsys: pytest.CaptureFixture[str], image: str, other: str
) -> None:
    """``query functions`` with nothing to list rests on both digests' windows and gaps: libpng mapped
    under the manifest digest, none of its functions seen; all time holds both nodes' open last day
    (each its own digest's), so unknown naming both, and no longer the pairing itself."""
    fill(url)
    png, purl = "/usr/lib/x86_64-linux-gnu/libpng16.so.16", "pkg:deb/debian/libpng16-16@1.6.39-2?arch=amd64"
    loaded = HotSymbolDelta(HotSymbolKey(MANIFEST, png, "", EvidenceKind.LOADED), at(1), 1, at(1) + S,
                            at(1) + S, purl=purl, node_name="node-1")  # fmt: skip
    with open_store(url) as s:
        s.write([loaded], [])
    code, doc = ask(capsys, "query", "functions", "--store", url, "--image", image, "--purl",
                    "pkg:deb/debian/libpng16-16", "--json")  # fmt: skip
    assert (code, doc["answer"]) == (3, "unknown") and "same image" not in doc["reason"], doc
    assert "on node node-1" in doc["reason"] and "on node node-2" in doc["reason"], doc["reason"]


@pytest.mark.parametrize("image", [CONFIG, MANIFEST], ids=["by-config", "by-manifest"])
def test_vex_by_either_digest_rests_on_the_windows_of_both(
    url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, image: str
) -> None:
    """``vex`` (review RDG2 of 24f6f388): crc32, called under the manifest digest, affected by
    either digest; inflate, never called, not_affected by either: both days were watched on both
    nodes, each under its own digest, without a gap (before DG3: under_investigation by the pairing
    alone). A gap under the other digest forbids it: test_image_pairs_windows.py."""
    fill(url)
    keys.generate(tmp_path / "k", tmp_path / "k.pub")
    vulns = {"vulnerabilities": [
        {"id": "CVE-RAN", "affected": [{"purl": "pkg:deb/debian/zlib1g", "functions": ["crc32"]}]},
        {"id": "CVE-NEVER", "affected": [{"purl": "pkg:deb/debian/zlib1g", "functions": ["inflate"]}]},
    ]}  # fmt: skip
    (tmp_path / "vulns.json").write_text(json.dumps(vulns))
    code = main(["vex", "--store", url, "--image", image, "--vulns", str(tmp_path / "vulns.json"),
                 "--window-days", "2", "--until", "2026-06-02", "--key", str(tmp_path / "k"),
                 "--witness-dir", str(tmp_path / "w")])  # fmt: skip
    status = {
        s["vulnerability"]["name"]: s["status"] for s in json.loads(capsys.readouterr().out)["statements"]
    }
    assert code == 0 and status == {"CVE-RAN": "affected", "CVE-NEVER": "not_affected"}, status
