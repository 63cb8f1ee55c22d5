"""A value's deeper lines broken by a carriage return alone (session 51).

configparser reading a file (Python opens it with universal newlines) and YAML read a lone ``\\r`` as a
line break: ``password = a`` then ``\\r  S`` is the value ``a`` and ``S`` to both. The filter read only
``\\n`` as one, took ``a`` and kept ``S`` (s50 P's left-alone 2).
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path
from xml.etree import ElementTree

import pytest
import yaml

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.privacy import PrivacyFilter
from tests.linear_cost import growth
from tests.privacy_events import exec_arguments, written_buffer

_S = "P51crSecret"


def _ini_value(text: str, tmp_path: Path) -> str:
    path = tmp_path / "app.ini"
    path.write_bytes(text.encode())
    parser = configparser.ConfigParser()
    parser.read(path)  # a file: universal newlines, as an application reads its configuration
    return parser["db"]["password"]


@pytest.mark.parametrize(
    "text",
    [
        "[db]\rpassword = a\r  {s}\r",
        "[db]\rpassword =\r  a\r  {s}\r",
        "[db]\r\npassword = a\r  {s}\r\n",  # a file whose lines mix both ends
    ],
)
def test_an_ini_values_deeper_lines_after_a_lone_return_go(text: str, tmp_path: Path) -> None:
    text = text.format(s=_S)
    assert _S in _ini_value(text, tmp_path)  # configparser reads the deeper line into the value
    assert _S not in written_buffer(text)
    assert _S not in exec_arguments("/usr/bin/app", text)


@pytest.mark.parametrize(
    "text",
    [
        "password: |\r  {s}\r",
        "password: a\r  {s}\r",
        "db:\r  password:\r  - a\r    {s}\r",
    ],
)
def test_a_yaml_values_lines_after_a_lone_return_go(text: str) -> None:
    text = text.format(s=_S)
    assert _S in str(yaml.safe_load(text))  # PyYAML reads the deeper line into the secret's value
    out = written_buffer(text)
    assert _S not in out
    assert out.startswith(text[: text.index("password") + len("password:")])


@pytest.mark.parametrize(
    "text",
    [
        "<db>\r<password>\r{s}</password>\r</db>\r",  # only the lone-CR reading sees a line break
        "<db><user>u</user><password>\r  {s}\r</password></db>",
    ],
)
def test_a_secret_only_the_lone_return_reading_finds_goes(text: str) -> None:
    # The text as it is holds no secret the rules take; the reading with its lone CRs as line feeds does.
    # That reading's redaction was dropped when the text's own reading redacted nothing (reading_union
    # found no marker in it): the whole field kept its secret (s51 RP).
    text = text.format(s=_S)
    assert _S in (ElementTree.fromstring(text).findtext("password") or "")  # XML reads the secret
    assert _S not in written_buffer(text)
    assert _S not in exec_arguments("/bin/sh", f'-c \'printf "%s" "{text}" > db.xml\'')


@pytest.mark.parametrize(
    "text",
    [
        "password = a\r  {s}",
        "progress 10%\rprogress 20%\rpassword = a\r  {s}\rdone\r",
    ],
)
def test_the_count_and_the_text_around_stay(text: str) -> None:
    text = text.format(s=_S)
    out = written_buffer(text)
    assert _S not in out
    assert out.count("[REDACTED]") == 1
    # the lines before it, and a shallower line after it, stay with their own line breaks
    assert out == text[: text.index("a\r")] + "[REDACTED]" + ("\rdone\r" if text.endswith("done\r") else "")


@pytest.mark.parametrize(
    "text",
    [
        "progress 10%\rprogress 20%\rdone\r",
        "user = bob\r  next\r",  # a key that names no secret keeps its lines
    ],
)
def test_lines_no_secret_goes_on_over_stay(text: str) -> None:
    out = written_buffer(text)
    assert out == text.replace("password = a", "password = [REDACTED]")


def test_lone_returns_cost_linearly() -> None:
    pf = PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 20))
    for unit in ("password = a\r  b\r", "x\r", "password:\r  - a\r"):
        assert growth(pf.filter_field, unit, size=32768) < 10, unit


@pytest.mark.parametrize("arg", ["--password=a\r{s}", "-pa\r{s}", "DBPASS=a\r{s}"])
def test_a_lone_return_inside_one_shell_word_keeps_the_value_whole(arg: str) -> None:
    # (an exec's arguments only: in a written buffer a lone return ends a line, as the tests above say)
    arg = arg.format(s=_S)
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash on this machine")
    # bash passes ``$'a\rS'`` as one argument: the program reads the value with S in it
    run = subprocess.run([bash, "-c", 'printf "%s\\n" "$#"', "sh", arg], capture_output=True, text=True)
    assert run.stdout.strip() == "1"
    assert _S not in exec_arguments("/usr/bin/mysql", f"-u root {arg} db")
    assert _S not in exec_arguments("/bin/sh", f"-c 'mysql {arg}'")
