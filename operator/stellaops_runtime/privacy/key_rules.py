"""The key rules' parts: a credential word's heads and the one value they share.

The ``password``, ``secret_token`` and ``aws_secret_access_key`` rules (patterns.py) redact the
value of a key or flag whose name ends in a credential word (key_words.py). Each is built here as
heads (the flag form, the key words with their separator, the key words after ``/`` with ``=``)
joined before one wide value, ``(?:heads)GUARD(?P<s>VALUE)``, and alternatives with values of
their own (an XML element, a URL query, an ODBC string). The value was once repeated after every
key word's alternative, 90 copies and half the default rules' whole set, whose compile peaked at
~8.8 MB in the idle agent's start-up (docs/benchmarks.md, nineteenth pass); kept apart from
patterns.py, which lists the rules, so that the building can be read on its own.
"""

from __future__ import annotations

from stellaops_runtime.privacy.base import (
    BLOCK_SCALAR,
    CONTINUED,
    DOUBLE_QUOTED,
    ESCAPED_DQ,
    ESCAPED_SQ,
    NOT_A_MARKER,
    NOT_A_PEM_START,
    SQ_PIECES,
    first_char_alternatives,
)

__all__ = [
    "KEY_PREFIX",
    "LINES_ARRAY",
    "QUOTED",
    "SEP",
    "SEP_EQ",
    "WIDE_VALUE",
    "in_query_or_odbc",
    "keyed",
    "valued",
]


