"""Mask credentials in any text before it becomes a message.

Why this exists: store URLs, Tetragon addresses, the Tetragon metrics URL and
kubeconfig server URLs may carry a password, and they reach log lines,
exception messages, CLI stderr, the ObservationNode status and ``/readyz``
whenever something about them goes wrong. A URL that is wrong is exactly the
one a parser cannot be trusted to split (``postgresq://u:s3cret@db/x``,
``postgresql://u:p@ss@h/db``, ``u:pw@host/db``, a port that is not a number),
so :func:`redact` does not parse: it rewrites text with regular expressions
that err on the side of masking too much, and never raises.

What is masked (by ``***``; user names, hosts, ports and paths are kept so
messages stay useful):

- the password of ``scheme://user:password@host``, up to the *last* ``@`` of
  the URL, so a password holding an unencoded ``@``, ``/``, ``:`` or ``#`` is
  masked whole, whatever is glued before the scheme (``\x1b[2Jpostgresql://``,
  ``9redis://``, ``://u:p@h``); when the URL has no ``@`` up to the next whitespace but its
  ``user:`` is not followed by a port number, up to the next ``@`` on the line
  (a password holding a space);
- the same without a scheme (``user:password@host/db``, ``:password@host``) at
  the start of a token. Image references (``repo:tag@sha256:…``), package URLs
  (``pkg:type/…@version``) and C++ names (``ns::f@GLIBC_2.2.5``) are left alone;
- values of password-like keys: ``password=``, ``sslpassword=``,
  ``PGPASSWORD=``, ``token=``, ``secret=``, ``api_key=`` ... in URL query
  strings and libpq key/value DSNs (``host=db password='a b'``),
  ``password: value`` as YAML or JSON write it (``password:value`` too), and
  flags: ``--password value``, ``-token value``; with the lines that go on with a key's value
  (contracts/value_lines.py): a sequence item under it (``password:`` then ``  - a`` then ``    b``),
  the lines indented deeper than a key at its line's start (``password = a`` then ``  b``, a block or
  quoted scalar's); the rest of the line too when deeper lines follow (``token = a b`` then ``  c``), a
  YAML tag's, anchor's or unclosed flow collection's (``password: !!binary x``, ``[a, x]``), a quote to
  its closing one over lines (``password: "a`` then ``x"``), a properties value's backslash-continued
  lines (``_Rest``);
- ``Bearer <token>`` and ``Basic <base64>`` credentials.

Text is also read as the privacy filter reads it (``escapes.reading``): with
look-alikes of ASCII folded (a fullwidth ``=``, a Cyrillic ``a`` in
``password``, a zero-width space inside a key, a no-break space after ``Bearer``)
and escaped key names decoded (``pass%77ord=``, ``api%5Fkey=``,
``password%3D``, ``pass\\u0077ord``); a secret found only in that reading leaves
the text in it. That reading is taken twice: with its Unicode spaces kept (inside one
value: ``--password=a<NBSP>b`` loses ``b``), then with them as blanks (between a flag
and its value: ``--password<NBSP>x``); only a blank or a line end ends a value.

Unencoded whitespace inside a password is not reliably found in free text;
SQLAlchemy and libpq users percent-encode or quote such passwords anyway.
"""

from __future__ import annotations

import re

from stellaops_runtime.contracts.escapes import reading
from stellaops_runtime.contracts.redact_userinfo import sub_userinfo
from stellaops_runtime.contracts.value_lines import item_column, item_end, value_end

MASK = "***"

# A Unicode space inside a value is inside one word (``--password=a<NBSP>b``): only ASCII white space
# ends a value (the text is also read with its Unicode spaces as blanks: :func:`redact`).
_USPACE = "\x0b\x0c\x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_AUTH_SCHEME = re.compile(
    rf"\b(?P<k>Bearer\s+)[A-Za-z0-9._~+/\-{_USPACE}]+=*|\b(?P<b>Basic\s+)[A-Za-z0-9+/{_USPACE}]{{8,}}={{0,2}}"
)

