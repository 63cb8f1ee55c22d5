"""Secrets still kept next to P6's session-44 fixes (review RP6).

- jaydebeapi's driver-arguments list given as the keyword ``driver_args=``, as a tuple, or after a
  first item that is no plain literal or name (``os.environ['U']``, ``u'sa'``): P6's rule read only
  a third positional ``[literal-or-name, 'pw']``. A one-item list then the jar path keeps the path.
- A quoted URL or Go DSN password holding a blank and a backslash escape (``"app:a\\"b c@tcp(db)/x"``):
  spaced_logons stopped at the backslash; and a quoted URL cut right after one kept its password.
- ``*_SALT`` and ``SSHPASS`` in lower or mixed case in argv (``db_salt=x``, ``sshpass=x``), read
  as P6 read ``*_CREDS``/``*_DSN``/``*_JWT``: a switch word or a number stays a setting.

Each case goes through ``PrivacyFilter``, as the agent calls it.
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
        # https://github.com/baztian/jaydebeapi: connect(jclassname, url, driver_args=None, jars=None, …)
        (
            "jaydebeapi.connect('org.h2.Driver', url, driver_args=['sa', 'RP6sec-1'])",
            "jaydebeapi.connect('org.h2.Driver', url, driver_args=['sa', [REDACTED]])",
        ),
        (
            "jaydebeapi.connect(jclassname='c', url=u, jars='/h2.jar', driver_args = ['sa', 'RP6sec-1'])",
            "jaydebeapi.connect(jclassname='c', url=u, jars='/h2.jar', driver_args = ['sa', [REDACTED]])",
        ),
        (
            "jaydebeapi.connect('c', url, [os.environ['DB_USER'], 'RP6sec-1'])",
            "jaydebeapi.connect('c', url, [os.environ['DB_USER'], [REDACTED]])",
        ),
        (
            "jaydebeapi.connect('c', url, [getenv('U'), 'RP6sec-1'], '/h2.jar')",
            "jaydebeapi.connect('c', url, [getenv('U'), [REDACTED]], '/h2.jar')",
        ),
        (
            "jaydebeapi.connect('c', url, [u'sa', u'RP6sec-1'])",
            "jaydebeapi.connect('c', url, [u'sa', [REDACTED]])",
        ),
        (
            "jaydebeapi.connect('c', url, ('sa', 'RP6sec-1'))",
            "jaydebeapi.connect('c', url, ('sa', [REDACTED]))",
        ),
    ],
)
def test_a_jaydebeapi_password_by_keyword_tuple_or_after_any_user_goes(text: str, want: str) -> None:
    out = _filter(text)
    assert out == want
    assert "RP6sec-1" not in out


@pytest.mark.parametrize(
    "text",
    [
        "jaydebeapi.connect('c', url, ['sa'], '/opt/h2.jar')",  # a user alone, then the jars
        "jaydebeapi.connect('c', url, driver_args=[user, pw])",
        "jaydebeapi.connect('c', url, (args), '/opt/h2.jar')",
    ],
)
def test_a_jaydebeapi_call_without_a_literal_second_item_keeps_its_text(text: str) -> None:
    assert _filter(text) == text


@pytest.mark.parametrize(
    "unit",
    [
        "jaydebeapi.connect(a, b, [x[",
        "jaydebeapi.connect(a, b, c, driver_args=[(, ",
        '"u:a\\" b\\\\',  # spaced_logons: escaped quotes and backslashes in a quoted password
        ' "a://u:x\\"y ',
        "password='a'\\''",  # single-quoted pieces joined by '\'' or '"'"'
        "x_creds='a'\"'\"'",
    ],
)
def test_the_widened_rules_cost_linear_time_on_a_hostile_field(unit: str) -> None:
    ratio = growth(PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 20)).redact_text, unit)
    assert ratio < 10, f"{unit!r}: 64 KiB costs {ratio:.1f}x the 16 KiB field"


def test_a_cut_quoted_url_holding_escaped_quotes_costs_linear_time() -> None:
    # spaced_logons' cut-URL rule reads to the field's end from a quote: escaped quotes no longer stop it
    def cut(text: str) -> str:
        return PrivacyFilter(PrivacyConfig(max_argument_bytes=len(text) - 1)).filter_field(text)

    ratio = growth(cut, ' "a://u:x\\"y \\"')
    assert ratio < 10, f"64 KiB costs {ratio:.1f}x the 16 KiB field"


@pytest.mark.parametrize(
    ("text", "want"),
    [
        # a double-quoted argument of a script: ``\"`` and ``\\`` are characters of the password
        ('app -dsn "app:a\\"b RP6sec-2@tcp(db:3306)/x"', 'app -dsn "app:[REDACTED]@tcp(db:3306)/x"'),
        (
            'sh -c \'app -dsn "app:a\\"b RP6sec-2@unix(/run/my.sock)/x"\'',
            "sh -c 'app -dsn \"app:[REDACTED]@unix(/run/my.sock)/x\"'",
        ),
        ('app --url "postgres://u:a\\"b RP6sec-2@db/x"', 'app --url "postgres://u:[REDACTED]@db/x"'),
        ('app -dsn "app:a\\\\b RP6sec-2@tcp(db)/x"', 'app -dsn "app:[REDACTED]@tcp(db)/x"'),
    ],
)
def test_a_quoted_password_holding_a_backslash_escaped_quote_and_a_blank_goes(text: str, want: str) -> None:
    out = _filter(text)
    assert out == want
    assert "RP6sec-2" not in out


@pytest.mark.parametrize(
    "text",
    [
        'echo "u:a\\" b" c@/x',  # the escaped quote is the text's, the closing one ends it
        "echo 'u:a\\' b c@/x",  # in single quotes a backslash escapes nothing
        'sh -c "echo \\"u:a b\\" c@/x"',  # an escaped opening quote: its closing one ends it
    ],
)
def test_a_quote_closing_the_argument_still_ends_a_quoted_password(text: str) -> None:
    assert _filter(text) == text


@pytest.mark.parametrize("tail", ["\\", "\\\\\\", '\\"'])
def test_a_quoted_url_cut_inside_an_escape_of_its_password_loses_the_password(tail: str) -> None:
    # privacy.maxArgumentBytes cut the field right after (or inside) a backslash escape
    head = 'app --verbose --output=/var/log/app.log --url "postgres://u:RP6sec-3 b' + tail  # 64+ bytes
    text = head + 'x@db/x" --next'
    out = PrivacyFilter(PrivacyConfig(max_argument_bytes=len(head))).filter_field(text)
    assert "RP6sec-3" not in out
    assert out.startswith('app --verbose --output=/var/log/app.log --url "postgres://u:[REDACTED]')


@pytest.mark.parametrize(
    ("text", "want"),
    [
        # ``*_SALT`` (WordPress' AUTH_SALT…) and ``SSHPASS`` written in lower or mixed case in argv
        ("db_salt=RP6sec-4 ./run", "db_salt=[REDACTED] ./run"),
        ("env wordpress_Auth_Salt='RP6sec-4 x' php-fpm", "env wordpress_Auth_Salt=[REDACTED] php-fpm"),
        ('sh -c "sshpass=RP6sec-4 ./deploy"', 'sh -c "sshpass=[REDACTED] ./deploy"'),
        ("Sshpass=RP6sec-4 ./deploy", "Sshpass=[REDACTED] ./deploy"),
    ],
)
def test_a_lower_or_mixed_case_salt_or_sshpass_name_loses_its_value(text: str, want: str) -> None:
    out = _filter(text)
    assert out == want
    assert "RP6sec-4" not in out


@pytest.mark.parametrize(
    "text",
    [
        "app use_salt=true hash_salt=1",  # a switch or a number is a setting
        "apt-get install -y sshpass",
        "pkgs=sshpass ./install",
        "app salt_rounds=12",  # another name: the suffix must end it
    ],
)
def test_a_setting_or_a_word_holding_salt_or_sshpass_stays(text: str) -> None:
    assert _filter(text) == text


@pytest.mark.parametrize(
    "text",
    [
        # compact JSON and value lists: a quote next to a separator ends a value, no DSN password holds it
        '{"image":"nginx:1.25","alias":"@/components"}',
        '["mysql:8","@/db"]',
        "--set image=nginx:1.25,'path=@/x'",
    ],
)
def test_a_quote_next_to_a_separator_is_no_go_dsn_passwords(text: str) -> None:
    assert _filter(text) == text


@pytest.mark.parametrize(
    "text",
    [
        # ``psw`` in the words ``ipsw`` and ``gpsw`` is no password key: an iPhone firmware file, a GPS week
        "idevicerestore --ipsw iPhone15,2_17.0_Restore.ipsw",
        "ipsw download ipsw=iPhone15.ipsw",
        "rtkpost --gpsw 2200 --gpst 0",
        "app gpsw=2200",
    ],
)
def test_a_word_merely_ending_in_psw_keeps_its_value(text: str) -> None:
    assert _filter(text) == text


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("app --psw RP6sec-5", "app --psw [REDACTED]"),
        ("app --db-psw RP6sec-5", "app --db-psw [REDACTED]"),
        ("app --dbPsw RP6sec-5", "app --dbPsw [REDACTED]"),
        ("app rootPsw=RP6sec-5", "app rootPsw=[REDACTED]"),
        ("app rootpsw=RP6sec-5", "app rootpsw=[REDACTED]"),  # glued, and ``gpsw`` inside a word
        ("app --bigpsw RP6sec-5", "app --bigpsw [REDACTED]"),
        ("app ROOT_PSW=RP6sec-5", "app ROOT_PSW=[REDACTED]"),
        ('{"Psw": "RP6sec-5"}', '{"Psw": [REDACTED]}'),
    ],
)
def test_psw_ending_any_other_key_still_goes(text: str, want: str) -> None:
    out = _filter(text)
    assert out == want
    assert "RP6sec-5" not in out


@pytest.mark.parametrize(
    ("text", "want"),
    [
        # a single quote inside a single-quoted shell value: '\'' and '"'"' join the pieces of one word
        ("app --password='it'\\''sRP6sec-6' --next", "app --password=[REDACTED] --next"),
        ("app --password 'it'\"'\"'sRP6sec-6' --next", "app --password [REDACTED] --next"),
        ("sh -c \"password='it'\\''s RP6sec-6' ./run\"", 'sh -c "password=[REDACTED] ./run"'),
        ("db_creds='u:it'\\''sRP6sec-6' ./run", "db_creds=[REDACTED] ./run"),
    ],
)
def test_a_single_quoted_value_holding_an_escaped_single_quote_goes_whole(text: str, want: str) -> None:
    out = _filter(text)
    assert out == want
    assert "RP6sec-6" not in out


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("sh -c 'app --password=\"x\"' && echo 'done'", "sh -c 'app --password=[REDACTED]' && echo 'done'"),
        ("{'password':'x','user':'u'}", "{'password':[REDACTED],'user':'u'}"),
        ("app --password='x' 'next arg'", "app --password=[REDACTED] 'next arg'"),
    ],
)
def test_a_quote_after_a_quoted_value_that_is_no_escaped_quote_stays(text: str, want: str) -> None:
    assert _filter(text) == want


_UUID = "1b2c3d4e-aaaa-bbbb-cccc-1234567890ab"


@pytest.mark.parametrize(
    ("binary", "arguments"),
    [
        # Snyk's standalone binaries as downloaded (https://docs.snyk.io/snyk-cli/install-or-update-the-snyk-cli)
        ("/usr/local/bin/snyk-linux", f"auth {_UUID}"),
        ("/opt/snyk-alpine", f"auth {_UUID}"),
        ("/usr/bin/env", f"./snyk-linux-arm64 auth {_UUID}"),
    ],
)
def test_snyks_standalone_binaries_lose_the_token_they_were_given(binary: str, arguments: str) -> None:
    ev = RuntimeCallEvent(
        kind=EventKind.EXEC,
        timestamp_ns=1,
        node_name="n",
        process=ProcessInfo(pid=7, binary=binary, arguments=arguments),
    )
    PrivacyFilter(PrivacyConfig()).apply(ev)
    assert ev.process is not None
    assert _UUID not in ev.process.arguments
    assert ev.process.arguments.endswith("auth [REDACTED]")
