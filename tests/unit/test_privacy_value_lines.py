"""A value whose key starts its line loses the lines indented below it (contracts/value_lines.py).

s49 P2's and RP's left-alone: a key's value ran to whitespace, so what a reader of the file takes as the
same value on the next, deeper lines stayed. Python's configparser reads ``password = abc`` then ``  S``
as one value (``abc\\nS``), a sequence item's deeper lines are the item's (``password:`` then ``  - a``
then ``    b: S`` kept ``b: S``), and ``password=-`` then an indented line kept the line. A quoted item
whose first line holds ``: `` (``- "a: b`` then ``  c"``) was read as a map item and kept its rest.
"""

from __future__ import annotations

import configparser

import pytest

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.privacy import PrivacyFilter
from tests.linear_cost import growth
from tests.privacy_events import exec_arguments
from tests.privacy_events import written_buffer as _write

_PW = "P50lineSecret"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a map line inside a plain item (s49 P2's left-alone 1), nested too
        ("password:\n  - a\n    b: {pw}\nuser: bob\n", "password:\n  [REDACTED]\nuser: bob\n"),
        ("password:\n- a\n  b: {pw}\n- c\nuser: bob\n", "password:\n[REDACTED]\nuser: bob\n"),
        (
            "x:\n  password:\n    - a\n      b: {pw}\n  user: bob\n",
            "x:\n  password:\n    [REDACTED]\n  user: bob\n",
        ),
        # ... and the sibling scalar items after it; a sibling map item stays a map's
        (
            "password:\n  - a\n    b: {pw}\n  - {pw}\n  - n: v\nuser: bob\n",
            "password:\n  [REDACTED]\n  - n: v\nuser: bob\n",
        ),
        # a quoted item whose first line holds ``: ``
        ('password:\n  - "a: b\n    c {pw}"\nuser: bob\n', "password:\n  [REDACTED]\nuser: bob\n"),
        ("password:\n  - 'a: b\n    c {pw}'\nuser: bob\n", "password:\n  [REDACTED]\nuser: bob\n"),
        ('password:\n- "a: b\n  c {pw}"\nuser: bob\n', "password:\n[REDACTED]\nuser: bob\n"),
        # ``password=-`` then an indented line (s49 P2's left-alone 2)
        ("password=-\n    {pw}\n", "password=[REDACTED]\n"),
        # configparser's continuation lines, a blank line between them too, CRLF
        (
            "[db]\npassword = abc\n  {pw}\n\n  {pw}\nuser = x\n",
            "[db]\npassword = [REDACTED]\nuser = x\n",
        ),
        ("[db]\npassword=abc\n\t{pw}\nuser=x\n", "[db]\npassword=[REDACTED]\nuser=x\n"),
        ("password = abc\r\n    {pw}\r\nuser = x\r\n", "password = [REDACTED]\r\nuser = x\r\n"),
        # an environment name's INI line (mapping_env's ``NAME = value``)
        ("DBPASS = abc\n    {pw}\nuser = x\n", "DBPASS = [REDACTED]\nuser = x\n"),
        ("DBPASS=abc\n    {pw}\nuser=x\n", "DBPASS=[REDACTED]\nuser=x\n"),
        # a YAML map item's key: lines deeper than the key
        ("- password: abc\n   {pw}\n  user: bob\n", "- password: [REDACTED]\n  user: bob\n"),
    ],
)
def test_a_values_deeper_lines_go_with_it(text: str, expected: str) -> None:
    assert _write(text.format(pw=_PW)) == expected


@pytest.mark.parametrize("blank", ["\x1c", "\x1f", "\xa0", "\u3000", "\x0b", "\x0c"])
def test_any_white_space_indents_a_continuation_line(blank: str) -> None:
    # configparser takes any white space but a line break for indentation (an information separator, a
    # no-break space, a vertical tab): the line is the value's there
    text = f"[db]\napi_key = abc\n{blank}{_PW}\nuser = x\n"
    parser = configparser.ConfigParser()
    parser.read_string(text)
    assert parser["db"]["api_key"] == f"abc\n{_PW}"
    assert _PW not in _write(text)
    assert _write(text).endswith("\nuser = x\n")


def test_configparser_reads_the_lines_taken_as_the_value() -> None:
    # why the lines below go: the reader of the file takes them as the password
    parser = configparser.ConfigParser()
    parser.read_string(f"[db]\npassword = abc\n  {_PW}\nuser = x\n")
    assert parser["db"]["password"] == f"abc\n{_PW}"


@pytest.mark.parametrize(
    "text",
    [
        # a sibling key at the key's indentation, and a shallower one
        "[db]\npassword = abc\nuser = x\n",
        "a:\n  password: abc\n  user: bob\nc: d\n",
        "- password: abc\n  user: bob\n",
        # a flag's value: an indented next line is a shell's next command
        "run --password abc\n    next-command\n",
        # a key not at its line's start (``export``, a call's argument)
        "export PASSWORD=abc\n    next\n",
        "def f(password=abc):\n    return 1\n",
        # a value then a comment: the plain scalar ended there
        "password: abc # c\n    next\n",
        # a map item under a secret's key reads as before (its keys by their own names)
        "secret:\n  - name: x\n    value: y\n",
    ],
)
def test_lines_no_reader_joins_to_the_value_stay(text: str) -> None:
    out = _write(text)
    assert "[REDACTED]" in out
    kept = text.splitlines()[-1]
    assert out.splitlines()[-1] == kept, out


def test_an_execs_arguments_keep_their_next_lines_unless_a_key_starts_the_line() -> None:
    # a script's line after a flag stays; a key's continuation inside an argument goes
    script = "-c 'app --password x\n  next'"
    assert exec_arguments("/bin/sh", script) == "-c 'app --password [REDACTED]\n  next'"
    ini = "-c 'cat > a.ini <<E\npassword = a\n  S3cretLine\nE'"
    assert "S3cretLine" not in exec_arguments("/bin/sh", ini)


def test_value_lines_cost_linearly() -> None:
    pf = PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 20))
    for unit in (
        "password = a\n  b\n",
        "password = a\n\n",
        "password:\n  - a\n    b: c\n",
        "password:\n  - a\n  - b\n",
        "password: - \n",
        "- password: a\n - b\n",
        "password:\n  - 'a: b\n",
        "password=-\n \n",
    ):
        assert growth(pf.filter_field, unit, size=32768) < 10, unit
