"""A function asked by file offset, in a file whose code ran under names: no "no" can be said.

An unresolved function ID, ``<build-id>:+0x<file offset>`` (docs/function-ids.md), is how static
analysis names a function of a stripped file: by where it starts. The store matches it against
the frame the agent keyed ``0x<offset>`` at exactly that offset (store/function_refs.py), and frames of
the same file under no name are the ``unnamed`` doubt (store/unnamed.py). But the agent may have
named that file's frames (a debug file, a symbol table the static side lacked): the function
then ran under its name, and the store keeps names and offsets from a symbol's start, never
where in the file a named function lies. So while any named function of that build ran in the
period, the one holding the offset may be among them, and "not observed" cannot be said.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from stellaops_runtime.evidence.doubt import Doubt, listed
from stellaops_runtime.store import queries
from stellaops_runtime.store.function_refs import FunctionQuery
from stellaops_runtime.store.queries import FILE_EVIDENCE
from stellaops_runtime.store.same_image import of_image
from stellaops_runtime.store.schema import hot_symbols
from stellaops_runtime.store.unnamed import history_incomplete

OFFSET_UNPLACED = "offset_unplaced"


def offset_unplaced(
    conn: sa.Connection,
    *,
    image: str,
    function: FunctionQuery,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> Doubt | None:
    """The named functions of the build an unresolved ID (``<build-id>:+0x<offset>``) asks about
    that ran in ``image`` in the period; None for any other question."""
    if not function.is_function_id or function.entry_id:  # a named function ID: matched by its name
        return None
    c = hot_symbols.c
    start = f"{function.build_id}:"
    where = (
        of_image(conn, c.image_digest, image),
        sa.or_(c.build_id == function.build_id, sa.func.substr(c.function_id, 1, len(start)) == start),
        c.evidence_kind.not_in(FILE_EVIDENCE),
        sa.func.substr(c.function_name, 1, 2) != "0x",  # under no name: store/unnamed.py's
        c.invocation_count > 0,
    )
    rows = queries.rows_where(conn, *where, since=since, until=until)
    if since is not None or until is not None:  # retention removed the history that would say when
        seen = {(r.module, r.function_name, r.evidence_kind) for r in rows}
        rest = [
            r
            for r in queries.rows_where(conn, *where)
            if (r.module, r.function_name, r.evidence_kind) not in seen
        ]
        rows += history_incomplete(conn, rest, since=since, until=until)
    if not rows:
        return None
    names = {r.function_name for r in rows}
    k = len(names)
    why = (
        f"asked by file offset {function.names[0]} of build-id {function.build_id}, while {k} "
        f"function{'s' * (k != 1)} of that file ran under {'their names' if k != 1 else 'its name'} "
        f"({listed(names, 'functions')}): the store keeps names, not where in the file a named "
        "function lies, so the one at that offset may be among them"
    )
    return Doubt(OFFSET_UNPLACED, why, tuple(rows))
