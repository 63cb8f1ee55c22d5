"""Traced arguments that come as a name and a value: the value after a secret's name goes whole.

A traced call often takes a name and its value as two arguments: ``setenv("DB_PASSWORD", X, 1)``,
a header setter ``("Authorization", "Negotiate X")``, a configuration setter ``("api_key", X)``.
The filter reads each argument alone, and a value with no recognisable format carries nothing
that says it is a secret; its name, one argument before, does. So when an argument's value is
such a name, the next string argument is replaced whole (PrivacyFilter.apply).

A name is one word of identifier characters (no ``/``: a path such as ``/etc/app/secret`` in
``rename(old, new)`` names a file, not a secret), optionally written as a flag (``--password``)
or with its separator (``password:``, ``token=``). It names a secret when it ends in a credential
word (the label rule's words, hostile_text.py), is an Authorization header, or matches the
environment-name globs (``GITHUB_PAT``). A NUL (U+FFFD after the adapter) ends the name, as
it ends a C string.
"""

from __future__ import annotations

import re

from stellaops_runtime.privacy import env_names
from stellaops_runtime.privacy.hostile_text import SecretLabels

__all__ = ["VALUE_TYPES", "SecretNames"]

# The argument types a value can be (numbers after a name are lengths or flags, not its value).
VALUE_TYPES = frozenset({"string_arg", "bytes_arg", "truncated_bytes_arg", ""})

_NAME = re.compile(r"-{0,2}(?P<n>[A-Za-z_][A-Za-z0-9_.:-]{0,127}?)[:=]?\Z")
_HEADERS = frozenset({"authorization", "proxy-authorization"})
_MAX_NAMES = 4096
_NUL = "\ufffd"  # what a NUL became (adapter/validate.py REPLACEMENT)


class SecretNames:
    """The rule family (counter name) a value names as a secret's name, "" for none; cached."""

    __slots__ = ("_env_rx", "_known", "_labels")

    def __init__(self, labels: SecretLabels, env_rx: re.Pattern[str] | None) -> None:
        self._labels = labels
        self._env_rx = env_rx
        self._known: dict[str, str] = {}

    def family(self, value: str) -> str:
        if len(value) > 132:
            return ""
        family = self._known.get(value)
        if family is None:
            family = self._family(value)
            if len(self._known) >= _MAX_NAMES:  # values come from workloads: bounded
                self._known.clear()
            self._known[value] = family
        return family

    def _family(self, value: str) -> str:
        # A C consumer reads the name up to its NUL, which the adapter makes U+FFFD (a traced
        # buffer of ``DB_PASSWORD\0``: adapter/validate.py).
        m = _NAME.match(value.partition(_NUL)[0])
        if m is None:
            return ""
        name = m.group("n")
        if name.lower() in _HEADERS:
            return "authorization_header"
        family = self._labels.family(name)
        if family:
            return family
        if self._env_rx is not None and env_names.name_matches(self._env_rx, name):
            return "env_name"
        return ""
