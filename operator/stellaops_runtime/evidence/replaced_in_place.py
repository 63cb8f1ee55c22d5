"""A file replaced in place: the build (or version) asked about may be stored under another's rows.

The store keeps one cumulative row per (image, path, function, evidence kind), with the build-id
and purl of the first delta that made it (store/pg_write.py, store/agent_sql.py: "first wins").
An image's files never change, but the node's do (``host:<node>``: a package upgraded on the
node), and so do a running container's (``apt-get upgrade`` in it): the new build at the same
path sends its calls of ``split_fn`` and its ``unprobed`` tail fact under the same keys, and the
store adds them to the old build's rows. Only a function first seen after the upgrade gets a row
of the new build. So a question by the new build's function ID (``<new>:split_fn+0x0``), by file
offset in it, or by the new version's purl found no row of the function, and answered "not
observed" about a function that ran, or whose tail nobody probed.

The doubt: the paths where the build (the package) asked about is stored in the image also hold
rows of another build (another package version), and one of those is the function asked about
(by its name or a clone's; any function for a file offset or a whole package): with calls that
meet the period (a cumulative row's first..last call), or an ``unprobed`` tail (any period). Asked
by package, the other versions stored at those paths bring all their paths: a package's files are
upgraded together, and the asked version's calls of a file where none of its rows is were merged
into the old version's rows there (libssl3's libssl.so.3, beside its libcrypto.so.3). Then
those calls may be the asked build's, and ``query`` answers unknown, ``evidence`` keeps the
neutral RTS, ``vex`` says under_investigation, naming the rows (evidence/doubts.py). Rows of no
build-id or no package are not taken for another build: a row without a purl is the
``unattributed`` doubt's already.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable

import sqlalchemy as sa

from stellaops_runtime.contracts.hotsymbols import EvidenceKind
from stellaops_runtime.evidence.doubt import MAX_ROWS, Doubt, listed
from stellaops_runtime.store import queries
from stellaops_runtime.store.function_refs import FunctionQuery
from stellaops_runtime.store.queries import FILE_EVIDENCE, SymbolRow
from stellaops_runtime.store.refs import PurlQuery
from stellaops_runtime.store.same_image import of_image
from stellaops_runtime.store.schema import hot_symbols

REPLACED_IN_PLACE = "replaced_in_place"
_UNPROBED = EvidenceKind.UNPROBED.value
_COLUMNS = [hot_symbols.c[name] for name in SymbolRow.__slots__]  # type: ignore[attr-defined]


@dataclasses.dataclass(frozen=True, slots=True)
class _Asked:
    """What a question is about, as rows: its own (``mine``), another build's or version's
    (``other``, in SQL and as ``is_other`` for a row read), and how to say it."""

    mine: sa.ColumnElement[bool]
    other: sa.ColumnElement[bool]
    is_other: Callable[[SymbolRow], bool]
    what: str
    by_build: bool


def _asked(
    conn: sa.Connection, image: str, function: FunctionQuery | None, purl: PurlQuery | None
) -> _Asked | None:
    """A function ID's build, else a package's stored purls; None for any other question."""
    c = hot_symbols.c
    if function is not None and function.is_function_id:
        bid = function.build_id
        start = f"{bid}:"
        of_it = sa.func.substr(c.function_id, 1, len(start)) == start
        return _Asked(
            sa.or_(c.build_id == bid, of_it),
            sa.and_(c.build_id != "", c.build_id != bid, sa.not_(of_it)),
            lambda r: r.build_id not in ("", bid) and not r.function_id.startswith(start),
            f"build-id {bid}",
            True,
        )
    if purl is not None:
        found = queries.matching_purls(conn, image=image, purl=purl)
        if not found:  # package_not_seen's
            return None
        return _Asked(
            c.purl.in_(found),
            sa.and_(c.purl != "", c.purl.not_in(found)),
            lambda r: r.purl not in ("", *found),
            f"package {purl.text}",
            False,
        )
    return None


def _meets(r: SymbolRow, since: dt.datetime | None, until: dt.datetime | None) -> bool:
    """A fact (any period), or a row whose first..last call meets the period (a row whose calls all
    lie outside it holds none in it, whoever made them)."""
    if r.evidence_kind == _UNPROBED:
        return True
    return (since is None or r.last_seen >= since) and (until is None or r.first_seen <= until)


def _their_paths(conn: sa.Connection, image: str, paths: list[str], asked: _Asked) -> list[str]:
    """``paths`` and every path of ``image`` stored under another version (package) that is stored at
    one of them too: a package's files are upgraded together, so a call of the asked version in a
    file where no row of it is (every call there merged into the old version's rows) lies in one of
    the old version's files. A version that never shared a path with the asked one (a Go module of
    two versions in two binaries) brings nothing."""
    c = hot_symbols.c
    others: set[str] = set()
    for part in queries.chunks(paths):
        stmt = sa.select(c.purl).where(of_image(conn, c.image_digest, image), c.module.in_(part), asked.other)
        others.update(p for (p,) in conn.execute(stmt.distinct()))
    more = set(paths)
    for part in queries.chunks(sorted(others)):
        stmt = sa.select(c.module).where(of_image(conn, c.image_digest, image), c.purl.in_(part))
        more.update(m for (m,) in conn.execute(stmt.distinct()))
    return sorted(more)


def replaced_in_place(
    conn: sa.Connection,
    *,
    image: str,
    function: FunctionQuery | None,
    purl: PurlQuery | None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> Doubt | None:
    """Rows of another build (version) at the paths of ``image`` where the build a function ID names
    (else the package ``purl`` asks about) is stored, that may be ``function`` (any function when
    it is None or a file offset): calls meeting the period, or unprobed tails."""
    asked = _asked(conn, image, function, purl)
    if asked is None:
        return None
    c = hot_symbols.c
    stmt = sa.select(c.module).where(of_image(conn, c.image_digest, image), asked.mine).distinct()
    paths = sorted(m for (m,) in conn.execute(stmt))
    if not paths:
        return None
    where = paths if asked.by_build else _their_paths(conn, image, paths, asked)
    rows: list[SymbolRow] = []
    if function is not None and not (function.is_function_id and not function.entry_id):
        byname = dataclasses.replace(function, build_id="", entry_id="")  # any build's row of the name
        cands = queries.observed(conn, image=image, function=byname)  # with calls, any period
        cands += queries.unprobed(conn, image=image, function=byname)
        wanted = set(where)
        rows = [
            r
            for r in cands
            if r.module in wanted
            and r.evidence_kind not in FILE_EVIDENCE
            and asked.is_other(r)
            and _meets(r, since, until)
        ]
    else:  # a file offset, a whole package: any function of those paths may be it
        for part in queries.chunks(where):
            at = (of_image(conn, c.image_digest, image), c.module.in_(part), asked.other)
            live = [c.invocation_count > 0, c.evidence_kind.not_in(FILE_EVIDENCE)]
            live += [c.last_seen >= since] if since is not None else []
            live += [c.first_seen <= until] if until is not None else []
            stmt = sa.select(*_COLUMNS).where(*at, sa.or_(sa.and_(*live), c.evidence_kind == _UNPROBED))
            stmt = stmt.order_by(c.invocation_count.desc(), c.module, c.function_name).limit(MAX_ROWS)
            rows += [SymbolRow(**r._mapping) for r in conn.execute(stmt)]
    if not rows:
        return None
    others = {r.build_id if asked.by_build else r.purl for r in rows}
    what = asked.what
    why = (
        f"the file{'s' * (len(paths) != 1)} of {what} ({listed(set(paths), 'files')}) also held another "
        f"build or version ({listed(others, 'others')}): replaced in place (an upgrade on the node or in a "
        f"running container), and the store keeps a row's first build-id and package, so calls and "
        f"unprobed tails of {what} may be stored under the other's rows "
        f"({listed({f'{r.function_name} in {r.module}' for r in rows}, 'rows')})"
    )
    return Doubt(REPLACED_IN_PLACE, why, tuple(rows))
