"""Mask the password of ``user:password@host`` in message text, in time linear in the text.

Why this exists: ``redact.py`` masked userinfo with one regular expression whose
end was "the last ``@`` of the whitespace-delimited run" (``\\S*@``) or "the
next ``@`` on the line". Python's ``re`` finds such an end by scanning the rest
of the run from every position where a user name may start, and backtracking
when there is no ``@``: a run of ``"name":`` (a JSON error body) without an
``@`` cost time quadratic in its length (20 Ki characters took 0.45 s, 1 MiB
minutes), and every log message, exception text and CLI error goes through it.

Here a regular expression finds only the *start* of a candidate (the scheme and
user, or a scheme-less ``user:`` at the start of a token: both scans are linear,
their runs never overlap), and the end is found from the positions of ``@``,
whitespace, newlines and ``://`` collected once per text, by binary search. The
result is the one the former expression gave (a test compares both on random
texts); what is masked is documented in ``redact.py``.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable

# Characters after which a token starts (where a scheme-less user:password@host may begin).
TOKEN_START = r"""\s'"`=(\[{<,;"""

# scheme://user: (group a). The scheme is the whole run of scheme characters before ``://``, whatever
# it starts with: text glued before a scheme (``\x1b[2Jpostgresql://``, an escape sequence's ``2J``;
# ``9redis://``) or none (``://u:p@h``) must not hide the password behind it.
_SCHEME_USER = re.compile(r"""(?<![A-Za-z0-9+.\-])[A-Za-z0-9+.\-]*://[^\s:/@?#'"]*:""")
# user: at the start of a token, not a package URL, a scheme URL without userinfo or a C++ name (group b)
_TOKEN_USER = re.compile(
    rf"""(?<![^{TOKEN_START}])(?!pkg:[A-Za-z][A-Za-z0-9.+\-]*/)[^{TOKEN_START}:/@]*:(?!//|:)"""
)
# Either start (only to find the next position where one of them may match).
_START = re.compile(f"{_SCHEME_USER.pattern}|{_TOKEN_USER.pattern}")
# host:port: after scheme://user: this is no password (the URL has no userinfo).
_PORT = re.compile(r"""\d{1,5}(?:[/?#\s'",;)\]]|$)""")
# What may not follow the '@' of a scheme-less user:password@: an image digest, another '@'.
_DIGEST_AFTER = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[0-9a-fA-F]{32}")
_SPACE = re.compile(r"\s")


def _positions(pattern: re.Pattern[str] | str, text: str) -> list[int]:
    if isinstance(pattern, str):
        out = []
        i = text.find(pattern)
        while i >= 0:
            out.append(i)
            i = text.find(pattern, i + 1)
        return out
    return [m.start() for m in pattern.finditer(text)]


class _Index:
    """Where the '@', whitespace, newlines and '://' of one text are (each found once)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.ats = _positions("@", text)
        self.spaces = _positions(_SPACE, text)
        self.newlines = _positions("\n", text)
        self.schemes = _positions("://", text)
        # The '@' a scheme-less userinfo may end at: not before an image digest or another '@'.
        self.token_ats = [
            q for q in self.ats if not text.startswith("@", q + 1) and not _DIGEST_AFTER.match(text, q + 1)
        ]

    @staticmethod
    def _next(positions: list[int], p: int) -> int:
        """The first position at or after ``p``, or -1."""
        i = bisect.bisect_left(positions, p)
        return positions[i] if i < len(positions) else -1

    @staticmethod
    def _last_before(positions: list[int], p: int, end: int) -> int:
        """The last position in ``[p, end)``, or -1."""
        i = bisect.bisect_left(positions, end) - 1
        return positions[i] if i >= 0 and positions[i] >= p else -1

    def run_end(self, p: int) -> int:
        """Where the run of non-whitespace at ``p`` ends."""
        ws = self._next(self.spaces, p)
        return ws if ws >= 0 else len(self.text)

    def last_at_in_run(self, p: int, *, token: bool = False) -> int:
        """``\\S*@`` from ``p``: the last (usable) '@' before the run ends, or -1."""
        return self._last_before(self.token_ats if token else self.ats, p, self.run_end(p))

    def next_at_on_line(self, p: int) -> int:
        """``(?:(?!://)[^\\n@])*@`` from ``p``: the next '@' with no newline or '://' before it, or -1."""
        q = self._next(self.ats, p)
        if q < 0:
            return -1
        nl = self._next(self.newlines, p)
        sc = self._next(self.schemes, p)
        if 0 <= nl < q or 0 <= sc < q:
            return -1
        return q


def _scheme_end(ix: _Index, m: re.Match[str]) -> int:
    """Where ``scheme://user:password@`` ends (after its '@'), or -1 when it has no password."""
    p = m.end()
    q = ix.last_at_in_run(p)
    if q >= 0:
        return q + 1
    if _PORT.match(ix.text, p):  # host:port, not a password holding a space
        return -1
    q = ix.next_at_on_line(p)
    if q < 0:
        return -1
    far = ix.last_at_in_run(q + 1)  # (?:\S*@)? after the first '@'
    return (far if far >= 0 else q) + 1


def _token_end(ix: _Index, m: re.Match[str]) -> int:
    q = ix.last_at_in_run(m.end(), token=True)
    return q + 1 if q >= 0 else -1


def sub_userinfo(text: str, replace: Callable[[str], str]) -> str:
    """``text`` with each ``prefix password@`` replaced by ``replace(prefix) + "@"``.

    ``prefix`` is ``scheme://user:`` or a scheme-less ``user:``; matches are found
    left to right and never overlap, as ``re.sub`` finds them.
    """
    if "@" not in text:
        return text
    ix = _Index(text)
    out: list[str] = []
    last = 0
    pos = 0
    while True:
        found = _START.search(text, pos)
        if found is None:
            break
        st = found.start()
        end = -1
        prefix = ""
        a = _SCHEME_USER.match(text, st)
        if a is not None:
            end = _scheme_end(ix, a)
            prefix = a.group()
        if end < 0:
            b = _TOKEN_USER.match(text, st)
            if b is not None:
                end = _token_end(ix, b)
                prefix = b.group()
        if end < 0:
            pos = st + 1
            continue
        out.append(text[last:st])
        out.append(replace(prefix) + "@")
        last = pos = end
    if not out:
        return text
    out.append(text[last:])
    return "".join(out)
