"""One answer for an image from the roots of several of its containers: the one they all give.

The agent counts per (image digest, file), not per container, and reads the
image's files through a live process's ``/proc/<pid>/root``. Each container
can rewrite its own package databases, so the root it happens to read
through decides the PURL of a row that counts every container's calls. The
:class:`~stellaops_runtime.attribution.attributor.Attributor` keeps one view
per root (a container never changes another's answers); this module asks
several roots and reports a PURL only when every live one gives the same
(purl, source) answer. When they differ the answer is unknown, with an error
naming the answers, and counted in ``ambiguous``: a compromised container
can make a row unknown, never give it its own package or version.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import replace

from stellaops_runtime.attribution.attributor import Attributor
from stellaops_runtime.attribution.model import Attribution, Source

__all__ = ["attribute_in_roots"]

MAX_ROOTS = 8  # roots asked per lookup: each is one cached lookup when warm


def attribute_in_roots(
    attributor: Attributor,
    *,
    image_digest: str,
    roots: Iterable[str],
    path: str,
    function: str | None = None,
    build_id: str = "",
) -> Attribution:
    """The answer every live root gives for ``path`` (or ``function`` in it), else unknown.

    A root that is gone (its process exited) is left out; if every root is gone,
    the last answer (unattributed, with its error) is returned. At most
    :data:`MAX_ROOTS` distinct roots are asked, in the order given.
    """
    answers: list[Attribution] = []
    last: Attribution | None = None
    for root in list(dict.fromkeys(roots))[:MAX_ROOTS]:
        if function:
            att = attributor.attribute_function(
                image_digest=image_digest, root=root, path=path, function=function, build_id=build_id
            )
        else:
            att = attributor.attribute_file(image_digest=image_digest, root=root, path=path)
        last = att
        if att.error and not os.path.isdir(root):
            continue
        answers.append(att)
    if not answers:
        return last if last is not None else Attribution(path, None, Source.NONE.value, error="no root given")
    given = sorted({(a.purl or "unattributed", a.source) for a in answers})
    if len(given) == 1:
        # a JAR any root's database lists: it makes answers unknown, never "no" (a container that
        # hides it cannot take it away; one that forges it makes the package unknown, the safe way)
        jar = next((a.jar for a in answers if a.jar), None)
        return answers[0] if jar == answers[0].jar else replace(answers[0], jar=jar)
    attributor.count_ambiguous()
    named = ", ".join(purl for purl, _ in given[:4]) + (
        f" and {len(given) - 4} more" if len(given) > 4 else ""
    )
    return Attribution(
        path,
        None,
        Source.NONE.value,
        error=f"ambiguous: containers of image {image_digest} disagree on {path}: {named}",
    )
