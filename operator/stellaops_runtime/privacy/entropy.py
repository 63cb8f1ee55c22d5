"""Optional detection of high-entropy tokens (``privacy.entropyDetection``, off by default).

Rules recognise formats; a secret with no format (a random password, a vendor
key without prefix passed positionally) is only visible as randomness. This
detector redacts a token of at least ``min_length`` characters from the
base64 alphabets (letters, digits, ``_``, ``-``, ``+``, trailing ``=`` padding;
``/``, ``.`` and an inner ``=`` split tokens, so that paths, file names and
``key=value`` are judged part by part) whose
Shannon entropy per character is at least ``threshold`` bits, unless it is
plainly not a secret:

* only hex digits and dashes (sha256 digests, build-ids, git commits, UUIDs):
  evidence needs them, and a hex-only secret is caught by the keyed rules only;
* fewer than two of {lower case, upper case, digits} (words, identifiers in one case).

It is off by default because it has false positives by nature; docs/privacy.md
reports the rate measured on the fixture streams.
"""

from __future__ import annotations

import math
import re
from collections import Counter

_TOKEN = re.compile(r"[A-Za-z0-9_+-]+=*")
_HEXISH = re.compile(r"[0-9a-fA-F-]+")


def shannon_entropy(token: str) -> float:
    """Bits per character of ``token``'s character distribution."""
    n = len(token)
    if not n:
        return 0.0
    return -sum(c / n * math.log2(c / n) for c in Counter(token).values())


def _mixed(token: str) -> bool:
    classes = (
        any(c.islower() for c in token) + any(c.isupper() for c in token) + any(c.isdigit() for c in token)
    )
    return classes >= 2


def high_entropy_spans(text: str, *, threshold: float, min_length: int) -> list[tuple[int, int]]:
    """Spans of the tokens in ``text`` the detector takes for secrets."""
    out = []
    for m in _TOKEN.finditer(text):
        tok = m.group()
        if len(tok) < min_length or tok == "REDACTED" or _HEXISH.fullmatch(tok) or not _mixed(tok):
            continue
        if shannon_entropy(tok) >= threshold:
            out.append(m.span())
    return out
