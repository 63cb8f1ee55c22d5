"""The node's export position in the store against this agent's own checkpoint: never read before it.

A restarted export follower resumes at the checkpoint of its node's watch record
(sources/export_restart.py), but that record is this agent's: another agent of the node with
another ``store.spoolPath`` (a second install, an agent run by hand) keeps its own, and may
have followed the file further after this agent's record was written. Every transaction that
stores counts of the file also writes the node's export position (store/export_position.py),
so the store knows where any agent's stored counts may reach. :func:`reconcile` weighs the
two when the file is opened:

- no row (agents before migration 0011), or one written by the agent that wrote this record
  (the record is at least as far on: its in-flight entry is written before the counts): the
  record's checkpoint, as before;
- the row's file is the one at the path and further on than the record's (or the record's is
  not the file at the path), and the row is final (its agent stopped with every count stored,
  store/export_position.py ``mark_final``): read on from the row's offset, with no gap since
  this agent's record when the row is of this boot (every line before the offset is stored,
  and the hole before that agent's turn was that agent's to mark), else a gap until the file's
  opening (nobody watched the node from its boot until that agent's turn, on the old boot);
- the same with a row that is not final: nothing is resumed. Its agent may have counted lines
  past it that only reached its spool file (its store down at its shutdown) or were lost
  (killed): read from there, a spooled line would be counted twice once the spool is replayed;
- the record's file is the one at the path and the row's is not: the row is of an older file,
  the record's checkpoint is used, unless the row names the same inode (the file was
  truncated or rewritten after the other agent read it: nothing can be resumed);
- neither is the file at the path (rotated since): the record's checkpoint (and its rotated
  file) only when the row is older on this boot's clock; else nothing is resumed.

Then, whatever was chosen: another agent's stored span of the chosen checkpoint's file
(store/export_spans.py) reaching past it means lines after it are stored (a spool replayed,
which writes no row: its agent's store was away for its whole life), and nothing is resumed;
so does another agent's stored span of the file at the path when that file is not the
checkpoint's (rotated beside it: the file at the path is read after it from its start;
rewritten in place: read from its start with ``exportFromStart``).

Whatever is not resumed is read from the file's end, never its start, and the time since this
agent's record is a gap, never a line counted twice. A row that is not well formed is not used
and nothing is resumed either.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, BinaryIO

from stellaops_runtime.boot_id import this_boot
from stellaops_runtime.hotsymbols.clock_span import boot_ns
from stellaops_runtime.sources.export_checkpoint import HEAD, matches, path_hash, valid
from stellaops_runtime.store.export_spans import same_file

Moment = tuple[int, int] | None
OWN, STORE, NONE = "own", "store", "none"
_DOC_KEYS = {"checkpoint", "at_ns", "at_boot", "boot_id"}


def store_moment(doc: dict[str, Any]) -> Moment:
    """The row's moment (wall, boottime ns) if it is of this boot, else None (not a time here)."""
    at, boot, boot_id = doc["at_ns"], doc["at_boot"], doc["boot_id"]
    if boot_id and boot_id == this_boot() and 0 <= boot <= boot_ns():
        return (at, boot)
    return None


def store_doc(row: Any) -> dict[str, Any] | None:
    """The row's position document if it is well formed (store/export_position.py), else None.
    ``final`` is optional (rows of agents before it have none: not final)."""
    if not isinstance(row, dict) or set(row) - {"final"} != _DOC_KEYS or row.get("final", True) is not True:
        return None
    if valid(row["checkpoint"]) is None or not isinstance(row["boot_id"], str):
        return None
    if any(type(row[k]) is not int or row[k] < 0 for k in ("at_ns", "at_boot")):
        return None
    return row


