"""cli/help_format.py: argparse's help formatter without shutil, the same width and text (issue 13)."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from stellaops_runtime.cli import help_format
from stellaops_runtime.cli.main import build_parser

COLUMNS = [None, "100", "61", "0", "-5", "abc", "", " 90 "]


@pytest.mark.parametrize("columns", COLUMNS)
def test_the_width_is_shutils(monkeypatch: pytest.MonkeyPatch, columns: str | None) -> None:
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    assert help_format.terminal_columns() == shutil.get_terminal_size().columns
    ours = help_format.HelpFormatter("prog")
    argparses = argparse.RawDescriptionHelpFormatter("prog")
    assert ours._width == argparses._width  # type: ignore[attr-defined]
    assert help_format.HelpFormatter("prog", width=40)._width == 40  # type: ignore[attr-defined]


def test_without_a_stdout_the_width_is_shutils_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setattr(sys, "__stdout__", None)
    assert help_format.terminal_columns() == shutil.get_terminal_size().columns == 80


def _agent(parser: argparse.ArgumentParser) -> Any:
    return parser._subparsers._group_actions[0].choices["agent"]  # type: ignore[union-attr,index]


def _help(parser: argparse.ArgumentParser) -> str:
    return parser.format_help() + _agent(parser).format_help()


@pytest.mark.parametrize("columns", ["100", "61"])
def test_the_agents_help_reads_as_with_argparses_formatter(
    monkeypatch: pytest.MonkeyPatch, columns: str
) -> None:
    monkeypatch.setenv("COLUMNS", columns)
    parser = build_parser(["agent"])
    ours = _help(parser)
    agent = _agent(parser)
    parser.formatter_class = agent.formatter_class = argparse.RawDescriptionHelpFormatter
    assert ours == _help(parser)
    assert "--config" in ours and "--exit-when-idle" in ours


def test_the_agents_command_line_is_parsed_without_shutil() -> None:
    code = textwrap.dedent(
        """
        import sys
        from stellaops_runtime.cli.main import build_parser
        args = build_parser(["agent", "--config", "x.yaml"]).parse_args(["agent", "--config", "x.yaml"])
        assert args.config == "x.yaml", args
        print(sorted(m for m in ("shutil", "bz2", "lzma") if m in sys.modules))
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["[]"]
