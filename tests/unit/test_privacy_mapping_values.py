"""A mapping key's whole value goes: past its first word, on the lines below, under a camelCase name.

Session 47's leaks (LK, session 48), each a part of a secret the mapping rule (privacy/mapping_env.py)
kept: a key word's key away from a line's start kept all but the first word (``x password: a b``,
``{password: a b}``, ``user.password: a b``); a YAML value on the lines below its key was kept
(``DBPASS:`` then ``  x``; a plain or single-quoted scalar's later lines); a camelCase Helm name only an
environment glob takes (``githubPat: x``) kept its value; and a key after a NUL (U+FFFD) was read as
mid-line. Each runs through the filter the agent uses (a traced write's buffer, a field); the look-alikes
are a nested map, a Secret reference and camelCase names that name no secret.
"""

from __future__ import annotations

import pytest

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.privacy import PrivacyFilter
from tests.linear_cost import growth
from tests.privacy_events import exec_arguments as _exec
from tests.privacy_events import written_buffer as _write

_PW = "LK-mapped"
_FILTER = PrivacyFilter(PrivacyConfig())


def _text(text: str) -> str:
    return _FILTER.filter_field(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"x password: {_PW} b", "x password: [REDACTED]"),
        (f"login user: bob password: {_PW} b host=db", "login user: bob password: [REDACTED] host=db"),
        (f"echo password: {_PW} b | app", "echo password: [REDACTED] | app"),
        (f"{{password: {_PW} b}}", "{password: [REDACTED]}"),
        (f"[{{password: {_PW} b, user: c}}]", "[{password: [REDACTED], user: c}]"),
        (f"user.password: {_PW} b", "user.password: [REDACTED]"),
        (
            f"spring:\n  db.user.password: {_PW} b\n  x: 1\n",
            "spring:\n  db.user.password: [REDACTED]\n  x: 1\n",
        ),
        (f"x DBPASS: {_PW} b -v", "x DBPASS: [REDACTED] -v"),
    ],
)
def test_a_key_words_value_loses_all_its_words_anywhere_on_a_line(text: str, expected: str) -> None:
    assert _write(text) == expected


@pytest.mark.parametrize("name", ["DBPASS", "GITHUB_PAT", "password", "db_creds"])
def test_a_value_on_the_lines_below_its_key_goes(name: str) -> None:
    assert _write(f"{name}:\n  {_PW}\nUSER: bob\n") == f"{name}:\n  [REDACTED]\nUSER: bob\n"
    assert _write(f"env:\n  {name}:\n    {_PW}\n    b\n\n    c\n  USER: x\n") == (
        f"env:\n  {name}:\n    [REDACTED]\n  USER: x\n"
    )
    # a plain scalar and a single-quoted one going on over the lines indented deeper than the key
    assert _write(f"{name}: {_PW}\n  b\nUSER: bob\n") == f"{name}: [REDACTED]\nUSER: bob\n"
    assert _write(f"- {name}: '{_PW}\n    b'\n- USER: bob\n") == f"- {name}: [REDACTED]\n- USER: bob\n"
    # a comment after the key or above the value (the key rules take ``#`` after ``password:`` already)
    out = _write(f"{name}: # rotated\n  {_PW}\nUSER: bob\n")
    assert _PW not in out and out.startswith(f"{name}: ") and out.endswith("\nUSER: bob\n"), out
    out = _write(f"{name}:\n  # rotated\n  {_PW}\n")
    assert _PW not in out, out
    if name != "password":  # (the key rules take ``#`` and the word after it: the comment goes too)
        assert out == f"{name}:\n  # rotated\n  [REDACTED]\n"
    # a sequence of scalars at the key's own indentation (YAML's compact form)
    assert _write(f"{name}:\n- {_PW}\n- b\nUSER: bob\n") == f"{name}:\n[REDACTED]\nUSER: bob\n"
    assert _write(f"env:\n  {name}:\n  - {_PW}\n  X: y\n") == f"env:\n  {name}:\n  [REDACTED]\n  X: y\n"


