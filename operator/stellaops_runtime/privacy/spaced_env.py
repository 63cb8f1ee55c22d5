"""A secret environment variable set with a blank instead of ``=``: fish, csh and a Dockerfile.

Why this exists: the environment-name rule (``env_names.argument_regex``) reads ``NAME=value``.
fish's ``set -x NAME value`` (``-g``, ``-U``, ``--export``… before the name), csh's and tcsh's
``setenv NAME value`` and a Dockerfile's legacy ``ENV NAME value`` (the rest of its line) have no
``=``, and kept their value (P7's known limits, session 45; closed by RP7). The name must match
the configured environment-name globs (the filter's ``env_name_rx``), so ``set -x PATH …``,
``setenv LANG C`` and bash's ``set -euo pipefail`` stay. Possessive, one scan: linear.
"""

from __future__ import annotations

import re

from stellaops_runtime.privacy import env_names
from stellaops_runtime.privacy.base import ESCAPED_SQ

__all__ = ["spaced_env_spans"]

_NAME = r"(?P<name>[A-Za-z_][A-Za-z0-9_]{0,127}+)"
# the value: quoted (to its closing quote) or a word, which ``;``, ``|`` and ``&`` end (a command's end);
# not an option nor a redirection (``gh secret set NAME --body X``, ``gh secret set NAME < F``: gh's rules)
# (in escaped double quotes too, inside a double-quoted ``csh -c "…"``: ``\"a b\"``, P8)
_ONE = (
    rf"""{ESCAPED_SQ}|"""  # a script quoted again: ``set -x NAME '"'"'a b'"'"'`` (RP8)
    r"""\\++"(?:[^"\\\r\n]|\\(?!")[^\r\n])*+(?:\\")?+|"(?:[^"\\\r\n]|\\.)*+"?|'[^'\r\n]*+'?"""
    r"""|[^\s;|&"'<>-][^\s;|&]*+"""
)
_WHERE = r"(?<![^\s;|&(`{\"'])"
# fish's set with its flags (``-x``, ``-gx``, ``--export``): its value is a list, every word to the
# command's end (``set -x DB_PASSWORD a b``: P8); csh's setenv: one word
_SET = re.compile(
    rf"{_WHERE}set(?:[ \t]++-[-A-Za-z]++)*+[ \t]++{_NAME}[ \t]++(?P<s>(?:{_ONE})(?:[ \t]++(?:{_ONE}))*+)",
    re.ASCII,
)
_SETENV = re.compile(rf"{_WHERE}setenv[ \t]++{_NAME}[ \t]++(?P<s>{_ONE})", re.ASCII)
# a Dockerfile's ENV NAME value (the legacy form: the rest of the line is the value)
_ENV = re.compile(rf"(?m)^[ \t]*+ENV[ \t]++{_NAME}[ \t]++(?P<s>[^\s=][^\r\n]*+)", re.ASCII)


def spaced_env_spans(text: str, name_rx: re.Pattern[str]) -> list[tuple[int, int, str]]:
    """(start, end, "env_name") of each such value whose name ``name_rx`` (env_names.name_regex) takes."""
    rxs = ([_SET, _SETENV] if "set" in text else []) + ([_ENV] if "ENV" in text else [])
    out: list[tuple[int, int, str]] = []
    for rx in rxs:
        for m in rx.finditer(text):
            if env_names.name_matches(name_rx, m["name"]):  # (a marker there: replace_spans absorbs it)
                out.append((*m.span("s"), "env_name"))
    return out
