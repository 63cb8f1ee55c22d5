"""The agent's witness bridge marks a claim by an image's config digest with the image's counts.

A lifecycle agent files an image with no repo digest under its manifest digest, while a claim
(a scanner's, a policy's) names it by kubectl's imageID, the config digest. The bridge marked a
claim only by counts under the claim's own digest, so such a claim never got a witness from a
lifecycle node however often the function ran (review RDG2 of 24f6f388, which made ``witness``
answer by either digest but left the marking by one). Once the agent has stored the pairing
(store/image_pairs.py ``PairsToRecord.others``), counts under the manifest digest mark the claim
and its witness rests on the store's rows of both digests (store/same_image.py).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.image_pairs import PairsToRecord
from stellaops_runtime.store.schema import datetime_to_ns
from stellaops_runtime.witness import dsse, keys
from stellaops_runtime.witness import store as wstore
from stellaops_runtime.witness.bridge import Claim, WitnessBridge
from stellaops_runtime.witness.statement import check_statement

S = 1_000_000_000
T0 = datetime_to_ns(dt.datetime(2026, 6, 1, tzinfo=dt.UTC))
MANIFEST = "sha256:" + "1" * 64
CONFIG = "sha256:" + "c" * 64
ZLIB = "/usr/lib/x86_64-linux-gnu/libz.so.1"
PURL = "pkg:deb/debian/zlib1g@1.2.13.dfsg-1?arch=amd64"


def crc32(image: str = MANIFEST) -> HotSymbolDelta:
    key = HotSymbolKey(image, ZLIB, "crc32", EvidenceKind.INVOKED)
    return HotSymbolDelta(key, T0, 12, T0 + S, T0 + 2 * S, purl=PURL)


async def test_a_claim_by_the_config_digest_is_marked_by_counts_under_the_manifest_digest(
    tmp_path: Path, sqlite_at_head: Callable[[Path], str]
) -> None:
    store = open_store(sqlite_at_head(tmp_path / "hot.db"))
    store.write([crc32()], [ObservationWindow(MANIFEST, "n", T0, 5, Posture.EBPF_DEEP, 60, "tetragon")])
    keys.generate(tmp_path / "k", tmp_path / "k.pub")
    bridge = WitnessBridge([Claim(CONFIG, "pkg:deb/debian/zlib1g", "crc32")], key_file=str(tmp_path / "k"))
    pairs = PairsToRecord()
    bridge.paired = pairs.others
    pairs.note(CONFIG, MANIFEST)
    bridge.observe([crc32()])
    bridge.stored()
    assert bridge.marked == 0  # the pairing is not in the store yet: a witness would rest on one digest
    store.record_pairs(pairs.unstored())
    pairs.stored(pairs.unstored())
    bridge.observe([crc32(), crc32("sha256:" + "e" * 64)])
    bridge.stored()
    assert bridge.marked == 1
    assert await bridge.flush(store.engine) == 1
    with store.engine.connect() as conn:
        [w] = wstore.find(conn, image=CONFIG)
        data = wstore.envelope(conn, ref=w.envelope_sha256)
    assert w.state == "DynamicReachable"
    stmt = check_statement(
        dsse.verify(json.loads(data or b""), keys.load_public(tmp_path / "k.pub")), image=CONFIG
    )
    assert stmt["predicate"]["observation"]["invocation_count"] == 12
    store.close()


def test_the_digests_of_one_image_are_those_of_stored_pairings() -> None:
    pairs = PairsToRecord()
    m2 = "sha256:" + "2" * 64
    pairs.note(CONFIG, MANIFEST)
    pairs.note(CONFIG, m2)
    assert pairs.others(CONFIG) == frozenset()  # noted, not stored
    pairs.stored([(CONFIG, MANIFEST)])
    assert (pairs.others(CONFIG), pairs.others(MANIFEST)) == ({MANIFEST}, {CONFIG})
    pairs.stored([(CONFIG, m2)])
    assert pairs.others(MANIFEST) == {CONFIG, m2} and pairs.others(m2) == {CONFIG, MANIFEST}
    assert pairs.others(CONFIG) == {MANIFEST, m2} and pairs.others("sha256:" + "e" * 64) == frozenset()


def test_the_agent_hands_its_stored_pairings_to_the_witness_bridge(tmp_path: Path) -> None:
    """The real Agent with the lifecycle part and the witness bridge wires ``paired`` (runner.py)."""
    from stellaops_runtime.agent.runner import Agent
    from stellaops_runtime.contracts.config import parse_config

    keys.generate(tmp_path / "k", tmp_path / "k.pub")
    (tmp_path / "claims.yaml").write_text(
        f"claims:\n  - {{image: '{CONFIG}', purl: 'pkg:deb/debian/zlib1g', function: crc32}}\n"
    )
    witness = {"enabled": True, "keyFile": str(tmp_path / "k"), "claimsFile": str(tmp_path / "claims.yaml")}
    config = {
        "store": {"url": f"sqlite:///{tmp_path}/hs.db"},
        "lifecycle": {"enabled": True},
        "witness": witness,
    }
    agent = Agent(parse_config(config), node_name="n1")
    try:
        assert agent.lifecycle is not None and agent.witness is not None
        agent.flusher.pairs.note(CONFIG, MANIFEST)
        agent.flusher.pairs.stored([(CONFIG, MANIFEST)])
        agent.witness.observe([crc32()])
        agent.witness.stored()
        assert agent.witness.marked == 1
    finally:
        agent._worker.shutdown(wait=True)