def test_a_nested_map_under_a_secret_name_is_no_value() -> None:
    # its keys are read by their own names: a Secret reference stays, a nested password goes
    for kept in (
        "DBPASS:\n  key: v\n",
        "env:\n  DBPASS:\n    valueFrom:\n      secretKeyRef:\n        name: s\n        key: k\n",
        "GITHUB_PAT:\n  - name: a\n    value: b\n",
        "GITHUB_PAT:\n- name: a\n  value: b\n",
        "- DBPASS:\n- USER\n",  # a sibling item, no value of the key
    ):
        assert _write(kept) == kept
    assert _write(f"DBPASS:\n  user: bob\n  password: {_PW}\n") == (
        "DBPASS:\n  user: bob\n  password: [REDACTED]\n"
    )
    # a key word's: the key rules take the map's first key for the value (over-redaction, Known limits)
    ref = "env:\n  DB_PASSWORD:\n    valueFrom:\n      secretKeyRef:\n        name: s\n"
    assert _write(ref) == ref.replace("valueFrom:", "[REDACTED]")


@pytest.mark.parametrize(
    "name", ["githubPat", "gitlabPAT", "dbCreds", "DbCreds", "sentryDsn", "awsCredentials", "sftpKeyPem"]
)
def test_a_camel_case_helm_name_only_a_glob_takes_loses_its_value(name: str) -> None:
    assert _write(f"app:\n  {name}: {_PW}\n  replicas: 2\n") == f"app:\n  {name}: [REDACTED]\n  replicas: 2\n"
    assert _text(f'{{"{name}": "{_PW}", "n": 1}}') == f'{{"{name}": [REDACTED], "n": 1}}'


def test_camel_case_names_that_name_no_secret_stay() -> None:
    for kept in (
        "sortKey: name\nprimaryKey: id\ncacheKey: k\n",
        "useJwt: true\nloadCreds: 1\n",
        "Host: db\n",
        # a JSON schema's object under such a name (cfn-lint's resource schemas): ``{`` opens no value
        '{\n  "DbCredentials": {\n   "type": "object"\n  },\n  "n": 1\n}',
    ):
        assert _write(kept) == kept


def test_a_camel_case_pattern_name_loses_its_value_too() -> None:
    # over-redaction, never a leak: ``filePat`` reads as ``FILE_PAT``, a personal access token's name
    assert _write("filePat: '*.log'\n") == "filePat: [REDACTED]\n"


def test_a_nested_maps_first_key_the_key_rules_took_loses_its_line() -> None:
    # the key rules read ``description:`` as the value of ``authorization:`` (``[REDACTED] 'x y'``); the
    # rest of that line goes with it (over-redaction), the map's next key stays
    text = "authorization:\n  description: 'x y'\n  type: string\n"
    assert _write(text) == "authorization:\n  [REDACTED]\n  type: string\n"


def test_a_json_objects_members_below_a_key_word_stay() -> None:
    # a pretty-printed JSON object under a key word's name: the key rules took its ``{`` for the value (722
    # times in 3,000 real files: AWS and cfn-lint schemas), and a draft of the mapping rule took its
    # members too; an opening ``{`` or ``[`` ending its line is no value (key_rules.SEP), its members are
    # read by their own names
    text = '{\n  "ClientToken": {\n   "type": "string",\n   "password": "x y"\n  },\n  "n": [\n  1]\n}'
    assert _write(text) == text.replace('"x y"', "[REDACTED]")
    assert _write('{"password": {"v": 1}}').startswith('{"password": [REDACTED]')  # not ending its line


def test_a_nested_maps_only_member_under_a_key_word_goes() -> None:
    # ``token:`` then ``value: abc``: the key rules take ``value:``, the mapping rule the rest of the line
    assert _write(f"token:\n  value: {_PW}\nuser: bob\n") == "token:\n  [REDACTED]\nuser: bob\n"


@pytest.mark.parametrize("sep", ["\x00", "\ufffd"])
def test_a_key_after_a_nul_starts_a_line(sep: str) -> None:
    assert _text(f"USER: b{sep}DBPASS: {_PW} b") == f"USER: b{sep}DBPASS: [REDACTED]"
    assert _text(f"USER: b{sep}password: {_PW} b") == f"USER: b{sep}password: [REDACTED]"


