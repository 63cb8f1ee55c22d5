"""Secrets that passed the filter in session 42's "left alone" list, and its two over-redactions (P4).

Each leak is written as Tetragon sends it (an argument holding a space wrapped in plain ``"…"``, the
executed binary apart) and as a ``sh -c`` script writes it: a credential header with a blank before
its colon, a URL's or a Go MySQL DSN's password holding a space inside quotes, and passwords given
by position to Python database and cache clients. The over-redactions are a compiler's
``-pthread`` after an output file named like a database client, and an ``auth`` call given an
authentication method's name.
"""

from __future__ import annotations

import pytest

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.privacy import PrivacyFilter
from tests.linear_cost import growth


def _filter(text: str, tool: str = "") -> str:
    return PrivacyFilter(PrivacyConfig()).filter_field(text, tool=tool)


@pytest.mark.parametrize(
    ("tool", "text", "want"),
    [
        ("curl", '-H "X-Api-Key : HdrBl-1a b2" https://h', '-H "X-Api-Key : [REDACTED]" https://h'),
        ("curl", "-H 'Api-Key : HdrBl-1a b2' https://h", "-H 'Api-Key : [REDACTED]' https://h"),
        ("curl", '-H "X-Auth-Token\t:  HdrBl-1a b2" https://h', '-H "X-Auth-Token\t:  [REDACTED]" https://h'),
        ("wget", '"--header=Private-Token : HdrBl-1a b2" h', '"--header=Private-Token : [REDACTED]" h'),
        ("", "sh -c \"curl -H 'X-Api-Key : HdrBl-1a b2' h\"", "sh -c \"curl -H 'X-Api-Key : [REDACTED]' h\""),
    ],
)
def test_a_credential_header_with_a_blank_before_its_colon_loses_every_word(
    tool: str, text: str, want: str
) -> None:
    assert _filter(text, tool) == want


@pytest.mark.parametrize(
    ("text", "want"),
    [
        # Go's MySQL DSN, the whole argument quoted (Tetragon), after a flag, in a script
        ('"app:GoSp-3c d4@tcp(db:3306)/shop"', '"app:[REDACTED]@tcp(db:3306)/shop"'),
        ('"-dsn=app:GoSp-3c d4@tcp(db:3306)/shop"', '"-dsn=app:[REDACTED]@tcp(db:3306)/shop"'),
        ("sh -c \"app -dsn 'app:GoSp-3c d4@unix(/s)/x'\"", "sh -c \"app -dsn 'app:[REDACTED]@unix(/s)/x'\""),
        ('--dsn "app:GoSp-3c d4@/shop"', '--dsn "app:[REDACTED]@/shop"'),
        # an ``@`` in the password too: the driver reads the last one
        ('"app:GoSp-3c@d4 e5@tcp(db)/x"', '"app:[REDACTED]@tcp(db)/x"'),
        # a URL's password, quoted
        ('--db-url "postgres://u:UrlSp-5e f6@db:5432/app"', '--db-url "postgres://u:[REDACTED]@db:5432/app"'),
        ('"redis://:UrlSp-5e f6@cache"', '"redis://:[REDACTED]@cache"'),
        (
            "sh -c \"psql 'postgresql://u:UrlSp-5e f6@db/x'\"",
            "sh -c \"psql 'postgresql://u:[REDACTED]@db/x'\"",
        ),
    ],
)
def test_a_dsn_or_url_password_holding_a_space_in_quotes_goes_whole(text: str, want: str) -> None:
    assert _filter(text) == want


@pytest.mark.parametrize(
    "text",
    [
        # a colon then words then an ``@`` that starts no host, or no quote around it: not a logon
        '"note: meet a b@tcp now"',
        '"see: the list a b@/x"',  # a password starting with a blank is no DSN's (prose after a colon)
        '"https://h:8080/a b@c/d"',  # ``/`` after the host: a path, not a password
        "app u:a b@tcp(db)/x",  # unquoted: two words, neither a DSN
    ],
)
def test_quoted_text_with_a_colon_a_blank_and_an_at_sign_is_kept(text: str) -> None:
    assert _filter(text) == text


