"""A secret environment variable written as a mapping's key (``DBPASS: x``) loses its value.

RP8's first known limit (session 46): only ``NAME=value`` and the Kubernetes ``name``/``value`` pair
were read by the environment-name rules, so a docker-compose ``environment:`` mapping, a Helm values
line, a ``.env.yml`` a script writes or a JSON object of variables kept the value of every name only
those rules take (``DBPASS``, ``GITHUB_PAT``, ``DB_CREDS``); a name holding a key word
(``DB_PASSWORD: x``) already lost it. Each case runs through the filter the agent uses: an exec's
arguments, a traced write's buffer, a field. The look-alikes are the ``Name: value`` lines of ordinary
text (HTTP headers, test runners' summaries, code) and the settings the ``NAME=value`` rule keeps.
"""

from __future__ import annotations

import shlex

import pytest

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.privacy import PrivacyFilter
from tests.linear_cost import growth
from tests.privacy_events import exec_arguments as _exec
from tests.privacy_events import written_buffer as _write

_PW = "P9-mapped"
_FILTER = PrivacyFilter(PrivacyConfig())


def _text(text: str) -> str:
    return _FILTER.filter_field(text)


# names only the environment globs take (no key word in them)
_NAMES = ["DBPASS", "GITHUB_PAT", "DB_CREDS", "MYSQLPASS", "BUNDLE_GEMS__CORP__COM", "SENTRY_DSN", "DB_JWT"]


@pytest.mark.parametrize("name", _NAMES)
def test_a_compose_environment_mapping_loses_its_values(name: str) -> None:
    compose = (
        "services:\n  db:\n    image: postgres:16\n    environment:\n"
        f"      {name}: {_PW}\n      POSTGRES_USER: bob\n"
    )
    assert _write(compose) == compose.replace(_PW, "[REDACTED]")
    # as a list item, quoted either way, with a blank and a comment
    assert (
        _write(f'env:\n  - {name}: "{_PW} x"\n  - LANG: C\n')
        == f"env:\n  - {name}: [REDACTED]\n  - LANG: C\n"
    )
    assert _write(f"{name}: '{_PW}'\n") == f"{name}: [REDACTED]\n"
    assert _write(f"  {name}: {_PW} a b  # the db's\n") == f"  {name}: [REDACTED]  # the db's\n"
    assert _write(f"{name}: |\n  {_PW}\n  more\nUSER: bob\n") == f"{name}: [REDACTED]\nUSER: bob\n"


@pytest.mark.parametrize("name", _NAMES)
def test_a_flow_mapping_and_json_lose_the_value(name: str) -> None:
    assert _text(f"{{{name}: {_PW} a, USER: bob}}") == f"{{{name}: [REDACTED], USER: bob}}"
    assert _text(f'{{"USER":"bob","{name}":"{_PW}"}}') == f'{{"USER":"bob","{name}":[REDACTED]}}'
    assert _text(f'[{{"{name}": 12345}}]') == f'[{{"{name}": [REDACTED]}}]'


def test_a_script_writing_the_mapping_loses_the_value() -> None:
    # the brief's case, and the same quoted again by shlex (bash -c of a joined argv)
    line = f"printf 'DBPASS: {_PW}\\nUSER: bob\\n' > .env.yml"
    assert _exec("/bin/sh", f"-c {shlex.quote(line)}") == (
        "-c 'printf '\"'\"'DBPASS: [REDACTED]\\nUSER: bob\\n'\"'\"' > .env.yml'"
    )
    assert _exec("/bin/sh", f"-c \"printf 'GITHUB_PAT: {_PW}\\n' > v.yml\"") == (
        "-c \"printf 'GITHUB_PAT: [REDACTED]\\n' > v.yml\""
    )
    assert _PW not in _exec("/bin/sh", f'-c "echo \\"DB_CREDS: u:{_PW}\\" >> v.yml"')
    # JSON inside a double-quoted shell string, its quotes escaped
    assert _text(f'sh -c "echo {{\\"DBPASS\\": \\"{_PW} x\\"}} > c.json"') == (
        'sh -c "echo {\\"DBPASS\\": [REDACTED]} > c.json"'
    )


