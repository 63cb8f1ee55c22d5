"""A value's deeper lines go whatever its key is made of, past comment lines, and a triple quote after blanks.

s50 RP's review of contracts/value_lines.py: configparser reads an option's continuation lines whatever
the option's name (any text up to the first ``=`` or ``:``: ``db password =``, ``db/password``,
``$password``), over comment lines between them (``password = a`` then ``# c`` then ``  S`` is ``a\\nS``;
``password =`` then ``# c`` then ``  S`` is ``\\nS``), and however far the key stands from the value (600
blanks of indentation, a 600-character key). TOML reads ``password   =   \"\"\"`` (blanks after ``=``)
as a multi-line string to its closing quote. Each of these kept the lines the reader takes as the
password, in the privacy filter and in messages (contracts/redact.py) alike.
"""

from __future__ import annotations

import ast
import configparser
import tomllib

import pytest

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.contracts.redact import redact
from stellaops_runtime.privacy import PrivacyFilter
from tests.linear_cost import growth
from tests.privacy_events import written_buffer

_PW = "RP50keySecret"

_INI = [
    # a key holding a blank, a slash, a dollar sign
    ("[db]\nmy password = abc\n  {pw}\nuser = x\n", "my password"),
    ("[db]\ndb/password = abc\n  {pw}\nuser = x\n", "db/password"),
    ("[db]\n$password = abc\n  {pw}\nuser = x\n", "$password"),
    # a key holding a blank before ``:`` with its value on its line (s51 RP; YAML reads it so too)
    ("[db]\ndb password: abc\n  {pw}\nuser = x\n", "db password"),
    ("[db]\nthe root password : abc\n\tdef {pw}\nuser = x\n", "the root password"),
    # a comment line (either prefix) between the value and its deeper line
    ("[db]\npassword = abc\n# note\n  {pw}\nuser = x\n", "password"),
    ("[db]\npassword = abc\n; note\n\n  {pw}\nuser = x\n", "password"),
    # ... between a key ending its line and its value below (the comment was taken for the value)
    ("[db]\npassword =\n# note\n  abc\n  {pw}\nuser = x\n", "password"),
    ("[db]\npassword =\n;\n  {pw}\nuser = x\n", "password"),
    # a key far from its value: a long indentation, a long key
    ("[db]\n" + " " * 600 + "password = abc\n" + " " * 601 + "{pw}\nuser = x\n", "password"),
    ("[db]\n" + "a" * 600 + "password = abc\n  {pw}\nuser = x\n", "a" * 600 + "password"),
]


@pytest.mark.parametrize(("text", "option"), _INI)
def test_configparsers_continuation_lines_go_whatever_the_key(text: str, option: str) -> None:
    text = text.format(pw=_PW)
    parser = configparser.ConfigParser()
    parser.read_string(text)
    assert _PW in parser["db"][option]  # the reader takes the line as the password's
    out = written_buffer(text)
    assert _PW not in out, out
    assert out.endswith("\nuser = x\n"), out
    assert _PW not in redact(text)
    assert redact(text).endswith("\nuser = x\n")


@pytest.mark.parametrize(
    "text",
    [
        'password   =   """abc\n{pw}"""\nuser = "x"\n',
        "password = \t'''abc\n{pw}\n'''\nuser = 'x'\n",
        'password =  """\n{pw}',  # cut before its closing quote
    ],
)
def test_a_triple_quoted_string_after_blanks_goes_to_its_close(text: str) -> None:
    text = text.format(pw=_PW)
    if text.rstrip().endswith(("'''", '"""')) or "user" in text:
        assert _PW in tomllib.loads(text)["password"]
    out = written_buffer(text)
    assert _PW not in out, out
    if "user" in text:
        assert out.splitlines()[-1].startswith("user = "), out
    assert _PW not in redact(text)


@pytest.mark.parametrize("prefix", ["r", "Rb", "f", "u"])
def test_a_prefixed_python_triple_quoted_string_goes_to_its_close(prefix: str) -> None:
    # ``password = r"""`` then its lines: the rules took ``r"""`` and kept the lines
    text = f'password = {prefix}"""\n{_PW}\n"""\nx = 1\n'
    tree = ast.parse(text)
    assert _PW in ast.unparse(tree.body[0])  # the string holds the line
    out = written_buffer(text)
    assert out == "password = [REDACTED]\nx = 1\n", out
    assert _PW not in redact(text)


@pytest.mark.parametrize(
    "text",
    [
        # a shell's assignment: its next indented line is the script's next command
        "export PASSWORD=abc\n    next\n",
        # code and prose: a tuple assigned, a key holding a blank before ``:`` or ``:=`` (LK's corpus)
        "    results, next_token = self.backend.list_machines(\n        max_results=n, next_token=t\n    )\n",
        "    if token := self._token_for(\n        model.signing_name\n    ):\n",
        "if auth:\n    # put it back\n    netloc = x\n",
        # a key holding a blank before ``:`` that names no secret (a doctest's line: LK's corpus, s51 RP)
        "        ... From: Me@my.org\n            ... Subject: testing\n        >>> s.quit()\n",
        # a nested map's first key after a comment line under a secret's key
        "auth:\n  # OIDC\n  type: oidc\n",
        # a comment line then a line as shallow as the key: the value ended
        "[db]\npassword = abc\n# note\nuser = x\n",
        # a line of prose holding ``=`` then a deeper line
        "a = b password = abc\n    next\n",
        # a docstring below a class's line stays (the triple quote opens no value there)
        'class Token:\n    """Doc."""\n    x = 1\n',
    ],
)
def test_lines_no_reader_joins_to_the_value_stay(text: str) -> None:
    out = written_buffer(text)
    assert len(out.splitlines()) == len(text.splitlines()), out  # no line taken with a value
    assert out.splitlines()[-1] == text.splitlines()[-1], out


def test_the_wider_keys_cost_linearly() -> None:
    pf = PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 20))
    for unit in (
        "password = a\n# c\n",
        "password =\n#\n  ",
        "password=#a ",
        'password =  """',
        "my password = a\n ",
        "a b password = a\n",
        "a b password: a\n ",
        "a b password: a\n" + " " * 700,
        "password = a\n" + " " * 700,
    ):
        assert growth(pf.filter_field, unit, size=32768) < 10, unit
        assert growth(redact, unit, size=32768) < 10, unit


@pytest.mark.parametrize("text", ['password = """a\\', 'x: 1\npassword   =   r"""a\nb\\', 'token: """\\'])
def test_a_triple_quote_cut_after_a_backslash_is_read_not_raised(text: str) -> None:
    # a cut text ending in a backslash inside the string: the closing-quote pattern matched nothing there
    # and value_end raised (AttributeError), in messages and in the filter alike
    out = redact(text)
    assert "a" not in out.rsplit("=", 1)[-1] and "\\" not in out, out
    filtered = written_buffer(text)
    assert filtered.endswith("[REDACTED]"), filtered
