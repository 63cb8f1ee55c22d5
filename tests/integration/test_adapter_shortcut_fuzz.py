"""The gRPC adapter's shortcut, against Tetragon's schema, on mutated real payloads.

``from_proto.adapt_payload`` builds an event from the second view alone when
adapter/known_parts.py finds every part known (tests/unit/test_adapter_known_parts.py
gives it the payloads it was designed against). Here it is given what nobody
designed: real payloads of the fixture streams (and the hostile ones), each
mutated at random (a byte flipped, inserted, deleted; a slice repeated,
moved or cut off; two payloads joined, the first one damaged: an event body
that the later one replaces, which Tetragon's schema still reads), after the original was seen so its
process and frames are known, the case the shortcut takes. Every answer must
be what reading the message Tetragon's schema decodes gives: the same event
and the same counters, or ``invalid_protobuf`` when that schema refuses it.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from stellaops_runtime.adapter import common, from_proto, proto_parts
from stellaops_runtime.contracts.events import RuntimeCallEvent
from stellaops_runtime.wire.tetragon import events_pb2
from tests.integration.test_adapter_golden import _streams

MUTATIONS_PER_SEED = 4_000


@pytest.fixture(scope="module")
def payloads() -> list[bytes]:
    s = _streams(with_json=False)
    out = [*s["stream-a"][0][:800], *s["never-repeating"][0][:300], *s["hostile"][0]]
    return [p for p in out if p]


def _damaged(rng: random.Random, p: bytes) -> bytes:
    """``p`` with one byte in its second half changed (inside its event body, past the tags)."""
    b = bytearray(p)
    if len(b) > 4:
        b[rng.randrange(len(b) // 2, len(b))] = rng.randrange(256)
    return bytes(b)


def _mutate(rng: random.Random, p: bytes, other: bytes) -> bytes:
    b = bytearray(p)
    i = rng.randrange(len(b))
    j = rng.randrange(len(b) + 1)
    ops: list[Callable[[], None]] = [
        lambda: b.__setitem__(i, b[i] ^ (1 << rng.randrange(8))),
        lambda: b.__setitem__(i, rng.randrange(256)),
        lambda: b.insert(j, rng.randrange(256)),
        lambda: b.__delitem__(i),
        lambda: b.__setitem__(slice(j, j), b[min(i, j) : max(i, j)]),  # a slice repeated
        lambda: b.__delitem__(slice(min(i, j), max(i, j))),  # a slice cut out
        lambda: b.extend(other[: rng.randrange(len(other) + 1)]),  # part of another appended
        lambda: b.__setitem__(slice(0, 0), other),  # another payload first
        lambda: b.__setitem__(slice(0, 0), _damaged(rng, other)),  # a damaged payload first: replaced
        lambda: b.extend(p[: rng.randrange(len(p) + 1)]),  # its own start again
    ]
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        if not b:
            break
        i, j = rng.randrange(len(b)), rng.randrange(len(b) + 1)
        rng.choice(ops)()
    return bytes(b)


def _whole(payload: bytes, stats: common.AdapterStats) -> RuntimeCallEvent | None:
    """What Tetragon's schema makes of ``payload``, read field by field (no shortcut)."""
    try:
        msg = events_pb2.GetEventsResponse.FromString(payload)
    except Exception:
        stats.malformed["invalid_protobuf"] += 1
        return None
    return from_proto.adapt(msg, received_ns=5, stats=stats)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_mutated_payloads_give_what_tetragons_schema_gives(payloads: list[bytes], seed: int) -> None:
    rng = random.Random(seed)
    saved = proto_parts.PARTS
    proto_parts.PARTS = proto_parts.Parts()
    try:
        shortcut_taken = differ = 0
        for n in range(MUTATIONS_PER_SEED):
            original = rng.choice(payloads)
            mutated = _mutate(rng, original, rng.choice(payloads))
            warm = common.AdapterStats()
            from_proto.adapt_payload(original, 5, warm)  # its process and frames are now known
            short, whole = common.AdapterStats(), common.AdapterStats()
            a = from_proto.adapt_payload(mutated, 5, short)
            b = _whole(mutated, whole)
            if a != b or short != whole:
                differ += 1
                raise AssertionError(
                    f"mutation {n} of seed {seed}: shortcut {a!r} ({short}) != schema {b!r} ({whole}); "
                    f"payload {mutated.hex()}"
                )
            shortcut_taken += a is not None
        assert differ == 0
        assert shortcut_taken > MUTATIONS_PER_SEED // 10  # mutations that still decode, many via the shortcut
    finally:
        proto_parts.PARTS = saved
