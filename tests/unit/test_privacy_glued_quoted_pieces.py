"""Pieces a shell glues to a quoted value (session 51, P2).

bash joins quoted and unquoted pieces written together into one word: ``--password='a'"b"S`` and
``--password="a"bS`` give the program ``abS``. The key rules took the first quoted piece and kept the
rest (s51 P's and RP's left-alone 1). A quoted value holding no blank now takes the pieces glued to it;
a script's own closing quote after the value is followed by a blank and stays, with what follows it.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.privacy import PrivacyFilter
from tests.linear_cost import growth
from tests.privacy_events import exec_arguments, written_buffer

_S = "P2gluedSecret"


def _bash_word(script_words: str) -> str:
    """The one argument bash hands a program for ``script_words`` (a single word in bash syntax)."""
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash on this machine")
    run = subprocess.run(
        [bash, "-c", f'printf "%s|" {script_words}'],
        capture_output=True,
        text=True,
        check=True,
    )
    return run.stdout


@pytest.mark.parametrize(
    ("word", "read"),
    [
        (f"""--password='a'"b"{_S}""", f"--password=ab{_S}"),
        (f"""--password="a"b{_S}""", f"--password=ab{_S}"),
        (f"""--password='a'{_S}""", f"--password=a{_S}"),
        (f"""--db-password="a"'b'{_S}""", f"--db-password=ab{_S}"),
    ],
)
def test_pieces_glued_to_a_quoted_value_go_with_it(word: str, read: str) -> None:
    assert _bash_word(word) == f"{read}|"  # one word, the pieces joined
    script = f"-c 'mysql {word} db'" if "'" not in word else f'-c "mysql {word} db"'
    out = exec_arguments("/bin/sh", script)
    assert _S not in out
    assert out.endswith(" db" + script[-1])  # the next word and the script's closing quote stay
    buffer = written_buffer(f"mysql {word} db\n")
    assert _S not in buffer
    assert buffer.endswith(" db\n")


def test_the_two_words_form_goes_too() -> None:
    out = exec_arguments("/bin/sh", f"-c 'mysql --password \"a\"b{_S} db'")
    assert out == "-c 'mysql --password [REDACTED] db'"


@pytest.mark.parametrize(
    "text",
    [
        # a script's own closing quote after the value, what follows it stays (s51 RP's caution)
        "sh -c 'mysql --password=\"a\"' && sh -c 'x'",
        "-c \"mysql --password='a'\" && sh -c 'x'",
        "-c 'mysql --password=\"a\"' sh 'x'",
    ],
)
def test_a_scripts_closing_quote_and_what_follows_stay(text: str) -> None:
    out = exec_arguments("/bin/sh", text)
    assert out == text.replace('"a"', "[REDACTED]").replace("'a'", "[REDACTED]")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"password":"a","user":"u"}', '{"password":[REDACTED],"user":"u"}'),
        ('<db password="a"/>', "<db password=[REDACTED]/>"),
        ('x(password="a", user="u")', 'x(password=[REDACTED], user="u")'),
        ("f(token='a')+1", "f(token=[REDACTED])+1"),
        ("password: 'a' # c", "password: [REDACTED] # c"),
    ],
)
def test_code_after_a_quoted_value_stays(text: str, expected: str) -> None:
    assert written_buffer(text) == expected
    assert exec_arguments("/usr/bin/app", text) == expected


def test_glued_pieces_cost_linearly() -> None:
    pf = PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 20))
    for unit in ("--password='a'\"b\"c", 'password="a"b"', "password='a'x'y"):
        assert growth(pf.filter_field, unit, size=32768) < 10, unit
