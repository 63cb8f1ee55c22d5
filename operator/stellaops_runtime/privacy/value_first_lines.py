"""An environment entry whose value, written before its name, goes on over the lines below it.

Why this exists: env_names.value_first_regex reads ``- value: x`` then ``name: DB_PASSWORD`` (an entry
written value first: by hand, or by a serializer keeping insertion order) only when the value ends on its
own line, right before the name. A block scalar (``- value: >-`` then its indented lines) or a plain
value continued on deeper lines (``- value: a`` then ``    S``: PyYAML reads ``a S``) kept the whole
secret (s50 RP): the regex cannot tell the value's deeper lines from the entry's next key by indentation.
Here the value's lines are those contracts/value_lines.py finds below the ``value`` key, and the entry
is a secret's when a later key of the value's own mapping (up to _MAX_SIBLINGS keys on, blank and
comment lines passed over) is its ``name`` key at the key's own column, naming a secret.

Each ``value`` key's lines are read once: a ``value`` key inside lines already read is none (they are a
scalar's text). Linear in the text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from stellaops_runtime.contracts.value_lines import lines_below_end
from stellaops_runtime.privacy.env_names import glob_to_regex

__all__ = ["ValueFirstLines"]

# ``value:`` at its line's start (indented, or a sequence item's first key), then a value that is no
# quoted one (the regex reads those over lines): a plain scalar or a block scalar's indicator
_VALUE_KEY = re.compile(
    r"""(?m)^(?P<ind>[ \t]*+(?:-[ \t]++)?+)(?i:value)[ \t]*+:[ \t]*+(?P<s>[^\s"'#][^\r\n]*+)"""
)


class ValueFirstLines:
    """Spans of the values, with their lines below, of entries naming a secret after them."""

    def __init__(self, globs: Iterable[str]) -> None:
        names = "|".join(glob_to_regex(g).replace("[A-Za-z0-9_]", r"[\w.-]") for g in globs)
        self._name = re.compile(rf"""(?i:name)[ \t]*+:[ \t]*+["']?(?i:{names})["']?(?![\w.-])""")

    def spans(self, text: str) -> list[tuple[int, int, str]]:
        """(start, end, "env_name") of each such value, its lines below included."""
        out: list[tuple[int, int, str]] = []
        at = 0
        while (m := _VALUE_KEY.search(text, at)) is not None:
            column = m.end("ind") - m.start()
            end = lines_below_end(text, m.end(), column)
            at = end + 1
            if self._named_below(text, end, column, single=end == m.end()):
                out.append((m.start("s"), end, "env_name"))
        return out

    def _named_below(self, text: str, end: int, column: int, *, single: bool) -> bool:
        """Whether a key of the value's own mapping after ``end`` is a ``name`` naming a secret.

        The entry's other keys may stand between (``- value: S`` then ``  type: x`` then ``  name:
        DB_PASSWORD``, s50 RP's left-alone 2), each with its own deeper lines, up to _MAX_SIBLINGS; a line
        at another column ends the mapping; blank and comment lines are passed over. ``single``: the value is
        one line, and a name right below it (no comment between) is value_first_regex's.
        """
        commented = False
        for sibling in range(_MAX_SIBLINGS):
            line = text.find("\n", end) + 1
            # blank lines, and comment lines (``- value: S`` then ``  # c`` then ``  name: DB_PASSWORD``:
            # PyYAML reads the entry whole; s51 RP), walked once each by at most _MAX_SIBLINGS + 1 values
            while line and _skipped(text[line : text.find("\n", line) + 1 or len(text)]):
                commented = commented or "#" in text[line : text.find("\n", line) + 1 or len(text)]
                line = text.find("\n", line) + 1
            key_at = line + column
            if (
                not line
                or text[line:key_at].strip(" \t") != ""
                or text[key_at : key_at + 1] in ("", " ", "\t", "-", "#")
            ):
                return False
            if self._name.match(text, key_at) is not None:
                return not (single and sibling == 0 and not commented)
            line_end = text.find("\n", key_at)
            line_end = len(text) if line_end < 0 else line_end - (text[line_end - 1] == "\r")
            end = lines_below_end(text, line_end, column)
        return False


# how many other keys of an entry may stand between its value and its name
_MAX_SIBLINGS = 8


def _skipped(line: str) -> bool:
    """Whether ``line`` is blank or a comment's (no key of the entry)."""
    return line.isspace() or line.lstrip(" \t").startswith("#")
