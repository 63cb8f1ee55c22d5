"""A "no" about an image paired with more digests than the store's readers read: unknown.

An image with no repo digest is filed under its manifest digest by agents with the containerd
lifecycle part and under its config digest by agents without it (store/image_pairs.py); the
agents record the pairing. Every reader of calls, watched windows, gaps, unseen runs, marks and
unnamed code reads the rows of all the digests paired with the one asked about as one image's
(store/same_image.py ``of_image``): a "not observed" rests on the watched time of every digest,
minus the gaps of every digest. What stays uncertain is a cut: more than ``MAX_PAIRED`` digests
paired, whose rows beyond it are not read; and another digest that is an index of several
platforms (paired with more than one config), whose windows hold other platforms' runs with
nothing saying which. Then :func:`paired_image` is a :class:`Doubt` and a "no" is unknown. Asked
by such an index itself, a "no" about a function by name rests on every platform's runs, each of
which could call it; a question naming one platform's code (a function ID: one build; a purl's
``arch``) would rest on the other platforms' watched time too, so it is unknown as well.
"""

from __future__ import annotations

import sqlalchemy as sa

from stellaops_runtime.evidence.doubt import Doubt
from stellaops_runtime.store.function_refs import FunctionQuery
from stellaops_runtime.store.refs import PurlQuery
from stellaops_runtime.store.same_image import CUT, MAX_PAIRED, paired, several_platforms

PAIRED_IMAGE = "paired_image"


def paired_image(
    conn: sa.Connection, *, image: str, function: FunctionQuery | None = None, purl: PurlQuery | None = None
) -> Doubt | None:
    """A doubt when more digests are paired with ``image`` than are read (store/same_image.py
    ``MAX_PAIRED``), or when one read is an index of several platforms; and when ``image`` is itself
    such an index and the question names one platform's code (a function ID: one build; a purl with
    an ``arch``), whose watched time the other platforms' runs are not. None otherwise."""
    doubt = paired(conn, image)[1]
    if not doubt:
        if _one_platforms_code(function, purl) and several_platforms(conn, image):
            why = (
                "this digest is an index run on several platforms (paired with more than one config "
                "digest), and the question names one platform's code (a function ID, a purl's arch): "
                "the index's windows hold every platform's runs with nothing saying which, and another "
                "platform's run is no watch of this code (docs/lifecycle.md, 'Image digest')"
            )
            return Doubt(PAIRED_IMAGE, why, ())
        return None
    if doubt == CUT:
        why = (
            f"more than {MAX_PAIRED} digests are paired with this image as one image (its config "
            "digest and manifests), and the calls and windows of those beyond are not read "
            "(docs/lifecycle.md, 'Image digest')"
        )
    else:
        why = (
            "a digest paired with this image is an index run on several platforms (paired with more "
            "than one config digest): its windows may be another platform's runs, no watch of this "
            "code (docs/lifecycle.md, 'Image digest')"
        )
    return Doubt(PAIRED_IMAGE, why, ())


def _one_platforms_code(function: FunctionQuery | None, purl: PurlQuery | None) -> bool:
    quals = purl.purl.qualifiers if purl is not None else None
    return bool(function is not None and function.is_function_id) or (
        isinstance(quals, dict) and "arch" in quals
    )
