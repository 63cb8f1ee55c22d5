"""The calls of a whole image in files of no package, counted by the database, not row by row.

A question about a whole package (``query functions --purl``) with none of its functions found
is unknown while any function of the image ran in a row without a purl (evidence/doubts.py,
``unattributed``). An image with a stripped binary no package claims has one such row per
offset that ran: 100,000s. So the counts the reason gives (calls, functions, files) are summed in
SQL (per evidence kind, per file), and only the busiest MAX_ROWS rows are read.
"""

from __future__ import annotations

import sqlalchemy as sa

from stellaops_runtime.evidence.doubt import MAX_LISTED, MAX_ROWS, Doubt, listed
from stellaops_runtime.store.queries import FILE_EVIDENCE, SymbolRow
from stellaops_runtime.store.same_image import of_image
from stellaops_runtime.store.schema import hot_symbols

_COLUMNS = [hot_symbols.c[name] for name in SymbolRow.__slots__]  # type: ignore[attr-defined]


def image_unattributed(conn: sa.Connection, *, image: str, kind: str) -> Doubt | None:
    """Calls of any function of ``image`` in rows without a purl (all time), as a ``kind`` doubt."""
    c = hot_symbols.c
    where = (
        of_image(conn, c.image_digest, image),
        c.purl == "",
        c.evidence_kind.not_in(FILE_EVIDENCE),
        c.invocation_count > 0,
    )
    by_kind = conn.execute(
        sa.select(c.evidence_kind, sa.func.sum(c.invocation_count), sa.func.count())
        .where(*where)
        .group_by(c.evidence_kind)
    ).all()
    if not by_kind:
        return None
    n = max(int(calls) for _, calls, _ in by_kind)  # one call seen two ways counts once
    total = sum(int(rows) for _, _, rows in by_kind)
    # per file: how many functions (distinct names); the files' count and the first of them
    per_file = conn.execute(
        sa.select(c.module, sa.func.count(sa.distinct(c.function_name))).where(*where).group_by(c.module)
    ).all()
    k = sum(int(names) for _, names in per_file)
    first = sorted(m or "(unreadable)" for m, _ in per_file)[:MAX_LISTED]
    busiest = sa.select(*_COLUMNS).where(*where)
    busiest = busiest.order_by(c.invocation_count.desc(), c.module, c.function_name, c.evidence_kind)
    rows = tuple(SymbolRow(**r._mapping) for r in conn.execute(busiest.limit(MAX_ROWS)))
    shown = listed(set(first), "files", total=len(per_file))
    why = (
        f"{k} function{'s' * (k != 1)} of the image ran {n} times in files no package was attributed "
        f"to: {shown} (their attribution failed, or no package claims them): they may be the package's"
    )
    return Doubt(kind, why, rows, count=total)
