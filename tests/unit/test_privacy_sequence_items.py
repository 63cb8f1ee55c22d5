"""A plain or quoted YAML sequence item under a secret's key loses its deeper lines (s49 P2, key_rules.py).

``password:`` then ``  - a`` then ``    SECRET`` kept both ``a`` and SECRET: the key rules took the item's
dash for the value (a value runs to whitespace), and mapping_env read the marker with deeper lines below
it as a nested map's first key the key rules took (``accessKey:`` then ``  description: |``), so it took
nothing more. The key rules' value now takes such an item whole: its line, then the lines below it that
start with a blank or are more items, up to a key's line (``user: bob``), a comment or a blank line.
"""

from __future__ import annotations

import pytest

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.privacy import PrivacyFilter
from tests.linear_cost import growth
from tests.privacy_events import written_buffer as _write

_PW = "P2seqItem"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("password:\n  - a\n    {pw}\nuser: bob\n", "password:\n  [REDACTED]\nuser: bob\n"),
        ("password:\n  -\n    {pw}\nuser: bob\n", "password:\n  [REDACTED]\nuser: bob\n"),
        ('password:\n  - "a\n    {pw}"\nuser: bob\n', "password:\n  [REDACTED]\nuser: bob\n"),
        ("password:\n  - 'a\n    {pw}'\nuser: bob\n", "password:\n  [REDACTED]\nuser: bob\n"),
        ("password:\n  - - |\n      {pw}\nuser: bob\n", "password:\n  [REDACTED]\nuser: bob\n"),
        ("password:\n  - a\n    {pw}\n  - b\nuser: bob\n", "password:\n  [REDACTED]\nuser: bob\n"),
        ("password:\n  - a\n\n    {pw}\nuser: bob\n", "password:\n  [REDACTED]\nuser: bob\n"),
        ("password:\n\t- a\n\t  {pw}\nuser: bob\n", "password:\n\t[REDACTED]\nuser: bob\n"),
        ("password:\r\n  - a\r\n    {pw}\r\nuser: bob\r\n", "password:\r\n  [REDACTED]\r\nuser: bob\r\n"),
        ("api_token:\n- a\n  {pw}\n- b\nuser: bob\n", "api_token:\n[REDACTED]\nuser: bob\n"),
        # nested: the sibling key indented like the secret's stays
        (
            "x:\n  password:\n    - a\n      {pw}\n  user: bob\n",
            "x:\n  password:\n    [REDACTED]\n  user: bob\n",
        ),
    ],
)
def test_a_sequence_item_of_a_secrets_key_loses_its_deeper_lines(text: str, expected: str) -> None:
    assert _write(text.format(pw=_PW)) == expected


def test_a_map_item_or_a_nested_map_under_a_secrets_key_reads_as_before() -> None:
    # a map item's name and a nested map's first key are no scalar item (pins: as before this change)
    assert _write("accessKey:\n  description: |\n    text\n") == "accessKey:\n  [REDACTED] |\n    text\n"
    assert (
        _write("x:\n  hosts:\n    - a\n      b\n  user: bob\n")
        == "x:\n  hosts:\n    - a\n      b\n  user: bob\n"
    )
    assert _write("secret:\n  - name: x\n    value: y\n") == "secret:\n  [REDACTED] name: x\n    value: y\n"
    # an unclosed quote takes its line only (the rest of the field stays)
    assert _write('password:\n  - "a\nuser: bob\n') == "password:\n  [REDACTED]\nuser: bob\n"


def test_sequence_items_cost_linearly() -> None:
    pf = PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 20))
    for unit in (
        "password:\n  - a\n    b\n",
        "password:\n  - a\n",
        "    x\n",
        "password:\n- 'a\n  b\n",
        "- a\n",
    ):
        assert growth(pf.filter_field, unit, size=32768) < 10, unit
