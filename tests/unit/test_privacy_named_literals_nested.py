"""A secret's name and value as quoted literals (named_literals.py) inside a single-quoted script.

Found by the RP7 review's corpus (session 45): ``define('DB_PASSWORD', 'x')`` went when run as
``php -r`` but not when a program built the command with ``shlex.join`` for ``bash -lc`` (each
single quote of the code becomes ``'"'"'``) or a script wrote it in ``sh -c '…'`` with ``'\\''``:
the literals' quotes were the escaped ones, and the value was stored. So was Perl's ``%ENV``
assigned (``$ENV{"DB_PASSWORD"} = "x"``: a brace, not a bracket). Each case runs through the
filter the agent uses, as an exec event of the shell.
"""

from __future__ import annotations

import shlex

import pytest

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.privacy import PrivacyFilter
from tests.linear_cost import growth
from tests.privacy_events import exec_arguments as _exec

_PW = "Rp7-lit"


def _lc(code_argv: list[str], escape: bool = True) -> str:
    """``bash -lc`` of a command shlex.join built, quoted whole (it holds spaces), ``"`` escaped or not."""
    script = shlex.join(code_argv)
    return '-lc "' + (script.replace('"', '\\"') if escape else script) + '"'


@pytest.mark.parametrize(
    "arguments",
    [
        _lc(["php", "-r", f"define('DB_PASSWORD', '{_PW}');"]),
        _lc(["php", "-r", f"define( 'AUTH_KEY' , '{_PW} x' );"]),
        _lc(["python3", "-c", f"import os; os.environ['DB_PASSWORD'] = '{_PW}'"]),
        _lc(["python3", "-c", f"os.putenv('API_TOKEN', '{_PW}')"]),
        # a script's own '\'' (a single quote written inside a single-quoted script)
        f"-c 'php -r \"define('\\''DB_PASSWORD'\\'', '\\''{_PW}'\\'');\"'",
        f"-c 'ruby -e \"ENV['\\''API_TOKEN'\\''] = '\\''{_PW}'\\''\"'",
        # Perl's %ENV, and any hash, assigned by its key
        f'-c \'perl -e "\\$ENV{{\\"DB_PASSWORD\\"}} = \\"{_PW}\\""\'',
        f"""-c "perl -e '$ENV{{"API_TOKEN"}} = "{_PW}"; exec @ARGV' app\"""",
        _lc(["perl", "-e", f"$ENV{{'DB_PASSWORD'}} = '{_PW}'; exec @ARGV", "app"]),
        _lc(["php", "-r", f"define('DB_PASSWORD', '{_PW}');"], escape=False),
        _lc(["python3", "-c", f"os.environ['API_TOKEN']='{_PW}'"], escape=False),
    ],
)
def test_a_named_literal_written_with_escaped_quotes_loses_its_value(arguments: str) -> None:
    out = _exec("/bin/bash", arguments)
    assert _PW not in out and _PW[:5] not in out, out


@pytest.mark.parametrize(
    "arguments",
    [
        _lc(["php", "-r", "define('DB_HOST', 'db.corp');"]),
        _lc(["python3", "-c", "import os; print(os.environ['HOME'])"]),
        "-c 'php -r \"define('\\''WP_DEBUG'\\'', '\\''true'\\'');\"'",
        """-c "perl -e '$ENV{"PATH"} = "/usr/bin"; print $ENV{"DB_PASSWORD"}'\"""",
    ],
)
def test_other_literals_written_so_stay(arguments: str) -> None:
    assert _exec("/bin/bash", arguments) == arguments


@pytest.mark.parametrize(
    "unit",
    [
        "'\"'\"'password'\"'\"', ",
        "'\\''token'\\'', '\\''",
        "'\"'\"'",
        "'\\''",
        "{'db_pass'} = '\\\"'\\\"'x",
    ],
)
def test_its_cost_grows_linearly_with_a_hostile_field(unit: str) -> None:
    ratio = growth(PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 20)).redact_text, unit)
    assert ratio < 10, f"{unit!r}: 64 KiB costs {ratio:.1f}x the 16 KiB field"


@pytest.mark.parametrize(
    "arguments",
    [
        _lc(["python3", "-c", f"d = {{'password': '{_PW}'}}"]),
        _lc(["python3", "-c", f"os.environ.update({{'DB_PASSWORD': '{_PW}'}})"], escape=False),
        f"-c 'python3 -c \"d = {{'\\''api_token'\\'': '\\''{_PW}'\\''}}\"'",
        f"-c 'ruby -e \"h = {{'\\''password'\\'' => '\\''{_PW}'\\''}}\"'",
    ],
)
def test_a_dict_key_closed_by_an_escaped_quote_loses_its_value(arguments: str) -> None:
    # the key rules' separator after a key's closing quote (key_rules.SEP): the script's escaped quote
    # too; the value opened by one was already read (base.ESCAPED_SQ)
    out = _exec("/bin/bash", arguments)
    assert _PW not in out and _PW[:5] not in out, out


def test_a_quoted_credential_word_with_no_value_stays() -> None:
    arguments = _lc(["python3", "-c", "print('password'); d = {'user': 'bob'}"])
    assert _exec("/bin/bash", arguments) == arguments
