"""A Makefile's assignments to a secret's environment name (session 51).

GNU make assigns with ``?=``, ``:=``, ``::=``, ``:::=``, ``+=`` and ``!=`` too (its manual, 6.2 and 6.5),
each taking the rest of the line (``!=`` the output of the rest, run by the shell). The environment rule
read only ``=`` and `` = ``: ``DBPASS ?= S`` kept ``S`` (s50 P's left-alone 6).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.privacy import PrivacyFilter
from tests.linear_cost import growth
from tests.privacy_events import exec_arguments, written_buffer

_S = "P51makeSecret"


def _make_reads(line: str, tmp_path: Path) -> str:
    """What make holds in DBPASS after ``line``."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("no make on this machine")
    (tmp_path / "Makefile").write_text(f"{line}\nall:\n\t@printf '%s' '$(DBPASS)'\n")
    run = subprocess.run([make, "-s", "-C", str(tmp_path)], capture_output=True, text=True, check=True)
    return run.stdout


@pytest.mark.parametrize(
    "line",
    [
        "DBPASS ?= {s}",
        "DBPASS := a {s}",
        "DBPASS ::= {s}",
        "DBPASS += {s}",
        "DBPASS != echo {s}",
        "DBPASS?={s}",
        "DBPASS:={s} b",
        "override DBPASS := {s}",
    ],
)
def test_a_makefile_assignment_loses_its_value(line: str, tmp_path: Path) -> None:
    line = line.format(s=_S)
    assert _S in _make_reads(line, tmp_path)  # make reads the secret into the variable
    text = f"# config\n{line}\nCC = gcc\n"
    out = written_buffer(text)
    assert _S not in out
    assert out.endswith("\nCC = gcc\n")  # the next line stays
    assert out.count("[REDACTED]") == 1
    assert _S not in exec_arguments("/usr/bin/make", f"-f - <<'EOF'\n{line}\nEOF")


@pytest.mark.parametrize(
    "text",
    [
        'if [ "$DBPASS" != x ]; then echo; fi',  # a shell's comparison of the variable
        "x := DBPASS",  # the name as a value
        "CFLAGS += -O2",  # a name no glob takes
    ],
)
def test_look_alikes_keep_their_words(text: str) -> None:
    assert written_buffer(text) == text


def test_makefile_assignments_cost_linearly() -> None:
    pf = PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 20))
    for unit in ("DBPASS ?= a b\n", "DBPASS != ", "X +=", "a ::= "):
        assert growth(pf.filter_field, unit, size=32768) < 10, unit
