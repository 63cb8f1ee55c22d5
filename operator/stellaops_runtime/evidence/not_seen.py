"""What the store has no row of: a package or a build of a file never seen in the image.

A question about code the store knows nothing of gets no "no": a mistyped purl
(``pkg:deb/debian/zlibg1``), a version or arch the image does not hold, a function ID whose
build-id is of another build of the library (or mistyped). Each would otherwise read "not
observed while watched", and a policy engine would take it for "not called". ``query`` answers
unknown naming it; ``evidence`` defers (package) or keeps the neutral RTS (file); ``vex`` says
under_investigation (evidence/doubts.py gathers them).
"""

from __future__ import annotations

import sqlalchemy as sa
from packageurl import PackageURL

from stellaops_runtime.evidence.doubt import Doubt, listed
from stellaops_runtime.store import queries
from stellaops_runtime.store.function_refs import FunctionQuery
from stellaops_runtime.store.refs import PurlQuery
from stellaops_runtime.store.same_image import of_image
from stellaops_runtime.store.schema import hot_symbols

PACKAGE_NOT_SEEN = "package_not_seen"
FILE_NOT_SEEN = "file_not_seen"


def package_not_seen(
    conn: sa.Connection, *, image: str, purl: PurlQuery | None, prefix: str | None = None
) -> Doubt | None:
    """A package (or a prefix) no stored row of ``image`` is of: a mistyped purl, a package not in
    the image, one whose files were never attributed. The store knows nothing of it: no "no". Nor
    when only fact rows are of it (store/queries.py FACT_EVIDENCE): a file of it in the image, never
    seen loaded."""
    others: list[str] = []
    facts: list[str] = []  # stored purls of it with fact rows only: its files in the image, none seen loaded
    if purl is not None:
        if queries.matching_purls(conn, image=image, purl=purl, facts=False):
            return None
        facts = queries.matching_purls(conn, image=image, purl=purl)
        what = f"the package {purl.text}"
        q = purl.purl
        if q.version or q.qualifiers or q.subpath:  # another version (an epoch), another arch...
            name = PurlQuery(purl.text, PackageURL(q.type, q.namespace, q.name))
            others = queries.matching_purls(conn, image=image, purl=name)
    elif prefix is not None:
        if queries.prefixed_purls(conn, image=image, prefix=prefix, facts=False):
            return None
        facts = queries.prefixed_purls(conn, image=image, prefix=prefix)
        what = f"no package starting {prefix}"
    else:
        return None
    if facts:
        why = (
            f"{what} was never seen loaded in the image: only facts of it are stored (a split tail its "
            "probes left unprobed, a JAR its database lists: its files are in the image; no file of it "
            f"was seen mapped, no function of it seen), of {listed(set(facts), 'purls')}, so nothing is "
            "known of its code"
        )
        return Doubt(PACKAGE_NOT_SEEN, why, ())
    why = (
        f"{what} was never seen loaded in the image (no stored row of it: a mistyped package URL, a "
        "package not in the image, or one whose files were never attributed), so nothing is known of it"
    )
    if others:
        why += f"; stored of that package: {listed(set(others), 'purls')}"
    return Doubt(PACKAGE_NOT_SEEN, why, ())


def file_not_seen(conn: sa.Connection, *, image: str, function: FunctionQuery | None) -> Doubt | None:
    """A function ID whose build-id no stored row of ``image`` has: that build of the file was never
    seen there (a mistyped build-id, another build of the library than the image holds); or only
    fact rows have (store/queries.py FACT_EVIDENCE): in the image, never seen loaded."""
    if function is None or not function.is_function_id:
        return None
    c = hot_symbols.c
    # substr, not LIKE: SQLite's LIKE ignores case (a Go build-id's letters are its own) and a Go
    # build-id may hold LIKE's ``_``
    start = f"{function.build_id}:"
    seen = sa.or_(c.build_id == function.build_id, sa.func.substr(c.function_id, 1, len(start)) == start)
    stmt = sa.select(c.evidence_kind).where(of_image(conn, c.image_digest, image), seen)
    # a fact's build-id (an ``unprobed`` tail: the PURL probes resolved the file) says the build is in
    # the image, not that it was mapped: like a package, a build known only so was never seen loaded
    code = stmt.where(c.evidence_kind.not_in(queries.FACT_EVIDENCE)).limit(1)
    if conn.execute(code).first() is not None:
        return None
    if conn.execute(stmt.limit(1)).first() is not None:
        why = (
            f"the file with build-id {function.build_id} is in the image (only facts of it are stored: "
            "a split tail its probes left unprobed), but it was never seen mapped, nor a function of it "
            "seen, so nothing is known of that code"
        )
        return Doubt(FILE_NOT_SEEN, why, ())
    why = (
        f"no file with build-id {function.build_id} was seen in the image (a mistyped build-id, or "
        "another build of the file than the image holds: its function may run there under another "
        "build-id), so nothing is known of that code"
    )
    return Doubt(FILE_NOT_SEEN, why, ())
