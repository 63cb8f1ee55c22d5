"""A value opened by an escaped single quote inside a single-quoted shell script.

A single quote inside a single-quoted ``sh -c '…'`` script is written ``'\\''`` (by hand) or
``'"'"'`` (Python's ``shlex.quote``/``shlex.join``, which a program building a command for
``subprocess.run(…, shell=True)`` uses): the script's ``--password 'a b'`` reads
``--password '\\''a b'\\''``. The value rules read ``'\\'`` as a quoted backslash and kept the
password after it (found by the P7 corpus, session 45); the value now runs from the escaped quote
to the next one.
"""

from __future__ import annotations

import shlex

import pytest

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.contracts.events import EventKind, ProcessInfo, RuntimeCallEvent
from stellaops_runtime.privacy import PrivacyFilter
from tests.linear_cost import growth

_SQ = "'\\''"  # a single quote inside a single-quoted script, written by hand
_PY = "'\"'\"'"  # the same as shlex.quote writes it


def _filter(text: str) -> str:
    return PrivacyFilter(PrivacyConfig()).filter_field(text)


@pytest.mark.parametrize("q", [_SQ, _PY])
@pytest.mark.parametrize(
    ("script", "want"),
    [
        # a key or flag rule's value (patterns.py, key_rules.QUOTED)
        ("clickhouse-client --password {q}P7q-1 x{q} -q 1", "clickhouse-client --password [REDACTED] -q 1"),
        ("app --password={q}P7q-2{q} --v", "app --password=[REDACTED] --v"),
        ("java -Dx='a password={q}P7q-3{q};' -jar a", "java -Dx='a password=[REDACTED];' -jar a"),
        # an SQL literal (sql_password)
        ('psql -c "ALTER USER app PASSWORD {q}P7q-4{q}"', 'psql -c "ALTER USER app PASSWORD [REDACTED]"'),
        (
            'mysql -e "CREATE USER u IDENTIFIED BY {q}P7q-5{q}"',
            'mysql -e "CREATE USER u IDENTIFIED BY [REDACTED]"',
        ),
        # a client's short option (cli_syntax.VALUE)
        ("sqlcmd -S db -U sa -P {q}P7q-6{q} -d m", "sqlcmd -S db -U sa -P [REDACTED] -d m"),
        ("mysql -uroot -p{q}P7q-7{q} db", "mysql -uroot -p[REDACTED] db"),
        ("sshpass -p {q}P7q-8{q} ssh h", "sshpass -p [REDACTED] ssh h"),
        ("ldapmodify -x -D cn=a -w {q}P7q-9{q} -f x", "ldapmodify -x -D cn=a -w [REDACTED] -f x"),
    ],
)
def test_a_value_opened_by_an_escaped_single_quote_goes_whole(q: str, script: str, want: str) -> None:
    text = "sh -c '" + script.replace("{q}", q) + "'"
    out = _filter(text)
    assert out == "sh -c '" + want + "'"
    assert "P7q" not in out


def test_a_command_shlex_join_built_for_a_shell_loses_its_sql_password() -> None:
    # subprocess.run(shlex.join([...]), shell=True): /bin/sh's arguments as Tetragon gives them
    script = shlex.join(["psql", "-h", "db", "-c", "ALTER ROLE app PASSWORD 'P7q-10'"])
    ev = RuntimeCallEvent(
        kind=EventKind.EXEC,
        timestamp_ns=1,
        node_name="n",
        process=ProcessInfo(pid=7, binary="/bin/sh", arguments=f'-c "{script}"'),
    )
    PrivacyFilter(PrivacyConfig()).apply(ev)
    assert ev.process is not None
    assert ev.process.arguments == "-c \"psql -h db -c 'ALTER ROLE app PASSWORD [REDACTED]'\""


@pytest.mark.parametrize(
    "text",
    [
        # a quoted value that is no secret's, and a single quote escaped in prose, stay
        "sh -c 'echo '\\''hello world'\\'' > /tmp/x'",
        "sh -c 'git commit -m '\"'\"'fix: it'\"'\"'s done'\"'\"''",
        "sh -c 'app --name '\\''my app'\\'' --v'",
    ],
)
def test_other_escaped_quotes_stay(text: str) -> None:
    assert _filter(text) == text


@pytest.mark.parametrize(
    "unit",
    [
        "--password '\\''",
        "password='\"'\"'x",
        "mysql -p'\\'' ",
        "PASSWORD '\\''a",
        "sqlcmd -P '\"'\"'",
    ],
)
def test_the_escaped_quote_values_cost_grows_linearly_with_a_hostile_field(unit: str) -> None:
    ratio = growth(PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 20)).redact_text, unit)
    assert ratio < 10, f"{unit!r}: 64 KiB costs {ratio:.1f}x the 16 KiB field"
