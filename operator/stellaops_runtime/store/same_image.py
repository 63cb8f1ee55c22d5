"""The digests that name one image in the store: the question's side of ``image_pairs``.

An image with no repo digest is filed under its manifest digest by agents with the containerd
lifecycle part and under its config digest (kubectl's ``imageID``) by agents without it
(store/image_pairs.py). :func:`same_image` gives every digest the agents paired with the one
asked about: the config digests of a manifest digest, the manifest digests of a config digest,
and the other manifests of those configs (one config digest is one image's content: its layers'
uncompressed digests are in it). A call stored under any of them is a call of the image asked
about (store/queries.py reads them all); a "no" where another of them holds rows is unknown,
naming it (evidence/paired_image.py). A store before migration 0014 has no pairings.
"""

from __future__ import annotations

import sqlalchemy as sa

from stellaops_runtime.store.schema import SCHEMA, hot_symbols, image_pairs, observation_windows

MAX_PAIRED = 64  # digests of one image; more is no pairing the agent wrote


def has_pairs_table(conn: sa.Connection) -> bool:
    schema = SCHEMA if conn.dialect.name == "postgresql" else None
    return bool(sa.inspect(conn).has_table(image_pairs.name, schema=schema))


def same_image(conn: sa.Connection, image: str) -> tuple[str, ...]:
    """``image`` first, then the other digests paired with it; ``(image,)`` when none."""
    return paired(conn, image)[0]


def paired(conn: sa.Connection, image: str) -> tuple[tuple[str, ...], bool]:
    """:func:`same_image`'s digests: ``image``, its config digests, then the other manifests of
    those configs (each part sorted), at most ``MAX_PAIRED`` besides ``image``; and whether more
    were paired and left out (a "no" is then unknown: evidence/paired_image.py). The configs come
    first: a cut never leaves out the digest the image's other nodes file it under."""
    if not image.startswith(("sha256:", "sha512:")) or not has_pairs_table(conn):
        return (image,), False
    p = image_pairs.c
    limit = MAX_PAIRED + 2  # one more than kept, and ``image`` itself among them
    mine = conn.execute(sa.select(p.config_digest).where(p.image_digest == image).limit(limit)).scalars()
    configs = {image} | set(mine)
    manifests = conn.execute(
        sa.select(p.image_digest).where(p.config_digest.in_(sorted(configs))).distinct().limit(limit)
    ).scalars()
    others = [*sorted(configs - {image}), *sorted(set(manifests) - configs)]
    return (image, *others[:MAX_PAIRED]), len(others) > MAX_PAIRED


def holding_rows(conn: sa.Connection, digests: tuple[str, ...]) -> list[str]:
    """Of ``digests``, those with a row in ``hot_symbols`` or ``observation_windows``."""
    found: list[str] = []
    for d in digests:
        for table in (hot_symbols, observation_windows):
            if conn.execute(sa.select(sa.literal(1)).where(table.c.image_digest == d).limit(1)).first():
                found.append(d)
                break
    return found
