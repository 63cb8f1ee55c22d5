"""A vertical tab or a form feed inside any rule's value keeps nothing after it (s49 P, hostile_text.py).

s48 made ``\\v`` and ``\\f`` part of a key's, a flag's and an environment name's value (one shell word,
one argument); every other rule ended its value at ``\\s``: ``mysql -pa\\vb``, ``curl -u bob:a\\fb``,
``postgres://u:a\\vb@h``, ``Authorization: Bearer a\\fb``, ``IDENTIFIED BY a\\vb``, ``?access_token=a\\vb``,
``docker login -p a\\fb``, ``vault login a\\vb`` kept ``b``. The passes now run again with both read as
word characters. Each through an exec of its client and a written buffer.
"""

from __future__ import annotations

import pytest

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.privacy import PrivacyFilter
from tests.linear_cost import growth
from tests.privacy_events import exec_arguments, written_buffer

_PW = "P49brk"


@pytest.mark.parametrize("brk", ["\x0b", "\x0c"])
@pytest.mark.parametrize(
    ("tool", "text", "expected"),
    [
        ("mysql", "mysql -pa{b}{pw} -v", "mysql -p[REDACTED] -v"),
        ("curl", "curl -u bob:a{b}{pw} https://h", "curl -u bob:[REDACTED] https://h"),
        ("psql", "psql postgres://u:a{b}{pw}@h/db", "psql postgres://u:[REDACTED]@h/db"),
        ("app", "Authorization: Bearer a{b}{pw} -v", "Authorization: Bearer [REDACTED] -v"),
        ("app", "CREATE USER u IDENTIFIED BY a{b}{pw};", "CREATE USER u IDENTIFIED BY [REDACTED];"),
        ("app", "GET /x?access_token=a{b}{pw}&n=1", "GET /x?access_token=[REDACTED]&n=1"),
        ("docker", "docker login -p a{b}{pw} reg", "docker login -p [REDACTED] reg"),
        ("vault", "vault login a{b}{pw}", "vault login [REDACTED]"),
    ],
)
def test_a_vertical_tab_or_form_feed_inside_any_rules_value_ends_nothing(
    brk: str, tool: str, text: str, expected: str
) -> None:
    field = text.format(b=brk, pw=_PW)
    assert exec_arguments(f"/usr/bin/{tool}", field) == expected
    assert written_buffer(field) == expected


def test_text_with_a_vertical_tab_and_no_secret_keeps_its_characters() -> None:
    pf = PrivacyFilter(PrivacyConfig())
    for text in ("x\vy\fz -v", "a\vb --password\vx \fc"):
        out = pf.filter_field(text)
        assert out == text.replace("--password\vx", "--password\v[REDACTED]")
    before = pf.redactions_by_pattern["cli_option"]
    assert pf.filter_field("mysql -pa\vb -v", tool="mysql") == "mysql -p[REDACTED] -v"
    assert pf.redactions_by_pattern["cli_option"] == before + 1  # one secret, counted once


def test_a_quoted_argument_after_a_word_break_still_loses_its_rest() -> None:
    # found by a differential fuzz against ccd851be: the second pass merged ``-p[REDACTED]\v'`` into one
    # marker before the rest of the quoted argument was cut, and ``ZQ`` stayed
    assert written_buffer("mysql -pa\x0b'--password=y ZQ'") == "mysql -p[REDACTED]'"
    text = "a- mysql -p\x00\x0b'postgres://u:p\u0430ssword\ufffd=]- \u200bDBPASS\u3000>-\u3000ZQ, x"
    assert "ZQ" not in written_buffer(text)


def test_word_breaks_cost_linearly() -> None:
    pf = PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 17))
    for unit in ("mysql -pa\v", "u:a\vb@h ", "\f\v", "Bearer a\f"):
        assert growth(pf.filter_field, unit, size=32768) < 10, unit


def test_a_field_holding_every_bmp_private_use_character_still_joins_its_breaks() -> None:
    # The stand-in for ``\v`` was looked for in the BMP's private-use area only: a field holding all of
    # it (19 KiB, under a raised maxArgumentBytes) skipped the pass and kept the value's rest (s49 RP 7).
    pua = "".join(chr(cp) for cp in range(0xE000, 0xF900))
    pf = PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 16))
    out = pf.filter_field(f"{pua} mysql -pa\v{_PW} -h h\fx")
    assert out == f"{pua} mysql -p[REDACTED] -h h\fx"