# A value quoted with escaped quotes, inside a double-quoted shell or JSON string
# (``sh -c "app --password=\\"a b\\""``, a level deeper ``\\\\\\"a b\\\\\\"``): base.ESCAPED_DQ.
# bash's ANSI-C quoting (``$'pa\\'ss word'``): to the closing quote that is not escaped.
_ANSI_C_QUOTED = r"\$'(?:[^'\\]|\\[\s\S])*+'?"
# A quoted value: double quotes (``\"`` inside does not end it), single quotes (opened by an escaped one
# too, base.ESCAPED_SQ), an SQL
# ``N'...'``/``E'...'`` literal, escaped quotes; the closing quote is optional (the text may
# have been truncated).
QUOTED = rf"""{DOUBLE_QUOTED}|{ESCAPED_SQ}|[NnEe]?'[^']*'?|{ESCAPED_DQ}|{_ANSI_C_QUOTED}"""
# A key's or flag's value: quoted, or a run up to whitespace (base.WORD_VALUE: a password may
# hold ``&``, ``;`` or a quote); a marker the text already holds is none (base.NOT_A_MARKER).
# The run keeps a quote inside it (``it's``) but not one that ends it before whitespace or
# the end: Tetragon quotes an argument holding a space (``-H "X-Api-Key: x"``).
# A redirection is no value either: ``psql --password <<EOF`` and ``mysql --password < <(echo X)``
# prompt for the password, which the here-document or the substitution gives (here_docs.py).
# A call or a tuple of arguments, one quoted among its first, is one value (Python's
# ``auth=('user', 'password')``, ``auth = HTTPBasicAuth(user, 'password')``): to its ``)`` (or a cut
# text's end), its arguments on one line or several, bounded, possessive.
_CALL_VALUE = r"""[\w.]{0,65}+\([^()'"]{0,64}+['"][^()]{0,512}+(?:\)|\Z)"""
# The unquoted run (base.WORD_VALUE) goes on over a blank escaped with a backslash (one shell word:
# ``--password=ab\ cd``; ``ab\\ cd`` in a shell string inside another); a backslash at a line's end
# (a continued command line) is no such blank; the value may start with one (``-H X-Api-Key:\ a\ b``).
# One backslash per step: a run of them is read once. Only a blank or a line end ends it: a vertical tab
# or a form feed is inside one shell word (``--password a\vb`` kept ``b``, s48 Q1).
# A backslash glued to its end then a line break continue it on the next line (base.CONTINUED).
_WORD_VALUE = rf"""(?:\\[ \t]|[^ \t\r\n"'])(?:\\[ \t]|{CONTINUED}|[^ \t\r\n"']|["'](?=[^ \t\r\n]))*"""
# A JSON (or YAML flow) array of scalars opened at its line's end, its items on the lines below
# (``"password": [`` then ``"a",`` ``"b"`` then ``]``): the whole array, to its ``]`` (or a cut text's
# end), comment lines between its items too (JSONC's ``//``, YAML's ``#``). An array of objects or arrays
# is none (SEP refuses its opening: its members go by their names).
_ARRAY_ITEM = r"""(?:"(?:[^"\\\r\n]|\\.)*+"|[^ \t\r\n"'{}\[\],#]++)"""
_ARRAY_GAP = r"(?:[ \t\r\n]++|(?:#|//)[^\r\n]*+)*+"
# After a scalar, an item may be an object or an array on one line, unnested (``"a", {"b": 1}``): the
# array stopped there and left its ``]`` alone (s48 Q1's third left-alone); it now goes whole.
_LATER_ITEM = rf"""(?:{_ARRAY_ITEM}|\{{[^{{}}\r\n]*+\}}|\[[^\[\]\r\n]*+\])"""
LINES_ARRAY = (
    rf"""\[[ \t]*+\r?\n{_ARRAY_GAP}{_ARRAY_ITEM}(?:{_ARRAY_GAP},?+{_ARRAY_GAP}{_LATER_ITEM})*+"""
    rf"""(?:{_ARRAY_GAP},?+{_ARRAY_GAP}\])?+"""
)
# A YAML block scalar given as a sequence's item (``password:`` then ``  - |`` then ``    x``): the item's
# dash was taken for the value and the block's lines kept (s49 P). Taken as base.BLOCK_SCALAR takes
# ``password: |``: its indicator line and every following line that starts with a blank (a sibling key
# indented like the secret's goes too), ``\r\n`` line ends too. Possessive: linear.
# A tag or an anchor may stand before the indicator (``- !!binary |``, ``- &pw |``: s49 RP).
_ITEM_BLOCK_SCALAR = (
    r"-[ \t]++(?:[!&][^ \t\r\n]*+[ \t]++){0,2}+[|>][+-]?+[0-9]?+[+-]?+[ \t]*+(?:#[^\r\n]*+)?+"
    r"(?:\r?+\n(?:[ \t\r]*+\n)*+[ \t]++[^\r\n]*+)++"
)
# A plain or quoted scalar given as a sequence's item (``password:`` then ``  - a`` then ``    x``; ``  -``
# then ``    x``; ``  - "a`` then ``    x"``; ``  - - |``): the dash was taken for the value and the
# item kept, with its deeper lines (mapping_env read that marker as a nested map's first key, s49 RP).
# The item whole: its line, then each line below it (blank lines between too) that starts with a blank
# or is another item (the key's own indentation), up to a line that is a key (``user: bob``: a plain
# scalar holds no ``: ``) or a comment; a quoted item's later lines so too (an unclosed quote takes no
# more). A map item (``- name: x``) is none. Possessive, each line's key test bounded by that line: linear.
_KEY_LINE = r"[^\r\n:]*+(?::(?![ \t\r\n])[^\r\n:]*+)*+:(?:[ \t]|\r?\n|\Z)"
_QUOTED_ON_LINE = r"""(?:"(?:[^"\\\r\n]|\\.)*+"|'(?:[^'\r\n]|'')*+'|(?!["']))"""
_ITEM_LINES = (
    rf"(?<=\s)-(?=[ \t\r\n]|\Z)(?![ \t]++{_QUOTED_ON_LINE}{_KEY_LINE})[^\r\n]*+"
    rf"(?:\r?+\n(?:[ \t\r]*+\n)*+(?:[ \t]++|(?=-[ \t\r\n]))(?![ \t]*+(?:[#\r\n]|{_KEY_LINE}))[^\r\n]*+)*+"
)
# A multi-line string of TOML or Python (``password = """`` then ``S`` then ``"""``, ``'''``): to its closing
# triple quote, over its lines (the empty string ``""`` was taken and ``S`` kept), or to a cut text's end.
_TRIPLE_QUOTED = (
    r"(?:(?<=[=:])|(?<=[=:][ \t]))"  # on the key's line (``Cookie:`` then a docstring's line is no value)
    r'"""(?:[^"\\]|\\[\s\S]|"(?!""))*+(?:"""|\Z)'
    r"|(?:(?<=[=:])|(?<=[=:][ \t]))'''(?:[^']|'(?!''))*+(?:'''|\Z)"
)
# A quoted value holding no blank and the pieces a shell glues to it, one word with it
# (``--password="a"bS``, ``'a'"b"S``: bash reads ``abS``): a run from a word character to a blank or a
# shell or code separator, or a quoted piece holding no blank and no quote (not empty: ``'{x}'""\"`` in
# code; a quote inside is the shell's escaped quote, ``'"'"'``, which QUOTED and SQ_PIECES read). A
# script's closing quote after the value is followed by a blank (``sh -c 'x --password="a"' && sh -c
# 'y'`` keeps ``&& sh -c``); code's ``"a".encode()`` or ``"a","b"`` starts with no word character; a code
# string's quotes read as a value hold blanks (``"token=" + x``). Possessive, each piece read once.
_BLANKLESS_QUOTED = r"""(?:"[^"'\s\\]*+"|'[^'"\s\\]*+')"""
_GLUED_QUOTED = rf"""{_BLANKLESS_QUOTED}(?:\w[^\s"'`;&|<>(){{}}\[\],\\]*+|"[^"'\s\\]++"|'[^'"\s\\]++')++"""
WIDE_VALUE = (
    rf"""{NOT_A_PEM_START}(?!<[<(\s])"""
    rf"""(?:{LINES_ARRAY}|{BLOCK_SCALAR}|{_ITEM_BLOCK_SCALAR}|{_ITEM_LINES}|{_TRIPLE_QUOTED}"""
    rf"""|{_GLUED_QUOTED}|(?:{QUOTED}){SQ_PIECES}|{_CALL_VALUE}"""
    rf"""|{NOT_A_MARKER}{_WORD_VALUE})"""
)
# The value of a key right after ``?``, ``&`` or ``#`` (a URL query or fragment, a form
# body: ``?access_token=x&limit=10``): a query's value ends at ``&`` or ``#`` (a ``&`` in
# it is written ``%26``).
_QUERY_VALUE = rf"""(?:{QUOTED}|[^\s"'&#]+)"""
# The value of a key right after ``;`` (an ODBC or ADO.NET connection string:
# ``Server=db;Pwd=x;Database=y``): braced (``{a;b}``, ``}}`` is a ``}`` inside) or quoted,
# else a run up to the next ``;`` or double quote. ODBC keeps ``&`` and spaces in a value,
# so a space ends it only before ``;``, a quote, the next flag (`` -Q``) or the end of the
# text. The whitespace is taken possessively: a field of spaces costs one scan, not one per space.
_ODBC_VALUE = (
    rf"""(?:\{{(?:[^}}]|\}}\}})*\}}?|{QUOTED}"""
    r"""|[^\s;"'](?:[^\s;"]|\s++(?=[^\s;"-]))*)"""
)
# Between a key and its value: ``=``, ``:``, ``:=`` (make, Go; make's ``::=``, ``?=``, ``+=`` too),
# Perl's and Ruby's `` => ``
# (``password=>x`` keeps ``>x``; the ``=`` of ``=> `` alone is none), escaped (``PASSWORD\\=x``),
# after the key's closing quote, escaped too; the ``:`` of ``:=`` or ``::=`` is no separator of
# its own (read again, ``:= [REDACTED]`` would lose its ``=``). The key's closing quote may be a
# single-quoted script's escaped one (``{'\''password'\'': …}``, shlex.join's ``'"'"'``, RP7).
# A JSON object's or array's opening that ends its line is no value (``"ClientToken": {`` in a pretty-printed
# schema: its members are read by their own names; the brace was lost, 722 times in 3,000 files), unless
# an array of scalars, LINES_ARRAY, follows (``"password": [`` then ``"x"`` kept its items, s48 Q1).
SEP = (
    r"(?:'(?:\\'|\\?\"'\\?\")'|\\*[\"'])?(?:\s+=>|=>(?=\s)|\s*[:?+]:{0,2}=|\s*\\*(?:=|:(?!:*=))(?!>\s))\s*"
    rf"(?!\{{[ \t]*+(?:\r?\n|\Z)|\[[ \t]*+(?:\Z|\r?\n(?!{_ARRAY_GAP}(?:\"|[^ \t\r\n\"'{{}}\[\],#]))))"
)
# The same with ``=`` only: a key right after ``/`` (``/run/password=x``, ``https://h/v1/token=x``)
# is a key when ``=`` follows it; ``:`` after it is a path (``-v /etc/passwd:/etc/passwd:ro``).
SEP_EQ = r"(?:\\*[\"'])?\s*\\*=(?!>\s)\s*"
# An XML element's text: a CDATA section whole (``<password><![CDATA[x]]></password>``, a value holding
# ``<`` or ``&`` written so; to its ``]]>`` or a cut text's end: s50 RP), or characters up to the next tag.
# Possessive; a match ends where the section does, so each section is read once: linear.
# A comment inside the text splits it, and a reader joins the pieces (ElementTree reads ``<password>a<!-- c
# -->b</password>`` as ``ab``): the text goes on past one (s51), and past a CDATA section or a processing
# instruction beside plain text (``a<![CDATA[b]]>S``, ``a<?pi x?>S`` read ``abS``, ``aS``: s51 RP).
# A comment or an instruction holds no ``<`` here: one never closed is read only to the next tag, not to
# the field's end from every key before it (``<password>a<!-- `` repeated cost 2 s for 64 KiB: s51 RP).
_XML_COMMENT = r"<!--(?:[^<-]|-(?!->))*+-->"
_XML_PI = r"<\?(?:[^<?]|\?(?!>))*+\?>"
_CDATA = r"<!\[CDATA\[(?:[^\]]|\](?!\]>))*+(?:\]\]>|\Z)"
XML_TEXT = rf"(?:{_CDATA}|[^<\s])(?:[^<]++|{_CDATA}|{_XML_COMMENT}|{_XML_PI})*+"
# Before it, on the element's line: blanks then text that a closing tag ends (``<password> a b</password>``:
# s50 RP; prose's ``the <auth> element`` stays), or a line break (a pretty-printed file: ``<password>``
# then ``  x``).
# Comments and instructions before the text are no part of it (``<password><!-- c -->x``, s51).
XML_OPENING = (
    r"(?:[ \t]*+\r?\n\s*+|[ \t]++(?=[^<]*+</))?"
    rf"(?:[ \t\r\n]*+(?:{_XML_COMMENT}|{_XML_PI})[ \t\r\n]*+)*+"
)
# An array's index after the key, then ``=`` (bash's ``PASSWORD[0]=x``, PHP ini's ``password[] = x``,
# ``password[db] = x``): unquoted (``token["name"] = …`` is code's), and only before ``=`` (``if token[i]:``,
# ``token[-1] == x`` are code's); bounded, possessive.
# bash's ``+=`` glued to the element and its value too (``DB_PASSWORD[0]+=x``, s51 RP; code's
# ``token[i] += 1`` and ``token[0]+= c`` keep theirs)
_INDEXED = r"""\[[\w$.-]{0,64}+\](?:\+=(?![\s=~>])|[ \t]*+\\*=(?![=~>])[ \t]*+)"""
# What a key may carry before its credential word (``PG`` in ``PGPASSWORD``, ``db_``,
# ``spring.datasource.``).
KEY_PREFIX = r"[\w.-]*?"


