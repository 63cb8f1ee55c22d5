"""Leaks session 43 left alone (P5, RP5 "Noticed, left alone"), fixed by P6 in session 44.

A lower-case or mixed-case ``*_creds``, ``*_dsn`` or ``*_jwt`` environment name in argument text
(``db_creds=u:pw ./run``: only upper-case names counted there), ``psw`` as a key's own word
(``--psw x``, ``PSW=x``; only ``*_PSW`` environment names counted), a value holding an escaped blank
after such a name (``db_psw=a\\ b``: the name rule stopped at the blank), and the string given to
``ConvertTo-SecureString`` after a ``-Key`` whose value nests parentheses
(``-Key (Get-Content (Join-Path a b)) 'enc'``). Each through ``PrivacyFilter``, as the agent calls
it, and the settings these names also carry (``use_jwt=true``) kept. Found on the way: a switch word
after a ``--…jwt`` flag taken for a credential, ``PSW`` and ``LDAP_BINDPW`` in an environment list,
``snyk auth`` and ``codecov -t`` tokens, and a piped PowerShell literal holding a doubled quote.
"""

from __future__ import annotations

import pytest

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.contracts.events import EventKind, ProcessInfo, RuntimeCallEvent
from stellaops_runtime.privacy import PrivacyFilter
from tests.linear_cost import growth


def _filter(text: str) -> str:
    return PrivacyFilter(PrivacyConfig()).filter_field(text)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("db_creds=u:P6sec-1 ./run", "db_creds=[REDACTED] ./run"),
        ("Db_Creds=u:P6sec-1 ./run", "Db_Creds=[REDACTED] ./run"),
        ("nexus_creds=deploy:P6sec-1 ./deploy", "nexus_creds=[REDACTED] ./deploy"),
        ('sh -c "db_creds=u:P6sec-1 ./run"', 'sh -c "db_creds=[REDACTED] ./run"'),
        ("db_dsn=P6sec-1 ./run", "db_dsn=[REDACTED] ./run"),
        ("sentry_dsn=https://P6sec-1@o1.ingest.sentry.io/2 ./run", "sentry_dsn=[REDACTED] ./run"),
        ("env db_jwt=P6sec-1 ./run", "env db_jwt=[REDACTED] ./run"),
        ("export db_Jwt='P6sec-1 b'", "export db_Jwt=[REDACTED]"),
    ],
)
def test_a_lower_or_mixed_case_creds_dsn_or_jwt_name_loses_its_value(text: str, want: str) -> None:
    out = _filter(text)
    assert out == want
    assert "P6sec-1" not in out


@pytest.mark.parametrize(
    "text",
    [
        # a switch or a count after such a name is a setting, no secret
        "app --set use_jwt=true",
        "ansible-playbook -e load_creds=1 site.yml",
        "app enable_jwt=no max_creds=5",
        "app use_dsn=off",
        "echo $db_creds",
        "db_creds_file=/etc/creds ./run",  # another name: the suffix must end it
    ],
)
def test_a_setting_under_a_lower_case_creds_dsn_or_jwt_name_stays(text: str) -> None:
    assert _filter(text) == text


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("app --psw P6sec-2", "app --psw [REDACTED]"),
        ("app --psw=P6sec-2", "app --psw=[REDACTED]"),
        ("app --db-psw P6sec-2", "app --db-psw [REDACTED]"),
        ("PSW=P6sec-2 ./run", "PSW=[REDACTED] ./run"),
        ("psw=P6sec-2 ./run", "psw=[REDACTED] ./run"),
        ("app psw: P6sec-2", "app psw: [REDACTED]"),
        ('{"psw": "P6sec-2"}', '{"psw": [REDACTED]}'),
        ("app /psw:P6sec-2", "app /psw:[REDACTED]"),  # Windows-style (flag_values)
        ("Server=db;Uid=u;Psw=P6sec-2;", "Server=db;Uid=u;Psw=[REDACTED];"),
        ("db_psw=a\\ P6sec-2 ./run", "db_psw=[REDACTED] ./run"),
        ("DB_PSW=a\\ P6sec-2 ./run", "DB_PSW=[REDACTED] ./run"),
        ('sh -c "db_psw=a\\ P6sec-2 ./run"', 'sh -c "db_psw=[REDACTED] ./run"'),
    ],
)
def test_psw_as_a_keys_own_word_loses_its_value(text: str, want: str) -> None:
    out = _filter(text)
    assert out == want
    assert "P6sec-2" not in out


