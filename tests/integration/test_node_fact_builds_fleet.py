"""The facts' builds of an image watched on many nodes are read in a few statements, not one a node.

store/node_facts.py reads ``node_fact_builds`` (migration 0016) for the nodes an image was watched on
that hold a fact of the function asked. It read them one node at a time: an image of a DaemonSet on
1,000 nodes, each with the node file's fact, cost 1,000 statements a question (and ``vex`` asks one
a symbol), where every other read of the question is one statement for all its nodes. Now the
nodes and names go in parts of KEYS_PER_STATEMENT: two statements of it for 1,000 nodes' facts
(SQLite and PostgreSQL), and the answer meets every node's fact.
"""

from __future__ import annotations

import sqlalchemy as sa

from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.batches import Batch
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.function_refs import function_query
from stellaops_runtime.store.node_facts import node_file_unprobed
from tests.integration.test_vex import DAY, T0, S

POD = "sha256:" + "ab" * 32  # a DaemonSet's image: it runs the node's file on every node
NODES = [f"node-{i:04d}" for i in range(1_001)]  # past one part of KEYS_PER_STATEMENT (1,000)
MODULE = "/proc/1/root/usr/bin/app"
BID = "ab" * 20


def _fact(node: str, at: int) -> HotSymbolDelta:
    key = HotSymbolKey(f"host:{node}", MODULE, "f.part.0", EvidenceKind.UNPROBED)
    return HotSymbolDelta(key, at, 0, at, at, confidence=0.0, build_id=BID, node_name=node)


def test_an_image_on_1001_nodes_reads_the_facts_builds_in_two_statements(url: str) -> None:
    at = T0 + 3 * DAY
    call = HotSymbolDelta(
        HotSymbolKey(POD, MODULE, "user", EvidenceKind.INVOKED), at, 5, at + S, at + S, build_id=BID,
        node_name=NODES[0],
    )  # fmt: skip
    windows = [ObservationWindow(POD, n, at, 9, Posture.EBPF_DEEP, 60, "bcc") for n in NODES]
    with open_store(url) as s:
        s.write([call], windows)
        assert not s.write_batch(Batch("fleet/agent", 1, [_fact(n, at) for n in NODES])).errors
        read: list[str] = []

        def grab(_c: object, _cur: object, statement: str, *_: object) -> None:
            read.append(statement)

        sa.event.listen(s.engine, "before_cursor_execute", grab)
        with s.engine.connect() as conn:
            got = node_file_unprobed(conn, image=POD, function=function_query("f"))
        sa.event.remove(s.engine, "before_cursor_execute", grab)
    assert sorted(r.image_digest for r in got) == sorted(f"host:{n}" for n in NODES)
    assert len([st for st in read if "node_fact_builds" in st and "SELECT" in st]) == 2, len(read)
