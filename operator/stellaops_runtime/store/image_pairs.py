"""The agent's side of ``image_pairs`` (migration 0014): which config digest an image has.

An image with no repo digest (``ctr import``, ``kind load``) is filed by an agent with the
containerd lifecycle part under its manifest digest (lifecycle/lookup.py ``enrich``), while
kubectl shows its config digest (``imageID``) and an agent with ``lifecycle.enabled: false``
(or one before that fix) files its Tetragon events under the config digest. Both digests are
known exactly from containerd's content store (``ContainerRecord.image_config``). The agent
keeps the pairings its registry holds (:class:`PairsToRecord`) and writes the new ones before the
rows of a flush (:func:`record_pairs`; agent/flusher.py: no row is stored before its pairing),
once per pairing and process; the question's side is
store/same_image.py. Plain DB-API SQL (the agent never loads SQLAlchemy); ON CONFLICT DO NOTHING
makes a write idempotent across retries and agents. Past ``MAX_PAIRS`` kept, a new pairing is not
kept: it is counted (``lifecycle_image_pairs_dropped_total``, each time the registry offers it) and
logged once, as a question by one of its digests then reads that digest's rows alone.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from typing import Any

# What a pairing's digests must look like: the agent's image keys (lower-case hex).
_DIGEST = re.compile(r"(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})")
MAX_PAIRS = 65_536  # a node holds a few hundred images; past this, pairings are not kept

log = logging.getLogger(__name__)

_WRITE = {
    "postgresql": (
        "INSERT INTO signals.image_pairs (image_digest, config_digest) VALUES (%s, %s) "
        "ON CONFLICT (image_digest, config_digest) DO NOTHING"
    ),
    "sqlite": (
        "INSERT INTO main.image_pairs (image_digest, config_digest) VALUES (?, ?) "
        "ON CONFLICT (image_digest, config_digest) DO NOTHING"
    ),
}


def pairing(config: str, manifest: str) -> tuple[str, str] | None:
    """``(config, manifest)`` when both are image digests and differ; None otherwise."""
    if config == manifest or not (_DIGEST.fullmatch(config) and _DIGEST.fullmatch(manifest)):
        return None
    return config, manifest


def record_pairs(db: Any, pairs: Iterable[tuple[str, str]]) -> int:
    """Write ``(config, manifest)`` pairings in one transaction; returns how many were sent.
    Raises what the driver raises (the caller keeps them for the next flush)."""
    rows = [p for p in pairs if pairing(*p) is not None]
    if not rows:
        return 0
    with db.begin() as conn:
        for config, manifest in rows:
            conn.execute(_WRITE[conn.dialect], (manifest, config))
    return len(rows)


class PairsToRecord:
    """Pairings seen in the lifecycle registry (the event loop) and not yet stored (the flusher);
    of those stored, the digests of one image (:meth:`others`, for the witness bridge)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: set[tuple[str, str]] = set()
        self._stored: set[tuple[str, str]] = set()
        self._others: dict[str, frozenset[str]] = {}  # rebuilt whole when pairings are stored
        self.dropped = 0  # offers of a new pairing past MAX_PAIRS (the metric; read without the lock)

    def note(self, config: str, manifest: str) -> None:
        p = pairing(config, manifest)
        if p is None:
            return
        with self._lock:
            if p in self._seen:
                return
            if len(self._seen) < MAX_PAIRS:
                self._seen.add(p)
                return
            self.dropped += 1
            first = self.dropped == 1
        if first:
            log.warning(
                "image pairings past %d are not kept (config %s, manifest %s, and any later): a question "
                "by one of their digests reads that digest's rows alone; lifecycle_image_pairs_dropped_total "
                "counts them",
                MAX_PAIRS,
                config,
                manifest,
            )

    def kept(self) -> int:
        """How many pairings are kept (stored or to store), at most ``MAX_PAIRS``."""
        return len(self._seen)

    def unstored(self) -> list[tuple[str, str]]:
        with self._lock:
            return sorted(self._seen - self._stored)

    def stored(self, pairs: Iterable[tuple[str, str]]) -> None:
        with self._lock:
            self._stored.update(pairs)
            groups: dict[str, set[str]] = {}
            for config, manifest in self._stored:
                groups.setdefault(config, {config}).add(manifest)
            others: dict[str, frozenset[str]] = {}
            for group in groups.values():
                for d in group:
                    others[d] = others.get(d, frozenset()) | (group - {d})
            self._others = others  # assigned whole: read without the lock

    def others(self, digest: str) -> frozenset[str]:
        """The digests a stored pairing makes one image with ``digest`` (the store's same_image
        answers a question by any of them from the rows of all); empty when none is stored."""
        return self._others.get(digest, frozenset())