def test_the_new_readings_cost_linearly() -> None:
    pf = PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 17))
    for unit in (
        "x password: a b ",  # a marker's words mid-line
        "{password: a b ",
        "a.b.c.password: a ",  # a dotted path
        "a.b.c.d.e.f.g.h.",
        "DBPASS:\n  ",  # keys ending their lines, nothing or a map below
        "DBPASS:\n  x\n",
        "DBPASS: a\n  b\n",  # a plain scalar's lines
        "- DBPASS: 'a\n   ",  # an open single-quoted scalar
        "DBPASS:\n- a\n",  # a sequence at the key's indentation
        "githubPatX: ",  # camelCase names
        "\x00DBPASS: a b",
        '"password": {\n',  # an opening brace ending its line (key_rules.SEP)
        "password:\n\n\n{",
        "db-password: a-b ",  # a dashed key (RLK)
        "\npassword = a b",  # an INI line (RLK)
        "\na = [REDACTED] ",
        "DBPASS: |\r\n  \r\n",  # a block scalar with CRLF line ends (RLK)
        "DBPASS:\n- a\n\n\n  b\n",  # a sequence item's lines below it (RLK)
        "{pwd: a b, ",  # a key word no environment glob holds: the rule runs on the marker (RLK)
        "- pwd:\n  - a\n",
        "a.password=a b\n",  # a glued properties line (s49 P)
        "a.b=c ",
        "\x00a.DBPASS=x y",
        "a.password:a b\n",  # a properties line with ``:`` (s49 P2)
        "a.b:c ",
        "\x00a.DBPASS:x y",
    ):
        assert growth(pf.filter_field, unit, size=32768) < 10, unit


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"spring.datasource.password={_PW} b\n", "spring.datasource.password=[REDACTED]\n"),
        (f"a=1\n  app.db.password={_PW} b c\r\nuser=bob", "a=1\n  app.db.password=[REDACTED]\r\nuser=bob"),
        (f"x.y=1\napp.DBPASS={_PW} b\n", "x.y=1\napp.DBPASS=[REDACTED]\n"),
        (f"app.GITHUB_PAT={_PW} b", "app.GITHUB_PAT=[REDACTED]"),
        (f"a.b.token={_PW} b\x00next", "a.b.token=[REDACTED]\x00next"),  # an argv's next word stays
    ],
)
def test_a_glued_properties_lines_value_goes_to_the_lines_end(text: str, expected: str) -> None:
    # s49 P: a Java properties line's value is the rest of its line (was a known limit)
    assert _write(text) == expected


@pytest.mark.parametrize(
    ("binary", "arguments", "expected"),
    [
        # env runs the command after the assignments: the first line of an exec's arguments is argv words
        (
            "/usr/bin/env",
            f"spring.datasource.password={_PW} java -jar app.jar --debug",
            "spring.datasource.password=[REDACTED] java -jar app.jar --debug",
        ),
        ("/usr/bin/env", f"app.DBPASS={_PW} java -Dx=1 Main", "app.DBPASS=[REDACTED] java -Dx=1 Main"),
        # one argument holding a blank is quoted, a tab stays inside its argument
        ("/usr/bin/env", f'"a.b.password={_PW} b" java', '"a.b.password=[REDACTED]" java'),
        ("/usr/bin/env", f"a.b.token={_PW}\tb java", "a.b.token=[REDACTED] java"),
        # a script's properties file written inside an argument: its line goes whole
        (
            "/bin/sh",
            f'-c "cat > a.properties <<E\nspring.datasource.password={_PW} b\nE"',
            '-c "cat > a.properties <<E\nspring.datasource.password=[REDACTED]\nE"',
        ),
    ],
)
def test_a_glued_properties_key_in_an_execs_arguments_takes_its_argument(
    binary: str, arguments: str, expected: str
) -> None:
    # s49 RP (P's "Noticed" 3): a JVM reads -Dkey=value, and env a.b=x, one argv word at a time; the
    # exec's first line lost every later argument (``env spring.datasource.password=x java -jar app.jar``
    # showed no command)
    assert _exec(binary, arguments) == expected
    assert _PW not in _exec(binary, arguments)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"spring.datasource.password:{_PW} b\n", "spring.datasource.password:[REDACTED]\n"),
        (f"x.y=1\napp.secret.token:{_PW} b c\r\nuser=bob", "x.y=1\napp.secret.token:[REDACTED]\r\nuser=bob"),
        (f"app.DBPASS:{_PW} b\n", "app.DBPASS:[REDACTED]\n"),
    ],
)
def test_a_properties_line_with_a_colon_separator_loses_its_lines_rest(text: str, expected: str) -> None:
    # s49 P2 (RP's left-alone 4): Java's Properties.load takes ``:`` as it takes ``=``; ``key:a b`` kept ``b``
    assert _write(text) == expected


def test_a_colon_properties_key_in_an_execs_arguments_takes_its_argument() -> None:
    args = f"spring.datasource.password:{_PW} java -jar app.jar --debug"
    assert _exec("/usr/bin/env", args) == "spring.datasource.password:[REDACTED] java -jar app.jar --debug"


