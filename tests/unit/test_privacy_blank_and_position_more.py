"""Leaks left by session 43's privacy fixes (P4), found in review (RP4).

Each is a form next to one P4 fixed, written as Tetragon sends it or as a script writes it: pexpect's
``pxssh.login(server, user, password)`` followed by keyword arguments, paramiko's
``ssh.connect(host, port, user, password)`` by position, ``ConvertTo-SecureString`` spelled in any
case or given its literal in parentheses, and a quoted URL's password holding a blank after an
environment assignment, a JSON key or a ``jdbc:`` prefix.
"""

from __future__ import annotations

import pytest

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.contracts.events import EventKind, ProcessInfo, RuntimeCallEvent
from stellaops_runtime.privacy import PrivacyFilter
from stellaops_runtime.privacy.spaced_logons import spaced_logon_spans
from tests.linear_cost import growth


def _filter(text: str, tool: str = "") -> str:
    return PrivacyFilter(PrivacyConfig()).filter_field(text, tool=tool)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        (  # pxssh.login(server, username, password, ...): keyword arguments after the password
            "python3 -c \"s = pxssh.pxssh(); s.login('h', 'u', 'RvPw-1a2', port=2222)\"",
            "python3 -c \"s = pxssh.pxssh(); s.login('h', [REDACTED], [REDACTED], port=2222)\"",
        ),
        (
            "python3 -c \"s.login('h', 'u', 'RvPw-1a2', auto_prompt_reset = False)\"",
            "python3 -c \"s.login('h', [REDACTED], [REDACTED], auto_prompt_reset = False)\"",
        ),
        (  # paramiko's SSHClient.connect(hostname, port, username, password)
            "python3 -c \"ssh.connect('h', 22, 'u', 'RvPw-1a2')\"",
            "python3 -c \"ssh.connect('h', 22, 'u', [REDACTED])\"",
        ),
        (
            "python3 -c \"paramiko.SSHClient().connect('h', 22, 'u', 'RvPw-1a2', timeout=5)\"",
            "python3 -c \"paramiko.SSHClient().connect('h', 22, 'u', [REDACTED], timeout=5)\"",
        ),
        (
            "python3 -c \"self.ssh_client.connect('h', 22, 'u', 'RvPw-1a2')\"",
            "python3 -c \"self.ssh_client.connect('h', 22, 'u', [REDACTED])\"",
        ),
    ],
)
def test_a_password_by_position_before_keywords_or_to_paramiko_goes(text: str, want: str) -> None:
    out = _filter(text)
    assert out == want
    assert "RvPw-1a2" not in out


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        # a comparison is no keyword argument: the third is not the last, and stays
        ("python3 -c \"f.login('u', 'FtpPw', 'acct' == x)\"", "'acct' == x"),
        # another receiver's connect (an MQTT client's bind_address) is not paramiko's
        ("python3 -c \"mqttc.connect('h', 1883, 60, 'eth0')\"", "'eth0'"),
        # paramiko given a key file, no password
        ("python3 -c \"ssh.connect('h', 22, 'u', key_filename='/k')\"", "'u', key_filename='/k'"),
    ],
)
def test_other_calls_keep_their_arguments(text: str, kept: str) -> None:
    assert kept in _filter(text)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        (  # PowerShell's names are not case-sensitive
            "-c \"$p = ConvertTo-SEcureString 'RvPs-3b4' -AsPlainText -Force\"",
            '-c "$p = ConvertTo-SEcureString [REDACTED] -AsPlainText -Force"',
        ),
        (
            "-c \"$p = convertto-secureSTRING 'RvPs-3b4' -AsPlainText -Force\"",
            '-c "$p = convertto-secureSTRING [REDACTED] -AsPlainText -Force"',
        ),
        (  # the literal in parentheses (an expression argument)
            "-c \"$p = ConvertTo-SecureString ('RvPs-3b4') -AsPlainText -Force\"",
            '-c "$p = ConvertTo-SecureString ([REDACTED]) -AsPlainText -Force"',
        ),
        (
            "-c \"$p = ConvertTo-SecureString -String ( 'RvPs-3b4' ) -AsPlainText -Force\"",
            '-c "$p = ConvertTo-SecureString -String ( [REDACTED] ) -AsPlainText -Force"',
        ),
        (  # a bare word is a string in PowerShell's argument mode; ``pwsh -Command`` joins its arguments
            "-Command ConvertTo-SecureString RvPs-3b4 -AsPlainText -Force",
            "-Command ConvertTo-SecureString [REDACTED] -AsPlainText -Force",
        ),
        (
            "-c \"$c = [pscredential]::new('u', (ConvertTo-SecureString RvPs-3b4 -AsPlainText -Force))\"",
            "-c \"$c = [pscredential]::new('u', (ConvertTo-SecureString [REDACTED] -AsPlainText -Force))\"",
        ),
        (
            '-c "ConvertTo-SecureString -AsPlainText -Force -String:RvPs-3b4; Get-Date"',
            '-c "ConvertTo-SecureString -AsPlainText -Force -String:[REDACTED]; Get-Date"',
        ),
    ],
)
def test_a_secure_string_in_any_case_in_parentheses_or_bare_loses_its_password(text: str, want: str) -> None:
    out = _filter(text, "pwsh")
    assert out == want
    assert "RvPs-3b4" not in out


