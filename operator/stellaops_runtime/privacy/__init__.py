"""Privacy: what the agent may keep of an event, decided before anything is stored or logged.

``PrivacyFilter`` applies the ``privacy.*`` configuration (namespace allowlist,
argument truncation and redaction, symbol-id-only mode) to every
RuntimeCallEvent; ``patterns`` holds the named default secret patterns.
"""

from stellaops_runtime.privacy.filter import TRUNCATION_MARKER, PrivacyFilter
from stellaops_runtime.privacy.patterns import (
    DEFAULT_PATTERN_NAMES,
    DEFAULT_PATTERNS,
    REDACTED,
    SecretPattern,
)

__all__ = [
    "DEFAULT_PATTERNS",
    "DEFAULT_PATTERN_NAMES",
    "REDACTED",
    "TRUNCATION_MARKER",
    "PrivacyFilter",
    "SecretPattern",
]
