"""Fixtures the unit tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stellaops_runtime.adapter import proto_parts


@pytest.fixture
def fresh_parts() -> Iterator[proto_parts.Parts]:
    """The adapter's tables of repeated message parts (adapter/proto_parts.py), empty for one test."""
    saved = proto_parts.PARTS
    proto_parts.PARTS = proto_parts.Parts()
    try:
        yield proto_parts.PARTS
    finally:
        proto_parts.PARTS = saved
