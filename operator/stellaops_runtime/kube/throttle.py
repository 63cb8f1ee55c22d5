"""How long an API server that throttles asks to be left alone: its ``Retry-After``, read safely.

API Priority and Fairness answers an overloaded server's requests with 429
Too Many Requests and a ``Retry-After`` header; ``kube.client`` waits that
long before sending the request again, and the operator's scheduler waits
that long before its next attempt. The header comes from the network, so it
is read defensively: a value that is not a number or a date, negative, not
finite or absurdly large never crashes a caller nor defers anything longer
than ``RETRY_AFTER_CAP``.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

THROTTLE_RETRIES = 3  # times one request is sent again after a 429
MAX_THROTTLE_WAIT = 10.0  # seconds: a longer Retry-After is left to the caller (ApiError.retry_after)
DEFAULT_THROTTLE_WAIT = 1.0  # a 429 without a usable Retry-After (what client-go waits)
RETRY_AFTER_CAP = 600.0  # a hostile or absurd Retry-After never defers anything longer


def retry_after_seconds(value: str | None, *, cap: float = RETRY_AFTER_CAP) -> float | None:
    """A ``Retry-After`` header as seconds from now (at most ``cap``), or None when unusable.

    Delta-seconds (kopf and the API server send an integer; a decimal is taken too) or an
    HTTP date (a past one is 0). Negative, non-finite or unparseable values are None.
    """
    text = (value or "").strip()
    if not text or not text.isprintable():
        return None
    try:
        seconds = float(text)
    except ValueError:
        # An HTTP date is rare (the API server sends seconds); email.utils and the part of the
        # email package it loads (~0.25 MB) are imported only then, not by every node's agent.
        import email.utils

        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = max(0.0, (when - datetime.now(UTC)).total_seconds())
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, cap)
