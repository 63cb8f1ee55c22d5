"""A message loses the lines that go on with a key's value (contracts/redact.py, contracts/value_lines.py).

s49 RP's left-alone 5 and P2's 3: the message redaction took a key's value up to whitespace, so a YAML
sequence item under ``password:`` (``  - a`` then ``    S``) became ``*** a`` then ``    S``, and a value
continued on deeper lines (configparser's ``password = a`` then ``  S``, YAML's plain, quoted and block
scalars) kept those lines. Log messages go to node logs and collectors.
"""

from __future__ import annotations

import pytest

from stellaops_runtime.contracts.redact import redact
from tests.linear_cost import growth

_PW = "P50msgSecret"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("password:\n  - a\n    {pw}\nuser: x", "password:\n  ***\nuser: x"),
        ("password:\n  - {pw}\n  - {pw}\nuser: x", "password:\n  ***\nuser: x"),
        ("password:\n  - a\n    b: {pw}\nuser: x", "password:\n  ***\nuser: x"),
        ("password:\n- {pw} {pw}\nuser: x", "password:\n***\nuser: x"),
        ("[db]\npassword = a\n  {pw}\n\n  {pw}\nuser = x", "[db]\npassword = ***\nuser = x"),
        ("token: a\n    {pw}\nuser: x", "token: ***\nuser: x"),
        ("password: |\n    {pw}\nuser: x", "password: ***\nuser: x"),
        ("password: >-\r\n    {pw}\r\nuser: x", "password: ***\r\nuser: x"),
        ("password: 'a\n    {pw}'\nuser: x", "password: '***'\nuser: x"),
        ('password: "a\n    {pw}"\nuser: x', 'password: "***"\nuser: x'),
        ("password=-\n    {pw}\nuser=x", "password=***\nuser=x"),
        # a map item under a secret's key goes too in a message (masking too much errs safe)
        ("secret:\n  - name: a\n    value: {pw}\nz: 1", "secret:\n  ***\nz: 1"),
    ],
)
def test_a_message_loses_a_values_lines(text: str, expected: str) -> None:
    out = redact(text.format(pw=_PW))
    assert out == expected
    assert redact(out) == out  # idempotent


@pytest.mark.parametrize("blank", ["\x1c", "\x1f", "\xa0", "\u3000", "\x0b"])
def test_any_white_space_indents_a_messages_continuation_line(blank: str) -> None:
    assert redact(f"[db]\napi_key = abc\n{blank}{_PW}\nuser = x") == "[db]\napi_key = ***\nuser = x"


@pytest.mark.parametrize(
    "text",
    [
        "password=a\nnext line",
        "a:\n  password: x\n  user: bob",
        "run --password x\n    next-command",
        "error: password=x\n  at line 2",
    ],
)
def test_a_message_keeps_the_lines_no_reader_joins_to_the_value(text: str) -> None:
    assert redact(text).splitlines()[-1] == text.splitlines()[-1]


def test_message_value_lines_cost_linearly() -> None:
    for unit in ("password:\n  - a\n    b\n", "password = a\n  b\n", "password: - \n", "password: |\n\n"):
        assert growth(redact, unit, size=32768) < 10, unit
