"""The regex rules of detect-secrets (pinned in pyproject.toml), loaded from the library when first used.

detect-secrets is Yelp's maintained secret scanner; its regex plugins
(``RegexBasedDetector`` subclasses, each with a ``denylist`` of compiled
patterns) are reused as they are, so a format the library learns arrives with
a version bump instead of a hand edit. What this module adds is what the
library does not have and the per-event path needs: ``triggers`` (substrings,
at least one of which is in any text a plugin's patterns can match, so a field
without them costs no regex run; one with an upper-case letter is matched
case-sensitively, for case-sensitive patterns), a ``gate`` for plugins whose
patterns have no literal to trigger on, and which part of a match is the
secret (``group``: 1 for plugins whose first group is the secret, 0 for the
whole match; context characters a pattern consumes around the secret, such as
a leading space or quote, are trimmed).

Not used: ``IPPublicDetector`` (an IP address is not a credential, and the
evidence needs addresses), ``PrivateKeyDetector`` (it matches the ``BEGIN ...
PRIVATE KEY`` header only, which is not secret; ``pem_private_key`` in
``patterns`` redacts the key itself, in the same formats), the entropy and
keyword plugins (not regex-based; ``entropy`` and the keyed rules in
``patterns`` do that work). A plugin the table below does not know (a newer
library) runs on every field, whole match redacted: slower, never weaker.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

LIBRARY = "detect-secrets"
EXCLUDED = frozenset({"IPPublicDetector", "PrivateKeyDetector"})

_KEYWORDS = ("key", "pw", "pass", "token")
# plugin class -> (triggers, gate, secret group)
_KNOWN: dict[str, tuple[tuple[str, ...], str, int]] = {
    "AWSKeyDetector": (("a3t", "abia", "acca", "akia", "asia", "aws"), "", 0),
    "ArtifactoryDetector": (("AKC", "AP"), "", 0),
    "AzureStorageKeyDetector": (("accountkey=",), "", 0),
    "BasicAuthDetector": (("://",), "", 1),
    "CloudantDetector": ((*_KEYWORDS, ".cloudant.com"), "run", 1),
    "DiscordBotTokenDetector": ((".",), "run", 0),
    "GitHubTokenDetector": (("ghp_", "gho_", "ghu_", "ghs_", "ghr_"), "", 0),
    "GitLabTokenDetector": (
        (
            "glpat-",
            "gldt-",
            "glft-",
            "glsoat-",
            "glrt-",
            "gr1348941",
            "glcbt-",
            "glimt-",
            "glptt-",
            "glagent-",
            "gloas-",
        ),
        "",
        0,
    ),
    "IbmCloudIamDetector": (("key", "pwd", "pass", "token"), "run", 1),
    "IbmCosHmacDetector": (("secret",), "run", 1),
    "JwtTokenDetector": (("eyj",), "", 0),
    "MailchimpDetector": (("-us",), "", 0),
    "NpmDetector": ((":_authtoken=",), "", 1),
    "OpenAIDetector": (("t3blbkfj",), "", 0),
    "PypiTokenDetector": (("pypi-",), "", 0),
    "SendGridDetector": (("sg.",), "", 0),
    "SlackDetector": (("xox", "hooks.slack.com"), "", 0),
    "SoftlayerDetector": (("key", "pwd", "pass", "token", "api.softlayer.com"), "run", 1),
    "SquareOAuthDetector": (("sq0csp-",), "", 0),
    "StripeDetector": (("k_live_",), "", 0),
    "TelegramBotTokenDetector": ((":",), "run", 0),
    "TwilioKeyDetector": (("AC", "SK"), "", 0),
}

# What a pattern may consume around the secret without it being secret.
_LEAD = " \t\r\n\"'=:[("
_TRAIL = " \t\r\n\"']),;"


@dataclass(frozen=True, slots=True)
class LibraryRule:
    """One detect-secrets plugin: its compiled patterns and how to use them per field."""

    name: str  # the plugin class name, e.g. "SendGridDetector"
    patterns: tuple[re.Pattern[str], ...]
    triggers: tuple[str, ...]
    gate: str
    group: int

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Secret spans of every match of every pattern in ``text``."""
        out: list[tuple[int, int]] = []
        for rx in self.patterns:
            for m in rx.finditer(text):
                start, end = m.span(self.group) if self.group and rx.groups >= self.group else m.span()
                if start < 0:
                    start, end = m.span()
                while start < end and text[start] in _LEAD:
                    start += 1
                while end > start and text[end - 1] in _TRAIL:
                    end -= 1
                if end > start:
                    out.append((start, end))
        return out


def load_rules() -> tuple[LibraryRule, ...]:
    """Every regex plugin of the installed detect-secrets, minus EXCLUDED, with our triggers."""
    from stellaops_runtime.privacy.deferred_import import deferred

    # Its plugin modules import ``requests`` for online verification, and its package imports
    # ``multiprocessing`` to scan many files at once, neither used here: each is loaded only if
    # something uses it (privacy/deferred_import.py).
    with deferred("requests"), deferred("multiprocessing"):
        from detect_secrets.plugins.base import RegexBasedDetector

        mapping = globals().get("get_mapping_from_secret_type_to_class") or __getattr__(
            "get_mapping_from_secret_type_to_class"
        )
        plugins = list(mapping().values())
    rules = []
    for cls in plugins:
        if not issubclass(cls, RegexBasedDetector) or cls.__name__ in EXCLUDED:
            continue
        triggers, gate, group = _KNOWN.get(cls.__name__, ((), "", 0))
        denylist: tuple[re.Pattern[str], ...] = tuple(getattr(cls, "denylist", ()))
        rules.append(
            LibraryRule(
                name=cls.__name__,
                patterns=denylist,
                triggers=triggers,
                gate=gate,
                group=group,
            )
        )
    return tuple(sorted(rules, key=lambda r: r.name))


KNOWN_PLUGINS: frozenset[str] = frozenset(_KNOWN)
_RULES: list[tuple[LibraryRule, ...]] = []


def library_rules() -> tuple[LibraryRule, ...]:
    """The rules, loaded from the library on first use (an agent whose privacy filter does not
    use the default patterns never loads detect-secrets; ``requests``, which its plugins import,
    is not loaded even then)."""
    if not _RULES:
        _RULES.append(load_rules())
    return _RULES[0]


def __getattr__(name: str) -> Any:
    """``LIBRARY_RULES`` and the library's plugin lookup, imported on first access (PEP 562)."""
    if name == "LIBRARY_RULES":
        return library_rules()
    if name == "get_mapping_from_secret_type_to_class":
        from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

        globals()[name] = get_mapping_from_secret_type_to_class
        return get_mapping_from_secret_type_to_class
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
