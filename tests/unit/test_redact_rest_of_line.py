"""A message loses what goes on with a key's value past its first word (contracts/redact.py, class _Rest).

s50 RP's review of 3916502e: the message redaction masked a value up to a blank and asked
contracts/value_lines.py for the lines below only when that word ended its line, so a value that went on
kept the rest: ``token = a b`` then ``  S`` (configparser reads ``a b\\nS``), ``password = a ; c`` then a
deeper line, a YAML tag or anchor (``password: !!binary S``, ``password: &x a`` then ``  S``), a flow
collection (``password: [a, S]``), a quoted value whose continuation stands at the key's indentation
(``password: "a`` then ``S"``, PyYAML reads ``a S``; a dotenv's ``DB_PASSWORD="a`` then ``S"``) and a
Java properties value continued by a backslash (``db.password=a\\`` then ``  S``).
"""

from __future__ import annotations

import configparser

import pytest
import yaml

from stellaops_runtime.contracts.redact import redact
from tests.linear_cost import growth

_PW = "RP50restSecret"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[db]\ntoken = a b\n  {pw}\nuser = x", "[db]\ntoken = ***\nuser = x"),
        ("[db]\npassword = a ; c\n  {pw}\nuser = x", "[db]\npassword = ***\nuser = x"),
        ("password: &x a\n  {pw}\nuser: x", "password: ***\nuser: x"),
        ("password: !!binary {pw}\nuser: x", "password: ***\nuser: x"),
        ("password: [a, {pw}]\nuser: x", "password: ***\nuser: x"),
        ("password: {{a: b,\n  c: {pw}}}\nuser: x", "password: ***\nuser: x"),
        ('password: "abc\n{pw}"\nuser: x', 'password: "***"\nuser: x'),
        ('DB_PASSWORD="abc\n{pw}"\nuser=x', 'DB_PASSWORD="***"\nuser=x'),
        # (a continuation line at any indentation: Properties.load strips its leading blanks)
        ("db.password=abc\\\n{pw}\\\n  more\nuser=x", "db.password=***\nuser=x"),
    ],
)
def test_a_message_loses_what_goes_on_with_a_value(text: str, expected: str) -> None:
    text = text.format(pw=_PW)
    out = redact(text)
    assert out == expected
    assert redact(out) == out  # idempotent


def test_the_readers_take_those_lines_as_the_value() -> None:
    parser = configparser.ConfigParser()
    parser.read_string(f"[db]\ntoken = a b\n  {_PW}\n")
    assert parser["db"]["token"] == f"a b\n{_PW}"
    assert yaml.safe_load(f'password: "abc\n{_PW}"\n') == {"password": f"abc {_PW}"}
    assert yaml.safe_load(f"password: &x a\n  {_PW}\n") == {"password": f"a {_PW}"}
    assert yaml.safe_load(f"password: [a, {_PW}]\n") == {"password": ["a", _PW]}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a marker of the privacy filter is one closed word: the flags after it stay
        ("--password=[REDACTED] --host db", "--password=*** --host db"),
        ("password: [a,b] user=x", "password: *** user=x"),
        # a quote never closed keeps the lines after it; a key mid-line keeps its next deeper line
        ('password="a b\nnext\nmore', 'password="***"\nnext\nmore'),
        ("error: token = a b\n  at line 2", "error: token = *** b\n  at line 2"),
        ("token = a b\nuser = x", "token = *** b\nuser = x"),
    ],
)
def test_a_message_keeps_what_no_reader_joins_to_the_value(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_the_rest_of_a_line_costs_linearly() -> None:
    for unit in (
        'password: "a\n',
        "password: 'a\n",
        "password: [a, ",
        "token = a b\n",
        "token = a b\n  c\n",
        "password=a\\\n",
        "x token=a b ",
        "password={ ",
    ):
        assert growth(redact, unit, size=32768) < 10, unit
