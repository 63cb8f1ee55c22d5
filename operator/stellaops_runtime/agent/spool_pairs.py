"""The image pairings of spooled rows: kept beside the spool file, for the agent that replays them.

Why it exists: the flush writes an image's pairing (store/image_pairs.py) before the rows it pairs,
so no manifest digest's windows are stored while the calls under its config digest go unread (a
"not observed" about code that was called). Rows spooled at shutdown (agent/spool_keeper.py) left
their unstored pairings behind: the next agent writes its own registry's, and a container gone by
then had its rows replayed unpaired. The pairings not stored are now written at shutdown to
``<spoolPath>.pairs`` (merged with a file already there), noted by the next agent when it loads
the spool, so its first flush writes them before the replayed rows; the file is removed with the
spool file. Kept apart from the spool's own format (store/spool.py), which an older agent reads:
such an agent ignores this file and replays as before.

A file that cannot be read (too large, not JSON, no regular file) is logged and its pairings are
not noted: a question by one of their digests then reads that digest's rows alone, as before.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterable

from stellaops_runtime.atomic_file import write_atomically
from stellaops_runtime.regular_file import open_regular
from stellaops_runtime.store.image_pairs import MAX_PAIRS, pairing

log = logging.getLogger(__name__)

FORMAT = "stellaops-runtime-spool-pairs"
MAX_BYTES = MAX_PAIRS * 320  # a sha512 pair is ~280 bytes of JSON


def pairs_path(spool: str) -> str:
    return f"{spool}.pairs"


def read_pairs(spool: str) -> list[tuple[str, str]]:
    """The ``(config, manifest)`` pairings kept beside ``spool``; [] when none or not readable."""
    path = pairs_path(spool)
    try:
        with os.fdopen(open_regular(path, follow=False), "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return []
    except OSError as e:
        log.error("spooled image pairings %s not read: %s", path, e)
        return []
    try:
        if len(data) > MAX_BYTES:
            raise ValueError(f"larger than {MAX_BYTES} bytes")
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("pairs"), list):
            raise ValueError("not a spooled pairings file")
    except ValueError as e:
        log.error("spooled image pairings %s not read: %s", path, e)
        return []
    found = []
    for p in doc["pairs"]:
        ok = isinstance(p, list) and len(p) == 2 and all(isinstance(d, str) for d in p)
        if ok and (one := pairing(p[0], p[1])) is not None:
            found.append(one)
    return found


def write_pairs(spool: str, pairs: Iterable[tuple[str, str]]) -> int:
    """Keep ``pairs`` beside ``spool`` with those already kept there (call under the spool's lock);
    returns how many are kept. Raises OSError."""
    new = {p for p in pairs if pairing(*p) is not None}
    if not new:
        return 0
    kept = sorted(set(read_pairs(spool)) | new)[:MAX_PAIRS]
    data = json.dumps({"format": FORMAT, "version": 1, "pairs": kept}, separators=(",", ":"))
    write_atomically(pairs_path(spool), data.encode())
    return len(kept)


def remove_pairs(spool: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(pairs_path(spool))
