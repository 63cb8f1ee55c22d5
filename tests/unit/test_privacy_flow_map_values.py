"""A secret's unquoted value inside a flow map or a bracket keeps the map's closing characters (s49 P).

The key rules' value runs to whitespace, so ``{ password : x}`` lost its ``}`` and ``{password: x, user:
y}`` its comma, after which the mapping rule took ``user: y`` as the rest of the value: text corrupted
around a secret (s48 reviewers). In a YAML flow collection a plain scalar holds none of ``,[]{}``; a value
whose line opens a ``{`` or ``[`` before its key (unclosed there) now leaves its trailing ``,``, ``}`` and
``]`` (flow_values.py). Outside one, a trailing brace is part of the value (``--password=ab}``).
"""

from __future__ import annotations

import pytest

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.privacy import PrivacyFilter
from tests.linear_cost import growth
from tests.privacy_events import written_buffer as _write

_PW = "P49flow"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{ password : {pw}}}", "{ password : [REDACTED]}"),
        ("{{password: {pw}}}", "{password: [REDACTED]}"),
        ("{{password: {pw}, user: y}}", "{password: [REDACTED], user: y}"),
        ("{{user: u, password: {pw}}}", "{user: u, password: [REDACTED]}"),
        ("a: {{password: {pw}}}\nb: 1", "a: {password: [REDACTED]}\nb: 1"),
        ("[{{password: {pw}}}]", "[{password: [REDACTED]}]"),
        ('{{"password": {pw}}}', '{"password": [REDACTED]}'),
        ("map[password:{pw}]", "map[password:[REDACTED]]"),
        ("{{pwd: {pw}}}", "{pwd: [REDACTED]}"),
        ("{{api_token: {pw}}} --v", "{api_token: [REDACTED]} --v"),
        ("{{password: a {pw}}}", "{password: [REDACTED]}"),
    ],
)
def test_a_flow_maps_closing_characters_stay_after_a_secret(text: str, expected: str) -> None:
    out = _write(text.format(pw=_PW))
    assert out == expected
    assert _PW not in out


def test_a_trailing_brace_outside_a_flow_map_is_the_values() -> None:
    for text, expected in [
        (f"--password={_PW}}}", "--password=[REDACTED]"),
        (f"password={_PW}]", "password=[REDACTED]"),
        (f"{{a}} --password {_PW}}}", "{a} --password [REDACTED]"),
        (f"x {{\n--password {_PW}}}", "x {\n--password [REDACTED]"),  # the brace opened on another line
    ]:
        assert _write(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('"password": [\n  "{pw}", {{"b": 1}}\n]\n', '"password": [REDACTED]\n'),
        ('"password": [\n  "{pw}",\n  {{"b": 1}}\n],\n"n": 1', '"password": [REDACTED],\n"n": 1'),
        ('"password": [\n  "{pw}",\n  [1, 2],\n  "c"\n]\n', '"password": [REDACTED]\n'),
        ("password: [\n  {pw}, {{b: 1}}\n]\n", "password: [REDACTED]\n"),
    ],
)
def test_an_array_of_secrets_holding_an_object_goes_whole_to_its_bracket(text: str, expected: str) -> None:
    # s48 Q1 left-alone 3: the array stopped at the object and left its ``]`` alone on a line
    assert _write(text.format(pw=_PW)) == expected


def test_flow_map_values_cost_linearly() -> None:
    pf = PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 17))
    for unit in ("{password: a}", "{{{{ password: a},", "[password=a]]] ", "{ --password a}}\n"):
        assert growth(pf.filter_field, unit, size=32768) < 10, unit
    for unit in ('"password": [\n"a", {"b": {', ', {"b": 1}, [1]\n'):
        assert growth(lambda t: pf.filter_field('"password": [\n "a"' + t), unit, size=32768) < 10, unit
