"""A secret's key with an array's index: ``password[0] = S``, bash's ``PASSWORD[0]=S`` (session 51).

The key rules needed the separator right after the credential word, so ``password[0] = S`` kept ``S``
whole; bash assigns an array's element so (``DB_PASSWORD[0]=S``), PHP's ini files write arrays so
(``password[] = S``), and configparser reads ``password[0]`` as any key, with its deeper lines (s50 RP's
left-alone 2).
"""

from __future__ import annotations

import configparser
import shutil
import subprocess

import pytest

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.contracts.redact import redact
from stellaops_runtime.privacy import PrivacyFilter
from tests.linear_cost import growth
from tests.privacy_events import exec_arguments, written_buffer

_S = "P51indexSecret"


@pytest.mark.parametrize(
    "line",
    # (an environment name no credential word ends, a glob's alone: DBPASS, GITHUB_PAT)
    [
        "PASSWORD[0]={s}",
        "DB_PASSWORD[1]={s}",
        "api_token[x]={s}",
        "DBPASS[0]={s}",
        "GITHUB_PAT[2]={s}",
        # bash appends to an element (``+=``; an unset element: the value whole): s51 RP
        "DB_PASSWORD[0]+={s}",
        "DBPASS[0]+={s}",
    ],
)
def test_a_bash_array_elements_secret_goes(line: str) -> None:
    line = line.format(s=_S)
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash on this machine")
    name = line.split("[")[0]
    run = subprocess.run(
        [bash, "-c", f'{line}; printf "%s" "${{{name}[@]}}"'], capture_output=True, text=True
    )
    assert run.stdout == _S  # bash holds the secret in the array
    assert _S not in exec_arguments("/bin/bash", f"-c '{line}; ./deploy'")
    assert _S not in written_buffer(f"{line}\n")
    # messages know credential words, not env globs, nor an element's ``+=``
    if not name.endswith(("DBPASS", "GITHUB_PAT")) and "+=" not in line:
        assert _S not in redact(line)


@pytest.mark.parametrize(
    "text",
    [
        "[db]\npassword[0] = {s}\n",
        "[db]\npassword[] = a\n  {s}\nuser = bob\n",
        "[db]\ndb_password[primary] = a\n  {s}\n",
    ],
)
def test_an_indexed_ini_keys_value_and_deeper_lines_go(text: str) -> None:
    text = text.format(s=_S)
    parser = configparser.ConfigParser()
    parser.read_string(text)
    assert any(_S in v for v in parser["db"].values())  # configparser reads the secret into the key
    out = written_buffer(text)
    assert _S not in out
    assert out.endswith("user = bob\n") == text.endswith("user = bob\n")
    assert _S not in redact(text)


@pytest.mark.parametrize(
    "text",
    [
        "x = password[0]\n",
        "    token[i] += 1\n",  # code's, beside bash's ``DB_PASSWORD[0]+=x`` (s51 RP)
        "    self.token[0]+= c\n",
        "user[0] = bob\n",
        "if password[i] in seen:\n",
        "echo ${DBPASS[0]}\n",
        "x=DBPASS[0]\n",
        # code a first draft over-redacted (LK's corpus: html5lib, lib2to3): a quoted subscript, a
        # subscript before ``:`` or ``==``
        'if token["publicId"]:\n    doctype += " PUBLIC"\n',
        'token["name"] = token["name"].translate(table)\n',
        "if token[-1] == '\\n':\n",
    ],
)
def test_an_index_elsewhere_keeps_its_words(text: str) -> None:
    assert written_buffer(text) == text


def test_indexed_keys_cost_linearly() -> None:
    pf = PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 20))
    units = ("password[0", "password[0]", "password[0] = a\n  b\n", "password[" + "a" * 70)
    for unit in (*units, "password[0]+=", "DBPASS[0]+"):
        assert growth(pf.filter_field, unit, size=32768) < 10, unit
        assert growth(redact, unit, size=32768) < 10, unit
