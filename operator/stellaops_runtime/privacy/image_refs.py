"""Image references are filtered part by part, so a name ending in a credential word keeps its tag.

An image name is the hot-symbol key when an event has no digest, and the name the lifecycle
observer and the answers give. Filtered as free text, ``traefik-forward-auth:2`` read as the key
``auth`` and its value ``2``: the tag went (every version one stored key) and so did a digest
after it. A text that is a reference by the registry grammar (``[host[:port]/]path[:tag]
[@sha256:hex]``, github.com/distribution/reference) holds no ``user:password@``, no ``?query``
and no ``=``: its name and its tag are filtered each alone (a token as a tag, ``app:ghp_…``, still
goes) and its digest is kept. Any other text (``https://ci:X@reg/app``, ``app:1?access_token=X``,
``app@user:X``) is filtered whole, as before.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_DOMAIN_PART = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REFERENCE = re.compile(
    rf"(?P<name>(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*(?::[0-9]+)?/)?{_PATH_PART}(?:/{_PATH_PART})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?P<digest>@sha(?:256|384|512):[0-9A-Fa-f]{32,})?"
)
# The grammar bounds a name at 255 characters; a longer text is no reference.
_MAX_REFERENCE = 512


def redact_ref(ref: str, redact_text: Callable[[str], str]) -> str:
    """``ref`` with any credential masked: a reference part by part, any other text whole."""
    m = _REFERENCE.fullmatch(ref) if len(ref) <= _MAX_REFERENCE else None
    if m is None:
        return redact_text(ref)
    out = redact_text(m["name"])
    if m["tag"] is not None:
        out += ":" + redact_text(m["tag"])
    return out + (m["digest"] or "")
