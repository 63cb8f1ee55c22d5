"""A line feed inside one shell word of an exec's arguments (session 51, P2).

``mysql -p$'a\\nS'`` hands mysql the one argument ``-pa<LF>S``, and mysql reads the password ``a<LF>S``.
The rules end a value at a line feed, so the filter kept ``S``. In an exec's arguments a line feed in
an argument Tetragon did not quote (one holding no blank) is now read inside the word, as a lone
carriage return is (test_privacy_lone_carriage_returns.py). A quoted argument's line feeds (a ``sh -c``
script's lines) and a written buffer's stay line breaks.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.privacy import PrivacyFilter
from tests.linear_cost import growth
from tests.privacy_events import exec_arguments, written_buffer

_S = "P2lfSecret"
# prints the argv it really receives, as JSON
_PRINT_ARGV = f"{sys.executable} -c 'import json, sys; print(json.dumps(sys.argv[1:]))'"


def _received(words: str) -> list[str]:
    """The argv a program receives when bash runs it with ``words`` (bash syntax, ``$'..'`` too)."""
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash on this machine")
    run = subprocess.run([bash, "-c", f"{_PRINT_ARGV} {words}"], capture_output=True, text=True, check=True)
    argv: list[str] = json.loads(run.stdout)
    return argv


def _as_tetragon_sends(argv: list[str]) -> str:
    """The arguments joined by blanks, one holding a blank quoted (Tetragon's ``process.arguments``)."""
    return " ".join(f'"{a}"' if " " in a else a for a in argv)


@pytest.mark.parametrize(
    ("binary", "words", "secret_word"),
    [
        ("/usr/bin/mysql", f"-u root -pa$'\\n'{_S} db", f"-pa\n{_S}"),
        ("/usr/bin/mysql", f"-u root --password=a$'\\n'{_S} db", f"--password=a\n{_S}"),
        ("/usr/bin/env", f"PGPASSWORD=a$'\\n'{_S} psql -h db", f"PGPASSWORD=a\n{_S}"),
        ("/usr/bin/mysql", f"-u root --password $'a\\n{_S}' db", f"a\n{_S}"),  # two words
        ("/usr/bin/mysql", f"-u root --password=$'a\\r\\n{_S}' db", f"--password=a\r\n{_S}"),
        ("/usr/bin/env", f"DBPASS=$'a\\n{_S}' app", f"DBPASS=a\n{_S}"),
    ],
)
def test_a_line_feed_inside_one_shell_word_keeps_the_value_whole(
    binary: str, words: str, secret_word: str
) -> None:
    argv = _received(words)
    assert secret_word in argv  # one argument: the program reads the value with S in it
    arguments = _as_tetragon_sends(argv)
    out = exec_arguments(binary, arguments)
    assert _S not in out
    value_at = arguments.index("a\n") if "a\n" in arguments else arguments.index("a\r")
    assert out.startswith(arguments[:value_at])  # the words before the value stay


def test_a_scripts_line_feeds_still_end_its_lines() -> None:
    argv = _received("-c $'echo a\\nmysql -pX'")
    assert argv == ["-c", "echo a\nmysql -pX"]  # one argument: the script, two lines
    out = exec_arguments("/bin/sh", _as_tetragon_sends(argv))
    assert out == '-c "echo a\nmysql -p[REDACTED]"'
    # a secret's line does not take the script's next line
    assert exec_arguments("/bin/sh", '-c "mysql -pX\necho done"') == '-c "mysql -p[REDACTED]\necho done"'
    out = exec_arguments("/bin/sh", "-c 'export PASSWORD=x\nls -l'")
    assert out == "-c 'export PASSWORD=[REDACTED]\nls -l'"
    # a script holding quotes of its own, one cut by the field's limit (never closed)
    script = 'echo "a b"\nexport PASSWORD=x\nls -l'
    assert _received(f"-c $'{script.replace(chr(10), chr(92) + 'n')}'") == ["-c", script]
    out = exec_arguments("/bin/sh", f'-c "{script}"')
    assert out == '-c "echo "a b"\nexport PASSWORD=[REDACTED]\nls -l"'
    out = exec_arguments("/bin/sh", '-c "export PASSWORD=x\nls -l\necho cut her')
    assert out == '-c "export PASSWORD=[REDACTED]\nls -l\necho cut her'


@pytest.mark.parametrize(
    "text",
    [
        "mysql -pa\nls -l\n",
        "PGPASSWORD=a\nnext line\n",
    ],
)
def test_a_written_buffers_line_feed_stays_a_line_break(text: str) -> None:
    out = written_buffer(text)
    assert out.count("[REDACTED]") == 1
    assert out.endswith("[REDACTED]\n" + text.split("\n")[1] + "\n")


def test_arguments_no_secret_is_in_keep_their_line_feeds() -> None:
    assert exec_arguments("/usr/bin/printf", "a\nb c\nd") == "a\nb c\nd"
    assert exec_arguments("/bin/sh", '-c "echo a\nls" x\ny') == '-c "echo a\nls" x\ny'


def test_line_feeds_in_words_cost_linearly() -> None:
    pf = PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 20))

    def argv(text: str) -> str:
        return pf.filter_field(text, tool="mysql", argv=True)

    # words of line feeds, an opening quote never closed before each, a quoted argument's each
    for unit in ("-pa\nb ", '"a\nb ', "'x\n\"y ", '"a b\n" --password=c\nd '):
        assert growth(argv, unit, size=32768) < 10, unit
