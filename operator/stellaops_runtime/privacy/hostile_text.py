"""Three ways a secret slipped past the rules, closed before and around them.

- **A tracing policy's argument label names the secret.** A policy that
  labels a traced argument ``password`` or ``api_token`` (Tetragon's
  ``args[].label``) says what the value is; the sample stores it as
  ``password=<value>``, yet the value alone looks like any word. Such a
  value is redacted whole (:class:`SecretLabels`).
- **U+FFFD between a flag and its value.** The adapter puts U+FFFD for a NUL
  in a traced value (a bytes or char_buf argument holding ``argv`` or an
  environment block: ``--password\\x00SECRET``) and for invalid UTF-8. Read
  as a character it hides the separator the flag and client rules need;
  :func:`redact_replaced_as_separators` runs the rules once more with it read
  as whitespace, and puts U+FFFD back where nothing was redacted.
- **An information separator (``\\x1c``-``\\x1f``) between a flag and its value.** Python's
  ``str.split`` reads it as white space: the same second pass reads it as a separator.
- **Lines broken by a carriage return alone.** configparser reading a file (universal newlines) and
  YAML read a lone ``\\r`` as a line break, the rules and contracts/value_lines.py only ``\\n``:
  ``password = a\\r  S`` kept ``S``. :func:`lone_returns_as_line_feeds` gives the reading the passes
  run on again (s50 P's left-alone 2).
- **A vertical tab or a form feed inside a value** (a carriage return alone too, in an exec's arguments:
  ``--password=$'a\\rS'``, and a line feed in an argument Tetragon did not quote, one holding no blank:
  ``mysql -pa<LF>S``). One shell word holds them; a rule ending its value at
  ``\\s`` kept the rest (``mysql -pa\\vb``): :func:`redact_breaks_joined` runs the rules once more with
  them read as word characters.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from stellaops_runtime.privacy.key_words import PASSWORD_WORDS, SECRET_WORDS
from stellaops_runtime.privacy.reading_union import with_original_characters

# What the adapter puts for a NUL or invalid UTF-8 (adapter/validate.py, adapter/common.py).
REPLACED = "\ufffd"
# ASCII's information separators: inside one shell word (bash does not split on them, and a value read
# across one keeps it: ``--password=a\x1cb`` loses ``b``), but white space to Python's ``str.split`` and
# ``\s``, so a program splitting a line read ``--password\x1cS`` as a flag and its value: the passes run
# again with each read as a separator, as U+FFFD (s49 P's and RP's left-alone).
INFORMATION_SEPARATORS = ("\x1c", "\x1d", "\x1e", "\x1f")
# Whitespace characters (for every rule's ``\s``, and ending the key rules' values, which a vertical tab
# or a form feed no longer does: ``--password a\vb`` is one word, s48 Q1) that stand in for U+FFFD while
# it is read as a separator: one the text lacks, so that it can be put back. A text holding both gets a
# space, put back by where the redacted text's pieces stand (it got spaces for good, s48 RLK).
_STAND_INS = ("\r", "\t")

# A label ending in a credential word (``db_password``, ``api-token``, ``keypass``).
_SECRET_LABEL = re.compile(
    rf"(?:(?P<pw>{'|'.join((*PASSWORD_WORDS, 'pass'))})|{'|'.join(SECRET_WORDS)})\Z", re.IGNORECASE | re.ASCII
)
_MAX_LABELS = 4096


class SecretLabels:
    """Which rule family (``password``, ``secret_token``) an argument label names; "" for none."""

    __slots__ = ("_known",)

    def __init__(self) -> None:
        self._known: dict[str, str] = {}

    def family(self, label: str) -> str:
        family = self._known.get(label)
        if family is None:
            m = _SECRET_LABEL.search(label)
            family = "" if m is None else ("password" if m.group("pw") else "secret_token")
            if len(self._known) >= _MAX_LABELS:  # labels come from policies: a handful, but bounded
                self._known.clear()
            self._known[label] = family
        return family


# a carriage return that no line feed follows (``\\r\\n`` is one line break already)
_LONE_RETURN = re.compile(r"\r(?!\n)")


def lone_returns_as_line_feeds(text: str) -> str:
    """``text`` with each carriage return that no line feed follows read as one: one for one, aligned."""
    return _LONE_RETURN.sub("\n", text) if "\r" in text else text


def separated(text: str, char: str = REPLACED) -> str:
    """``text`` with ``char`` (U+FFFD, or a raw NUL) read as whitespace: a stand-in one for one."""
    return text.replace(char, next((c for c in _STAND_INS if c not in text), " "))


def redact_replaced_as_separators(
    text: str, redact: Callable[[str], tuple[str, int]], *, char: str = REPLACED
) -> tuple[str, int]:
    """``redact`` of ``text`` with U+FFFD (or ``char``: a raw NUL) read as whitespace: (text, redactions).

    ``text`` has been through ``redact`` once already (a secret that holds a
    U+FFFD is gone); markers it holds are not counted again.
    """
    sep = next((c for c in _STAND_INS if c not in text), " ")
    separated = text.replace(char, sep)
    out, hits = redact(separated)
    if not hits:
        return text, 0
    if sep != " ":
        return out.replace(sep, char), hits
    # a text holding both stand-ins: the redacted pieces are found in the separated text and put back
    # in the text's own characters (reading_union.py), so its U+FFFD stay where nothing was redacted
    marked = with_original_characters(text, separated, out)
    return (out if marked is None else marked), hits


# A vertical tab or a form feed is inside one shell word (``mysql -pa\\vb`` is one argument, s48 Q1): the
# key, flag and environment rules read it so, but every rule whose value ends at ``\\s`` (a client's
# option, a URL's or ``user:password``'s password, an Authorization header's token, ``IDENTIFIED BY``, a
# query's value) kept what followed it. The passes run again with each read as a character no rule takes
# for a blank (a private-use one the text lacks), put back where nothing was redacted.
_BREAKS = ("\v", "\f")
# Where a stand-in is looked for: the BMP's private-use area, then the supplementary planes' (15, 16),
# then planes 4-13 (unassigned: neither a word character nor a blank to any rule). A field holding all
# 6,400 of the first (19 KiB, under a raised maxArgumentBytes) skipped the pass and kept ``mysql -pa\vS``'s
# ``S`` (s49 RP's left-alone 7); no field of 1 MiB holds all of them.
_STAND_IN_RANGES = (
    range(0xE000, 0xF900),
    range(0xF0000, 0xFFFFE),
    range(0x100000, 0x10FFFE),
    range(0x40000, 0xE0000),
)


# An exec's argument Tetragon quoted because it holds a blank (a ``sh -c`` script) opens with a quote at a
# word's start: its line feeds end the script's lines.
_OPENING_QUOTE = re.compile(r"""(?:(?<= )|^)["']""")


