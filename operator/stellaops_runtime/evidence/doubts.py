"""Calls that may be the function asked about though no row of it says so: what forbids a "no".

Twelve places where a call can hide from a question about a function of a package:

- **interpreted**: the package holds code that runs in an interpreter or a VM: its type is
  pypi, npm, gem, maven, ..., or its files lie in an interpreter's module directory (a deb of
  Python modules, a conda package: evidence/interpreted.py); asked of no package, the image runs
  such code, and the index does not hold the name as native code of the image (``native_name``).
  A sampled user stack names native frames only (the interpreter's ``_PyEval_EvalFrameDefault``,
  JIT code under no file), never a function such as ``yaml.full_load``; the package is "seen
  loaded" through its native extension. Asked by name, its function cannot be said not to have
  run; asked by function ID (an ELF symbol of the package's native file) or by a mangled symbol
  (``_Z...``, ``_R...``: native code by its spelling) it can.
- **package_not_seen** (``query`` only: ``evidence`` and ``vex`` defer on it already): no stored
  row is of the package asked about (a mistyped purl, a package not in the image);
  **file_not_seen**: a function ID whose build-id no stored row of the image has
  (evidence/not_seen.py).

- **unattributed**: the function ran in a file no package was attributed to (purl ``""``:
  the file's attribution failed, or no source claims it; docs/attribution.md). A question
  about a package cannot rule it out: the file may be the package's. Asked about one function,
  its name must match; asked about the whole package (``query functions``), a call of any
  function of the image in such a file forbids "no function of it ran": which package's code
  a file of no package holds is what its attribution could not tell (a renamed Rust crate, a
  fat JAR, a Go function of no module lie even in another package's file).
- **offset_unplaced**: a function asked by file offset (``<build-id>:+0x<offset>``, a stripped
  function as static analysis names it) while functions of that build ran under their names:
  the store cannot tell which of them lies at the offset (evidence/offset_unplaced.py).
- **history_removed**: the cumulative row says the function ran between its first and last
  call, and that meets the period asked about, but ``store.retentionDays`` removed the
  per-window history that would say when (store/partitions.py).
- **window_spans_period**: a window's first call is before the period and its last after it;
  its other calls lie anywhere between (the history keeps no more), in the period or not.
- **probed_in_part**: the function's split tail (``crc32.part.0``, called directly by callers
  that inlined its head) was left unprobed by the PURL probes that watch it
  (evidence/probed_in_part.py).
- **replaced_in_place**: the file of the build (the package version) asked about was replaced in
  place (an upgrade on the node or in a running container): the store keeps a row's first build-id
  and purl, so the function's calls and tails may be stored under the other build's rows
  (evidence/replaced_in_place.py).
- **refused**: the database refused the row of the calls and the store kept it in
  ``quarantined_rows`` (a file path that was not UTF-8, a name too long for PostgreSQL's key
  index: docs/operations.md, "A failing store"). Its observation window was stored; its calls
  were not. Read back from the row's JSON; what cannot be read counts against the answer
  (evidence/refused_rows.py).

- **undemangled**: the function ran under a name that looked mangled and did not demangle when
  stored (the agent stores demangled names), and that may be the function's; or the name asked
  about looks mangled and does not demangle here (evidence/undemangled.py).

- **paired_image**: more digests are paired with the image (its config digest beside the
  manifest digests the lifecycle agent files it under) than the readers read, which read the
  rest as one image's rows (evidence/paired_image.py, store/same_image.py).

Each is a :class:`Doubt`: ``query observed`` answers unknown,
``evidence`` keeps the neutral RTS and exits 3, ``vex`` says under_investigation, naming them.
``query functions`` and ``query hot`` with nothing to list answer unknown on refused rows,
and ``query functions`` of an interpreted package, or with unattributed calls in the image,
too (:func:`package_doubts`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import sqlalchemy as sa

from stellaops_runtime.evidence.doubt import MAX_LISTED as MAX_LISTED  # re-exported
from stellaops_runtime.evidence.doubt import Doubt
from stellaops_runtime.evidence.doubt import listed as _listed
from stellaops_runtime.evidence.interpreted import (
    INTERPRETED_TYPES,
    image_files,
    jni_files,
    native_name,
    package_files,
    purl_type,
    unstored_files,
)
from stellaops_runtime.evidence.not_seen import file_not_seen, package_not_seen
from stellaops_runtime.evidence.offset_unplaced import offset_unplaced
from stellaops_runtime.evidence.paired_image import paired_image
from stellaops_runtime.evidence.probed_in_part import probed_in_part
from stellaops_runtime.evidence.refused_rows import REFUSED as REFUSED  # re-exported
from stellaops_runtime.evidence.refused_rows import refused as refused  # re-exported
from stellaops_runtime.evidence.replaced_in_place import replaced_in_place
from stellaops_runtime.evidence.unattributed_image import image_unattributed
from stellaops_runtime.evidence.undemangled import undemangled
from stellaops_runtime.store import queries
from stellaops_runtime.store.function_refs import FunctionQuery
from stellaops_runtime.store.queries import FILE_EVIDENCE, SymbolRow, rfc3339
from stellaops_runtime.store.refs import PurlQuery
from stellaops_runtime.store.same_image import of_image
from stellaops_runtime.store.schema import hot_symbol_windows, hot_symbols
from stellaops_runtime.store.unnamed import history_incomplete

UNATTRIBUTED = "unattributed"
INTERPRETED = "interpreted"
HISTORY_REMOVED = "history_removed"
_EARLIEST = dt.datetime.min.replace(tzinfo=dt.UTC)
_LATEST = dt.datetime.max.replace(tzinfo=dt.UTC)


def _files(rows: list[SymbolRow]) -> str:
    return _listed({r.module or "(unreadable)" for r in rows}, "files")


def _spans(rows: list[SymbolRow]) -> str:
    return _listed(
        {f"{r.module} {rfc3339(r.first_seen)}..{rfc3339(r.last_seen)}" for r in rows}, "rows", "; "
    )


def unattributed(
    conn: sa.Connection,
    *,
    image: str,
    function: FunctionQuery | None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> Doubt | None:
    """Calls of ``function`` (of any function, when None: a question about a whole package) in
    ``image`` in files no package was attributed to (the period's)."""
    if function is None and since is None and until is None:  # counted in SQL: 100,000s of rows
        return image_unattributed(conn, image=image, kind=UNATTRIBUTED)
    if function is None:
        c = hot_symbols.c
        where = (of_image(conn, c.image_digest, image), c.purl == "", c.evidence_kind.not_in(FILE_EVIDENCE))
        rows = queries.rows_where(conn, *where, c.invocation_count > 0, since=since, until=until)
    else:
        rows = queries.observed(conn, image=image, function=function, purl="", since=since, until=until)
    rows = [r for r in rows if r.evidence_kind not in FILE_EVIDENCE and r.invocation_count > 0]
    if not rows:
        return None
    by_kind: dict[str, int] = {}
    for r in rows:  # one call seen two ways (invoked, on a stack) counts once
        by_kind[r.evidence_kind] = by_kind.get(r.evidence_kind, 0) + r.invocation_count
    n = max(by_kind.values())
    k = len({(r.module, r.function_name) for r in rows})
    what = "the function ran" if function is not None else f"{k} function{'s' * (k != 1)} of the image ran"
    why = (
        f"{what} {n} times in files no package was attributed to: {_files(rows)} (their "
        "attribution failed, or no package claims them): they may be the package's"
    )
    return Doubt(UNATTRIBUTED, why, tuple(rows))


def interpreted(
    conn: sa.Connection,
    *,
    image: str,
    function: FunctionQuery | None,
    purl: PurlQuery | None,
    prefix: str | None = None,
) -> Doubt | None:
    """A function asked by name (any function, when ``function`` is None) of a package whose code
    is interpreted (evidence/interpreted.py): no sampled stack could have named it. The package is
    ``purl``'s, those ``prefix`` covers, or, with neither, any of the image's (a function asked of
    no package, in an image that runs interpreted code)."""
    # an ELF symbol of native code, or mangled: a plain name may be interpreted code's even with a
    # parameter list (a Java method's signature is spelled like a C++ one)
    if function is not None and (function.is_function_id or function.mangled):
        return None
    what = "a function" if function is not None else "the functions"
    how = (
        "which no sampled stack names (a stack shows the interpreter's native frames): only a call "
        "through a probe of the function itself shows it; ask by function ID for a function of "
        "native code"
    )
    if purl is not None and purl.purl.type in INTERPRETED_TYPES:
        return Doubt(INTERPRETED, f"{what} of a {purl.purl.type} package may be interpreted code, {how}", ())
    if prefix is not None and purl_type(prefix) in INTERPRETED_TYPES:
        why = f"{what} of {purl_type(prefix)} packages may be interpreted code, {how}"
        return Doubt(INTERPRETED, why, ())
    if purl is not None:
        purls = queries.matching_purls(conn, image=image, purl=purl)
        files = package_files(conn, image=image, purls=purls)
        whose = "the package"
        if not files:  # may hold code no row stands for: a JAR beside its JNI library is never stored
            files, why = unstored_files(conn, image=image, function=function, purls=purls)
            whose = f"the package ({why}: a JAR beside its JNI library is never stored)"
        if files and function is not None and native_name(conn, image=image, function=function, purl=purl):
            return None  # a C function of an interpreter's package (libnode's uv_run): that native code
    elif prefix is not None:
        purls = queries.prefixed_purls(conn, image=image, prefix=prefix)
        files = package_files(conn, image=image, purls=purls) or jni_files(conn, image=image, purls=purls)
        whose = "the packages"
    elif function is not None:
        files = image_files(conn, image=image)
        if files and native_name(conn, image=image, function=function):  # that native code: no interpreter's
            return None
        whose = "the image (asked of no package)"
    else:
        return None
    if not files:
        return None
    why = (
        f"{what} of {whose} may be interpreted code: {_listed(set(files), 'files')} lie where an "
        f"interpreter's modules do, or are or hold an interpreter, {how}"
    )
    return Doubt(INTERPRETED, why, ())


def history_removed(
    conn: sa.Connection, rows: list[SymbolRow], *, since: dt.datetime | None, until: dt.datetime | None
) -> Doubt | None:
    """Of the cumulative ``rows``, those whose first..last call meets the period while their
    per-window history no longer holds all their calls (retention removed the oldest windows)."""
    lost = history_incomplete(conn, rows, since=since, until=until)
    if not lost:
        return None
    ran = _spans(lost)
    why = (
        f"the function ran between its first and last call ({ran}), which meets the period, but the "
        "per-window history of those calls was removed (store.retentionDays): whether one fell in "
        "the period cannot be told"
    )
    return Doubt(HISTORY_REMOVED, why, tuple(lost))


def spanning(
    conn: sa.Connection, rows: list[SymbolRow], *, since: dt.datetime | None, until: dt.datetime | None
) -> Doubt | None:
    """Windows of the cumulative ``rows`` whose first call is before the period and last call after
    it: their other calls lie anywhere between, in the period or not (queries.observed leaves them
    out)."""
    if since is None or until is None or not rows:
        return None
    w = hot_symbol_windows.c
    cols = (w.image_digest, w.module, w.function_name, w.evidence_kind)
    keys = [(r.image_digest, r.module, r.function_name, r.evidence_kind) for r in rows]
    stmt = sa.select(*cols, w.invocation_count, w.first_seen, w.last_seen).where(
        sa.tuple_(*cols).in_(keys), w.invocation_count > 0, w.first_seen < since, w.last_seen > until
    )
    by_key = {k: r for r, k in zip(rows, keys, strict=True)}
    found = [
        dataclasses.replace(
            by_key[tuple(x[:4])],
            invocation_count=int(x.invocation_count),
            first_seen=_utc(x.first_seen),
            last_seen=_utc(x.last_seen),
        )
        for x in conn.execute(stmt)
    ]
    if not found:
        return None
    ran = _spans(found)
    why = (
        f"the function ran in windows whose first call is before the period and last call after it "
        f"({ran}): their other calls lie anywhere between, so whether one fell in the period cannot be told"
    )
    return Doubt("window_spans_period", why, tuple(found))


def _utc(value: Any) -> dt.datetime:
    """A UTC column as read back: SQLite gives naive text, PostgreSQL an aware datetime."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    assert isinstance(value, dt.datetime)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def doubts(
    conn: sa.Connection,
    *,
    image: str,
    function: FunctionQuery,
    purl: PurlQuery | None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> list[Doubt]:
    """Every doubt on a "no" about ``function`` (of ``purl``) in ``image`` in the period."""
    found = [
        file_not_seen(conn, image=image, function=function),
        interpreted(conn, image=image, function=function, purl=purl),
        refused(conn, image=image, function=function, purl=purl, since=since, until=until),
        offset_unplaced(conn, image=image, function=function, since=since, until=until),
        probed_in_part(conn, image=image, function=function, purl=purl),
        replaced_in_place(conn, image=image, function=function, purl=purl, since=since, until=until),
        paired_image(conn, image=image, function=function, purl=purl),
        undemangled(conn, image=image, function=function, purl=purl, since=since, until=until),
    ]
    if purl is not None:
        found.append(unattributed(conn, image=image, function=function, since=since, until=until))
    if since is not None or until is not None:
        whole = queries.observed(conn, image=image, function=function, purl=purl)
        found.append(history_removed(conn, whole, since=since, until=until))
        found.append(spanning(conn, whole, since=since, until=until))
    return [d for d in found if d is not None]


def package_doubts(
    conn: sa.Connection, *, image: str, purl: PurlQuery | None, prefix: str | None = None
) -> list[Doubt]:
    """What forbids "no function (of ``purl``'s package, of those ``prefix`` covers) ran in
    ``image``": refused rows of any function of the image (of the package, when one is asked
    about), a package whose code is interpreted (:func:`interpreted`), a package the store
    knows nothing of (:func:`package_not_seen`), calls of any function of the image in files
    no package was attributed to (:func:`unattributed`: any may be the package's), and a function
    of it probed in part (evidence/probed_in_part.py)."""
    found = [
        package_not_seen(conn, image=image, purl=purl, prefix=prefix),
        interpreted(conn, image=image, function=None, purl=purl, prefix=prefix),
        refused(conn, image=image, function=None, purl=purl, unattributed_too=False),
        probed_in_part(conn, image=image, function=None, purl=purl, prefix=prefix),
        paired_image(conn, image=image, purl=purl),
    ]
    if purl is not None or prefix is not None:  # asked of no package (``hot``), such rows are listed
        found.append(unattributed(conn, image=image, function=None))
    return [d for d in found if d is not None]
