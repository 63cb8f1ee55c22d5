"""A value written over several lines in a form of its own loses all of them (key_rules, value_lines).

Found trying shapes a workload could write (session 50): a TOML or Python multi-line string
(``password = \"\"\"`` then ``S`` then ``\"\"\"``: the key rules took the empty string ``""`` and kept
``S``), a configparser value opened on the line below its key (``password =`` then ``  a`` then ``  S``)
and a YAML flow sequence opened on the line below its key (``password:`` then ``  [a,`` then ``   S]``). The
message redaction (contracts/redact.py) takes the multi-line strings too.
"""

from __future__ import annotations

import configparser
import tomllib

import pytest
import yaml

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.contracts.redact import redact
from stellaops_runtime.privacy import PrivacyFilter
from tests.linear_cost import growth
from tests.privacy_events import written_buffer as _write

_PW = "P50multiSecret"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('password = """\n{pw}\n"""\nuser = "x"\n', 'password = [REDACTED]\nuser = "x"\n'),
        ("password = '''\n{pw}\n'''\nuser = 'x'\n", "password = [REDACTED]\nuser = 'x'\n"),
        ('db_password="""a\n{pw} b"""\nuser = 1\n', "db_password=[REDACTED]\nuser = 1\n"),
    ],
)
def test_a_multi_line_string_loses_its_lines(text: str, expected: str) -> None:
    text = text.format(pw=_PW)
    if "db_password" not in text:  # the reader of the file takes those lines as the password
        assert _PW in tomllib.loads(text)["password"]
    assert _write(text) == expected
    assert _PW not in redact(text)


def test_a_kubernetes_env_entrys_block_scalar_value_loses_its_lines() -> None:
    text = f"env:\n- name: DB_PASSWORD\n  value: >-\n    {_PW}\n- name: USER\n  value: bob\n"
    assert yaml.safe_load(text)["env"][0]["value"] == _PW
    assert _write(text) == "env:\n- name: DB_PASSWORD\n  value: [REDACTED]\n- name: USER\n  value: bob\n"


def test_a_configparser_value_opened_below_its_key_loses_its_lines() -> None:
    text = f"[db]\npassword =\n  abc\n  {_PW}\nuser = x\n"
    parser = configparser.ConfigParser()
    parser.read_string(text)
    assert parser["db"]["password"] == f"\nabc\n{_PW}"
    assert _write(text) == "[db]\npassword =\n  [REDACTED]\nuser = x\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"password:\n  [a,\n   {_PW}]\nuser: bob\n", "password:\n  [REDACTED]\nuser: bob\n"),
        (f"password: [a,\n   {_PW}]\nuser: bob\n", "password: [REDACTED]\nuser: bob\n"),
    ],
)
def test_a_flow_sequence_over_lines_loses_its_items(text: str, expected: str) -> None:
    assert _PW in yaml.safe_load(text)["password"]
    assert _write(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a nested map's first key below a secret's key: its deeper lines are that map's
        (
            "DB_PASSWORD:\n  valueFrom:\n    secretKeyRef:\n      name: x\n",
            "DB_PASSWORD:\n  [REDACTED]\n    secretKeyRef:\n      name: x\n",
        ),
        # JSON's strings side by side
        ('{"password":"x","user":"bob"}\n', '{"password":[REDACTED],"user":"bob"}\n'),
        # a triple quote on a line below a key's is none of its value (a class's docstring)
        (
            'class Cookie:\n    """HTTP Cookie."""\n    def f(self):\n',
            'class Cookie:\n    [REDACTED]"HTTP Cookie."""\n    def f(self):\n',
        ),
    ],
)
def test_what_no_reader_takes_for_the_value_stays(text: str, expected: str) -> None:
    # (the first and the last are over-redaction of a word as before: pins, not promises)
    assert _write(text) == expected


def test_multi_line_values_cost_linearly() -> None:
    pf = PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 20))
    for unit in ('password = """', "password = '''a\n", "password =\n  a\n", "password:\n  [a,\n"):
        assert growth(pf.filter_field, unit, size=32768) < 10, unit
    for unit in ('password = """', "password: '''\n"):
        assert growth(redact, unit, size=32768) < 10, unit