def test_a_glued_colon_thats_no_properties_key_keeps_its_words() -> None:
    for text in ("host.name:8080 x\n", "a.b.c:d e\n", "image: reg.io/app:1.2 x\n", "a.b.url:http://h x\n"):
        assert _write(text) == text
    text = f"x spring.datasource.password:{_PW} b"  # mid-line: the key rules' first word only
    assert _write(text) == "x spring.datasource.password:[REDACTED] b"


def test_a_glued_key_thats_no_properties_key_keeps_its_words() -> None:
    # no shell variable holds a dot: ``PGPASSWORD=x psql`` runs psql; mid-line or a list item is no such line
    for text, expected in [
        (f"PGPASSWORD={_PW} psql -h h", "PGPASSWORD=[REDACTED] psql -h h"),
        (f"x spring.datasource.password={_PW} b", "x spring.datasource.password=[REDACTED] b"),
        (f"- a.password={_PW} b", "- a.password=[REDACTED] b"),
        ("a.b=c d\n", "a.b=c d\n"),
    ]:
        assert _write(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"[client]\npassword = {_PW} horse\nuser = bob\n", "[client]\npassword = [REDACTED]\nuser = bob\n"),
        (f"a.b.password = {_PW} b\r\nx = 1", "a.b.password = [REDACTED]\r\nx = 1"),
        (f"[db]\n  pwd\t=\t{_PW} b\n", "[db]\n  pwd\t=\t[REDACTED]\n"),
        (f"[env]\nDBPASS = {_PW} b\nLANG = C\n", "[env]\nDBPASS = [REDACTED]\nLANG = C\n"),
        (f"user = bob\x00password = {_PW} b", "user = bob\x00password = [REDACTED]"),
    ],
)
def test_an_ini_or_properties_key_words_value_loses_all_its_words(text: str, expected: str) -> None:
    # RLK (s48): blanks then ``=`` at a line's start (INI, TOML, a properties file): the key rules took
    # the value's first word and the rest of its line was kept (``password = correct horse``: `` horse``),
    # also under an environment name (``DBPASS = a b``, LK's INI reading: `` b``)
    assert _write(text) == expected


def test_an_equals_sign_elsewhere_keeps_the_rest_of_the_line() -> None:
    # not at a line's start, a comparison, a list item: the key rules' one word, no more
    for text, tail in (
        ("x password = a b", " b"),
        ("- password = a b", " b"),
        ("if password == a b", " b"),
        ("[ $password != a ] && b", " && b"),
    ):
        assert _write(text).endswith(tail), text
    for kept in ("use_jwt = true\n", "LANG = C\n", "password =\n"):
        assert _write(kept) == kept


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"pwd: {_PW} b", "pwd: [REDACTED]"),
        (f"accessKey: {_PW} b\nregion: eu\n", "accessKey: [REDACTED]\nregion: eu\n"),
        (f"x privateKey: {_PW} b host: h", "x privateKey: [REDACTED] host: h"),
        (f"{{privateKey: {_PW} b, n: 1}}", "{privateKey: [REDACTED], n: 1}"),
        (f"signature: {_PW} b", "signature: [REDACTED]"),
        (f"pwd:\n  {_PW}\n  b\nuser: bob\n", "pwd:\n  [REDACTED]\nuser: bob\n"),
        (f"pwd:\n  - {_PW}\n  - b\nuser: bob\n", "pwd:\n  [REDACTED]\nuser: bob\n"),
    ],
)
def test_a_key_word_no_environment_glob_holds_loses_its_whole_value(text: str, expected: str) -> None:
    # RLK (s48): the mapping rule ran only on a text holding an environment glob's literal part
    # (``password``, ``token``, ``secret``), so the key rules' one word was all ``pwd``, ``accessKey``,
    # ``privateKey`` or ``signature`` lost: ``pwd: a b`` kept `` b``
    assert _write(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"db-password: {_PW} b\nhost: h\n", "db-password: [REDACTED]\nhost: h\n"),
        (f"  admin-password:\n    {_PW}\n    b\n  x: 1\n", "  admin-password:\n    [REDACTED]\n  x: 1\n"),
        (f"x x-api-key: {_PW} b host: h", "x x-api-key: [REDACTED] host: h"),
        (f"{{db-password: {_PW} b, n: 1}}", "{db-password: [REDACTED], n: 1}"),
    ],
)
def test_a_dashed_key_words_value_loses_all_its_words(text: str, expected: str) -> None:
    # RLK (s48): a key's last part was read without ``-``, so ``db-password:`` was no mapping key and kept
    # all its value but the key rules' first word (a dashed name is common in Helm values and YAML)
    assert _write(text) == expected


