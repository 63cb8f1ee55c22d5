"""The node's files' "probed in part" facts, for an image whose processes ran such a file.

Why this module exists: the tails (and unprobed clones) of a ``binaryPath`` function are stored as
``unprobed`` facts of the host image ``host:<node>`` (native/host_tails.py), where the node's own
processes' calls are. A uprobe fires for every process mapping the probed inode, so a container
running the node's file through a hostPath mount has its calls counted under its own image, and
there no fact of the file was: an answer about that image said "not observed" while the tail ran.

A fact follows its file by build-id: an image that has any row of one of the fact's builds (a call
in the file, a frame of it on a stack, its load event, a fact; an exec row carries no build-id) meets
the facts stored of it by the nodes the image was watched on (its observation windows': a container
runs a node's file only on that node, whose agent stores the file's facts under ``host:<node>``).
``hot_symbols`` keeps one row per (image, path, function) with its first build-id, so after the
node's file was upgraded in place the new build's fact lies in the old build's row: a fact's builds
are its row's and those ``node_fact_builds`` holds of it (migration 0016, store/fact_builds.py), and
the rows returned name the build the image met. An image that never showed such a build does not
meet it (another build of the program, or one never seen mapped). A row of the image under the
node's path, the name the probe gives the calls of the node's file, counts as that file's too,
whatever its build-id (none: an agent with ``symbols.enabled: false``; another: a store before 0016,
which knows a fact's first build only; a question by function ID meets there the fact of any
build, the safe side). An exec row has no build-id and names the
file by the container's path (``/host/usr/bin/app``): a hostPath container whose process only
called a tail has no other row, so an exec row of the node file's name (its last path component)
counts, unless the image has a row with a build-id at that path (its own program of that name is
then decided by its build). This
widens ``unknown`` to every image seen running that build, the safe side: an image's own copy of the
same build is not even probed by the node's probe. A package question (or a function asked of a
package) counts them only where the image's rows of that build (or path) are of that package or of
none, as the image's own facts of no package count (:func:`queries.unprobed`): an image's own copy
of the node file's build (one distribution release's libssl on the node and in the image) is
attributed to its package, and the facts, of no package, would otherwise make every package question
of every such image unknown. A few reads, each through an index: the image's nodes (the primary key
of ``observation_windows``), those nodes' facts of the function (few: at most MAX_UPROBE_TARGETS
tails a function per file), their builds (``node_fact_builds``' key, all the nodes at once), then
which of their build-ids and paths the image has, and its exec
rows of those files' names (and which of those paths have a build-id); no join across images
(``hot_symbols`` is distributed by image on Citus), and no scan of every image's rows, which a
prefix of ``image_digest`` would be (no index serves it: 0.6 s a question on a SQLite store of a
million rows).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import sqlalchemy as sa

from stellaops_runtime.contracts.hotsymbols import EvidenceKind
from stellaops_runtime.store import queries
from stellaops_runtime.store.function_refs import FunctionQuery
from stellaops_runtime.store.refs import PurlQuery
from stellaops_runtime.store.same_image import of_image
from stellaops_runtime.store.schema import SCHEMA, hot_symbols, node_fact_builds, observation_windows

HOST_PREFIX = "host:"  # contracts/events.py image_key: a host process's image
# File names one exec-row read matches at most: one OR of LIKE tests each, and SQLite parses an OR
# chain as a tree of at most 1,000 levels (a node with facts of thousands of files, or a hostile one)
_NAMES_PER_STATEMENT = 200
_HAS_BUILDS = "stellaops.node_fact_builds"  # conn.info: whether the store has the table (0016)


def node_file_unprobed(
    conn: sa.Connection,
    *,
    image: str,
    function: FunctionQuery | None,
    purl: PurlQuery | None = None,
    purl_prefix: str | None = None,
) -> list[queries.SymbolRow]:
    """The ``unprobed`` facts of the ``host:<node>`` images of the nodes ``image`` was watched on (of
    ``function``; any when None) that ``image`` ran (:func:`_met`). None for a host image itself
    (its own facts are :func:`queries.unprobed`'s). A node fact has no package: asked of ``purl`` (or of those
    ``purl_prefix`` covers), it counts where the image's row of its build is of that package or of none."""
    if image.startswith(HOST_PREFIX):
        return []
    ow = observation_windows.c  # the nodes it was watched on: its windows' primary key, not a scan
    nodes = sa.select(ow.node_name).where(of_image(conn, ow.image_digest, image)).distinct()
    hosts = sorted({f"{HOST_PREFIX}{n}" for (n,) in conn.execute(nodes)})
    if not hosts:
        return []
    c = hot_symbols.c
    where = [
        c.image_digest.in_(hosts),
        c.evidence_kind == EvidenceKind.UNPROBED.value,
        c.build_id != "",
    ]
    if function is not None and function.is_function_id:  # its clones' names, of any build (below)
        starts = [
            sa.func.substr(c.function_name, 1, len(n) + len(sep)) == n + sep
            for n in function.clones
            for sep in (".", " (.")
        ]
        where.append(sa.or_(c.function_name.in_(function.names), *starts))  # the name itself too
    elif function is not None:
        where.append(queries._name_filter(function))  # the SQL that narrows rows to a function
    facts = queries.rows_where(conn, *where)
    asked = function.build_id if function is not None else ""
    if function is not None and function.is_function_id:  # of any build: one row holds one build-id,
        # the first; the asked build's fact may lie in the row of the build the file was before
        facts = [
            r
            for r in facts
            if r.function_name in function.names or function.matches_clone(r.function_name, asked)
        ]
    elif function is not None:
        facts = [r for r in facts if function.matches_name(r.function_name)]
    if not facts:
        return []
    of = _builds(conn, facts)
    builds = sorted(set().union(*of.values()))
    modules = sorted({r.module for r in facts})  # the node's path, as the probe names its calls
    # a row of one of the fact's builds anywhere, or any row at the node's path: a call the node's
    # probe counted, of any build (a store before 0016 knows a fact's first build only)
    # in parts of queries.KEYS_PER_STATEMENT: a hostile agent's 70,000 facts passed psycopg's 65,535
    parts = [c.build_id.in_(p) for p in queries.chunks(builds)] + [
        c.module.in_(p) for p in queries.chunks(modules)
    ]
    seen: set[tuple[str, str]] = set()
    for part in parts:
        stmt = sa.select(c.build_id, c.module).where(of_image(conn, c.image_digest, image), part)
        seen |= {
            (b, m) for b, m in conn.execute(_of_package(conn, stmt, image, purl, purl_prefix).distinct())
        }
    ran = _executed(conn, image, modules, purl, purl_prefix)
    kept = [
        replace(r, build_id=b)
        for r in facts
        for b in _met(r, of[r.image_digest, r.module, r.function_name], asked, seen, ran)
    ]
    return sorted(kept, key=lambda r: (r.module, r.function_name, r.build_id))


