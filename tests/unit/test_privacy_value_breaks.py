"""A secret's value read whole across a vertical tab, a form feed, or after a spaced colon (s48 Q1).

The value rules ended a value at any ASCII white space, so a vertical tab or a form feed inside one
(``DBPASS: a\\vb``, ``--password a\\fb``; one shell word, one argument) kept what followed it. A JSON
array of secrets opened at its line's end (``"password": [`` then its items) kept its items, and a
flow map's spaced colon (``{ DBPASS : x}``, valid YAML) kept its value. A C ternary's ``? NAME : b``
stays. Each runs through the filter the agent uses (a traced write's buffer, a field).
"""

from __future__ import annotations

import pytest

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.privacy import PrivacyFilter
from tests.linear_cost import growth
from tests.privacy_events import written_buffer as _write

_PW = "Q1-kept"


@pytest.mark.parametrize("brk", ["\x0b", "\x0c"])
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("DBPASS: a{b}{pw} b", "DBPASS: [REDACTED]"),
        ("password: a{b}{pw}", "password: [REDACTED]"),
        ("x password: a{b}{pw} -v", "x password: [REDACTED] -v"),
        ("x DBPASS: a{b}{pw} -v", "x DBPASS: [REDACTED] -v"),
        ("DBPASS=a{b}{pw} app", "DBPASS=[REDACTED] app"),
        ("export GITHUB_PAT=a{b}{pw}", "export GITHUB_PAT=[REDACTED]"),
        ("app --password a{b}{pw} -v", "app --password [REDACTED] -v"),
        ("app --db-password=a{b}{pw}", "app --db-password=[REDACTED]"),
    ],
)
def test_a_vertical_tab_or_form_feed_inside_a_value_ends_nothing(brk: str, text: str, expected: str) -> None:
    assert _write(text.format(b=brk, pw=_PW)) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{{"password": [\n  "{pw}",\n  "b"\n], "user": "u"}}', '{{"password": [REDACTED], "user": "u"}}'),
        ('"api_token": [\n"{pw}", "b",\n\n  3\n]\n', '"api_token": [REDACTED]\n'),
        ('{{\n  "DBPASS": [\r\n    "{pw}"\r\n  ]\n}}', '{{\n  "DBPASS": [REDACTED]\n}}'),
        ('"GITHUB_PAT": [\n  "{pw}",', '"GITHUB_PAT": [REDACTED],'),  # cut by the limit
        ("password: [\n  {pw},\n  b\n]\n", "password: [REDACTED]\n"),
        ('"password": [\n  // old\n  "{pw}"\n]', '"password": [REDACTED]'),  # JSONC
        ("password: [\n  # old\n  {pw}, # new\n  b\n]\n", "password: [REDACTED]\n"),
    ],
)
def test_a_json_array_of_secrets_opened_at_its_lines_end_loses_its_items(text: str, expected: str) -> None:
    assert _write(text.format(pw=_PW)) == expected.format()


def test_an_array_of_objects_or_of_a_setting_name_stays() -> None:
    # its members are read by their own names (docs/privacy.md, Known limits)
    text = '"passwords": [\n  {\n    "name": "a",\n    "password": "x"\n  }\n]\n'
    assert _write(text) == '"passwords": [\n  {\n    "name": "a",\n    "password": [REDACTED]\n  }\n]\n'
    assert _write('"hosts": [\n  "a",\n  "b"\n]\n') == '"hosts": [\n  "a",\n  "b"\n]\n'
    assert _write('"tokens": [\n  [\n    "a"\n  ]\n]\n') == '"tokens": [\n  [\n    "a"\n  ]\n]\n'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("DBPASS : {pw} b\nUSER : bob\n", "DBPASS : [REDACTED]\nUSER : bob\n"),
        ("env:\n  - GITHUB_PAT : {pw}\n", "env:\n  - GITHUB_PAT : [REDACTED]\n"),
        ("{{ DBPASS : {pw}}}", "{{ DBPASS : [REDACTED]}}"),
        ("{{a: 1, DB_CREDS : {pw} b, c: 2}}", "{{a: 1, DB_CREDS : [REDACTED], c: 2}}"),
        ("DBPASS :\n  {pw}\n", "DBPASS :\n  [REDACTED]\n"),
    ],
)
def test_a_spaced_colon_at_a_lines_start_or_in_a_flow_map_loses_its_value(text: str, expected: str) -> None:
    assert _write(text.format(pw=_PW)) == expected.format()


def test_a_c_ternarys_spaced_colon_stays() -> None:
    # docs/privacy.md: ``? NAME : b`` is C's, not a mapping's
    for text in ("x = a ? DBPASS : b;", "return ok ? GITHUB_PAT : none;", "  : DBPASS : b", "a ?DBPASS : b"):
        assert _write(text) == text


def test_value_breaks_cost_linearly() -> None:
    pf = PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 17))
    for unit in (
        "DBPASS: a\x0b",
        "x password: a\x0cb ",
        "--password a\x0b\x0c",
        "DBPASS=\x0b",
        '"password": [\n "a",\n',
        '"DBPASS": [\n',
        "password: [\n a, [\n",
        "password: [\n # a\n",
        '"password": [\n "a", // ,\n',
        "DBPASS : a\n",
        "{ DBPASS : a ",
        "x ? DBPASS : ",
    ):
        assert growth(pf.filter_field, unit, size=32768) < 10, unit