def test_a_script_writing_the_mapping_on_a_later_line_loses_the_value() -> None:
    # a name after printf's escaped line end (``\\n``, ``\\r\\n``) was read as no key (the ``n`` before
    # it is a word's) and kept its whole value; there, and opening the printed string, a key starts a
    # line of the file written: its value is the rest of that line, to the string's end or ``\\n``
    for line in (
        f'printf "USER: bob\\nDBPASS: {_PW}\\n" > .env.yml',
        f'printf "A: b\\r\\nGITHUB_PAT: {_PW} x\\r\\n"',
        f'echo -e "env:\\n  - DB_CREDS: u:{_PW} x\\nB: c" > f.yml',
        f'printf "DBPASS: {_PW} x\\n" > .env.yml',
        f'echo "DBPASS: {_PW} x" > .env.yml',
    ):
        out = _exec("/bin/sh", f"-c {shlex.quote(line)}")
        assert _PW not in out and " x" not in out, out
        assert out.endswith(("\\n\" > .env.yml'", "\\r\\n\"'", "\\nB: c\" > f.yml'", "\" > .env.yml'")), out
    # after an escaped tab the key is mid-line: its words up to the escaped line end (LK, session 48: it
    # was one word, and a value's second word was kept)
    assert _text(f'printf "x:\\tDBPASS: {_PW} y\\n"') == 'printf "x:\\tDBPASS: [REDACTED]\\n"'


def test_a_script_writing_ordinary_name_value_lines_keeps_them() -> None:
    for line in (
        'printf "Host: db corp\\nNote: a b\\n"',
        'echo "Content-Type: text/plain"',
        "dir C:\\new\\nHost: x",
    ):
        assert _text(line) == line


def test_a_key_word_name_loses_the_rest_of_its_line_too() -> None:
    # the key rule took one word (``[REDACTED] a b``); a YAML plain scalar is the rest of the line
    assert _write(f"DB_PASSWORD: {_PW} a b\nUSER: bob\n") == "DB_PASSWORD: [REDACTED]\nUSER: bob\n"


def test_a_key_words_plain_scalar_at_a_lines_start_loses_all_its_words() -> None:
    # a config file's YAML, any case: the key rules take one word (``[REDACTED] horse battery``)
    config = f"db:\n  password: correct horse {_PW}\n  user: bob\n"
    assert _write(config) == "db:\n  password: [REDACTED]\n  user: bob\n"
    assert _write(f"- Passphrase: a {_PW} # rotated\n") == "- Passphrase: [REDACTED] # rotated\n"
    assert _write(f"token: a {_PW}") == "token: [REDACTED]"


def test_lower_case_names_follow_the_name_value_rule() -> None:
    # (env_names.argument_regex: a lower-case name counts only with a suffix naming nothing but a
    # secret, or a credential's whose value is no setting)
    assert _text(f"db_creds: u:{_PW}") == "db_creds: [REDACTED]"
    assert _text(f"nexus_psw: {_PW}") == "nexus_psw: [REDACTED]"
    assert _text(f"sentry_dsn: https://{_PW}@h/1") == "sentry_dsn: [REDACTED]"
    assert _text(f"db_salt: {_PW}") == "db_salt: [REDACTED]"
    for kept in ("use_jwt: true", "load_creds: 1", "file_pat: '*.log'", "dbpass: x"):
        assert _text(kept) == kept


@pytest.mark.parametrize(
    "text",
    [
        "Host: db.corp\r\nNote: x\r\nContent-Type: text/plain\r\n",
        "BYPASS: enabled\nCOMPASS: north\nGIT_ASKPASS: /usr/bin/ksshaskpass\n",
        "XPASS: tests/test_a.py::test_b\n",
        "--- PASS: TestDBPASS (0.00s)\n    --- PASS: TestX/sub_case (0.01s)\nPASS\n",
        "switch (k) { case MY_KEY: return 1; }",
        "x = ready ? MY_KEY : OTHER_KEY;",
        "started at 12:30:45, TOKENS:5",
        "DB_PASS:=x\nAPI_KEY::=y",  # make's assignments are the key rules'
        "DBPASS:\n  nested: 1\n",  # no value on the key's line
        "http://db.corp:5432/app",
    ],
)
def test_ordinary_name_value_text_stays(text: str) -> None:
    if "DB_PASS:=" in text:  # (the key rule's, not this one's: DB_PASS is a key word)
        assert _text(text) == "DB_PASS:=[REDACTED]\nAPI_KEY::=[REDACTED]"
        return
    assert _text(text) == text


