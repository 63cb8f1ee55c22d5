"""Every witness signed while the agent flushes says no more than the stream's truth, the last all of it.

The synthetic stream is replayed slowly over gRPC into PostgreSQL, so the agent flushes many
times while its witness bridge signs every second and ``witness sign --save`` signs from
another process at the same time. Each witness (the bridge's and the CLI's) must verify, agree
with itself (its total is the largest per-kind sum of its rows; no day holds more calls than the
total) and never count more calls than the stream holds; one claim's witnesses never count
fewer calls than an earlier one; and the bridge's last witness, signed at shutdown from what was
just stored, counts exactly the stream's calls (tests/fixtures/tetragon/synthetic).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.replay.server import ReplayServer
from stellaops_runtime.store.engine import create_store_engine
from stellaops_runtime.witness import dsse, keys
from stellaops_runtime.witness import store as wstore
from stellaops_runtime.witness.statement import check_statement
from tests.e2e import harness as h

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

ZLIB = "/usr/lib/x86_64-linux-gnu/libz.so.1"
IMAGES = [i["digest"] for i in h.EXPECTED["images"]]
TRUTH = {  # the witness's total: the largest of its evidence kinds (invoked, on a stack)
    img: max(h.EXPECTED["uprobe_counts"].get(f"{img}|{ZLIB}|crc32", 0),
             h.EXPECTED["stack_frame_counts"].get(f"{img}|{ZLIB}|crc32", 0))
    for img in IMAGES
}  # fmt: skip


def _consistent(stmt: dict[str, Any], where: str) -> int:
    image, o = stmt["predicate"]["claim"]["image_digest"], stmt["predicate"]["observation"]
    by_kind: dict[str, int] = defaultdict(int)
    for row in o["functions"]:
        by_kind[row["evidence_kind"]] += row["invocation_count"]
    total = o["invocation_count"]
    assert total == max(by_kind.values(), default=0), (where, o)
    assert o["max_calls_in_a_day"] <= total <= TRUTH[image], (where, o, TRUTH[image])
    return int(total)


async def _sign_while_flushing(proc: Any, url: str, key: Path, out: Path) -> list[Path]:
    made: list[Path] = []
    while proc.poll() is None:
        for img in IMAGES:
            if proc.poll() is not None:  # it ended: no later witness is signed while it flushes
                break
            path = out / f"cli-{len(made)}.json"
            r = await asyncio.to_thread(h.cli, "witness", "sign", "--store", url, "--image", img, "--purl",
                                        "pkg:deb/debian/zlib1g", "--function", "crc32", "--key", str(key),
                                        "--save", "--out", str(path))  # fmt: skip
            if r.returncode == 0:
                made.append(path)
            else:  # before the agent's first flush created the schema
                assert "no hot-symbol data" in r.stderr or "runtime_witnesses" in r.stderr, r.stderr
    return made


async def test_witnesses_signed_while_the_agent_flushes_never_exceed_the_truth(
    tmp_path: Path, pg_url: str
) -> None:
    assert all(TRUTH.values()) and len(TRUTH) == 4
    key, pub = tmp_path / "k", tmp_path / "k.pub"
    assert h.cli("witness", "keygen", "--private", str(key), "--public", str(pub)).returncode == 0
    claims = tmp_path / "claims.yaml"
    claims.write_text("".join(f"- {{image: '{i}', purl: 'pkg:deb/debian/zlib1g', function: crc32}}\n"
                              for i in IMAGES))  # fmt: skip
    server = ReplayServer(h.stream_events(), rate=600)
    addr = await server.start("127.0.0.1:0")
    cfg, _ = h.write_config(
        tmp_path, tetragon={"address": addr}, store={"url": pg_url},
        symbols={"hostRoot": "/"}, attribution={"hostRoot": "/"},
        witness={"enabled": True, "claimsFile": str(claims), "keyFile": str(key), "intervalSeconds": 1},
    )  # fmt: skip
    (tmp_path / "cli").mkdir()
    proc = h.start_agent(cfg, "--exit-when-idle", "3")
    try:
        signed = await _sign_while_flushing(proc, pg_url, key, tmp_path / "cli")
        code, out = await asyncio.to_thread(h.finish, proc, 60)
    finally:
        if proc.poll() is None:
            proc.kill()
        await server.stop()
    assert code == 0, out
    assert signed, "no witness signed from the CLI while the agent ran"
    public = keys.load_public(pub)
    cli_made = set()
    for path in signed:
        data = path.read_bytes()
        cli_made.add("sha256:" + hashlib.sha256(data).hexdigest())
        stmt = check_statement(dsse.verify(json.loads(data), public))
        _consistent(stmt, str(path))
    engine = create_store_engine(pg_url)
    try:
        with engine.connect() as conn:
            for img in IMAGES:
                totals = []  # the bridge's witnesses, oldest first (one signer: in the order it read)
                for w in reversed(wstore.find(conn, image=img)):
                    if w.envelope_sha256 in cli_made:
                        continue
                    data = wstore.envelope(conn, ref=w.envelope_sha256) or b""
                    stmt = check_statement(dsse.verify(json.loads(data), public), image=img)
                    totals.append(_consistent(stmt, f"{img} #{w.id}"))
                assert totals == sorted(totals), (img, totals)  # never fewer calls than an earlier one
                assert totals and totals[-1] == TRUTH[img], (img, totals, TRUTH[img])
    finally:
        engine.dispose()
