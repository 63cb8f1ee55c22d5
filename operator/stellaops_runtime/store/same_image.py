"""The digests that name one image in the store: the question's side of ``image_pairs``.

An image with no repo digest is filed under its manifest digest by agents with the containerd
lifecycle part and under its config digest (kubectl's ``imageID``) by agents without it
(store/image_pairs.py). :func:`same_image` gives every digest the agents paired with the one
asked about: the config digests of a manifest digest, the manifest digests of a config digest,
and the other manifests of those configs (one config digest is one image's content: its layers'
uncompressed digests are in it). A call stored under any of them is a call of the image asked
about, and so are its windows, gaps, unseen runs, marks and unnamed code: every reader reads
them all through :func:`of_image`. A "no" stays unknown (evidence/paired_image.py) on a cut (more
than ``MAX_PAIRED`` paired) and when another of the digests is an index of several platforms (a
manifest digest paired with more than one config: the lifecycle agent pairs an index with its own
node's platform's config, lifecycle/containerd_client.py), whose windows hold each platform's runs
with nothing saying which: another platform's watched time is no watch of the code asked about,
and its calls are no calls of it, so such an index's rows are not read by the others' digests.
A store before migration 0014 has no pairings.
"""

from __future__ import annotations

import sqlalchemy as sa

from stellaops_runtime.store.schema import SCHEMA, image_pairs

MAX_PAIRED = 64  # digests of one image; more is no pairing the agent wrote


def has_pairs_table(conn: sa.Connection) -> bool:
    schema = SCHEMA if conn.dialect.name == "postgresql" else None
    return bool(sa.inspect(conn).has_table(image_pairs.name, schema=schema))


def same_image(conn: sa.Connection, image: str) -> tuple[str, ...]:
    """``image`` first, then the other digests paired with it; ``(image,)`` when none."""
    return paired(conn, image)[0]


CUT = "cut"  # :func:`paired`'s doubt: more than MAX_PAIRED digests paired, those beyond not read
PLATFORMS = "platforms"  # another digest read is an index paired with several platforms' configs


def of_image(conn: sa.Connection, column: sa.ColumnElement[str], image: str) -> sa.ColumnElement[bool]:
    """Rows whose ``column`` (an ``image_digest``) is one of :func:`same_image`'s digests: every
    reader of calls, windows, gaps and marks reads the image's rows under all of them, as one
    image's (at most ``MAX_PAIRED`` + 1 keys: an IN list on the distribution column, never a scan
    across images). A row is under one digest, so nothing read this way is counted twice."""
    keys = same_image(conn, image)
    return column == image if len(keys) == 1 else column.in_(keys)


def paired(conn: sa.Connection, image: str) -> tuple[tuple[str, ...], str]:
    """:func:`same_image`'s digests: ``image``, its config digests, then the other manifests of
    those configs (each part sorted), at most ``MAX_PAIRED`` besides ``image``; and what leaves a
    "no" unknown (evidence/paired_image.py), "" when nothing: :data:`CUT` when more were paired
    and left out, else :data:`PLATFORMS` when one of the other manifests is paired with more than
    one config (an index of several platforms; such manifests are left out: their calls may be
    another platform's). The configs come first: a cut never leaves out the digest the image's
    other nodes file it under."""
    if not image.startswith(("sha256:", "sha512:")):
        return (image,), ""
    txn = conn.get_transaction()  # one question's snapshot (queries.snapshot): its pairings stay
    if txn is None:  # no transaction yet: reading the pairings begins the one it is kept for
        found = _paired(conn, image)
        if (txn := conn.get_transaction()) is None:
            return found
        conn.info[_CACHE] = (txn, {image: found})
        return found
    cache: tuple[object, dict[str, tuple[tuple[str, ...], str]]] | None = conn.info.get(_CACHE)
    if cache is None or cache[0] is not txn:
        cache = (txn, {})
        conn.info[_CACHE] = cache  # the transaction held, never an id a later one could reuse
    if image not in cache[1]:
        cache[1][image] = _paired(conn, image)
    return cache[1][image]


_CACHE = "stellaops_same_image"  # conn.info: (transaction, {image: paired}) of the transaction in progress