@pytest.mark.parametrize(
    "text",
    [
        '-c "ConvertTo-SecureString -String $enc -AsPlainText"',  # a variable
        '-c "ConvertTo-SecureString -AsPlainText -Force $env:PW"',
        '-c "$s = Read-Host -AsSecureString; $s | ConvertFrom-SecureString"',
        '-c "Get-Help ConvertTo-SecureString -Full"',  # a switch only
        '-c "$x = (Read-Host | ConvertTo-SecureString -AsPlainText -Force)"',
        '-c "ConvertTo-SecureString -AsPlainText -Force (Get-Content pw.txt)"',
    ],
)
def test_a_secure_string_from_a_variable_or_a_command_keeps_it(text: str) -> None:
    assert _filter(text, "pwsh") == text


@pytest.mark.parametrize(
    ("text", "want"),
    [
        (  # docker run -e / env with an assignment quoted whole (Tetragon's quotes)
            '-e "DATABASE_URL=postgres://u:RvUr-5c d6@db/x" img',
            '-e "DATABASE_URL=postgres://u:[REDACTED]@db/x" img',
        ),
        (
            "sh -c \"env 'APP_DB=mysql://app:RvUr-5c d6@db:3306/x' app\"",
            "sh -c \"env 'APP_DB=mysql://app:[REDACTED]@db:3306/x' app\"",
        ),
        (  # a JSON value right after its key's colon
            '--config {"dsn":"postgres://u:RvUr-5c d6@db/x"}',
            '--config {"dsn":"postgres://u:[REDACTED]@db/x"}',
        ),
        (  # a single-quoted ``sh -c`` script's quote ``'\''``, bash's ANSI-C ``$'…'``
            "sh -c 'psql '\\''postgres://u:RvUr-5c d6@db/x'\\'''",
            "sh -c 'psql '\\''postgres://u:[REDACTED]@db/x'\\'''",
        ),
        (
            "bash -c \"psql $'postgres://u:RvUr-5c d6@db/x'\"",
            "bash -c \"psql $'postgres://u:[REDACTED]@db/x'\"",
        ),
        (  # a JDBC URL's scheme prefix
            '"jdbc:mysql://u:RvUr-5c d6@db:3306/x"',
            '"jdbc:mysql://u:[REDACTED]@db:3306/x"',
        ),
    ],
)
def test_a_quoted_url_password_with_a_blank_after_an_assignment_or_json_key_goes(
    text: str, want: str
) -> None:
    out = _filter(text)
    assert out == want
    assert "RvUr-5c" not in out and "d6@" not in out


@pytest.mark.parametrize(
    "text",
    [
        '"NOTE=see: a b@/x"',  # prose after a colon, an assignment before it
        '{"msg":"to: a b@tcp now"}',
        '"K=https://h:8080/a b@c/d"',  # ``/`` after the host: a path
    ],
)
def test_quoted_prose_after_an_assignment_or_json_key_is_kept(text: str) -> None:
    assert _filter(text) == text


@pytest.mark.parametrize(
    "unit",
    [
        '"A=u:a b ',  # an assignment before a quoted logon that never reaches its ``@``
        '{"k":"jdbc:x://u:a b',  # a JSON key's colon, a JDBC prefix, no host
        "s.login('a', 'b', 'c', ",  # a third argument, then never a keyword nor a ``)``
        "ssh.connect(1, 2, 3, ",
        "ConvertTo-SEcureString ( ",
        " xargs -r -n 1 -o mysql",  # each client word after a ``-o`` looks back for xargs
    ],
)
def test_the_widened_rules_cost_grows_linearly_with_a_hostile_field(unit: str) -> None:
    # Against the same rules on a quarter of the text (the linear reference): reading a window once
    # per start costs four times as much on four times the text; reading the rest of the field from
    # every start sixteen times. No absolute time is asserted.
    ratio = growth(PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 20)).redact_text, unit)
    assert ratio < 10, ratio