def _met(
    r: queries.SymbolRow, builds: set[str], asked: str, seen: set[tuple[str, str]], ran: set[str]
) -> list[str]:
    """The builds of the node's fact ``r`` (stored of ``builds``) the image's rows meet (``seen``:
    (build-id, path); ``ran``: the names of files it exec'd with no build-id known); ``asked``: the
    build a function ID names. Empty: none, the fact is not the image's."""
    if (asked, r.module) in seen:  # the asked build (or, asked by name, no build) at the node's path
        return [asked or r.build_id]
    at_path = any(m == r.module for _, m in seen) or _base(r.module) in ran
    if asked:  # the fact of the asked build, met by a row of it anywhere or at the node's path
        mine = asked in builds and (at_path or any(b == asked for b, _ in seen))
        return [asked] if mine else []
    met = sorted(builds & {b for b, _ in seen})  # the builds the image's rows show
    return met or ([r.build_id] if at_path else [])


def _builds(conn: sa.Connection, facts: list[queries.SymbolRow]) -> dict[tuple[str, str, str], set[str]]:
    """Each fact's builds: its row's (the first stored) and those ``node_fact_builds`` (migration
    0016) holds of it; a node's file upgraded in place has the new build's fact in the old build's
    row. Read by the table's key (image, function name), the nodes and the names each in parts of
    KEYS_PER_STATEMENT: a few statements for all the image's nodes (one a node cost 1,000 a question
    for a DaemonSet's image on 1,000 nodes); a pair of them that is no fact's is passed over."""
    of = {(r.image_digest, r.module, r.function_name): {r.build_id} for r in facts}
    if not _has_builds(conn):
        return of  # a store before 0016: the first build only
    t = node_fact_builds.c
    names = sorted({r.function_name for r in facts})
    for hosts in queries.chunks(sorted({r.image_digest for r in facts})):
        for part in queries.chunks(names):
            stmt = sa.select(t.image_digest, t.module, t.function_name, t.build_id).where(
                t.image_digest.in_(hosts), t.function_name.in_(part)
            )
            for host, module, name, bid in conn.execute(stmt):
                if (key := (host, module, name)) in of:
                    of[key].add(bid)
    return of


