"""A YAML block scalar given as a sequence item of a secret's key loses its lines (s49 P, key_rules.py).

``password:`` then ``  - |`` then ``    x``: the key rules took the item's dash for the value (values run
to whitespace) and kept the block's lines; mapping_env could not tell that marker from a nested map's
first key the key rules took (``accessKey:`` then ``  description: |-``), so it read nothing more.
The key rules' value now takes a ``- |`` item whole, as it takes ``password: |``: every line below it
that starts with a blank (a sibling key indented like the secret's goes too: docs/privacy.md).
"""

from __future__ import annotations

import pytest

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.privacy import PrivacyFilter
from tests.linear_cost import growth
from tests.privacy_events import written_buffer as _write

_PW = "P49blk"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("password:\n  - |\n    {pw}\nuser: bob\n", "password:\n  [REDACTED]\nuser: bob\n"),
        ("password:\n  - >-\n    {pw}\n    b\nuser: bob\n", "password:\n  [REDACTED]\nuser: bob\n"),
        ("password:\n  - |2\n     {pw}\nuser: bob\n", "password:\n  [REDACTED]\nuser: bob\n"),
        ("password:\n  - |+\n    {pw}\n\nuser: bob\n", "password:\n  [REDACTED]\n\nuser: bob\n"),
        ("password:\n  - | # old\n    {pw}\nuser: bob\n", "password:\n  [REDACTED]\nuser: bob\n"),
        ("password:\n  - |-\n    a\n  - >\n    {pw}\nuser: bob\n", "password:\n  [REDACTED]\nuser: bob\n"),
        ("password:\r\n  - |\r\n    {pw}\r\nuser: bob\r\n", "password:\r\n  [REDACTED]\r\nuser: bob\r\n"),
        ("api_token:\n  - >\n\n    {pw}\n", "api_token:\n  [REDACTED]\n"),
        # nested deeper: the sibling indented like the key goes too (as under ``password: |``)
        (
            "a:\n  b:\n    password:\n      - |\n        {pw}\n    user: bob\n",
            "a:\n  b:\n    password:\n      [REDACTED]\n",
        ),
    ],
)
def test_a_block_scalar_item_of_a_secrets_key_loses_its_lines(text: str, expected: str) -> None:
    assert _write(text.format(pw=_PW)) == expected


@pytest.mark.parametrize("props", ["!", "!!str", "!!binary", "&pw", "&pw !!str", "!<tag:yaml.org,2002:str>"])
def test_a_block_scalar_item_with_a_tag_or_an_anchor_loses_its_lines(props: str) -> None:
    # s49 RP: YAML lets a tag or an anchor stand before the indicator (``- !!binary |``: a base64 secret);
    # the item's dash was the value again and its lines stayed
    text = f"password:\n  - {props} |\n    {_PW}\nuser: bob\n"
    assert _write(text) == "password:\n  [REDACTED]\nuser: bob\n"


def test_a_block_scalar_item_of_another_key_stays() -> None:
    for text in (
        "hosts:\n  - |\n    a\nuser: bob\n",
        "hosts:\n  - !!str |\n    a\nuser: bob\n",
        "password_file:\n  - /run/a\n  - /run/b\n",
    ):
        assert _write(text) == text


def test_block_scalar_items_cost_linearly() -> None:
    pf = PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 17))
    for unit in (
        "password:\n  - |\n",
        "password:\n - |\n  a\n \n",
        "password: - >\r\n\r\n",
        "password:\n  - !a !b !c |\n",
    ):
        assert growth(pf.filter_field, unit, size=32768) < 10, unit