@pytest.mark.parametrize(
    ("text", "want"),
    [
        (
            "python3 -c \"import mysql.connector; mysql.connector.connect('h', 'u', 'PosPw-7g8')\"",
            "python3 -c \"import mysql.connector; mysql.connector.connect('h', 'u', [REDACTED])\"",
        ),
        (
            "python3 -c \"import redis; redis.Redis('cache', 6379, 0, 'PosPw-7g8').ping()\"",
            "python3 -c \"import redis; redis.Redis('cache', 6379, 0, [REDACTED]).ping()\"",
        ),
        (
            'python3 -c "r = redis.StrictRedis(\'cache\', 6379, 0, "PosPw-7g8")"',
            "python3 -c \"r = redis.StrictRedis('cache', 6379, 0, [REDACTED])\"",
        ),
        (
            "python3 -c \"import cx_Oracle; cx_Oracle.connect('scott', 'PosPw-7g8', 'db/orcl')\"",
            "python3 -c \"import cx_Oracle; cx_Oracle.connect('scott', [REDACTED], 'db/orcl')\"",
        ),
        (
            "python3 -c \"import pymssql; pymssql.connect('h', 'sa', 'PosPw-7g8', 'db')\"",
            "python3 -c \"import pymssql; pymssql.connect('h', 'sa', [REDACTED], 'db')\"",
        ),
        (  # the MongoDB shell's db.changeUserPassword(user, password)
            "mongosh --eval \"db.changeUserPassword('app', 'PosPw-7g8')\"",
            "mongosh --eval \"db.changeUserPassword('app', [REDACTED])\"",
        ),
        (  # minio-py's Minio(endpoint, access_key, secret_key)
            "python3 -c \"from minio import Minio; Minio('h:9000', 'AKEY', 'PosPw-7g8')\"",
            "python3 -c \"from minio import Minio; Minio('h:9000', 'AKEY', [REDACTED])\"",
        ),
        (
            "python3 -c \"from ldap3 import Connection; Connection(s, 'cn=admin', 'PosPw-7g8')\"",
            "python3 -c \"from ldap3 import Connection; Connection(s, 'cn=admin', [REDACTED])\"",
        ),
    ],
)
def test_a_password_given_by_position_to_a_python_driver_goes(text: str, want: str) -> None:
    out = _filter(text)
    assert out == want
    assert "PosPw-7g8" not in out


@pytest.mark.parametrize(
    ("tool", "text"),
    [
        ("gcc", "-O2 -o mongo4 -pthread main.c"),
        ("gcc", "-o mongo -pthread main.c"),
        ("cc", "-o bin/mysql8 -pthread main.c -lm"),
        ("go", "build --output=mongo -p 4 ./cmd"),
        ("", 'sh -c "gcc -o ./mongo -pthread m.c && strip mongo"'),
    ],
)
def test_an_output_file_named_like_a_client_runs_no_client_rules(tool: str, text: str) -> None:
    assert _filter(text, tool) == text


def test_a_client_after_an_output_file_still_loses_its_password() -> None:
    # the word after ``-o`` is a file; a client named after that runs its rules; so does a client
    # inside an option's value (ssh's ``-o ProxyCommand=…``: a setting, no output file)
    for text in (
        '-o "ProxyCommand=sshpass -p SshPw-1 ssh j" h',
        '-o ProxyCommand="sshpass -p SshPw-1 ssh j" h',
    ):
        assert _filter(text, "ssh") == text.replace("SshPw-1", "[REDACTED]")
    text = 'sh -c "gcc -o mongo m.c && mongo -pMgPw-9h0 db"'
    assert _filter(text) == 'sh -c "gcc -o mongo m.c && mongo -p[REDACTED] db"'
    assert _filter("-o out.txt mysql -pMyPw-1j2", "timeout") == "-o out.txt mysql -p[REDACTED]"


