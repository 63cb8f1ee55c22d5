"""random_id.uuid4_text writes what ``str(uuid.uuid4())`` writes (issue 13: the agent without ``uuid``)."""

from __future__ import annotations

import uuid

from stellaops_runtime import random_id


def test_the_text_is_a_random_version_4_uuid_as_uuid_writes_it() -> None:
    seen = set()
    for _ in range(2000):
        text = random_id.uuid4_text()
        parsed = uuid.UUID(text)
        assert str(parsed) == text  # lower-case hex, 8-4-4-4-12
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        seen.add(text)
    assert len(seen) == 2000


def test_only_the_version_and_variant_bits_are_fixed() -> None:
    # Over many draws every other bit takes both values: 122 random bits, as uuid4 has.
    ones, zeros = 0, 0
    for _ in range(400):
        n = uuid.UUID(random_id.uuid4_text()).int
        ones |= n
        zeros |= ~n
    fixed = (0xF << 76) | (0x3 << 62)  # the version nibble, the variant's two bits
    mask = (1 << 128) - 1
    assert ones & zeros & mask == mask & ~fixed
    assert (ones >> 76) & 0xF == 0x4 and (ones >> 62) & 0x3 == 0x2