@pytest.mark.parametrize("text", ["app --pswd-len 8", "cp a.psw b.psw", "app --psw-file /etc/app.psw"])
def test_a_word_merely_holding_psw_keeps_its_value(text: str) -> None:
    assert _filter(text) == text


@pytest.mark.parametrize(
    ("text", "want"),
    [
        (
            "ConvertTo-SecureString -Key (Get-Content (Join-Path a b)) 'P6enc-3'",
            "ConvertTo-SecureString -Key (Get-Content (Join-Path a b)) [REDACTED]",
        ),
        (
            "pwsh -c \"ConvertTo-SecureString -Key (Get-Key (x)) 'P6enc-3'\"",
            'pwsh -c "ConvertTo-SecureString -Key (Get-Key (x)) [REDACTED]"',
        ),
        (
            "ConvertTo-SecureString -K @(Get-Content (Join-Path (pwd) k)) P6enc-3",
            "ConvertTo-SecureString -K @(Get-Content (Join-Path (pwd) k)) [REDACTED]",
        ),
    ],
)
def test_a_key_with_nested_parentheses_still_loses_the_string(text: str, want: str) -> None:
    out = _filter(text)
    assert out == want
    assert "P6enc-3" not in out


def test_a_variable_after_a_nested_key_stays() -> None:
    text = "ConvertTo-SecureString -Key (Get-Content (Join-Path a b)) $enc"
    assert _filter(text) == text


def test_the_agents_path_drops_the_lower_case_names_and_psw_from_an_exec() -> None:
    # PrivacyFilter.apply: the process's arguments as Tetragon gives them, the binary apart
    ev = RuntimeCallEvent(
        kind=EventKind.EXEC,
        timestamp_ns=1,
        node_name="n",
        process=ProcessInfo(
            pid=7, binary="/usr/bin/env", arguments="db_creds=u:P6sec-4 db_jwt=P6sec-4 ./app --psw P6sec-4"
        ),
    )
    PrivacyFilter(PrivacyConfig()).apply(ev)
    assert ev.process is not None
    assert "P6sec-4" not in ev.process.arguments
    assert ev.process.arguments == "db_creds=[REDACTED] db_jwt=[REDACTED] ./app --psw [REDACTED]"


@pytest.mark.parametrize(
    "unit",
    [
        "db_creds=",
        "a_jwt=true ",
        "x_dsn=a\\ ",
        "--psw ",
        "psw=",
        "db_psw=a\\ b\\ ",
        "ConvertTo-SecureString -Key (((",
        "jaydebeapi.connect(a, b, ['u', ",
        "jaydebeapi.connect(x a ",
        "u:a'b\"c@tcp(@/ ",
        "|ConvertTo-SecureString ",
    ],
)
def test_the_widened_rules_cost_grows_linearly_with_a_hostile_field(unit: str) -> None:
    ratio = growth(PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 20)).redact_text, unit)
    assert ratio < 10, f"{unit!r}: 64 KiB costs {ratio:.1f}x the 16 KiB field"


@pytest.mark.parametrize("text", ["git clone https://abc:@gitsrv/o/r", "curl https://tok:@host/x"])
def test_a_short_url_user_before_an_empty_password_goes(text: str) -> None:
    # not a defect (brief P6 item 4): a user with an empty password is a credential whatever its
    # length; a user with no password at all stays a name (test_privacy_any_case_and_quoted.py)
    out = _filter(text)
    assert out == text.replace("abc:@", "[REDACTED]:@").replace("tok:@", "[REDACTED]:@")


