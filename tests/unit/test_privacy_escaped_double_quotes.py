"""A value in double quotes escaped twice or more (a ``sh -c "…"`` line inside another) loses all of it.

RP8's third known limit (session 46): ``sh -c "sh -c \\"… DB_PASSWORD=\\\\\\"a b\\\\\\"\\""`` kept the
part after the blank, for every rule that read an escaped double quote as ``\\"`` only (the key rules'
values, the environment names, csh's ``setenv``, mysql's glued ``-p``); curl's ``-u`` and skopeo's
``--creds`` kept the whole password. The command lines are built the way a shell script nests them:
each level wraps the one inside in double quotes, escaping its backslashes and quotes
(``base.ESCAPED_DQ``: a run of backslashes then ``"`` opens and closes the value).
"""

from __future__ import annotations

import pytest

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.contracts.events import EventKind, ProcessInfo, RuntimeCallEvent
from stellaops_runtime.privacy import PrivacyFilter
from tests.linear_cost import growth

_PW = "P9-dq pw"


def _nest(command: str, levels: int) -> str:
    """``command`` run by ``sh -c "…"``, ``levels`` deep, each level's quotes and backslashes escaped."""
    for _ in range(levels):
        command = 'sh -c "' + command.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return command


def _exec(arguments: str) -> str:
    ev = RuntimeCallEvent(
        kind=EventKind.EXEC,
        timestamp_ns=1,
        node_name="n",
        process=ProcessInfo(pid=7, exec_id="e1", binary="/bin/sh", arguments=arguments),
    )
    PrivacyFilter(PrivacyConfig()).apply(ev)
    assert ev.process is not None
    return ev.process.arguments


_COMMANDS = [
    f'env DB_PASSWORD="{_PW}" ./app',  # a key word's name
    f'env DBPASS="{_PW}" ./app',  # an environment glob's only
    f'export DB_TOKEN="{_PW}"; ./app',
    f'app --password="{_PW}" --user=bob',
    f'app --password "{_PW}" --user=bob',
    f'mysql -u bob -p"{_PW}" db',
    f'csh -c "setenv DB_PASSWORD \\"{_PW}\\""',
    f'curl -u "bob:{_PW}" https://h/api',
    f'skopeo copy --creds "bob:{_PW}" docker://a docker://b',
]


@pytest.mark.parametrize("levels", [1, 2, 3])
@pytest.mark.parametrize("command", _COMMANDS)
def test_a_value_in_nested_escaped_double_quotes_loses_all_of_it(command: str, levels: int) -> None:
    out = _exec(_nest(command, levels)[len("sh -c ") :])
    assert "P9-dq" not in out and " pw" not in out, out
    assert "[REDACTED]" in out


# the quote opening the whole word (Tetragon's form of an argument holding a blank, nested): at the
# top level the rest of that quoted word goes (quoted_rest._QUOTED_REST); escaped, its words after the
# first stayed (``\\"--password=[REDACTED] pw\\"``)
_WHOLE_WORDS = [
    f'app "--password={_PW}" --user=bob',
    f'env "DBPASS={_PW}" ./app',
    f'docker run -e "DB_PASSWORD={_PW}" img',
    f'mysql -u bob "-p{_PW}" db',
]


@pytest.mark.parametrize("levels", [1, 2, 3])
@pytest.mark.parametrize("command", _WHOLE_WORDS)
def test_a_whole_word_in_nested_escaped_double_quotes_loses_its_value(command: str, levels: int) -> None:
    out = _exec(_nest(command, levels)[len("sh -c ") :])
    assert "P9-dq" not in out and " pw" not in out, out
    assert "[REDACTED]" in out and command.split()[-1] in out, out  # (the words after it stay)


def test_a_script_quoted_whole_keeps_its_command() -> None:
    # (not after ``-c``: the quoted word is a script, ``psql -h h`` its command)
    out = _exec(_nest('sh -c "PGPASSWORD=x psql -h h"', 1)[len("sh -c ") :])
    assert out == '"sh -c \\"PGPASSWORD=[REDACTED] psql -h h\\""'


def test_what_follows_the_value_stays() -> None:
    out = _exec(_nest(f'env DB_PASSWORD="{_PW}" ./app --user="bob"', 2)[len("sh -c ") :])
    assert out == '"sh -c \\"env DB_PASSWORD=[REDACTED] ./app --user=\\\\\\"bob\\\\\\"\\""'
    out = _exec(_nest(f'curl -u "bob:{_PW}" https://h/api', 2)[len("sh -c ") :])
    assert out == '"sh -c \\"curl -u \\\\\\"bob:[REDACTED]\\\\\\" https://h/api\\""'


@pytest.mark.parametrize(
    "command",
    [
        'echo "hello world"; app --user="bob smith"',
        'psql -c "SELECT name FROM users" db',
        'curl -u "bob" https://h/api',
        'printf "%s\\n" "a b"',
    ],
)
def test_nested_quotes_without_a_secret_stay(command: str) -> None:
    for levels in (1, 2, 3):
        text = _nest(command, levels)[len("sh -c ") :]
        assert _exec(text) == text


def test_escaped_double_quotes_cost_linearly() -> None:
    pf = PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 17))  # (uncut: the default cuts at 4096)
    for unit in (
        'DBPASS=\\\\\\"a ',
        '--password \\\\\\"',
        'curl -u \\\\\\"b:',
        "--password \\\\\\\\\\",  # a run of backslashes (after a key: alone, no rule read it)
        'DBPASS: \\\\\\"',
        'app \\"--password=a b ',  # a whole word in escaped quotes, its closing quote never found
        'mysql \\\\\\"-pa b c \\"',  # a shorter run inside the word
    ):
        assert growth(pf.filter_field, unit, size=32768) < 10, unit