def _has_builds(conn: sa.Connection) -> bool:
    """Whether the store has ``node_fact_builds`` (0016). Its presence is kept per connection
    (``vex`` asks each symbol of an image); its absence is asked again, as a long-lived reader's
    store may be migrated meanwhile."""
    if conn.info.get(_HAS_BUILDS):
        return True
    schema = SCHEMA if conn.dialect.name == "postgresql" else None
    has = bool(sa.inspect(conn).has_table(node_fact_builds.name, schema=schema))
    conn.info[_HAS_BUILDS] = has
    return has


def _of_package(
    conn: sa.Connection, stmt: sa.Select[Any], image: str, purl: PurlQuery | None, purl_prefix: str | None
) -> sa.Select[Any]:
    """``stmt`` narrowed to rows of the package asked (or of none known): a node fact has none."""
    c = hot_symbols.c
    if purl is not None:  # the image's file of that build is of the package, or of none known
        by_purl = queries._purl_filter(conn, image=image, purl=purl)
        stmt = stmt.where(c.purl == "" if by_purl is None else sa.or_(by_purl, c.purl == ""))
    if purl_prefix is not None:
        # a name's ``/`` in either spelling (refs.prefix_test): rows stored before ``%2F`` too
        stmt = stmt.where(sa.or_(queries.prefix_filter(conn, image=image, prefix=purl_prefix), c.purl == ""))
    return stmt


def _base(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def _executed(
    conn: sa.Connection, image: str, modules: list[str], purl: PurlQuery | None, purl_prefix: str | None
) -> set[str]:
    """The file names of the node's files (``modules``) that ``image`` exec'd with no build-id known
    of that path: a hostPath container whose process only called a tail left no other row (an exec
    row has no build-id, and names the file by the container's path, ``/host/usr/bin/app``, not the
    node's). A path of the image with a row of a build-id is decided by that build, as above: its
    own copy of a program of that name, of another build, does not meet the node's facts."""
    c = hot_symbols.c
    # a file's name is at most NAME_MAX (255) bytes: a longer one (a hostile agent's fact) is no
    # file's, and its LIKE pattern could pass SQLite's 50,000-byte limit, failing the question
    names = sorted({b for m in modules if 0 < len((b := _base(m)).encode("utf-8", "surrogateescape")) <= 255})
    ran: set[str] = set()
    for i in range(0, len(names), _NAMES_PER_STATEMENT):  # one OR of them all: past SQLite's depth
        named = sa.or_(
            *(c.module.endswith(f"/{n}", autoescape=True) for n in names[i : i + _NAMES_PER_STATEMENT])
        )
        stmt = sa.select(c.module).where(
            of_image(conn, c.image_digest, image),
            c.function_name == "",  # a file's own row: ix_hot_symbols_image_function
            c.evidence_kind == EvidenceKind.EXECUTED.value,
            c.build_id == "",
            named,
        )
        paths = {m for (m,) in conn.execute(_of_package(conn, stmt, image, purl, purl_prefix).distinct())}
        if paths:
            known = sa.select(c.module).where(of_image(conn, c.image_digest, image), c.build_id != "", named)
            ran |= {_base(m) for m in paths - {m for (m,) in conn.execute(known.distinct())}}
    return ran