def _paired(conn: sa.Connection, image: str) -> tuple[tuple[str, ...], str]:
    if not has_pairs_table(conn):
        return (image,), ""
    p = image_pairs.c
    limit = MAX_PAIRED + 2  # one more than kept, and ``image`` itself among them
    mine = conn.execute(sa.select(p.config_digest).where(p.image_digest == image).limit(limit)).scalars()
    configs = {image} | set(mine)
    manifests = conn.execute(
        sa.select(p.image_digest).where(p.config_digest.in_(sorted(configs))).distinct().limit(limit)
    ).scalars()
    other_manifests = sorted(set(manifests) - configs)
    others = [*sorted(configs - {image}), *other_manifests]
    if len(others) > MAX_PAIRED:
        return (image, *others[:MAX_PAIRED]), CUT
    if indexes := _indexes(conn, other_manifests):  # other platforms' runs: not this image's rows
        return (image, *(d for d in others if d not in indexes)), PLATFORMS
    return (image, *others), ""


def one_content(conn: sa.Connection, image: str) -> tuple[str, ...]:
    """:func:`same_image`'s digests when every one names the same content, ``image`` first;
    ``(image,)`` when one of them, ``image`` itself included, is an index paired with several
    platforms' configs (several contents: one platform's claim is no claim about another's code).
    For what is signed about one content (witness/store.py ``find``); one more read through the
    primary key, over at most ``MAX_PAIRED`` + 1 keys, and only for a paired image."""
    keys = same_image(conn, image)
    return (image,) if len(keys) > 1 and _an_index(conn, list(keys)) else keys


def several_platforms(conn: sa.Connection, image: str) -> bool:
    """Whether ``image`` itself is an index paired with several platforms' configs (its windows
    hold each platform's runs); one read through the primary key, and only for a paired image,
    kept for the rest of the question's transaction as :func:`paired` is (a vex run asks every
    function in one snapshot: one read, not one a function)."""
    if len(same_image(conn, image)) <= 1:
        return False
    txn = conn.get_transaction()
    cache: tuple[object, dict[str, bool]] | None = conn.info.get(_INDEX_CACHE)
    if txn is None:
        return _an_index(conn, [image])
    if cache is None or cache[0] is not txn:
        cache = (txn, {})
        conn.info[_INDEX_CACHE] = cache  # the transaction held, never an id a later one could reuse
    if image not in cache[1]:
        cache[1][image] = _an_index(conn, [image])
    return cache[1][image]


_INDEX_CACHE = "stellaops_same_image_index"  # conn.info: (transaction, {image: several_platforms})


def all_paired(conn: sa.Connection) -> dict[str, tuple[str, ...]]:
    """For a listing of every image (cli/query_images.py): each paired digest's other digests, as
    :func:`same_image` gives them (its configs, then those configs' other manifests but indexes of
    several platforms; no cut), from one read of ``image_pairs`` instead of a look-up per image."""
    if not has_pairs_table(conn):
        return {}
    p = image_pairs.c
    configs_of: dict[str, set[str]] = {}
    manifests_of: dict[str, set[str]] = {}
    for manifest, config in conn.execute(sa.select(p.image_digest, p.config_digest)):
        configs_of.setdefault(manifest, set()).add(config)
        manifests_of.setdefault(config, set()).add(manifest)
    out = {}
    indexes = {m for m, cs in configs_of.items() if len(cs) > 1}  # left out as :func:`paired` does
    for image in configs_of.keys() | manifests_of.keys():
        configs = {image} | configs_of.get(image, set())
        manifests = set().union(*(manifests_of.get(c, set()) for c in configs))
        out[image] = (*sorted(configs - {image}), *sorted(manifests - configs - indexes))
    return out


def _indexes(conn: sa.Connection, manifests: list[str]) -> set[str]:
    """Those of ``manifests`` paired with more than one config (indexes several platforms' nodes
    ran); at most ``MAX_PAIRED`` keys, through the primary key."""
    if not manifests:
        return set()
    p = image_pairs.c
    stmt = sa.select(p.image_digest).where(p.image_digest.in_(manifests)).group_by(p.image_digest)
    return set(conn.execute(stmt.having(sa.func.count() > 1)).scalars())


def _an_index(conn: sa.Connection, manifests: list[str]) -> bool:
    """Whether one of ``manifests`` is paired with more than one config (an index several
    platforms' nodes ran); at most ``MAX_PAIRED`` keys, through the primary key."""
    if not manifests:
        return False
    p = image_pairs.c
    stmt = (
        sa.select(p.image_digest)
        .where(p.image_digest.in_(manifests))
        .group_by(p.image_digest)
        .having(sa.func.count() > 1)
        .limit(1)
    )
    return conn.execute(stmt).first() is not None
