"""A batch's identity (agent id, flush sequence) the database can take, derived from one it cannot.

Why this module exists: split from store/ledger.py (no behaviour change). The ledger's row of a
batch is keyed by its identity; one the database refuses (a NUL, a lone surrogate, a sequence
beyond bigint) refused that row on every attempt, so the batch blocked every later flush.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re

from stellaops_runtime.store.batches import Batch

log = logging.getLogger("stellaops_runtime.store.ledger")  # its messages stay the ledger's

_UNSTORABLE_ID = {"postgresql": re.compile("[\x00\ud800-\udfff]"), "sqlite": re.compile("[\ud800-\udfff]")}


def storable_identity(batch: Batch, dialect: str) -> None:
    """Give a batch whose (agent id, sequence) the database cannot take one it can, the same each time.

    A spool file's batch (or an agent's, on a node whose name holds a byte
    that is not UTF-8) may carry an agent id with a NUL or a lone surrogate,
    or a sequence beyond bigint: its ledger row was refused on every attempt,
    so the batch was retried for ever and every later flush waited behind it
    (a surrogate even escaped as a UnicodeEncodeError). No attempt under that
    identity can ever have committed, so one derived from it (a digest of it,
    sequence 0) keeps every retry exactly-once.
    """
    agent, seq = batch.agent_id, batch.seq
    if (
        isinstance(agent, str)
        and agent
        and type(seq) is int
        and -(2**63) <= seq < 2**63
        and not _UNSTORABLE_ID[dialect].search(agent)
    ):
        return
    seq_text = seq if type(seq) is int else repr(seq)
    digest = hashlib.sha256(
        json.dumps([agent, seq_text], ensure_ascii=True, default=repr).encode()
    ).hexdigest()
    # One batch per derived identity: the agent's floor (its own sequences) is not about it.
    batch.agent_id, batch.seq, batch.ledger_floor = f"unstorable-id/{digest[:32]}", 0, 0
    log.warning(
        "flush %s/%s: the store cannot take this batch's agent id or sequence; written as %s/0",
        json.dumps(agent, ensure_ascii=True, default=repr)[:200], str(seq_text)[:40], batch.agent_id,
    )  # fmt: skip
