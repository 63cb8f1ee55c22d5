"""ASCII's information separators (``\\x1c``-``\\x1f``) between a flag and its value (hostile_text.py).

s49 P's and RP's left-alone: Python's ``str.split`` and ``\\s`` read them as white space, so a program
that splits a line reads ``--password\\x1cS`` as a flag and its value; the rules did not (their blanks are
ASCII's), and ``S`` stayed. The passes now run again with each read as a separator, as for U+FFFD; one
inside a value stays inside it (bash does not split on it: ``--password=a\\x1cb`` loses ``b``).
"""

from __future__ import annotations

import pytest

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.privacy import PrivacyFilter
from tests.linear_cost import growth
from tests.privacy_events import exec_arguments, written_buffer

_PW = "P50sepSecret"


@pytest.mark.parametrize("sep", ["\x1c", "\x1d", "\x1e", "\x1f"])
def test_a_flag_and_its_value_split_by_a_separator_lose_the_value(sep: str) -> None:
    assert f"--password{sep}{_PW}".split() == ["--password", _PW]  # how a program splitting the line reads it
    assert written_buffer(f"app --password{sep}{_PW} -v\n") == f"app --password{sep}[REDACTED] -v\n"
    assert exec_arguments("/usr/bin/app", f"--token{sep}{_PW} -v") == f"--token{sep}[REDACTED] -v"


@pytest.mark.parametrize("sep", ["\x1c", "\x1f"])
def test_a_separator_inside_a_value_stays_inside_it(sep: str) -> None:
    assert written_buffer(f"app --password=a{sep}{_PW} -v\n") == "app --password=[REDACTED] -v\n"
    # where nothing is a secret, the separators stay where they were
    assert written_buffer(f"a{sep}b --verbose{sep}x\n") == f"a{sep}b --verbose{sep}x\n"


def test_separator_passes_cost_linearly() -> None:
    pf = PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 20))
    for unit in ("--password\x1ca ", "x\x1c\x1d\x1e\x1f", "--token\x1f-"):
        assert growth(pf.filter_field, unit, size=32768) < 10, repr(unit)
