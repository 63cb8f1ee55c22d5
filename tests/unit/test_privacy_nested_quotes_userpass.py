"""``user:password`` opened by an escaped single quote, and snyk's setting in escaped double quotes.

Three levels deep too (``bash -lc`` of a ``bash -c '…'`` line: the escaped quote quoted again).
P7 (session 45) taught the value rules the escaped single quote a program writes when it builds a
``bash -c`` script with ``shlex.quote`` (``--password '"'"'a b'"'"'``), but not the rules of a
``user:password`` value (``cli_syntax.after``: curl's ``-u``, skopeo's ``--creds``, lftp's ``-u``,
smbclient's ``-U``): ``bash -c 'curl -u '"'"'bob:x'"'"' https://h'`` stored the password (two levels
of quoting, what ``subprocess.run(["bash", "-c", shlex.join(argv)])`` runs). RP7 left snyk's
``config set \\"api=T\\"`` inside a double-quoted ``sh -c "…"``. Each case runs through the filter the
agent uses, as an exec of the shell; the same commands without a secret stay.
"""

from __future__ import annotations

import shlex

import pytest

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.privacy import PrivacyFilter
from tests.linear_cost import growth
from tests.privacy_events import exec_arguments as _exec

_PW = "P8-nested"


def _script_forms(line: str) -> list[str]:
    """``line`` as ``bash -c``'s argument built by shlex.quote, and that inside ``sh -c "…"``."""
    quoted = shlex.quote(line)
    return [f"-c {quoted}", '-c "bash -c ' + quoted.replace('"', '\\"') + '"']


@pytest.mark.parametrize(
    "line",
    [
        f"curl -u 'bob:{_PW}' https://h",
        f"curl -u 'bob:{_PW} x' https://h",
        f"curl --user 'bob:{_PW}' -sS https://h",
        f"skopeo copy --src-creds 'bob:{_PW}' docker://a docker://b",
        f"lftp -u 'bob,{_PW}' ftp://h",
        f"smbclient //h/s -U 'CORP\\bob%{_PW}'",
    ],
)
def test_a_user_password_in_escaped_single_quotes_loses_its_password(line: str) -> None:
    for args in _script_forms(line):
        out = _exec("/bin/bash", args)
        assert _PW not in out, out
        assert "bob" in out, out  # the user stays


@pytest.mark.parametrize(
    "line",
    [
        f"mysql --password '{_PW} x' db",
        f"app --token='{_PW}' x",
        f"curl -u 'bob:{_PW}' https://h",
        f"export DB_PASSWORD='{_PW} y'",
        f"app --password 'a'\\''{_PW}' next",  # a password holding a quote
    ],
)
def test_quoting_three_levels_deep_loses_the_secret(line: str) -> None:
    # bash -lc <quoted: bash -c <quoted: line>> (RP7's first left-alone item: the escaped quote is
    # quoted again, ``'"'"'"'"'"'"'"'"'``, and the value after it was kept); also two levels with the
    # value holding a quote (``'"'"'a'"'"'\'"'"''"'"'b'"'"'``)
    two = "bash -c " + shlex.quote(line)
    for args in (f"-lc {shlex.quote(two)}", f"-c {shlex.quote(line)}"):
        out = _exec("/bin/bash", args)
        assert _PW not in out, out
        assert line.split()[-1] in out or line.startswith("export"), out  # the words after it stay


def test_snyks_setting_in_escaped_double_quotes_loses_its_token() -> None:
    out = _exec("/bin/sh", f'-c "snyk config set \\"api={_PW}\\" && snyk test"')
    assert _PW not in out and "snyk test" in out, out


@pytest.mark.parametrize(
    "line",
    [
        "curl -u 'bob' https://h",  # curl prompts
        "curl -H 'Accept: a/b' https://h",
        'snyk config set "org=acme"',
    ],
)
def test_the_same_commands_without_a_secret_stay(line: str) -> None:
    for args in _script_forms(line):
        assert _exec("/bin/bash", args) == args


def test_the_escaped_quote_forms_cost_linearly() -> None:
    pf = PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 17))  # (uncut: the default cuts at 4096)
    # (each unit names its tool: a rule for one tool runs only on a field naming it, so ``-u '\\''``
    # alone timed no rule of this file)
    units = ("curl -u '\"'\"'b:", "curl -u '\\''", 'snyk config set \\"api=', "smbclient -U '\"'\"'d\\u%")
    for unit in units:
        assert growth(pf.filter_field, unit, size=32768) < 10, unit


@pytest.mark.parametrize(
    "line",
    [
        # a name only the environment-name rules read (the glued *PASS, *_PAT, *_CREDS), its value with a
        # blank, as shlex.join writes it: bash -c 'env DBPASS='"'"'a b'"'"' ./app' (RP8)
        f"env DBPASS='a {_PW}' ./app",
        f"export MYSQLPASS='a {_PW}'; ./app",
        f"docker run -e GITHUB_PAT='a {_PW}' img",
        # fish's set and csh's setenv: the value in escaped single quotes
        f"set -x DB_PASSWORD 'a {_PW}'",
        f"setenv DB_PASSWORD 'a {_PW}'",
        # snyk's setting quoted in the inner script
        f"snyk config set 'api={_PW}'",
        f'snyk config set "api={_PW}"',
        # a two-dash flag of one word ending in PW after lower case (P8's --rootpw rule)
        f"slapadd --rootPW {_PW}",
    ],
)
def test_a_value_in_escaped_quotes_of_an_env_name_set_setenv_or_snyk_loses_it(line: str) -> None:
    for args in [*_script_forms(line), "-c " + shlex.quote("bash -c " + shlex.quote(line))]:
        out = _exec("/bin/bash", args)
        assert _PW not in out, out


@pytest.mark.parametrize(
    "line",
    [
        *("env DEBUG='a b' ./app", "set -x EDITOR 'code -w'", "setenv LANG 'C.UTF-8'"),
        "snyk config set 'org=acme'",
    ],
)
def test_the_same_forms_without_a_secret_stay(line: str) -> None:
    for args in _script_forms(line):
        assert _exec("/bin/bash", args) == args


@pytest.mark.parametrize(
    "unit",
    [
        "DBPASS='\"'\"'",
        "DBPASS='\"'\"'a'\"'\"'b",
        "set -x DB_PASSWORD '\"'\"'a ",
        "setenv DB_PASSWORD '\"'\"'",
        "snyk config set \\\\\\",
        "snyk config set '\"'\"'api=",
    ],
)
def test_the_widened_values_cost_grows_linearly(unit: str) -> None:
    pf = PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 17))
    assert growth(pf.filter_field, unit) < 10, unit


def test_snyks_setting_in_double_quotes_escaped_twice_loses_its_token() -> None:
    # sh -c "sh -c \"snyk config set \\\"api=T\\\"\"": two double-quoted levels (RP8)
    args = '-c "sh -c \\"snyk config set \\\\\\"api=' + _PW + '\\\\\\"\\""'
    out = _exec("/bin/sh", args)
    assert _PW not in out and "api=" in out, out