def reconcile(
    f: BinaryIO,
    path: str,
    own: tuple[dict[str, Any], Moment],
    row: tuple[str, Any] | None,
    record_agent: str,
    *,
    spans: Any = (),
) -> tuple[str, dict[str, Any] | None, Moment, str]:
    """(OWN: the record's checkpoint; STORE: the row's, with its checkpoint and moment; NONE:
    nothing is resumed, with why) for the file ``f`` now at ``path``. ``spans``: every agent's
    stored spans of the node (store/export_spans.py ``read_spans``): another agent's reaching
    past the checkpoint chosen (counts of a spool replayed, which wrote no row) means nothing is
    resumed either."""
    how, scp, smoment, why = _weigh_row(f, path, own, row, record_agent)
    if how == NONE or scp is None:
        return how, scp, smoment, why
    mine = {record_agent} | ({row[0]} if how == STORE and row is not None else set())
    at_path = _at_path(f)
    # Not the checkpoint's file (rotated: read after the rotated one; rewritten or truncated in place:
    # with exportFromStart): ``f`` may be read from its start, over any line another agent stored.
    here = not matches(f, scp, same_dev=smoment is not None)
    past = spans_past(spans, scp, mine, size=at_path[2] if here and at_path is not None else None)
    if past is not None:
        why = (
            f"another agent of this node (agent {past[0]}) stored counts of it up to byte {past[3]}, past "
            f"byte {scp['pos']} where this agent would resume (a spool file replayed)"
        )
        return NONE, None, None, why
    if at_path is not None and not here:
        ino, head, size = at_path
        cp_new = {"ino": ino, "pos": 0, "head_len": HEAD if head else 0, "head_sha256": head}
        past = spans_past(spans, cp_new, mine, size=size)
        if past is not None:
            why = (
                f"another agent of this node (agent {past[0]}) stored counts of the file at the path up "
                f"to byte {past[3]}, and it is not the file of the checkpoint (rotated or rewritten since), "
                "so it would be read from its start (a spool file replayed)"
            )
            return NONE, None, None, why
    return how, scp, smoment, why


def _at_path(f: BinaryIO) -> tuple[int, str, int] | None:
    """(inode, head, size) of the file at the path, as spans name it (store/export_spans.py): the
    head is the SHA-256 of its first :data:`HEAD` bytes, "" while it is shorter; None: not readable."""
    try:
        st, head = os.fstat(f.fileno()), os.pread(f.fileno(), HEAD, 0)
    except OSError:
        return None
    return st.st_ino, hashlib.sha256(head).hexdigest() if len(head) == HEAD else "", st.st_size


def spans_past(
    spans: Any, cp: dict[str, Any], mine: set[str], *, size: int | None = None
) -> tuple[str, int, int, int, str] | None:
    """A stored span of an agent not in ``mine`` in the checkpoint's file (its inode, and its head
    when both are known: store/export_spans.py ``same_file``) that reaches past the checkpoint:
    lines after it are stored (None: none). ``size``: the file's size now, when it is known to be
    the checkpoint's: a span reaching past its end is not of it (a file only grows; one truncated
    holds new lines), but of a deleted file that had its inode, whose head it may not know."""
    head = cp["head_sha256"] if cp["head_len"] >= HEAD else ""
    for span in spans or ():
        agent, ino, _lo, hi, shead = span
        if agent in mine or not same_file(ino, shead, cp["ino"], head):
            continue
        if hi > cp["pos"] and (size is None or hi <= size):
            return span
    return None


def _weigh_row(
    f: BinaryIO,
    path: str,
    own: tuple[dict[str, Any], Moment],
    row: tuple[str, Any] | None,
    record_agent: str,
) -> tuple[str, dict[str, Any] | None, Moment, str]:
    """:func:`reconcile` by the node's row alone."""
    cp, moment = own
    if row is None:
        return OWN, cp, moment, ""
    agent, raw = row
    doc = store_doc(raw)
    if doc is None and isinstance(raw, dict) and set(raw) == {"unknown"}:  # export_position.py mark_unknown
        why = (
            "spooled counts of lines of it not known (a spool file of an agent before session 39) were stored"
        )
        return NONE, None, None, why
    if doc is None:
        return NONE, None, None, "the store's export position of this node is not well formed"
    if agent == record_agent:
        return OWN, cp, moment, ""
    scp, smoment = doc["checkpoint"], store_moment(doc)
    s_here = matches(f, scp, same_dev=smoment is not None) == ""
    c_here = cp["path_sha256"] == path_hash(path) and matches(f, cp, same_dev=moment is not None) == ""
    if s_here and (not c_here or scp["pos"] > cp["pos"]):
        if doc.get("final") is True:
            return STORE, scp, smoment, ""
        why = (
            "another agent of this node counted lines of it past this agent's record and did not stop "
            "with every count stored: its last counts may be in its spool file, or lost"
        )
        return NONE, None, None, why
    if c_here:
        if not s_here and _same_inode(f, scp):
            why = "the file was truncated or rewritten after another agent of this node read it"
            return NONE, None, None, why
        return OWN, cp, moment, ""
    if smoment is not None and moment is not None and smoment[1] <= moment[1]:
        return OWN, cp, moment, ""  # the row is older: the record's file rotated beside the path
    why = "another agent of this node stored counts of it after this agent's record; rotated since"
    return NONE, None, None, why


def _same_inode(f: BinaryIO, cp: dict[str, Any]) -> bool:
    try:
        return os.fstat(f.fileno()).st_ino == cp["ino"]
    except OSError:
        return True