@pytest.mark.parametrize("method", ["oidc", "LDAP", "basic", "none", "kerberos"])
def test_an_auth_call_given_an_authentication_method_keeps_it(method: str) -> None:
    text = f"node -e \"app.auth('{method}')\""
    assert _filter(text) == text


def test_an_auth_call_given_a_password_still_loses_it() -> None:
    assert _filter("node -e \"client.auth('AuthPw-3k4')\"") == 'node -e "client.auth([REDACTED])"'
    assert _filter("php -r \"$r->auth('oidc-AuthPw')\"") == 'php -r "$r->auth([REDACTED])"'


@pytest.mark.parametrize(
    "unit",
    [
        '"a:b ',  # a quote, a user, a password's blank, never an ``@``
        '"a:b @',  # an ``@`` that starts no host
        '"postgres://u:a b@@',
        '"--x=u:' + "a " * 60,  # a password window of blanks, no end
        "'X-Api-Key :" + " " * 30,
        "x.login('a', ",  # a call's arguments read again for its last one
        "Redis(1, 2, ",
        " -o mysql -pthread",  # every client word looks back for an output option
        " mysqlsh a:b:c",
        "ConvertTo-SecureString -a -b ",
        "'x' |ConvertTo-SecureString",
        "s://a1b2c3d4e5f6g7h8i9j0k=",  # URL users that never reach an ``@``
    ],
)
def test_the_new_rules_cost_grows_linearly_with_a_hostile_field(unit: str) -> None:
    # Compared against the same rules on a quarter of the text (the linear reference): a rule that
    # reads its window once per start costs four times as much on four times the text, one that
    # reads the rest of the field from every start sixteen times. No absolute time is asserted.
    ratio = growth(PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 20)).redact_text, unit)
    assert ratio < 10, ratio


@pytest.mark.parametrize(
    ("tool", "text", "want"),
    [
        # MySQL Shell's URI-like target [user[:password]@]host: no scheme, so no connection_string
        ("mysqlsh", "root:ShPw-5m6@localhost:3306 --sql", "root:[REDACTED]@localhost:3306 --sql"),
        ("mysqlsh", "--uri root:ShPw-5m6@db/shop", "--uri root:[REDACTED]@db/shop"),
        ("mysqlsh", "--uri=root:ShPw-5m6@db -pAlsoPw-7n8", "--uri=root:[REDACTED]@db -p[REDACTED]"),
        ("", 'sh -c "mysqlsh app:ShPw-5m6@db --js"', 'sh -c "mysqlsh app:[REDACTED]@db --js"'),
        # FreeTDS's tsql -P password
        ("tsql", "-S h -U sa -P TdsPw-9p0", "-S h -U sa -P [REDACTED]"),
    ],
)
def test_a_mysql_shell_target_and_a_tsql_password_go(tool: str, text: str, want: str) -> None:
    assert _filter(text, tool) == want


def test_a_mysql_shell_target_without_a_password_is_kept() -> None:
    assert _filter("root@localhost:3306 --sql", "mysqlsh") == "root@localhost:3306 --sql"
    assert _filter("--uri root@db/shop", "mysqlsh") == "--uri root@db/shop"


def test_a_pxssh_login_loses_its_third_argument_the_password() -> None:
    # pexpect's pxssh.login(server, username, password): ``.login`` took the second argument only
    text = "python3 -c \"from pexpect import pxssh; s = pxssh.pxssh(); s.login('h', 'u', 'PxPw-1q2')\""
    out = _filter(text)
    assert "PxPw-1q2" not in out and out.endswith("s.login('h', [REDACTED], [REDACTED])\"")
    # ftplib's login(user, passwd) keeps its user
    assert _filter("python3 -c \"f.login('u', 'FtpPw-3r4')\"") == "python3 -c \"f.login('u', [REDACTED])\""