@pytest.mark.parametrize("cut", range(4, 14))
def test_a_quoted_url_password_with_a_blank_cut_by_the_argument_limit_goes_whole(cut: int) -> None:
    # privacy.maxArgumentBytes cuts the field inside the password, after its blank: no ``@host`` is
    # left, and the tail rule for a cut URL takes only a password without a blank
    head = "x" * 64 + ' psql "postgres://u:'
    text = head + 'RvCut-7e f8g9h0@db/x" ' + "z" * 64
    pf = PrivacyFilter(PrivacyConfig(max_argument_bytes=len(head) + cut))
    out = pf.filter_field(text)
    assert "RvCut" not in out and "[REDACTED]" in out, out


@pytest.mark.parametrize("unit", ['"s://u:a b', "'x=jdbc:s://u:a b ", '"s://u:a b/'])
def test_the_cut_url_rule_costs_linearly_on_a_hostile_cut_field(unit: str) -> None:
    # every quote a start, never an ``@``: each start's run stops at the next quote
    ratio = growth(lambda text: spaced_logon_spans(text, cut=True), unit)
    assert ratio < 10, ratio


@pytest.mark.parametrize(
    ("text", "want"),
    [
        # a header as one shell word, its blanks around the colon escaped (curl sends it as written)
        ("-H X-Api-Key\\ :\\ RvHd-9k\\ 0l https://h", "-H X-Api-Key\\ :\\ [REDACTED] https://h"),
        ("-H X-Api-Key\\ :RvHd-9k https://h", "-H X-Api-Key\\ :[REDACTED] https://h"),
        ("-H Authorization\\ :\\ Bearer\\ RvHd-9k https://h", "-H Authorization\\ :\\ [REDACTED] https://h"),
        (  # a script's word inside a script: the backslashes doubled
            'sh -c "curl -H Private-Token\\\\ :\\\\ RvHd-9k\\\\ 0l h"',
            'sh -c "curl -H Private-Token\\\\ :\\\\ [REDACTED] h"',
        ),
    ],
)
def test_a_credential_header_with_an_escaped_blank_before_its_colon_goes(text: str, want: str) -> None:
    out = _filter(text, "curl")
    assert out == want
    assert "RvHd-9k" not in out and "0l" not in out


@pytest.mark.parametrize(
    "text", ["-H Accept\\ :\\ text/html h", "-H User-Agent\\ :\\ my\\ agent h", "echo a\\ :\\ b"]
)
def test_another_header_with_an_escaped_blank_before_its_colon_is_kept(text: str) -> None:
    assert _filter(text, "curl") == text


@pytest.mark.parametrize(
    ("tool", "text"),
    [
        # xargs's ``-o`` (``--open-tty``) is a switch before the command it runs, no output file
        ("", "xargs -o mysql -pRvXa-1m2 db"),
        ("", 'sh -c "ls | xargs -r -n 1 -o mysql -pRvXa-1m2 db"'),
        ("", "/usr/bin/xargs -0 -P 4 -o mongo -pRvXa-1m2"),
    ],
)
def test_a_client_after_xargs_switch_o_loses_its_password(tool: str, text: str) -> None:
    out = _filter(text, tool)
    assert "RvXa-1m2" not in out and "-p[REDACTED]" in out, out


def test_an_executed_xargs_switch_o_before_a_client_loses_its_password() -> None:
    # as Tetragon gives it: the binary apart from its arguments
    ev = RuntimeCallEvent(
        kind=EventKind.EXEC,
        timestamp_ns=1,
        node_name="n",
        process=ProcessInfo(pid=7, binary="/usr/bin/xargs", arguments="-r -o mysql -pRvXa-1m2 db"),
    )
    PrivacyFilter(PrivacyConfig()).apply(ev)
    assert ev.process is not None
    assert ev.process.arguments == "-r -o mysql -p[REDACTED] db"


def test_an_output_file_of_a_command_xargs_runs_is_still_a_file() -> None:
    text = "find . -name '*.c' | xargs gcc -o mongo -pthread"
    assert _filter(text) == text
