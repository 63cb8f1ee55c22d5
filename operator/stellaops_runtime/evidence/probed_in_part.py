"""A function the probes watched only in part: its split tail ran unprobed, so no "no" about it.

gcc -O2 splits a function by partial inlining (``crc32`` and ``crc32.part.0``): callers that
inlined the head call the tail directly. The PURL probes attach at ``crc32`` only, and the agent
stores each tail left unprobed as an ``unprobed`` row of 0 calls (agent/unprobed.py). The same
row names an entry clone (``crc32.isra.0``) of a ``binaryPath`` function that was not probed: under
Tetragon, whose policy names the symbol only, or past the BCC probes' room (native/host_tails.py).
A question about the function (by name, by function ID in that build, maybe of its package) that
meets such a row in the image is answered ``unknown`` naming the tails, and so is "no function of the package
(of those a prefix covers, of the image) ran" (``query functions``, ``query hot`` with nothing to
list): ``query observed`` exits 3,
``evidence`` keeps the neutral RTS, ``vex`` says under_investigation (evidence/doubts.py). The
fact holds for any period asked about: an image's file never changes, so its tail was unprobed
whenever the function was probed there. A node's file's facts (``host:<node>``) count too for an
image that has a row of that build: a container running the node's file (store/node_facts.py).
A function asked by file offset (``<build-id>:+0x<offset>``) meets every unprobed fact of that
build: a fact names a tail, not where it lies, so the function at that offset may be one.
"""

from __future__ import annotations

import sqlalchemy as sa

from stellaops_runtime.evidence.doubt import Doubt, listed
from stellaops_runtime.store import queries
from stellaops_runtime.store.function_refs import FunctionQuery
from stellaops_runtime.store.name_spellings import clone_of
from stellaops_runtime.store.node_facts import node_file_unprobed
from stellaops_runtime.store.refs import PurlQuery

PROBED_IN_PART = "probed_in_part"


def probed_in_part(
    conn: sa.Connection,
    *,
    image: str,
    function: FunctionQuery | None,
    purl: PurlQuery | None,
    prefix: str | None = None,
) -> Doubt | None:
    """The split tails of ``function`` (of any function when None: a question about a whole package,
    those ``prefix`` covers, or the image) of ``purl`` the probes left unprobed in ``image``."""
    if function is not None and function.is_function_id and not function.entry_id:
        return _at_offset(conn, image=image, function=function, purl=purl)
    rows = queries.unprobed(conn, image=image, function=function, purl=purl, purl_prefix=prefix)
    if function is not None and function.is_function_id:  # the fact of the very name asked, of its
        # build (a tail asked by its own ID, an absent function's fact): not a clone of itself
        named = FunctionQuery(text=function.text, names=function.names)
        got = queries.unprobed(conn, image=image, function=named, purl=purl, purl_prefix=prefix)
        rows += [r for r in got if r.build_id == function.build_id and r.function_name in function.names]
    rows += node_file_unprobed(  # a hostPath run of a node's file
        conn, image=image, function=function, purl=purl, purl_prefix=prefix
    )
    if not rows:
        return None
    what = "the function was" if function is not None else "functions of it were"
    tails = [r for r in rows if ".part" in r.function_name]
    clones = [r for r in rows if ".part" not in r.function_name and _is_clone(r.function_name)]
    absent = [r for r in rows if ".part" not in r.function_name and not _is_clone(r.function_name)]
    parts = []
    for got, kind, why in (
        (tails, "split tail", "code a caller that inlined a function's head calls directly"),
        (clones, "clone", "a copy gcc made to be called instead of the function; Tetragon's policy names "
         "the symbol only, or the probes had no room left for it"),
        (absent, "function", "named by a binaryPath policy, but the file does not define it: inlined into "
         "its callers, renamed, or of another version of the program; no probe could be placed"),
    ):  # fmt: skip
        if got:
            one = len(got) == 1
            names = listed({f"{r.function_name} in {r.module}" for r in got}, f"{kind.split()[-1]}s")
            parts.append(f"{kind}{'' if one else 's'} {names} ({why}) {'was' if one else 'were'} not probed")
    through = "it" if len(rows) == 1 else "them"
    how = "probed in part" if tails or clones else "never probed"  # only absent: no probe was placed
    why = f"{what} {how}: {'; '.join(parts)}, so calls through {through} were never counted"
    return Doubt(PROBED_IN_PART, why, tuple(rows))


def _is_clone(name: str) -> bool:
    """Whether ``name`` is a GCC clone's (``crc32.isra.0``, ``f(int) (.isra.0)``), judged at its first
    ``" (."`` or ``"."`` only (a hostile name of many dots costs one look); else a function's own
    name: a ``binaryPath`` function the node's file does not define (native/host_tails.py)."""
    for sep in (" (.", "."):
        at = name.find(sep)
        if at > 0 and clone_of(name, name[:at]):
            return True
    return False


def _at_offset(
    conn: sa.Connection, *, image: str, function: FunctionQuery, purl: PurlQuery | None
) -> Doubt | None:
    """A function asked by file offset (``<build-id>:+0x<offset>``): any unprobed tail of that build
    may lie there, since a fact keeps a tail's name, not where in the file it lies."""
    rows = queries.unprobed(conn, image=image, function=None, purl=purl)
    rows += node_file_unprobed(conn, image=image, function=None, purl=purl)
    rows = [r for r in rows if r.build_id == function.build_id]
    if not rows:
        return None
    names = listed({f"{r.function_name} in {r.module}" for r in rows}, "tails")
    why = (
        f"asked by file offset {function.names[0]} of build-id {function.build_id}, whose code was probed "
        f"in part: {names} {'was' if len(rows) == 1 else 'were'} not probed (split tails a caller that "
        "inlined a function's head calls directly, or clones), and the store keeps their names, not where "
        "in the file they lie, so the function at that offset may be one whose calls were never counted"
    )
    return Doubt(PROBED_IN_PART, why, tuple(rows))
