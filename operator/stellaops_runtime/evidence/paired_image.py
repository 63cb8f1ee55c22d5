"""A "no" about an image whose rows lie under two digests: unknown, naming the other digest.

An image with no repo digest is filed under its manifest digest by agents with the containerd
lifecycle part and under its config digest by agents without it (store/image_pairs.py); the
agents record the pairing. A call under either digest answers a question by either
(store/queries.py reads every paired digest), but the watched windows, gaps, marks and unseen
runs an absence rests on are read under the digest asked about: a "not observed" there would rest
on half of the image's rows (the function may have run only on the other digest's nodes, whose
windows no reader joins to these). So where another paired digest holds rows,
:func:`paired_image` is a :class:`Doubt` naming it and a "no" is unknown.
"""

from __future__ import annotations

import sqlalchemy as sa

from stellaops_runtime.evidence.doubt import Doubt
from stellaops_runtime.store.same_image import MAX_PAIRED, holding_rows, paired

PAIRED_IMAGE = "paired_image"


def paired_image(conn: sa.Connection, *, image: str) -> Doubt | None:
    """The digests paired with ``image`` that hold rows of their own, or more digests paired than
    are read (store/same_image.py ``MAX_PAIRED``); None when neither."""
    digests, cut = paired(conn, image)
    if cut:
        why = (
            f"more than {MAX_PAIRED} digests are paired with this image as one image (its config "
            "digest and manifests), and the calls and windows of those beyond are not read "
            "(docs/lifecycle.md, 'Image digest')"
        )
        return Doubt(PAIRED_IMAGE, why, ())
    others = holding_rows(conn, digests[1:])
    if not others:
        return None
    why = (
        f"the same image is also stored under {', '.join(others)} (its config or manifest digest, "
        "paired by the agent from containerd's content store: an agent with lifecycle.enabled false, "
        "or before the pairing, files such an image under its config digest), and a 'not observed' "
        "cannot rest on the windows of one digest alone (docs/lifecycle.md, 'Image digest')"
    )
    return Doubt(PAIRED_IMAGE, why, ())
