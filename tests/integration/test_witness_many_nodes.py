"""A witness of an image watched on a thousand nodes, each with its own gap, stays under ~100 KB.

docs/witnesses.md promises a witness "well under the ~100 KB that public transparency logs
accept". Function rows were cut to fit, but the gaps (one per node and scope) and the coverage's
node names were not: a DaemonSet's image on 1,000 nodes, each with the gap of an agent rollout,
made a 361 KB witness. Now the three lists share the 64 KiB predicate, the image's own gaps kept
before the node-wide ones, the rest counted (``gaps_omitted``, ``nodes_omitted``), and the
assessment still rests on all of them. The envelope is checked with a DSSE verifier written here
from the spec, and the predicate against the JSON schema.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

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
from stellaops_runtime.witness.statement import MAX_PREDICATE_BYTES
from tests.node_alive import alive_after
from tests.witness_helpers import spec_verify

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "docs" / "schemas" / "runtime-witness-v1.schema.json").read_text())
S = 1_000_000_000
T0 = datetime_to_ns(dt.datetime(2026, 6, 1, tzinfo=dt.UTC))
IMG = "sha256:" + "d" * 64
ZLIB = "/usr/lib/x86_64-linux-gnu/libz.so.1"
PURL = "pkg:deb/debian/zlib1g@1.2.13.dfsg-1?arch=amd64"


def node(i: int) -> str:
    return f"ip-10-0-{i // 256}-{i % 256}.eu-west-1.compute.internal"


def fill(url: str, nodes: int) -> None:
    """The image on ``nodes`` nodes, watched on two days: crc32 called on the first node, a node-wide
    gap (an agent rollout) on every node the second day, and the image's own gap on the last node."""
    day2 = T0 + 86_400 * S
    deltas = [
        HotSymbolDelta(HotSymbolKey(IMG, ZLIB, "", EvidenceKind.LOADED), T0, 1, T0 + S, T0 + S, purl=PURL,
                       node_name=node(0)),
        HotSymbolDelta(HotSymbolKey(IMG, ZLIB, "crc32", EvidenceKind.INVOKED), T0, 42, T0 + S, T0 + 2 * S,
                       purl=PURL, node_name=node(0), sample={"stack": [{"module": ZLIB, "symbol": "crc32"}]}),
    ]  # fmt: skip
    windows = []
    for i in range(nodes):
        windows.append(ObservationWindow(IMG, node(i), T0, 50, Posture.EBPF_DEEP, 60, "tetragon"))
        windows.append(ObservationWindow(IMG, node(i), day2, 50, Posture.EBPF_DEEP, 60, "tetragon"))
        windows.append(ObservationWindow("", node(i), day2 + 60 * S, 0, None, 60, "tetragon",
                                         day2 + 60 * S, day2 + 90 * S, 0, 7))  # fmt: skip
    last = node(nodes - 1)
    windows.append(ObservationWindow(IMG, last, day2 + 300 * S, 5, Posture.EBPF_DEEP, 60, "tetragon",
                                     day2 + 300 * S, day2 + 310 * S, 1, 0))  # fmt: skip
    # every node's agent ran on past the second day (a record of each the day after): not open
    windows += alive_after([node(i) for i in range(nodes)], day2 + 86_400 * S)
    with open_store(url) as s:
        s.write(deltas, windows)


def spec_statement(envelope: dict[str, Any], public: Ed25519PublicKey) -> dict[str, Any]:
    """The statement, verified by DSSE from the spec (witness_helpers.spec_verify): one signature."""
    assert len(envelope["signatures"]) == 1
    stmt: dict[str, Any] = json.loads(spec_verify(envelope, public))
    return stmt


def sign(
    tmp: Path, capsys: pytest.CaptureFixture[str], nodes: int
) -> tuple[dict[str, Any], dict[str, Any], int]:
    """(the verified statement, the Evidence document of the same store, the witness file's size)."""
    url = f"sqlite:///{tmp}/hot.db"
    fill(url, nodes)
    priv, pub, out = tmp / "w.key", tmp / "w.pub", tmp / "w.json"
    assert main(["witness", "keygen", "--private", str(priv), "--public", str(pub)]) == 0
    claim = ["--store", url, "--image", IMG, "--purl", "pkg:deb/debian/zlib1g", "--function", "crc32"]
    assert main(["witness", "sign", *claim, "--key", str(priv), "--out", str(out)]) == 0
    capsys.readouterr()
    main(["evidence", *claim, "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert main(["witness", "verify", str(out), "--key", str(pub), "--image", IMG]) == 0
    stmt = spec_statement(json.loads(out.read_text()), keys.load_public(pub))
    jsonschema.validate(stmt["predicate"], SCHEMA)
    return stmt, doc, out.stat().st_size


def test_a_thousand_nodes_each_with_a_gap_make_a_witness_under_100_kb(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stmt, doc, size = sign(tmp_path, capsys, 1000)
    p = stmt["predicate"]
    o = p["observation"]
    assert size < 100_000
    assert len(json.dumps(p, separators=(",", ":"), ensure_ascii=False).encode()) <= MAX_PREDICATE_BYTES
    # everything left out is counted: the store's gaps and nodes, every one
    assert len(doc["data"]["gaps"]) == 1001 and len(doc["data"]["coverage"]["nodes"]) == 1000
    assert len(o["gaps"]) + o["gaps_omitted"] == 1001 and o["gaps_omitted"] > 0
    assert len(o["coverage"]["nodes"]) + o["nodes_omitted"] == 1000 and o["nodes_omitted"] > 0
    # the image's own gap is kept first; the kept nodes are the store's, in its order
    assert o["gaps"][0]["scope"] == "image" and o["gaps"][0]["node"] == node(999)
    assert o["coverage"]["nodes"] == doc["data"]["coverage"]["nodes"][: len(o["coverage"]["nodes"])]
    # each list keeps a share: the call's row, with its stack digest, is still there
    [row] = o["functions"]
    assert (row["function_name"], row["invocation_count"], o["functions_omitted"]) == ("crc32", 42, 0)
    # the assessment rests on all of them: the Evidence document's, not one of what was kept
    a = p["assessment"]
    assert (a["reachability_state"], a["confidence"], a["rts"]) == (
        doc["reachability_state"], doc["confidence"], doc["rts"]
    )  # fmt: skip
    assert (o["watched_days"], o["days_without_calls"]) == (doc["data"]["watched_days"], 0)


def test_a_small_cluster_keeps_every_gap_and_node(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stmt, doc, _ = sign(tmp_path, capsys, 3)
    o = stmt["predicate"]["observation"]
    assert (o["gaps_omitted"], o["nodes_omitted"], o["functions_omitted"]) == (0, 0, 0)
    assert o["gaps"] == doc["data"]["gaps"] and len(o["gaps"]) == 4
    assert o["coverage"] == doc["data"]["coverage"]
    assert stmt["predicate"]["stacks"]  # small: the stack itself is kept