@pytest.mark.parametrize(
    ("text", "want"),
    [
        (
            "-c \"$p = ConvertTo-SecureString 'PsPw-5s6!' -AsPlainText -Force\"",
            '-c "$p = ConvertTo-SecureString [REDACTED] -AsPlainText -Force"',
        ),
        (
            "-c \"convertto-securestring -AsPlainText -Force -String 'PsPw-5s6!'\"",
            '-c "convertto-securestring -AsPlainText -Force -String [REDACTED]"',
        ),
        (  # Tetragon's quotes around the script leave the inner ones bare
            '-Command "ConvertTo-SecureString "PsPw-5s6!" -AsPlainText -Force"',
            '-Command "ConvertTo-SecureString [REDACTED] -AsPlainText -Force"',
        ),
        (  # a backslash is a character in PowerShell
            '-c "ConvertTo-SecureString -String:"PsPw-5s6!\\x" -AsPlainText"',
            '-c "ConvertTo-SecureString -String:[REDACTED] -AsPlainText"',
        ),
        (
            "-c \"'PsPw-5s6!' | ConvertTo-SecureString -AsPlainText -Force\"",
            '-c "[REDACTED] | ConvertTo-SecureString -AsPlainText -Force"',
        ),
    ],
)
def test_a_powershell_plain_text_secure_string_loses_its_password(text: str, want: str) -> None:
    out = _filter(text, "pwsh")
    assert out == want
    assert "PsPw-5s6" not in out


def test_a_secure_string_from_a_variable_or_a_prompt_is_kept() -> None:
    for text in (
        '-c "ConvertTo-SecureString $env:PW -AsPlainText -Force"',
        '-c "Read-Host -AsSecureString | ConvertFrom-SecureString"',
    ):
        assert _filter(text, "pwsh") == text


@pytest.mark.parametrize(
    ("text", "want"),
    [
        # base64 of user:password as a URL's user (a dotless host: no e-mail address either)
        ("curl https://dXNlcjpVcmxCNjQtN3Q4@gitsrv/x", "curl https://[REDACTED]@gitsrv/x"),
        # a token as a URL's user (GitHub, Azure DevOps and others take one there)
        (
            "git clone https://q7w8e9r0t1y2u3i4o5p6a7s8@gitsrv:8443/org/r",
            "git clone https://[REDACTED]@gitsrv:8443/org/r",
        ),
    ],
)
def test_a_token_or_base64_credential_as_a_urls_user_goes(text: str, want: str) -> None:
    assert _filter(text) == want


@pytest.mark.parametrize(
    "text",
    [
        "git clone https://deploy@gitsrv/o/r",
        "git clone ssh://git@gitsrv/o/r",
        "curl http://admin-user@router/",
    ],
)
def test_a_plain_user_name_in_a_url_is_kept(text: str) -> None:
    assert _filter(text) == text


def test_a_jenkins_credentials_binding_loses_its_values() -> None:
    # Jenkins' ``X = credentials('id')`` of a username/password sets X=user:password, X_USR and
    # X_PSW in the agent pod's environment (the Kubernetes plugin runs agents as pods)
    pf = PrivacyFilter(PrivacyConfig())
    out = pf.filter_env(["DOCKER_CREDS=ci:JkPw-7u8", "DOCKER_CREDS_USR=ci", "DOCKER_CREDS_PSW=JkPw-7u8"])
    assert out == ["DOCKER_CREDS=[REDACTED]", "DOCKER_CREDS_USR=ci", "DOCKER_CREDS_PSW=[REDACTED]"]
    text = "env NEXUS_CREDS_PSW=JkPw-7u8 NEXUS_CREDS=ci:JkPw-7u8 mvn deploy"
    assert pf.filter_field(text) == "env NEXUS_CREDS_PSW=[REDACTED] NEXUS_CREDS=[REDACTED] mvn deploy"