@pytest.mark.parametrize(
    "text",
    [
        # a switch after a flag whose name ends in jwt, bearer or cred(s) is a setting, no credential
        "python -m app --verify_jwt=off",
        "java -Dspring.security.use_jwt=true -jar app.jar",
        "app --use-bearer false --cred none",
    ],
)
def test_a_switch_after_a_jwt_or_credential_flag_stays(text: str) -> None:
    assert _filter(text) == text


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("app --jwt P6tok-5", "app --jwt [REDACTED]"),
        ("app --verify_jwt=P6tok-5", "app --verify_jwt=[REDACTED]"),
        ("app --cred u:P6tok-5", "app --cred [REDACTED]"),
        ("app --jwt onP6tok-5", "app --jwt [REDACTED]"),  # a word that only starts like a switch
    ],
)
def test_a_credential_after_a_jwt_or_credential_flag_still_goes(text: str, want: str) -> None:
    assert _filter(text) == want


def test_a_bare_psw_name_in_an_environment_list_loses_its_value() -> None:
    # the container observer's path (PrivacyFilter.filter_env): a name is matched against the globs,
    # and ``PSW`` alone matched none of them (``*_PSW`` needs its underscore)
    out = PrivacyFilter(PrivacyConfig()).filter_env(["PSW=P6sec-6", "psw=P6sec-6", "PSW_FILE=/run/pw"])
    assert out == ["PSW=[REDACTED]", "psw=[REDACTED]", "PSW_FILE=/run/pw"]


def test_an_ldap_bind_password_name_in_an_environment_list_loses_its_value() -> None:
    # ``LDAP_BINDPW`` (nslcd's ``bindpw``, as images name it): ``*_PW`` needs the underscore right
    # before ``PW``; in argv the ``pw`` key word already took it
    out = PrivacyFilter(PrivacyConfig()).filter_env(
        ["LDAP_BINDPW=P6sec-7", "ldap_bindpw=P6sec-7", "LDAP_BINDDN=cn=a"]
    )
    assert out == ["LDAP_BINDPW=[REDACTED]", "ldap_bindpw=[REDACTED]", "LDAP_BINDDN=cn=a"]
    assert _filter("LDAP_BINDPW=P6sec-7 ./run") == "LDAP_BINDPW=[REDACTED] ./run"


_UUID = "1b2c3d4e-aaaa-bbbb-cccc-1234567890ab"


@pytest.mark.parametrize(
    ("text", "want"),
    [
        # https://docs.snyk.io/snyk-cli/commands/auth (snyk auth [<API_TOKEN>])
        (f"snyk auth {_UUID}", "snyk auth [REDACTED]"),
        (f"snyk auth --auth-type=token {_UUID}", "snyk auth --auth-type=token [REDACTED]"),
        (f'sh -c "npx snyk auth {_UUID} && snyk test"', 'sh -c "npx snyk auth [REDACTED] && snyk test"'),
        # https://docs.codecov.com/docs/codecov-uploader (-t, --token) and codecovcli's -t
        (f"codecov -t {_UUID} -f cov.xml", "codecov -t [REDACTED] -f cov.xml"),
        (f"codecovcli upload-process -t {_UUID}", "codecovcli upload-process -t [REDACTED]"),
    ],
)
def test_a_vendor_cli_token_given_by_position_or_short_option_goes(text: str, want: str) -> None:
    out = _filter(text)
    assert out == want
    assert _UUID not in out


@pytest.mark.parametrize(
    "text", ["snyk auth", "snyk test --all-projects", "app -t 4 auth x", "codecov -f cov.xml"]
)
def test_other_words_of_those_clients_stay(text: str) -> None:
    assert _filter(text) == text


