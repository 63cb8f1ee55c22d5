"""A Unicode space inside a value hides nothing after it (s49 P, reading_union.py).

The look-alike reading (contracts/lookalike.py) reads every Unicode space as a plain one, so that
``--password<NBSP>x`` loses ``x``; when it found a secret its redaction was kept, and there the space
ended the value: ``DBPASS=a<NBSP>SECRET`` kept ``SECRET``, which the text itself (one shell word)
gives whole to ``DBPASS``. The field now loses what either reading covers. Every character
``str.isspace()`` holds in the BMP but the four ASCII blanks (space, tab, line feed, carriage return,
which end a value) is tried in each form, as a field, an exec's arguments and a written buffer.
"""

from __future__ import annotations

import pytest

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.privacy import PrivacyFilter
from tests.linear_cost import growth
from tests.privacy_events import exec_arguments, written_buffer

_PW = "P49kept"
SPACES = [chr(c) for c in range(0x10000) if chr(c).isspace() and chr(c) not in " \t\n\r"]

FORMS = [
    ("DBPASS=a{c}{pw} -v", "DBPASS=[REDACTED] -v"),
    ("export GITHUB_PAT=a{c}{pw}", "export GITHUB_PAT=[REDACTED]"),
    ("password=a{c}{pw} -v", "password=[REDACTED] -v"),
    ("password: a{c}{pw}\nuser: bob", "password: [REDACTED]\nuser: bob"),
    ("x password: a{c}{pw} -v", "x password: [REDACTED] -v"),
    ("DBPASS: a{c}{pw}", "DBPASS: [REDACTED]"),
    ("app --password a{c}{pw} -v", "app --password [REDACTED] -v"),
    ("app --password=a{c}{pw} -v", "app --password=[REDACTED] -v"),
    ('{{"password": "a{c}{pw}", "n": 1}}', '{"password": [REDACTED], "n": 1}'),
    # a look-alike or an escape in the key: only the reading finds it
    ("p\u0430ssword=a{c}{pw} -v", "password=[REDACTED] -v"),
    ("pass%77ord=a{c}{pw} -v", "password=[REDACTED] -v"),
    # with a NUL's U+FFFD in the field (its stand-in pass, hostile_text.py)
    ("--password\ufffda{c}{pw} -v", "--password\ufffd[REDACTED] -v"),
    ("DBPASS=a\ufffdb{c}{pw} -v", "DBPASS=[REDACTED] -v"),
    ("a\tb\r DBPASS=a{c}{pw}\ufffd -v", "a\tb\r DBPASS=[REDACTED] -v"),
]


@pytest.mark.parametrize(("text", "expected"), FORMS, ids=[f[0] for f in FORMS])
def test_a_unicode_space_inside_a_value_keeps_nothing_after_it(text: str, expected: str) -> None:
    pf = PrivacyFilter(PrivacyConfig())
    kept = []
    for c in SPACES:
        field = text.format(c=c, pw=_PW)
        # a line feed in an exec's arguments ends a line only inside an argument Tetragon quoted (one
        # holding a blank); unquoted it is inside one shell word (test_privacy_line_feed_in_word.py)
        quoted = "\n" in field
        argv = exec_arguments("/usr/bin/app", f'"{field}"' if quoted else field)
        outs = (pf.filter_field(field), argv[1:-1] if quoted else argv, written_buffer(field))
        if any(out != expected for out in outs) or any(_PW[1:] in out for out in outs):
            kept.append((f"U+{ord(c):04X}", outs))
    assert not kept, kept


def test_a_unicode_space_between_a_flag_and_its_value_still_separates() -> None:
    pf = PrivacyFilter(PrivacyConfig())
    for c in SPACES[SPACES.index("\x85") :]:  # the ones the reading folds
        assert pf.filter_field(f"app --password{c}{_PW} -v") == "app --password [REDACTED] -v", hex(ord(c))


def test_a_value_extended_past_a_unicode_space_is_counted_once() -> None:
    pf = PrivacyFilter(PrivacyConfig())
    out = pf.filter_field(f"DBPASS=a\xa0{_PW} p\u0430ssword=b\u3000c")
    assert out == "DBPASS=[REDACTED] password=[REDACTED]"
    assert pf.redactions_by_pattern["env_name"] == 1
    assert pf.redactions_by_pattern["password"] == 1


def test_text_with_a_unicode_space_and_no_secret_keeps_its_characters() -> None:
    pf = PrivacyFilter(PrivacyConfig())
    for text in ("name=a\xa0b -v", "caf\u00e9\u3000ol\u00e9 --verbose", "p\u0430ssport=a\xa0b"):
        assert pf.filter_field(text) == text


def test_unicode_spaces_in_values_cost_linearly() -> None:
    pf = PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 17))
    for unit in ("DBPASS=a\xa0b ", "p\u0430ssword=a\u3000", "--password\xa0a\xa0", "a\xa0[REDACTED] "):
        assert growth(pf.filter_field, unit, size=32768) < 10, unit