def test_an_automake_pass_line_still_loses_its_test_name() -> None:
    # automake's ``PASS: t/basic.sh`` cannot be told from a YAML ``PASS: x`` entry (PASS is a glob
    # and a key word): the test's name goes, over-redaction, never a password kept
    assert _text("PASS: t/basic.sh 1 - works") == "PASS: [REDACTED]"


def test_a_marker_already_there_is_no_value() -> None:
    for text in ("DBPASS: [REDACTED]\nUSER: x", "{DBPASS: [REDACTED], USER: x}", "DBPASS: [REDACTED] # c"):
        assert _text(text) == text


def test_the_mapping_rule_costs_linearly() -> None:
    # (a field longer than the default maxArgumentBytes, 4096, would be cut before the rules read it)
    pf = PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 17))
    for unit in (
        "password: a b\n",  # a line's start, a key rule's marker
        "a\n- DBPASS: ",
        "{DBPASS: x, ",
        # keys nested in a taken value: a scan going on inside it read the rest of the field for each
        " DBPASS: |\n",
        "{DBPASS: x {DBPASS: y ",
        '\\\\"DBPASS\\": ',  # a run of backslashes before a quoted name
        "A_KEY: A_KEY: ",
        "  --- PASS: ",
        "\\nDBPASS: a b ",  # a printed line after an escaped line end
        "'- DBPASS: x y ",  # a key opening a printed string
        "X" * 140 + ": pass ",  # a name longer than its bound (``pass``: the rule runs only on a trigger)
    ):
        assert growth(pf.filter_field, unit, size=32768) < 10, unit


def test_keys_it_does_not_take_nested_in_each_others_values_cost_linearly() -> None:
    # A key whose name is no variable's (``a``, ``Host``, a lower-case ``dbpass``) had its value read
    # anyway, then the scan went on inside that value: a flow member runs to the line's end and a block
    # scalar over every indented line after it, so each nested key read the rest of the field again
    # (64 KiB of ``{a: x DBPASS `` took 2.3 s, 10-17x for 4x the text). ``pass`` makes the rule run.
    pf = PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 17))
    for unit in ("{a: x DBPASS ", "{Host: x token ", "{dbpass: x ", " a: |\n x pass\n"):
        assert growth(pf.filter_field, unit, size=32768) < 10, unit


@pytest.mark.parametrize("nul", ["\x00", "\ufffd"])
def test_keys_read_past_a_nul_or_a_comment_cost_linearly(nul: str) -> None:
    # s49 P's "Noticed" 1, in ccd851be too: a NUL starts a line, but a value read there runs over the
    # next NULs to the line's end; a key whose value was then not taken (no marker first: ``Authorization:
    # Bearer``; a nested ``{``) made the scan go on right after it, and the next key read the rest again
    # (64 KiB of ``t=x<NUL>-H<NUL>Authorization: Bearer a `` took 2.3 s, ``DBPASS: {<NUL>`` 5.8 s). A key
    # ending a commented line read every commented line below it (``# DBPASS:`` then more: 1 s).
    pf = PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 17))
    for unit in (
        f"t=x{nul}-H{nul}Authorization: Bearer a ",
        f"DBPASS: {{{nul}",
        f"x{nul}DBPASS: {{a ",
        f"{nul}DBPASS: #a ",
        "# DBPASS:\n",
    ):
        assert growth(pf.filter_field, unit, size=32768) < 10, repr(unit)


@pytest.mark.parametrize("nul", ["\x00", "\ufffd"])
def test_what_a_key_after_a_nul_loses_is_unchanged_by_the_linear_scan(nul: str) -> None:
    assert _text(f"app{nul}DBPASS: {_PW} x{nul}USER: bob") == f"app{nul}DBPASS: [REDACTED]"
    assert _text(f"a{nul}DBPASS: {{x: 1}}{nul}b") == f"a{nul}DBPASS: {{x: 1}}{nul}b"
    out = _text(f"curl{nul}-H{nul}Authorization: Bearer {_PW} y{nul}https://h")
    assert _PW not in out and out.endswith(f"{nul}https://h"), out
    commented = "# DBPASS:\n# DBPASS:\nDBPASS: #c\n  "
    assert _text(f"{commented}{_PW}\n") == f"{commented}[REDACTED]\n"
