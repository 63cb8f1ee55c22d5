"""A random (version 4) UUID as text, without the ``uuid`` module (issue 13).

The agent names itself in the flush ledger with a random UUID (agent/runner.py,
store/pending.py). ``uuid.uuid4()`` is 16 random bytes with the version and variant bits
set; importing ``uuid`` for it also imports ``platform`` (uuid checks the operating system
at import), ~0.25 MB of every idle agent's RSS. :func:`uuid4_text` writes the same text
from ``os.urandom`` as ``str(uuid.uuid4())`` does (tests/unit/test_random_id.py parses it
back with ``uuid.UUID``).
"""

from __future__ import annotations

import os


def uuid4_text() -> str:
    """``str(uuid.uuid4())``: 32 lower-case hex digits in 8-4-4-4-12 groups, version 4, RFC 4122 variant."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40  # version 4
    b[8] = (b[8] & 0x3F) | 0x80  # variant 10xx (RFC 4122)
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