_SECRET_VALUE = re.compile(
    r"""
    (?P<key>(?<![\w.\-])[\w.\-]*?(?:password|passwd|pwd|secret|token|api[_\-]?key)
      (?:\[[\w$.\-]{0,64}\](?=\s*\\*=(?!=)))?)       # an array's index, then ``=`` (``password[0] = x``)
    (?P<sep>\s*\\*=\s*|(?:\\*["'])?\s*:(?![:/])\s*)   # an escaped = (PASSWORD\=x); a closing quote of the key
    (?P<value>
        (?<=[=:\s])"{3}(?:[^"\\]|\\[\s\S]|"(?!""))*+(?:"{3}|\Z)   # a TOML or Python multi-line string
      | (?<=[=:\s])'{3}(?:[^']|'(?!''))*+(?:'{3}|\Z)
      | '(?:[^'\\\n]|\\.)*'?                    # libpq quoted value, backslash escapes
      | "(?:[^"\\\n]|\\.)*"?
      | (?:[^ \t\n\r&]|&(?![A-Za-z_][\w.\-]*=))+     # up to a blank, a line end or the next &name=
    )
    """,
    re.VERBOSE | re.IGNORECASE,
)

# ``--password VALUE``, ``-token VALUE``: a flag whose name ends in a credential word, then its value
# (not the next flag). ``--password-file PATH`` and ``--token-file PATH`` name files, not secrets.
_FLAG_VALUE = re.compile(
    r"""
    (?P<key>(?<![\w.\-])--?[\w.\-]*?(?:password|passwd|pwd|secret|token|api[_\-]?key))
    (?P<sep>\s+)
    (?P<value>(?!-)(?:"(?:[^"\\\n]|\\.)*"?|'(?:[^'\\\n]|\\.)*'?|[^ \t\n\r]+))
    """,
    re.VERBOSE | re.IGNORECASE,
)


def _userinfo(prefix: str) -> str:
    return f"{prefix}{MASK}"


def _auth(m: re.Match[str]) -> str:
    return f"{m['k'] or m['b']}{MASK}"


def _secret_value(m: re.Match[str]) -> str:
    quote = m["value"][0] if m["value"][0] in "'\"" else ""
    return f"{m['key']}{m['sep']}{quote}{MASK}{quote}"


def redact(text: object) -> str:
    """``str(text)`` with every password, token and secret parameter in it replaced by ``***``.

    Pure and total: any object, any string (URL, DSN, exception text,
    pydantic error, several of them in one line); idempotent.
    """
    s = text if isinstance(text, str) else str(text)
    if not s:
        return s
    read = reading(s)  # look-alikes and escaped key names, read as the privacy filter reads them
    if read != s:
        # first with its Unicode spaces kept (inside one word: ``--password=a<NBSP>b`` loses ``b``), then
        # that read with them as blanks (``--password<NBSP>x`` loses ``x``): the union of both
        kept = reading(s, keep_spaces=True)
        first = _masked(kept)
        again = reading(first)
        masked = _masked(again)
        if masked != again or first != kept:
            return masked
    return _masked(s)


def _value_end(s: str, start: int, end: int) -> int:
    """Where a key's value ends: past the lines below that go on with it (value_lines.py).

    A sequence item's dash at its line's start (``password:`` then ``  - a``) is the item: its line,
    then its deeper lines and sibling items; a map item's too (a message errs on masking too much).
    """
    if end == start + 1 and s[end : end + 1] in (" ", "\t") and item_column(s, start) is not None:
        line_end = s.find("\n", end)
        line_end = len(s) if line_end < 0 else line_end - (s[line_end - 1] == "\r")
        return item_end(s, start, line_end)
    return value_end(s, start, end, any_form=True)


def _line_end(s: str, at: int) -> int:
    """Where the line holding ``at`` ends (before its ``\r\n`` or ``\n``)."""
    end = s.find("\n", at)
    return len(s) if end < 0 else end - (s[end - 1] == "\r")