def test_an_executed_snyk_loses_the_token_it_was_given() -> None:
    # as Tetragon gives it: the binary apart from its arguments
    ev = RuntimeCallEvent(
        kind=EventKind.EXEC,
        timestamp_ns=1,
        node_name="n",
        process=ProcessInfo(pid=7, binary="/usr/local/bin/snyk", arguments=f"auth {_UUID}"),
    )
    PrivacyFilter(PrivacyConfig()).apply(ev)
    assert ev.process is not None
    assert ev.process.arguments == "auth [REDACTED]"


@pytest.mark.parametrize(
    ("text", "want"),
    [
        # PowerShell doubles a quote inside a single-quoted string: 'it''s' is one literal, it's
        (
            "$p = 'it''sP6sec-9' | ConvertTo-SecureString -AsPlainText -Force",
            "$p = [REDACTED] | ConvertTo-SecureString -AsPlainText -Force",
        ),
        (
            "'a''b''P6sec-9' | ConvertTo-SecureString -AsPlainText -Force",
            "[REDACTED] | ConvertTo-SecureString -AsPlainText -Force",
        ),
        ('$p = "say ""P6sec-9""" | ConvertTo-SecureString', "$p = [REDACTED] | ConvertTo-SecureString"),
    ],
)
def test_a_piped_literal_holding_a_doubled_quote_goes_whole(text: str, want: str) -> None:
    out = _filter(text)
    assert out == want
    assert "P6sec-9" not in out and "it'" not in out and "say" not in out


@pytest.mark.parametrize(
    ("text", "want"),
    [
        # Go's MySQL DSN with a quote inside its password and no blank (so no quotes around it)
        ("app -dsn app:it'sP6sec-10@tcp(db:3306)/x", "app -dsn app:[REDACTED]@tcp(db:3306)/x"),
        ('app -dsn app:a"bP6sec-10@tcp(db:3306)/x', "app -dsn app:[REDACTED]@tcp(db:3306)/x"),
        (
            "app --dsn=app:P6sec-10'x@unix(/run/mysqld.sock)/x",
            "app --dsn=app:[REDACTED]@unix(/run/mysqld.sock)/x",
        ),
    ],
)
def test_a_go_dsn_password_holding_a_quote_goes(text: str, want: str) -> None:
    out = _filter(text)
    assert out == want
    assert "P6sec-10" not in out


@pytest.mark.parametrize("text", ["echo 'u:x' '@tcp(db)/x'", 'app "note: it\'s" b@/x'])
def test_a_quote_ending_an_argument_still_ends_a_go_dsn_user(text: str) -> None:
    assert _filter(text) == text


@pytest.mark.parametrize(
    ("text", "want"),
    [
        # https://github.com/baztian/jaydebeapi: connect(jclassname, url, driver_args, jars), the
        # driver's arguments a list [user, password] (a dict's "password" key is the key rules')
        (
            'python3 -c "import jaydebeapi; '
            "jaydebeapi.connect('org.h2.Driver', 'jdbc:h2:mem:', ['sa', 'P6sec-11'])\"",
            'python3 -c "import jaydebeapi; '
            "jaydebeapi.connect('org.h2.Driver', 'jdbc:h2:mem:', ['sa', [REDACTED]])\"",
        ),
        (
            'jaydebeapi.connect("org.hsqldb.jdbcDriver", url, [user, "P6sec-11"], "/x/hsqldb.jar")',
            'jaydebeapi.connect("org.hsqldb.jdbcDriver", url, [user, [REDACTED]], "/x/hsqldb.jar")',
        ),
    ],
)
def test_a_jaydebeapi_password_in_its_driver_arguments_list_goes(text: str, want: str) -> None:
    out = _filter(text)
    assert out == want
    assert "P6sec-11" not in out


def test_a_jaydebeapi_password_from_a_variable_stays() -> None:
    text = "jaydebeapi.connect('org.h2.Driver', 'jdbc:h2:mem:', ['sa', pw])"
    assert _filter(text) == text
