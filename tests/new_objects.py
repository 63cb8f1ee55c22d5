"""Count the objects a test made, without scanning every object the worker made before it.

Why this module exists: tests that prove rows or slots are let go count live objects of a type
with ``gc.collect()`` and ``gc.get_objects()``. Both walk every object the collector tracks:
in an xdist worker that has imported and run hundreds of test modules that is seconds per
count (tests/unit/test_pending_owned.py took 9.4 s in a worker, 1 s alone). :func:`only_new`
freezes what exists when the test starts (``gc.freeze``: moved to the permanent generation,
which neither a collection nor ``gc.get_objects()`` visits) and unfreezes it at the end, so a
count sees exactly the objects made since, the ones the test is about; objects of the type left
alive by earlier tests no longer count either.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def only_new() -> Iterator[None]:
    """Within the block, ``gc.collect()`` and ``gc.get_objects()`` see only objects made in it."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def live(kind: type) -> int:
    """Live objects of exactly ``kind`` the collector tracks, after a collection."""
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is kind)