class _Rest:
    """What goes on with a value past its own form, read once per line (s50 RP's review).

    A value that stops inside its line (``token = a b``, ``password: &x a``, ``password = a ; c``) then
    deeper lines: the rest of its line and those lines, as a YAML or configparser reader would join them;
    a YAML tag, anchor or flow collection (``password: !!binary S``, ``[a, S]``): the rest of its line; a
    quote not closed on its line (``password: "a`` then ``S"`` at the key's indentation, a dotenv's
    ``DB_PASSWORD="a`` then ``S"``): to its closing quote; a Java properties value ending in a backslash:
    its continuation lines.
    """

    def __init__(self) -> None:
        self.tried = -1  # the end of the last line whose rest was looked at
        self.unclosed: set[str] = set()  # quotes with no closing one after the last place looked from

    def end(self, s: str, start: int, end: int) -> int:
        first = s[start]
        line_end = _line_end(s, end) if end < len(s) and s[end] not in "\r\n" else end
        if first in "!&" or (first in "[{" and "]}"["[{".index(first)] not in s[start:end]):
            # a tag, an anchor, a flow collection not closed in the word (``[REDACTED]`` is one word):
            # the rest of the line, and the deeper lines, as a plain value's
            return max(line_end, value_end(s, start, line_end, any_form=True))
        if first in "\"'" and (end - start < 2 or s[end - 1] != first) and end == line_end:
            return self._closing(s, first, end)
        if end == line_end and s[end - 1] == "\\":
            while line_end < len(s) and s[line_end - 1] == "\\":  # ``a\`` then the next line, and on
                line_end = _line_end(s, line_end + 1 + (s[line_end] == "\r"))
            return line_end
        if end < line_end and end > self.tried:  # the first value of its line only: one look per line
            self.tried = line_end
            rest = value_end(s, start, line_end, any_form=True)
            if rest > line_end:
                return rest
        return end

    def _closing(self, s: str, quote: str, end: int) -> int:
        if quote in self.unclosed:
            return end
        m = (_DQ_REST if quote == '"' else _SQ_REST).match(s, end)
        if m is None:
            self.unclosed.add(quote)  # none from here on: none from any later place either
            return end
        return m.end()


# the rest of a quoted value to its closing quote, over lines (a backslash escapes in double quotes)
_DQ_REST = re.compile(r'(?:[^"\\]|\\[\s\S])*+"')
_SQ_REST = re.compile(r"[^']*+'")


# what breaks a line to YAML (and to configparser reading a file) besides ``\n`` and ``\r\n``
_LINE_BREAKS = re.compile("\r(?!\n)|[\x85\u2028\u2029]")
_HAS_LINE_BREAK = re.compile("[\r\x85\u2028\u2029]")


def _sub_values(s: str) -> str:
    """``s`` with each key's value (_SECRET_VALUE), and the lines that go on with it, masked."""
    out: list[str] = []
    last = 0
    rest = _Rest()
    # A carriage return alone, NEL, U+2028 and U+2029 break lines to YAML (``password: a<U+2028>  S``: the
    # value goes on over the deeper line), and to configparser reading a file (``\r``): the lines that go
    # on with a value are read where they are line feeds (one for one, aligned); the value itself still
    # runs over one (a program splitting on ``\n`` only reads ``a<U+2028>b`` as one value).
    lines = _LINE_BREAKS.sub("\n", s) if _HAS_LINE_BREAK.search(s) else s
    while (m := _SECRET_VALUE.search(s, last)) is not None:
        start, whole = m.span("value")
        end = whole
        while end - 1 > start and lines[end - 1] == "\n":  # a value's own line ends where a break is
            end -= 1
        value = end
        end = _value_end(lines, start, end)
        if end == value:
            end = rest.end(lines, start, end)
        end = max(end, whole)
        out.append(s[last : m.start()])
        out.append(_secret_value(m))
        last = max(end, m.end())
    if not out:
        return s
    out.append(s[last:])
    return "".join(out)


def _masked(s: str) -> str:
    s = sub_userinfo(s, _userinfo)  # linear: redact_userinfo.py
    s = _AUTH_SCHEME.sub(_auth, s)
    s = _sub_values(s)
    return _FLAG_VALUE.sub(_secret_value, s)


def redact_error(e: BaseException) -> str:
    """An exception's message (its type name when it has none), redacted."""
    return redact(str(e) or type(e).__name__)
