"""Privacy: what the agent may keep of an event, decided before anything is stored or logged.

``PrivacyFilter`` applies the ``privacy.*`` configuration (namespace allowlist,
argument truncation and redaction, symbol-id-only mode) to every
RuntimeCallEvent; ``patterns`` holds the named default secret patterns
(with ``provider_tokens``, ``personal_data`` and ``cli_options``),
``library_rules`` the detect-secrets rules, ``env_names`` the environment
variable names (and ``filter_env`` for ``NAME=value`` lists), ``entropy`` the
optional high-entropy detector. docs/privacy.md describes them all.
"""

from stellaops_runtime.privacy.env_names import DEFAULT_ENV_NAME_PATTERNS, filter_env
from stellaops_runtime.privacy.filter import TRUNCATION_MARKER, PrivacyFilter
from stellaops_runtime.privacy.patterns import (
    DEFAULT_PATTERN_NAMES,
    DEFAULT_PATTERNS,
    REDACTED,
    SecretPattern,
)

__all__ = [
    "DEFAULT_ENV_NAME_PATTERNS",
    "DEFAULT_PATTERNS",
    "DEFAULT_PATTERN_NAMES",
    "REDACTED",
    "TRUNCATION_MARKER",
    "PrivacyFilter",
    "SecretPattern",
    "filter_env",
]
