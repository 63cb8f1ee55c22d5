"""The ``refused`` doubt: rows of the image the store refused and kept in ``quarantined_rows``.

A row the database refused (a file path that was not UTF-8, a name too long for PostgreSQL's key
index: docs/operations.md, "A failing store") had its observation window stored, its calls not.
Its JSON is read back here, row by row as the database streams it (PostgreSQL cannot read these
rows' JSON with ``->>``: their text holds ``\\u0000`` or lone surrogates), and whatever cannot be
read counts against the answer. Split from evidence/doubts.py, which gathers every doubt.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from stellaops_runtime.contracts.hotsymbols import FACT_KINDS
from stellaops_runtime.evidence.doubt import MAX_ROWS, Doubt
from stellaops_runtime.evidence.doubt import listed as _listed
from stellaops_runtime.evidence.undemangled import stored_may_be
from stellaops_runtime.store.function_refs import FunctionQuery
from stellaops_runtime.store.name_spellings import clone_of
from stellaops_runtime.store.queries import FILE_EVIDENCE, SymbolRow
from stellaops_runtime.store.refs import PurlQuery
from stellaops_runtime.store.same_image import same_image
from stellaops_runtime.store.schema import SCHEMA, quarantined_rows
from stellaops_runtime.store.timeconv import ns_to_datetime

REFUSED = "refused"
_EARLIEST = dt.datetime.min.replace(tzinfo=dt.UTC)
_LATEST = dt.datetime.max.replace(tzinfo=dt.UTC)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _time(value: Any, default: dt.datetime) -> dt.datetime:
    ns = _int(value)
    try:
        return ns_to_datetime(ns) if ns is not None else default
    except OverflowError:
        return default


def _text(d: dict[str, Any], key: str) -> str:
    """A text field, its lone surrogates (a path that was not UTF-8) written ``\\udcff``: printable."""
    v = d.get(key)
    return v.encode("utf-8", "backslashreplace").decode() if isinstance(v, str) else ""


def _may_be(
    d: dict[str, Any],
    function: FunctionQuery | None,
    purl: Callable[[str], bool] | None,
    loose: bool,
    mangled: Callable[[str], bool] | None = None,
) -> bool:
    """Whether a refused row may hold calls of the function (of the package asked about: ``purl``
    says whether a stored purl is it); any function's, when ``function`` is None. A fact (0 calls): an
    ``unprobed`` tail (the function was probed in part, evidence/probed_in_part.py) may be, of no
    package too; a ``listed`` JAR (function "", the package may hold Java code) may be of a question
    about the whole package. ``mangled``: whether a name the agent could not demangle may be the
    function (evidence/undemangled.py; such a name is refused on PostgreSQL when too long for its
    key index, as every name cut at the symbol table's 16 KiB is)."""
    if d.get("evidence") in FILE_EVIDENCE:
        return False
    fact = _is_fact(d)
    count = _int(d.get("invocation_count"))
    if count is not None and count <= 0 and not fact:
        return False
    name, p = d.get("function_name"), d.get("purl")
    if purl is not None and isinstance(p, str) and (p or not (loose or fact)) and not purl(p):
        return False  # another package's file (or, unless ``loose``, a file of no package)
    if function is None or not isinstance(name, str) or name.startswith("0x"):  # or under no name
        return True
    if mangled is not None and mangled(name):
        return True
    if function.is_function_id:  # its name or a clone's (of any build, as its name is), or its ID
        if name in function.names or d.get("function_id") == function.entry_id:
            return True
        return any(clone_of(name, n) for n in function.clones)
    return function.matches_name(name)


# The 0-call rows the answers read as facts: an ``unprobed`` tail (agent/unprobed.py), a ``listed``
# JAR (agent/listed_jars.py: the package holds Java code, evidence/interpreted.py's jni_files).
_FACTS = frozenset(k.value for k in FACT_KINDS)


def _is_fact(d: dict[str, Any]) -> bool:
    """A fact (:data:`_FACTS`): it holds for any period, whenever it was sent."""
    return d.get("evidence") in _FACTS


def _row(d: dict[str, Any], image: str) -> SymbolRow:
    first = _time(d.get("first_seen_ns"), _EARLIEST)
    last = _time(d.get("last_seen_ns"), _LATEST)
    conf = d.get("confidence")
    return SymbolRow(
        image_digest=image,
        module=_text(d, "module"),
        function_name=_text(d, "function_name"),
        evidence_kind=_text(d, "evidence"),
        purl=_text(d, "purl"),
        build_id=_text(d, "build_id"),
        function_id=_text(d, "function_id"),
        invocation_count=_int(d.get("invocation_count")) or 0,
        unique_callers=_int(d.get("unique_callers")) or 0,
        confidence=float(conf) if isinstance(conf, int | float) and not isinstance(conf, bool) else 0.0,
        first_seen=first,
        last_seen=max(first, last),
        node_name=_text(d, "node_name"),
        sample=None,
    )


def refused(
    conn: sa.Connection,
    *,
    image: str,
    function: FunctionQuery | None,
    purl: PurlQuery | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    unattributed_too: bool = True,
) -> Doubt | None:
    """Hot-symbol rows of ``image`` (under any of its paired digests) the store refused that may hold
    calls of the function asked about (of ``purl``'s package or of none), seen in the period
    (always, when unreadable)."""
    schema = SCHEMA if conn.dialect.name == "postgresql" else None
    if not sa.inspect(conn).has_table(quarantined_rows.name, schema=schema):  # before migration 0004
        return None
    q = quarantined_rows.c
    # the key's text in the row's JSON: instr/strpos, no LIKE (SQLite refuses a pattern of more than
    # 50,000 bytes, and a host: key may be that long)
    find = sa.func.strpos if conn.dialect.name == "postgresql" else sa.func.instr
    # every digest of the image (store/same_image.py): a refused row under the paired one is its too
    digests = same_image(conn, image)
    named = sa.or_(*(find(q.row_json, d) > 0 for d in digests))
    stmt = sa.select(q.row_json, q.error).where(q.table_name == "hot_symbols", named)
    # each stored purl parsed once per text: 100,000s of refused rows hold a few purls
    matches = functools.cache(purl.matches) if purl is not None else None
    mangled = stored_may_be(function) if function is not None else None
    # Counted as read, a row of the answer made only for the first MAX_ROWS (all the answer lists):
    # a SymbolRow per row took 11.9 s at 200,000 rows. Streamed (PostgreSQL: a server-side cursor).
    rows: list[SymbolRow] = []
    count = calls = 0
    files: set[str] = set()
    error_text = ""
    for text, error in conn.execute(stmt.execution_options(stream_results=True, yield_per=2_000)):
        try:
            d = json.loads(text)
        except ValueError:
            d = {"image_digest": image}  # a row we cannot read may be anything of the image
        if (
            not isinstance(d, dict)
            or d.get("image_digest") not in digests
            or not _may_be(d, function, matches, unattributed_too, mangled)
        ):
            continue
        if (since is not None or until is not None) and not _is_fact(d):
            first = _time(d.get("first_seen_ns"), _EARLIEST)
            last = max(first, _time(d.get("last_seen_ns"), _LATEST))
            if (since is not None and last < since) or (until is not None and first > until):
                continue
        if not count:
            error_text = _text({"e": str(error).splitlines()[0][:200]}, "e") if error else ""
        count += 1
        calls += _int(d.get("invocation_count")) or 0
        files.add(_text(d, "module") or "(unreadable)")
        if len(rows) < MAX_ROWS:
            rows.append(_row(d, str(d["image_digest"])))
    if not count:
        return None
    whose = "the function's" if function is not None else "of the functions asked about"
    why = (
        f"the store refused {count} row{'s' * (count != 1)} of {calls} calls that may be {whose}, "
        f"in {_listed(files, 'files')} (kept in quarantined_rows: {error_text or 'no error text'})"
    )
    return Doubt(REFUSED, why, tuple(rows), count)
