"""Characters that look like the ASCII the rules need, read as that ASCII.

Every rule matches ASCII (``re.ASCII``: ``password``, ``=``, ``:``, ``\\s``), so a
key written with a look-alike was kept whole: ``password\\uff1dS3cret`` (a fullwidth
equals sign, what a CJK input method types), ``--password S3cret`` with a
no-break space pasted from a web page, ``pass\\u200bword=S3cret`` (a zero-width
space), ``p\\u0430ssword=S3cret`` (a Cyrillic ``a``). :func:`fold` gives the text as a
reader sees it:

- fullwidth and halfwidth forms, mathematical letters and digits, small form
  variants, enclosed letters, super- and subscripts and letterlike symbols whose
  compatibility form (NFKC) is one printable ASCII character become it
  (the fullwidth equals sign and colon are ``=`` and ``:``, a mathematical bold
  ``p`` and a circled ``p`` are ``p``, the Kelvin sign is ``K``);
- every Unicode space (no-break, en, em, thin, ideographic, ...) and the line and
  paragraph separators become a space;
- invisible format characters (zero-width space and joiners, word joiner, byte
  order mark, soft hyphen, bidirectional controls) are dropped;
- the Cyrillic, Greek and other letters that look like Latin ones (Cyrillic
  a, o, p, s, Greek capital alpha, ...; :data:`_HOMOGLYPHS`) and
  the other look-alikes of ``=``, ``:`` and ``-`` (dashes, the minus sign) become those.

The filter runs its passes on the folded text when the text holds such a
character and the folding changes it; when that finds a secret, the field is kept
in its folded reading (its look-alikes as ASCII, its invisible characters gone),
else it is kept as it was. Nothing else is folded (accented letters, scripts
without Latin look-alikes stay as they are).

It lives with the plain data (``contracts/``) because the message redaction
(``contracts/redact.py``: log lines, exception messages, CLI output, which the
privacy filter does not see) reads text the same way; ``escapes.reading`` joins
it with the reading of escaped key names.
"""

from __future__ import annotations

import re

# (first, last) code points whose NFKC form is looked at.
_COMPAT_RANGES: tuple[tuple[int, int], ...] = (
    (0x00A0, 0x00BF),  # Latin-1 punctuation: no-break space, superscripts, ordinals
    (0x2000, 0x209F),  # general punctuation (spaces), super- and subscripts
    (0x2100, 0x214F),  # letterlike symbols
    (0x2460, 0x24FF),  # enclosed alphanumerics
    (0x3000, 0x3000),  # ideographic space
    (0xFE50, 0xFE6F),  # small form variants
    (0xFF00, 0xFFEF),  # fullwidth and halfwidth forms
    (0x1D400, 0x1D7FF),  # mathematical alphanumeric symbols
    (0x1F100, 0x1F1FF),  # enclosed alphanumeric supplement
)
_FORMAT_CHARS = (
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b\u200c\u200d\u200e\u200f"
    "\u202a\u202b\u202c\u202d\u202e\u2060\u2061\u2062\u2063\u2064\u2066\u2067\u2068\u2069"
    "\u3164\ufeff\uffa0"
)
_SPACES = "\u0085\u1680\u2028\u2029"
# Letters of other scripts drawn like Latin ones, and look-alikes of ``=`` and ``:``
# that NFKC leaves alone: (look-alikes, the ASCII each is read as), escaped so that a
# reviewer sees which character is which.
_HOMOGLYPHS: tuple[tuple[str, str], ...] = (
    # Cyrillic (and Armenian n, g)
    ("\u0430\u0432\u0435\u0451\u043e\u0440\u0441\u0443\u0445\u0455\u0456\u0457", "aBeeopcyxsii"),
    ("\u0458\u04bb\u0501\u051b\u051d\u04cf\u0578\u0581\u043a\u0442\u043c\u043d", "jhdqwlngkTMH"),
    ("\u044c\u0410\u0412\u0415\u041a\u041c\u041d\u041e\u0420\u0421\u0422\u0425", "bABEKMHOPCTX"),
    ("\u0423\u0405\u0406\u0408\u0500\u051a\u051c\u04ae\u04ba\u04c0\u042c", "YSIJDQWYHIb"),
    # Greek
    ("\u03b1\u03bf\u03c1\u03bd\u03b9\u03ba\u03c5\u03c4\u03f2\u0391\u0392\u0395", "aopvikutcABE"),
    ("\u0396\u0397\u0399\u039a\u039c\u039d\u039f\u03a1\u03a4\u03a5\u03a7\u03f9", "ZHIKMNOPTYXC"),
    # Armenian, Latin extensions
    ("\u0585\u057d\u0251\u0131\u0237\u017f", "ouaijs"),
    # equals and colon look-alikes
    ("\ua78a\u1400\u2e40\u2236\ua789\u02d0\u02f8\u0589\u05c3\ufe13\u16ec", "===::::::::"),
    # dashes and minus signs a word processor or a web page puts for ``-`` (``\u2014password X``,
    # ``mysql \u2010pX``): hyphen, non-breaking hyphen, figure, en and em dash, horizontal bar,
    # hyphen bullet, minus sign, modifier letter minus, small em dash
    ("\u2010\u2011\u2012\u2013\u2014\u2015\u2043\u2212\u02d7\ufe58", "----------"),
)

