"""The agent stores each pairing of an image's config digest and manifest digest once.

The lifecycle registry knows both digests of a container's image exactly (containerd's content
store: ``ContainerRecord.image_config``). The lifecycle part hands each pairing to the flusher
(agent/lifecycle_part.py), which writes the new ones before the rows of a flush
(store/image_pairs.py); a question by either digest then rests on both
(tests/integration/test_image_pairs_answer.py). A pairing that cannot be written fails the flush,
its rows kept for the next one (tests/integration/test_image_pairs_first.py).
Real LifecyclePart, Flusher and store (SQLite and PostgreSQL); the observer is a registry only.
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import sqlalchemy as sa

from stellaops_runtime.agent.flusher import Flusher
from stellaops_runtime.agent.lifecycle_part import LifecyclePart
from stellaops_runtime.agent.pipeline import Pipeline
from stellaops_runtime.agent.runtime_target import Target
from stellaops_runtime.contracts.config import AgentConfig, parse_config
from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey
from stellaops_runtime.lifecycle.registry import ContainerRecord, ContainerRegistry
from stellaops_runtime.store.engine import create_store_engine
from stellaops_runtime.store.image_pairs import PairsToRecord
from stellaops_runtime.store.schema import image_pairs

S = 1_000_000_000
MANIFEST = "sha256:" + "1" * 64
CONFIG = "sha256:" + "c" * 64


def delta() -> HotSymbolDelta:
    t = int(time.time()) // 60 * 60 * S
    key = HotSymbolKey(MANIFEST, "/lib/libz.so.1", "crc32", EvidenceKind.INVOKED)
    return HotSymbolDelta(key=key, window_start_ns=t, invocation_count=1, first_seen_ns=t, last_seen_ns=t + 1)


def stored(url: str) -> list[tuple[str, str]]:
    engine = create_store_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(image_pairs.c.config_digest, image_pairs.c.image_digest))
            return sorted((str(c), str(m)) for c, m in rows)
    finally:
        engine.dispose()


def registry_pairs(flusher: Flusher) -> None:
    """A LifecyclePart whose registry holds containers of the image (and hostile records)."""
    config = parse_config({"symbols": {"enabled": False}, "attribution": {"enabled": False}})
    part = LifecyclePart(
        config, Target("containerd", "/nonexistent"), node_name="n1", pipeline=Pipeline(config)
    )
    part.pairs = flusher.pairs
    reg = ContainerRegistry()
    for i, (digest, cfg) in enumerate(
        [
            (MANIFEST, CONFIG),
            (MANIFEST, CONFIG),  # a second container of the image: one pairing
            (MANIFEST, ""),  # not read: no pairing
            (MANIFEST, MANIFEST),  # no pairing with itself
            ("sha256:" + "2" * 64, "sha256:NOTHEX"),  # not a digest
            ("", CONFIG),  # no manifest digest
        ]
    ):
        reg.put(ContainerRecord(f"c{i}", "k8s.io", image_digest=digest, image_config=cfg, cgroup_id=100 + i))
    part.observer = SimpleNamespace(registry=reg)  # type: ignore[assignment]
    part._refresh()


async def _run(url: str) -> None:
    async def no_drain() -> None:
        return None

    f = Flusher(AgentConfig(store={"url": url}), agent_id="n1/a", drain=no_drain, stop=lambda _r: None)
    registry_pairs(f)
    assert f.pairs.unstored() == [(CONFIG, MANIFEST)]
    f.pending.add([delta()], [])
    assert await f.flush() is True, f.pending.last_error
    assert stored(url) == [(CONFIG, MANIFEST)] and f.pairs.unstored() == []
    f.pending.add([delta()], [])
    assert await f.flush() is True  # nothing new to pair: no write
    assert stored(url) == [(CONFIG, MANIFEST)]
    await f.close()


def test_the_agent_stores_each_pairing_from_its_registry_once(url: str) -> None:
    asyncio.run(_run(url))


def test_pairings_are_lower_case_digests_that_differ() -> None:
    p = PairsToRecord()
    for config, manifest in [
        ("sha256:" + "A" * 64, MANIFEST),  # upper case: not the agent's key
        (CONFIG + "\x00", MANIFEST),
        ("sha256:" + "c" * 63, MANIFEST),
        ("md5:" + "c" * 32, MANIFEST),
        (CONFIG, CONFIG),
        ("x" * 10_000, MANIFEST),
    ]:
        p.note(config, manifest)
    assert p.unstored() == []
    p.note("sha512:" + "a" * 128, MANIFEST)
    assert p.unstored() == [("sha512:" + "a" * 128, MANIFEST)]


def test_the_other_manifests_of_the_config_are_paired_too() -> None:
    """kubelet names a container's image by the first repo digest of any image of its config
    (lifecycle/image_aliases.py): an agent with lifecycle.enabled false files the container's calls
    under that other manifest, M2, while the lifecycle agent files them under its own, M1. The
    pairing (config, M2) joins M2 to the image, so a question by M2 rests on M1's rows too (review
    RDG2 of 24f6f388: only (config, M1) was noted, and a question by M2 read M2's windows alone)."""
    m2 = "sha256:" + "2" * 64
    config = parse_config({"symbols": {"enabled": False}, "attribution": {"enabled": False}})
    part = LifecyclePart(
        config, Target("containerd", "/nonexistent"), node_name="n1", pipeline=Pipeline(config)
    )
    part.pairs = PairsToRecord()
    reg = ContainerRegistry()
    aliases = (m2, "x")  # "x": no digest, no pairing
    reg.put(ContainerRecord("c0", "k8s.io", image_digest=MANIFEST, image_config=CONFIG, image_aliases=aliases,
                            cgroup_id=100))  # fmt: skip
    part.observer = SimpleNamespace(registry=reg)  # type: ignore[assignment]
    part._refresh()
    assert part.pairs.unstored() == [(CONFIG, MANIFEST), (CONFIG, m2)]
