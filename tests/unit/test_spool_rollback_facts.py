"""A spool file holding fact rows stays readable by an agent of before the facts (a rollback).

The ``unprobed`` and ``listed`` fact rows (agent/unprobed.py, agent/listed_jars.py) are evidence
kinds an agent of session 41 (995bd72) does not know: its ``EvidenceKind(d["evidence"])`` raised
on them, so a DaemonSet rolled back during a store outage set aside every batch of the newer
agent's spool file that held one, the counts beside the fact with it (checked against the real
995bd72 code: a file of one batch, two counts around the two facts, was moved aside whole, no
count replayed; brief F4 of session 42). The writer now keeps each fact out of the batch's
``units`` (a tombstone in its place, so every index, and the ledger's parts, stay) and writes it
under ``facts``, a key older readers skip; the header's ``rows`` counts what they read. This
version reads the facts back in place. The old reader's rule is applied here as it was: every
unit's evidence one of its five kinds, the header's rows its count of units.
"""

from __future__ import annotations

import enum
import hashlib
import json
from pathlib import Path

import pytest

from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey
from stellaops_runtime.store.batches import Batch, batch_from_json, batch_to_json, unit_to_json
from stellaops_runtime.store.spool import SpoolError, read_spool, read_spool_salvaged, write_spool

# The evidence kinds of 995bd72 (contracts/hotsymbols.py there): all an agent of session 41 decodes.
OldKind = enum.Enum("OldKind", {k: k for k in ("invoked", "kernel_call", "on_stack", "executed", "loaded")})
IMG = "sha256:" + "d" * 64
T0 = 1_780_000_000 * 10**9


def _row(module: str, fn: str, kind: EvidenceKind, count: int) -> HotSymbolDelta:
    key = HotSymbolKey(IMG, module, fn, kind)
    return HotSymbolDelta(key, T0, count, T0 + 1, T0 + 2, node_name="node-1", purl="pkg:deb/debian/zlib1g@1")


def _batch() -> Batch:
    return Batch(
        "node-1/new",
        4,
        [
            _row("/lib/libz.so.1", "adler32", EvidenceKind.INVOKED, 5),
            _row("/lib/libz.so.1", "crc32.part.0", EvidenceKind.UNPROBED, 0),
            None,  # a row the outage bound dropped
            _row("/usr/share/java/x.jar", "", EvidenceKind.LISTED, 0),
            _row("/lib/libz.so.1", "inflate", EvidenceKind.INVOKED, 7),
        ],
    )


def _old_read(path: Path) -> list[tuple[str, int]]:
    """What a 995bd72 agent decodes of the file: its header's row count checked against its units,
    each unit's evidence one it knows (else the batch is lost); (function, calls) per row."""
    header, *lines, _trailer = path.read_text().splitlines()
    got, rows = [], 0
    for line in lines:
        units = json.loads(line)["units"]
        rows += sum(u is not None for u in units)
        got += [(u["function_name"], u["invocation_count"]) for u in units if u is not None]
        for u in units:
            if u is not None:
                OldKind(u["evidence"])  # raises as EvidenceKind(...) did there: the batch lost
    assert rows == json.loads(header)["rows"], "the old reader sets aside a file whose rows do not match"
    return got


def test_a_spool_of_facts_keeps_its_counts_for_an_agent_that_knows_no_fact(tmp_path: Path) -> None:
    path = tmp_path / "hot.spool"
    assert write_spool(path, [_batch()]) == 4
    assert _old_read(path) == [("adler32", 5), ("inflate", 7)]
    (again,) = read_spool(path) or []
    assert [None if u is None else u.key.function_name for u in again.units] == [
        "adler32", "crc32.part.0", None, "", "inflate"
    ]  # fmt: skip
    assert again.units == _batch().units and (again.agent_id, again.seq) == ("node-1/new", 4)
    d = batch_to_json(again)  # spooled again by this version: the same form
    assert batch_from_json(json.loads(json.dumps(d))).units == _batch().units


def test_a_file_of_facts_inside_units_is_still_read(tmp_path: Path) -> None:
    """A file of the agent between the facts (ea87e04) and this change held them in ``units``."""
    path = tmp_path / "hot.spool"
    d = batch_to_json(_batch())
    for i, u in d.pop("facts"):
        d["units"][i] = u
    header = {"format": "stellaops-runtime-spool", "version": 1, "batches": 1, "rows": 4}
    body = (json.dumps(header) + "\n" + json.dumps(d) + "\n").encode()
    path.write_bytes(body + json.dumps({"sha256": hashlib.sha256(body).hexdigest()}).encode() + b"\n")
    (got,) = read_spool(path) or []
    assert got.units == _batch().units


FACT = unit_to_json(_row("/lib/libz.so.1", "crc32.part.0", EvidenceKind.UNPROBED, 0))
COUNT = unit_to_json(_row("/lib/libz.so.1", "adler32", EvidenceKind.INVOKED, 5))


@pytest.mark.parametrize(
    "facts",
    [
        [[2, "x"]],  # not a row
        [[0, FACT]],  # onto a live row
        [[7, FACT]],  # past the units
        [[-1, FACT]],  # from the end
        [[True, FACT]],  # a bool for an index
        [["2", FACT]],
        [[2, FACT], [2, FACT]],  # twice in one tombstone
        [[2]],
        [[2, FACT, 0]],
        {"2": FACT},
        [[2, COUNT]],  # a count where older readers do not look
    ],
)
def test_a_hostile_facts_field_loses_its_batch_not_the_file(tmp_path: Path, facts: object) -> None:
    d = batch_to_json(
        Batch("node-1/x", 2, [_row("/lib/libz.so.1", "adler32", EvidenceKind.INVOKED, 5), None, None])
    )
    d["facts"] = facts
    with pytest.raises((ValueError, KeyError, TypeError)):
        batch_from_json(json.loads(json.dumps(d)))
    path = tmp_path / "hot.spool"
    write_spool(path, [Batch("node-1/x", 1, [_row("/lib/libz.so.1", "inflate", EvidenceKind.INVOKED, 7)])])
    header, good, _trailer = path.read_text().splitlines()
    h = {**json.loads(header), "batches": 2, "rows": 2}
    body = (json.dumps(h) + "\n" + good + "\n" + json.dumps(d) + "\n").encode()
    path.write_bytes(body + json.dumps({"sha256": hashlib.sha256(body).hexdigest()}).encode() + b"\n")
    got = read_spool_salvaged(path)
    assert got is not None and [b.seq for b in got[0]] == [1] and len(got[2]) == 1, got
    with pytest.raises(SpoolError):
        read_spool(path)


def test_a_good_fact_in_a_tombstone_is_read() -> None:
    d = batch_to_json(
        Batch("node-1/x", 2, [_row("/lib/libz.so.1", "adler32", EvidenceKind.INVOKED, 5), None, None])
    )
    d["facts"] = [[2, FACT]]
    got = batch_from_json(json.loads(json.dumps(d)))
    assert [None if u is None else u.key.evidence for u in got.units] == [
        EvidenceKind.INVOKED, None, EvidenceKind.UNPROBED
    ]  # fmt: skip