_TABLE: dict[int, int | str | None] = {}
# Any character of the table: one C-speed search tells whether a text needs folding at all
# (``str.translate`` looks every character up in a dict, several times slower).
_FOLDABLE: list[re.Pattern[str]] = []
# The table without the spaces (built on first use).
_TABLE_KEEPING_SPACES: dict[int, int | str | None] = {}


def _table() -> dict[int, int | str | None]:
    """The translation table, built on first use (a few thousand NFKC look-ups)."""
    if not _TABLE:
        # Imported here: every message redaction (contracts/redact.py, the CLI's, the operator's)
        # reads text through fold, and ASCII text never needs the Unicode database.
        import unicodedata

        for first, last in _COMPAT_RANGES:
            for cp in range(first, last + 1):
                ch = chr(cp)
                norm = unicodedata.normalize("NFKC", ch)
                if unicodedata.category(ch) == "Zs":
                    _TABLE[cp] = " "
                elif len(norm) == 1 and norm != ch and " " < norm < "\x7f":
                    _TABLE[cp] = norm
        for ch in _SPACES:
            _TABLE[ord(ch)] = " "
        for ch in _FORMAT_CHARS:
            _TABLE[ord(ch)] = None
        for looks, reads in _HOMOGLYPHS:
            for ch, ascii_ in zip(looks, reads, strict=True):
                _TABLE[ord(ch)] = ascii_
    return _TABLE


def _foldable() -> re.Pattern[str]:
    if not _FOLDABLE:
        # Runs of consecutive code points, every one outside the BMP taken (a text holding
        # such a character is translated): the class compiles to one bitmap look-up per character.
        ranges: list[list[int]] = [[0x10000, 0x10FFFF]]
        for cp in sorted(c for c in _table() if c < 0x10000):
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1][1] = cp
            else:
                ranges.append([cp, cp])
        ranges.append(ranges.pop(0))
        body = "".join(f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges)
        _FOLDABLE.append(re.compile(f"[{body}]"))
    return _FOLDABLE[0]


def fold(text: str, *, keep_spaces: bool = False) -> str:
    """``text`` with its look-alikes read as ASCII (the text itself when it holds none).

    ``keep_spaces``: the Unicode spaces stay (a value holding one is one word: privacy/reading_union.py).
    """
    if text.isascii() or _foldable().search(text) is None:
        return text
    if not keep_spaces:
        return text.translate(_table())
    if not _TABLE_KEEPING_SPACES:
        _TABLE_KEEPING_SPACES.update((k, v) for k, v in _table().items() if v != " ")
    return text.translate(_TABLE_KEEPING_SPACES)