def in_query_or_odbc(keyword: str, sep: str) -> list[str]:
    """A key ending in ``keyword`` right after ``?``/``&``/``#`` or ``;``, with the value of that context.

    These alternatives start at the ``?``, ``&``, ``#`` or ``;`` before the key, so in the
    one combined regex they match before the key's own alternative (which starts at the
    credential word, further right) and the query's or ODBC string's value rule wins.
    """
    return [
        rf"[?&#]{KEY_PREFIX}(?:{keyword}){sep}(?P<s>{_QUERY_VALUE})",
        rf";[ \t]*{KEY_PREFIX}(?:{keyword}){sep}(?P<s>{_ODBC_VALUE})",
    ]


def keyed(keywords: list[str], *, bare_space: bool = False) -> tuple[list[str], list[str]]:
    """A key ending in one of ``keywords``, as (heads, alternatives with their own values).

    ``[prefix]KEYWORD=value``, ``KEYWORD: value``, ``"KEYWORD": value`` or ``--[prefix]KEYWORD
    value``: ``keywords`` (regex fragments) match case-insensitively and must end the key, which
    may have any prefix (``db_password``, ``PGPASSWORD``). A keyword right after ``/`` is a key
    only before ``=`` (``/run/password=x``); before ``:`` it is a path (``/etc/passwd:``). A value
    runs to whitespace, unless the key follows ``?``, ``&`` or ``#`` (a URL query: it ends at
    ``&``) or ``;`` (an ODBC string: it ends at ``;``): those alternatives, and an XML element's,
    carry their own values. ``bare_space`` also accepts ``KEYWORD value`` without a dash, for keys
    specific enough (``aws configure set aws_secret_access_key VALUE``).

    The heads end where the wide value starts, and ``valued`` gives them one: ``(?:A|B)V`` finds
    what ``AV|BV`` did, in the same order (once 90 copies of ``WIDE_VALUE``, half the whole set's
    characters: tests/unit/test_privacy_shared_value.py). The other alternatives now come after the
    heads, which changes no match: only an alternative whose first character is at a position can
    match there, and theirs (``<``, ``?&#``, ``;``) are never a key's (a letter) or a flag's (``-``).
    """
    if not all(k[:1].isalpha() for k in keywords):  # the reordering above needs it
        raise ValueError(f"a key word must start with a letter: {keywords}")
    kw = "|".join(keywords)
    flag = rf"-(?<![\w./-]-)-?(?!-|(?i:no)-)[\w.-]*?(?i:{kw})\s+(?=[^\s-])"
    sep = rf"(?:{SEP}|\s+(?=[^\s-]))" if bare_space else SEP
    # In the keywords' order; which one of ``k``'s may start at a position depends only on the
    # character there and the one before it (``/`` or not).
    keys = "|".join(alt for k in keywords for alt in first_char_alternatives(k, tail=r"(?<!/@)"))
    path_keys = "|".join(alt for k in keywords for alt in first_char_alternatives(k, tail=r"(?<=/@)"))
    # An XML element named for the secret: ``<password>x</password>``, ``<db:password>``.
    # Its text may open on the next line (a pretty-printed file: ``<password>`` then ``  x``; prose's
    # ``the <auth> element`` stays).
    xml = rf"<(?:[\w.-]++:)?{KEY_PREFIX}(?i:{kw})(?:\s[^<>]*)?>{XML_OPENING}(?P<s>{XML_TEXT})"
    heads = [flag, rf"(?:{keys})(?:{sep}|{_INDEXED})", rf"(?:{path_keys}){SEP_EQ}"]
    return heads, [xml, *in_query_or_odbc(f"(?i:{kw})", r"[\"']?\s*=\s*")]


def valued(heads: list[str], guard: str = "") -> str:
    """The heads, then ``guard`` (a lookahead refusing a value) and the wide value, once (group ``s``)."""
    return rf"(?:{'|'.join(heads)}){guard}(?P<s>{WIDE_VALUE})"
