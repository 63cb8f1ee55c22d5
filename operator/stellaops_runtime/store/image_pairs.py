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

Pairings go in parts of ``PART`` (one statement, one transaction each), each kept as stored when
it commits, so a write that outlives ``store.flushTimeout`` leaves the next flush less to do (one
statement per pairing took 17-19 s for ``MAX_PAIRS`` on a local PostgreSQL, and every flush began
again: none ever stored). A pairing the database refuses as data (a constraint, a value its column
does not take: store/row_refusal.py) can never be written: it is counted
(``lifecycle_image_pairs_refused_total``), logged once and not tried again, and holds no rows.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from typing import Any

from stellaops_runtime.store.row_refusal import error_text, is_row_refusal

# What a pairing's digests must look like: the agent's image keys (lower-case hex).
_DIGEST = re.compile(r"(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})")
MAX_PAIRS = 65_536  # a node holds a few hundred images; past this, pairings are not kept
PART = 400  # pairings a statement: 800 parameters, under SQLite's oldest limit (999)

log = logging.getLogger(__name__)

_INSERT = {
    "postgresql": ("INSERT INTO signals.image_pairs (image_digest, config_digest) VALUES ", "(%s, %s)"),
    "sqlite": ("INSERT INTO main.image_pairs (image_digest, config_digest) VALUES ", "(?, ?)"),
}
_ON_CONFLICT = " ON CONFLICT (image_digest, config_digest) DO NOTHING"


def pairing(config: str, manifest: str) -> tuple[str, str] | None:
    """``(config, manifest)`` when both are image digests and differ; None otherwise."""
    if config == manifest or not (_DIGEST.fullmatch(config) and _DIGEST.fullmatch(manifest)):
        return None
    return config, manifest


def record_pairs(db: Any, pairs: Iterable[tuple[str, str]], into: PairsToRecord | None = None) -> int:
    """Write ``(config, manifest)`` pairings, ``PART`` a statement and transaction; returns how
    many were sent. With ``into``, each part is kept there as stored when it commits (a write
    abandoned at its timeout keeps what it stored), and a pairing the database refuses as data is
    written alone, then counted there as refused. Raises any other error of the driver (the
    caller keeps the rest for the next flush); without ``into``, a refusal too."""
    rows = [p for p in pairs if pairing(*p) is not None]
    for i in range(0, len(rows), PART):
        part = rows[i : i + PART]
        try:
            _write(db, part)
        except Exception as e:
            if into is None or not is_row_refusal(e):
                raise
            for p in part:  # which of them: each alone
                try:
                    _write(db, [p])
                except Exception as one:
                    if not is_row_refusal(one):
                        raise
                    into.refuse(p, one)
                else:
                    into.stored([p])
            continue
        if into is not None:
            into.stored(part)
    return len(rows)


def _write(db: Any, part: list[tuple[str, str]]) -> None:
    with db.begin() as conn:
        head, values = _INSERT[conn.dialect]
        args = [d for config, manifest in part for d in (manifest, config)]
        conn.execute(head + ", ".join([values] * len(part)) + _ON_CONFLICT, args)


class PairsToRecord:
    """Pairings seen in the lifecycle registry (the event loop) and not yet stored (the flusher);
    of those stored, the digests of one image (:meth:`others`, for the witness bridge)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: set[tuple[str, str]] = set()
        self._stored: set[tuple[str, str]] = set()
        self._refused: set[tuple[str, str]] = set()  # the database refused them: never tried again
        self._others: dict[str, frozenset[str]] = {}  # rebuilt whole by others() after a change
        self._changed = False  # pairings stored since _others was built
        self.dropped = 0  # offers of a new pairing past MAX_PAIRS (the metric; read without the lock)
        self.refused = 0  # pairings the database refused as data (the metric; read without the lock)

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
            return sorted(self._seen - self._stored - self._refused)

    def stored(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Kept as stored (the writing thread calls it as each part commits): cheap, the digests of
        one image are rebuilt at the next :meth:`others`."""
        with self._lock:
            self._stored.update(pairs)
            self._changed = True

    def refuse(self, pair: tuple[str, str], error: BaseException) -> None:
        """A pairing the database refused as data: counted, logged once, never written again."""
        with self._lock:
            if pair in self._refused:
                return
            self._refused.add(pair)
            self.refused += 1
            first = self.refused == 1
        if first:
            log.warning(
                "the store refused image pairing (config %s, manifest %s): %s; not tried again, a "
                "question by one of its digests reads that digest's rows alone; "
                "lifecycle_image_pairs_refused_total counts such pairings",
                pair[0],
                pair[1],
                error_text(error),
            )

    def others(self, digest: str) -> frozenset[str]:
        """The digests a stored pairing makes one image with ``digest`` (the store's same_image
        answers a question by any of them from the rows of all); empty when none is stored."""
        if self._changed:
            with self._lock:
                if self._changed:
                    self._others = _groups(self._stored)  # assigned whole: read without the lock
                    self._changed = False
        return self._others.get(digest, frozenset())


def _groups(stored: set[tuple[str, str]]) -> dict[str, frozenset[str]]:
    """Each digest's others: a config's group is itself and its manifests."""
    groups: dict[str, set[str]] = {}
    for config, manifest in stored:
        groups.setdefault(config, {config}).add(manifest)
    others: dict[str, frozenset[str]] = {}
    for group in groups.values():
        for d in group:
            others[d] = others.get(d, frozenset()) | (group - {d})
    return others
