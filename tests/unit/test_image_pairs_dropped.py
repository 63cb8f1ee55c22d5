"""Pairings past the agent's cap (store/image_pairs.py ``MAX_PAIRS``) are counted and logged once.

Before, a pairing offered once 65,536 were kept was dropped silently: a question by one of its
digests read that digest's rows alone, and nothing said so. Now ``PairsToRecord`` counts each
offer of a pairing it does not keep, logs the first, and the lifecycle part exposes the count
(``stellaops_runtime_lifecycle_image_pairs_dropped_total``) and the pairings kept.
"""

from __future__ import annotations

import logging

import pytest

from stellaops_runtime.agent.lifecycle_part import LifecyclePart
from stellaops_runtime.agent.pipeline import Pipeline
from stellaops_runtime.agent.runtime_target import Target
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.store import image_pairs
from stellaops_runtime.store.image_pairs import PairsToRecord

CONFIG = "sha256:" + "c" * 64


def manifest(i: int) -> str:
    return f"sha256:{i:064x}"


def test_pairings_past_the_cap_are_counted_and_logged_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(image_pairs, "MAX_PAIRS", 3)  # the rule, not 65,536 notes
    p = PairsToRecord()
    with caplog.at_level(logging.WARNING, logger=image_pairs.__name__):
        for _refresh in range(2):  # a registry refresh offers every record's pairing again
            for i in range(1, 6):
                p.note(CONFIG, manifest(i))
    assert (p.kept(), p.dropped) == (3, 4), (p.kept(), p.dropped)
    assert p.unstored() == [(CONFIG, manifest(i)) for i in (1, 2, 3)]
    warned = [r.getMessage() for r in caplog.records if r.name == image_pairs.__name__]
    assert len(warned) == 1 and manifest(4) in warned[0] and "past 3" in warned[0], warned


def test_the_lifecycle_part_exposes_the_pairings_kept_and_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(image_pairs, "MAX_PAIRS", 1)
    config = parse_config({"symbols": {"enabled": False}, "attribution": {"enabled": False}})
    part = LifecyclePart(
        config, Target("containerd", "/nonexistent"), node_name="n1", pipeline=Pipeline(config)
    )
    part.pairs = PairsToRecord()
    for i in (1, 2, 3):
        part.pairs.note(CONFIG, manifest(i))
    part.pairs.refuse((CONFIG, manifest(1)), ValueError("refused"))  # the store refused it as data
    part.pairs.refuse((CONFIG, manifest(1)), ValueError("refused"))  # counted once a pairing
    samples = {s.name: s.value for m in part.metrics() for s in m.samples}
    assert samples["stellaops_runtime_lifecycle_image_pairs"] == 1, samples
    assert samples["stellaops_runtime_lifecycle_image_pairs_dropped_total"] == 2, samples
    assert samples["stellaops_runtime_lifecycle_image_pairs_refused_total"] == 1, samples
    assert part.pairs.unstored() == []