# Line breaks between two characters of a word: one a blank follows or precedes ends the value the rules
# read in any case (and a file's text read as arguments keeps its indented lines).
_INSIDE_WORD_FEEDS = re.compile(r"(?<=\S)[\r\n]++(?=\S)")


def _quoted_arguments(text: str) -> list[tuple[int, int]]:
    """(start, end) of each quoted argument of ``text`` (an exec's arguments joined by blanks).

    One ends at its first quote followed by a blank or the text's end (a script holding quotes of its
    own runs on over them: ``"echo "a"<LF>ls"``); one never closed (a script cut by the field's limit)
    runs to the text's end. Each part of the text is read once: linear.
    """
    spans: list[tuple[int, int]] = []
    at = 0
    while (m := _OPENING_QUOTE.search(text, at)) is not None:
        quote, start = m.group(), m.start()
        end = text.find(quote + " ", start + 1)
        if end < 0:
            # closed at the text's end, or never (a script cut by maxArgumentBytes): quoted to the end
            spans.append((start, len(text)))
            break
        spans.append((start, end + 1))
        at = end + 1
    return spans


def _word_line_feeds_read(text: str, stand_in: str) -> str:
    """``text`` (an exec's arguments) with ``stand_in`` for each line feed outside a quoted argument.

    An argument holding no blank is not quoted: a line feed in it is inside one shell word (``mysql
    -pa\\nS``: argv holds ``-pa<LF>S``, and mysql reads the password ``a<LF>S``).
    """

    def read(piece: str) -> str:
        return _INSIDE_WORD_FEEDS.sub(lambda m: m.group().replace("\n", stand_in), piece)

    pieces: list[str] = []
    at = 0
    for start, end in _quoted_arguments(text):
        pieces += (read(text[at:start]), text[start:end])
        at = end
    pieces.append(read(text[at:]))
    return "".join(pieces)


def redact_breaks_joined(
    text: str, redact: Callable[[str], tuple[str, int]], *, lone_returns: bool = False
) -> tuple[str, int]:
    """``redact`` of ``text`` with its vertical tabs and form feeds read as word characters: (text, hits).

    ``lone_returns``: an exec's arguments, whose words hold these too: a carriage return no line feed
    follows, and a line feed in an argument not quoted (one holding no blank).
    """
    held = set(text)
    free = (chr(cp) for cps in _STAND_IN_RANGES for cp in cps if chr(cp) not in held)
    stand_ins = [(brk, next(free, "")) for brk in _BREAKS if brk in held]
    joined = text
    if lone_returns and "\n" in held:
        line_feed = next(free, "")
        joined = _word_line_feeds_read(text, line_feed) if line_feed else text
        if joined != text:
            # its carriage return ``\r\n`` (``$'a\r\nS'``) is now alone, read below
            stand_ins.append(("\n", line_feed))
    if lone_returns and "\r" in held and _LONE_RETURN.search(joined) is not None:
        stand_ins.append(("\r", next(free, "")))
    if not stand_ins or not all(s for _, s in stand_ins):
        return text, 0
    for brk, stand_in in stand_ins:
        # a carriage return alone is inside one shell word too (``--password=$'a\rS'``: s51); ``\r\n`` ends
        # a line
        if brk == "\r":
            joined = _LONE_RETURN.sub(stand_in, joined)
        elif brk != "\n":
            joined = joined.replace(brk, stand_in)
    out, hits = redact(joined)
    if not hits:
        return text, 0
    for brk, stand_in in stand_ins:
        out = out.replace(stand_in, brk)
    return out, hits