@pytest.mark.parametrize("name", ["DBPASS", "githubPat", "db_creds"])
def test_a_block_scalar_with_crlf_line_ends_loses_its_lines(name: str) -> None:
    # RLK (s48): a block scalar's indicator then ``\r\n`` (a file written on Windows, ``printf '…\r\n'``)
    # was no block scalar: ``|`` alone went and every line of the value stayed
    text = f"{name}: |\r\n  {_PW}\r\n\r\n  b\r\nUSER: bob\r\n"
    assert _write(text) == f"{name}: [REDACTED]\r\nUSER: bob\r\n"
    assert _write(f"{name}: >-  # c\r\n  {_PW}\r\n") == f"{name}: [REDACTED]\r\n"


def test_a_sequence_items_lines_below_it_go() -> None:
    # RLK (s48): an item of a sequence at the key's indentation took its own line only, so a block scalar
    # item or a multi-line item kept its lines (``DBPASS:`` then ``- |`` then ``  x``)
    assert _write(f"DBPASS:\n- |\n  {_PW}\n  b\n- c\nUSER: bob\n") == "DBPASS:\n[REDACTED]\nUSER: bob\n"
    assert _write(f"  GITHUB_PAT:\n  - a\n    {_PW}\n  X: y\n") == "  GITHUB_PAT:\n  [REDACTED]\n  X: y\n"
    # a map item still ends it, and the map's lines stay
    assert _write("DBPASS:\n- a\n- name: n\n  value: v\n") == "DBPASS:\n[REDACTED]\n- name: n\n  value: v\n"


@pytest.mark.parametrize(
    ("text", "family"),
    [
        (f"pwd: {_PW} b", "password"),
        (f"x password: {_PW} b", "password"),
        (f"password = {_PW} b\n", "password"),
        (f"DB_PASSWORD: {_PW} b", "password"),
        (f"api_token:\n  {_PW}\n  b\n", "secret_token"),
        (f"DBPASS: {_PW} b", "env_name"),
    ],
)
def test_a_value_taken_whole_counts_once(text: str, family: str) -> None:
    # RLK (s48): the mapping rule's taking the rest of a value the key rules had cut (their marker, then
    # more) counted a second secret, as env_name: ``pwd: a b`` counted password 1 and env_name 1
    pf = PrivacyFilter(PrivacyConfig())
    assert _PW not in pf.filter_field(text)
    assert {k: v for k, v in pf.redactions_by_pattern.items() if v} == {family: 1}
    assert pf.fields_redacted == 1


def test_another_rules_marker_after_a_key_keeps_the_rest_of_its_line() -> None:
    # RLK (s48): the rest of a value went after any rule's marker, so an e-mail address (personal data)
    # under ``author:`` took the words after it; only a credential key's value goes on past its marker
    assert _write("author: alice@example.com wrote this\ntoken: x\n") == (
        "author: [REDACTED] wrote this\ntoken: [REDACTED]\n"
    )
    assert _write("x from: alice@example.com via smtp") == "x from: [REDACTED] via smtp"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a Java properties line continued by a backslash at its end (Properties.load joins the next line,
        # its leading blanks skipped)
        (
            f"spring.datasource.password=abc\\\n    {_PW}\nx=1\n",
            "spring.datasource.password=[REDACTED]\nx=1\n",
        ),
        (f"password = abc\\\r\n  {_PW}\r\nx=1", "password = [REDACTED]\r\nx=1"),
        (f"app.DBPASS=abc\\\n  {_PW}\nx=1", "app.DBPASS=[REDACTED]\nx=1"),
        # a shell word continued on the next line (the backslash and line feed are removed: one word)
        (f'sh -c "mysql --password=abc\\\n{_PW} -h h"', 'sh -c "mysql --password=[REDACTED] -h h"'),
        (f"DBPASS=abc\\\n{_PW} app", "DBPASS=[REDACTED] app"),
    ],
)
def test_a_value_continued_on_the_next_line_loses_that_line(text: str, expected: str) -> None:
    # s49 RP, a neighbour of P's properties lines (9fe145ed): the value ended at the backslash
    assert _write(text) == expected


def test_a_command_line_continued_after_a_blank_keeps_its_next_line() -> None:
    text = f"mysql --password={_PW} \\\n  -h db\n"
    assert _write(text) == "mysql --password=[REDACTED] \\\n  -h db\n"
    pf = PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 17))
    for unit in ("password=a\\\n", "DBPASS=a\\\n ", "password=\\\\\\\n\\"):
        assert growth(pf.filter_field, unit, size=32768) < 10, unit
