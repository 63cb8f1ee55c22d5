"""The node's files' "probed in part" facts, for an image whose processes ran such a file.

Why this module exists: the tails (and unprobed clones) of a ``binaryPath`` function are stored as
``unprobed`` facts of the host image ``host:<node>`` (native/host_tails.py), where the node's own
processes' calls are. A uprobe fires for every process mapping the probed inode, so a container
running the node's file through a hostPath mount has its calls counted under its own image, and
there no fact of the file was: an answer about that image said "not observed" while the tail ran.

A fact follows its file by build-id: an image that has any row of that build (a call in the file, a
frame of it on a stack, its load event, a fact; an exec row carries no build-id) meets the facts
stored of it by the nodes the image was watched on (its observation windows': a container runs a
node's file only on that node, whose agent stores the file's facts under ``host:<node>``). An image
that never showed that build does not (another build of the program, or one never seen mapped). A
row of the image stored without a build-id (an agent with ``symbols.enabled: false``) under the
node's path, the name the probe gives the calls of the node's file, counts as that file's too. This
widens ``unknown`` to every image seen running that build, the safe side: an image's own copy of the
same build is not even probed by the node's probe. A package question (or a function asked of a
package) counts them only where the image's rows of that build (or path) are of that package or of
none, as the image's own facts of no package count (:func:`queries.unprobed`): an image's own copy
of the node file's build (one distribution release's libssl on the node and in the image) is
attributed to its package, and the facts, of no package, would otherwise make every package question
of every such image unknown. Three reads, each through an index: the image's nodes (the primary key
of ``observation_windows``), those nodes' facts of the function (few: at most MAX_UPROBE_TARGETS
tails a function per file), then which of their build-ids the image has; no join across images
(``hot_symbols`` is distributed by image on Citus), and no scan of every image's rows, which a
prefix of ``image_digest`` would be (no index serves it: 0.6 s a question on a SQLite store of a
million rows).
"""

from __future__ import annotations

import sqlalchemy as sa

from stellaops_runtime.contracts.hotsymbols import EvidenceKind
from stellaops_runtime.store import queries
from stellaops_runtime.store.function_refs import FunctionQuery
from stellaops_runtime.store.refs import PurlQuery
from stellaops_runtime.store.schema import hot_symbols, observation_windows

HOST_PREFIX = "host:"  # contracts/events.py image_key: a host process's image


def node_file_unprobed(
    conn: sa.Connection,
    *,
    image: str,
    function: FunctionQuery | None,
    purl: PurlQuery | None = None,
    purl_prefix: str | None = None,
) -> list[queries.SymbolRow]:
    """The ``unprobed`` facts of the ``host:<node>`` images of the nodes ``image`` was watched on (of
    ``function``; any when None) whose build-id ``image`` has a row of. None for a host image itself
    (its own facts are :func:`queries.unprobed`'s). A node fact has no package: asked of ``purl`` (or of those
    ``purl_prefix`` covers), it counts where the image's row of its build is of that package or of none."""
    if image.startswith(HOST_PREFIX):
        return []
    ow = observation_windows.c  # the nodes it was watched on: its windows' primary key, not a scan
    nodes = sa.select(ow.node_name).where(ow.image_digest == image).distinct()
    hosts = sorted({f"{HOST_PREFIX}{n}" for (n,) in conn.execute(nodes)})
    if not hosts:
        return []
    c = hot_symbols.c
    where = [
        c.image_digest.in_(hosts),
        c.evidence_kind == EvidenceKind.UNPROBED.value,
        c.build_id != "",
    ]
    if function is not None:
        where.append(queries._name_filter(function))  # the SQL that narrows rows to a function
    facts = queries.rows_where(conn, *where)
    if function is not None and function.is_function_id:
        facts = [r for r in facts if function.matches_clone(r.function_name, r.build_id)]
    elif function is not None:
        facts = [r for r in facts if function.matches_name(r.function_name)]
    if not facts:
        return []
    builds = sorted({r.build_id for r in facts})
    modules = sorted({r.module for r in facts})  # the node's path, as the probe names its calls
    by_path = sa.and_(c.build_id == "", c.module.in_(modules))  # a call stored without a build-id
    stmt = sa.select(c.build_id, c.module).where(
        c.image_digest == image, sa.or_(c.build_id.in_(builds), by_path)
    )
    if purl is not None:  # the image's file of that build is of the package, or of none known
        by_purl = queries._purl_filter(conn, image=image, purl=purl)
        stmt = stmt.where(c.purl == "" if by_purl is None else sa.or_(by_purl, c.purl == ""))
    if purl_prefix is not None:
        stmt = stmt.where(sa.or_(sa.func.substr(c.purl, 1, len(purl_prefix)) == purl_prefix, c.purl == ""))
    seen = {(b, m) for b, m in conn.execute(stmt.distinct())}
    bids, paths = {b for b, _m in seen}, {m for b, m in seen if not b}
    kept = (r for r in facts if r.build_id in bids or r.module in paths)
    return sorted(kept, key=lambda r: (r.module, r.function_name))
