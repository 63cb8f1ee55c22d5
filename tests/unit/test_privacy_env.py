"""Environment variables filtered by name: in argument text and as NAME=value lists."""

from __future__ import annotations

import pytest

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.privacy import DEFAULT_ENV_NAME_PATTERNS, PrivacyFilter, filter_env
from stellaops_runtime.privacy.env_names import glob_to_regex, name_regex


@pytest.mark.parametrize(
    "name",
    [
        "PGPASSWORD",
        "DB_PASSWORD",
        "MYSQL_ROOT_PASSWORD_FILE",  # *PASSWORD*: the name decides, even for a path
        "LDAP_PASSWD",
        "GPG_PASSPHRASE",
        "MYSQL_PWD",
        "SMTP_PASS",
        "SSHPASS",
        "GITHUB_TOKEN",
        "AWS_SESSION_TOKEN",
        "CLIENT_SECRET",
        "AWS_SECRET_ACCESS_KEY",
        "STRIPE_KEY",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "OPENAI_API_KEY",
        "SENDGRIDAPIKEY",
        "SSH_PRIVATE_KEY",
        "REDISCLI_AUTH",
        "SESSION_COOKIE",
        "APP_SESSION_ID",
        "DATABASE_CONNECTION_STRING",
        "SENTRY_DSN",
        "db_password",  # env lists: names compared case-insensitively
        # personal access tokens: R's gh/remotes and usethis read GITHUB_PAT, the Azure DevOps CLI
        # AZURE_DEVOPS_EXT_PAT (its PAT has no prefix a format rule could know)
        "GITHUB_PAT",
        "AZURE_DEVOPS_EXT_PAT",
        "PAT",
        # a command printing the passphrase (borg: https://borgbackup.readthedocs.io/en/stable/usage/
        # general.html#environment-variables), rclone's key options (https://rclone.org/sftp/,
        # https://rclone.org/s3/): a private key's PEM text, a customer key in base64
        "BORG_PASSCOMMAND",
        "RCLONE_SFTP_KEY_PEM",
        "RCLONE_S3_SSE_CUSTOMER_KEY_BASE64",
        # salts are secrets too: the WordPress image's WORDPRESS_AUTH_SALT ... WORDPRESS_NONCE_SALT
        # (https://hub.docker.com/_/wordpress), Phoenix's SIGNING_SALT; Honeycomb's write key
        "WORDPRESS_AUTH_SALT",
        "WORDPRESS_NONCE_SALT",
        "SIGNING_SALT",
        "SALT",
        "HONEYCOMB_WRITEKEY",
    ],
)
def test_secret_names_lose_their_value(name: str) -> None:
    assert filter_env([f"{name}=v4lue"]) == [f"{name}=[REDACTED]"]


@pytest.mark.parametrize(
    "name",
    [
        # Kubernetes accepts any printable name but "=": Spring and .NET read these spellings
        "spring.datasource.password",
        "SPRING_DATASOURCE.PASSWORD",
        "db-password",
        "app.secret-key",
        "ConnectionStrings:Default:Password",
        "MY PASSWORD",
        "api-token",
    ],
)
def test_names_with_dots_dashes_and_colons_lose_their_value(name: str) -> None:
    assert filter_env([f"{name}=v4lue"]) == [f"{name}=[REDACTED]"]
    pf = PrivacyFilter(PrivacyConfig())
    assert pf.filter_env([f"{name}=v4lue"]) == [f"{name}=[REDACTED]"]
    assert pf.redactions_by_pattern["env_name"] == 1


def test_a_configured_glob_still_matches_a_name_as_it_is_spelled() -> None:
    pf = PrivacyFilter(PrivacyConfig(extraEnvNamePatterns=["acme.license"]))
    assert pf.filter_env(["acme.license=L1", "acme_license=L2"]) == [
        "acme.license=[REDACTED]",
        "acme_license=L2",
    ]


@pytest.mark.parametrize(
    "entry",
    [
        "PWD=/home/app",
        "OLDPWD=/tmp",
        "PATH=/usr/local/bin:/usr/bin",
        "HOME=/root",
        "LOG_LEVEL=debug",
        "KEY_COUNT=4",  # *_KEY needs the name to end in _KEY
        "spring.datasource.url=jdbc:postgresql://db/shop",
        "key.count=4",
        "AWS_ACCESS_KEY_ID=not-secret-id",
        "HOSTNAME=web-1",
        "EMPTY=",
        "MY_PATH=/opt/app",  # *_PAT ends the name
        "PATTERN=a*",
        "URL_PATTERN=/api/*",
        "SALT_MINION_ID=web-1",  # *_SALT ends the name
        "SALTY=1",
    ],
)
def test_other_names_keep_an_innocent_value(entry: str) -> None:
    assert filter_env([entry]) == [entry]


def test_values_of_other_names_go_through_the_value_rules_in_a_filter() -> None:
    pf = PrivacyFilter(PrivacyConfig())
    env = [
        "DATABASE_URL=postgres://app:S3cret@db/shop",
        "DB_PASSWORD=hunter2",
        "PATH=/usr/bin",
        "NOT_AN_ENTRY",
        "CONFIG=--password=abc",
    ]
    assert pf.filter_env(env) == [
        "DATABASE_URL=postgres://app:[REDACTED]@db/shop",
        "DB_PASSWORD=[REDACTED]",
        "PATH=/usr/bin",
        "NOT_AN_ENTRY",
        "CONFIG=--password=[REDACTED]",
    ]
    assert pf.fields_redacted == 3
    assert pf.redactions_by_pattern["env_name"] == 1
    # A generator works as well as a list; order and count are kept.
    assert pf.filter_env(e for e in ["A=1", "API_TOKEN=x"]) == ["A=1", "API_TOKEN=[REDACTED]"]


def test_extra_env_name_patterns_add_to_the_defaults() -> None:
    pf = PrivacyFilter(PrivacyConfig(extraEnvNamePatterns=["ACME_*_LICENSE"]))
    assert pf.filter_env(["ACME_PRO_LICENSE=L1", "DB_PASSWORD=x"]) == [
        "ACME_PRO_LICENSE=[REDACTED]",
        "DB_PASSWORD=[REDACTED]",
    ]
    assert pf.filter_field("env ACME_PRO_LICENSE=L1 ./run") == "env ACME_PRO_LICENSE=[REDACTED] ./run"
    # Without the default patterns only the configured names count.
    only = PrivacyFilter(PrivacyConfig(useDefaultRedactionPatterns=False, extraEnvNamePatterns=["ACME_*"]))
    assert only.filter_env(["ACME_X=1", "DB_PASSWORD=x"]) == ["ACME_X=[REDACTED]", "DB_PASSWORD=x"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("env PGPASSWORD=x psql -h db", "env PGPASSWORD=[REDACTED] psql -h db"),
        (
            "docker run -e DB_PASSWORD=x -e LOG_LEVEL=info app",
            "docker run -e DB_PASSWORD=[REDACTED] -e LOG_LEVEL=info app",
        ),
        ("env SENTRY_DSN=https://k@o1.ingest.sentry.io/1 ./run", "env SENTRY_DSN=[REDACTED] ./run"),
        ('sh -c "MY_API_KEY=abc ./x"', 'sh -c "MY_API_KEY=[REDACTED] ./x"'),
        ("--env=SIGNING_KEY=k1", "--env=SIGNING_KEY=[REDACTED]"),
        (
            "env AZURE_DEVOPS_EXT_PAT=x2x3ab7mq4zlc2pyv6ijkt3ggb5oa5ew7sxqfgtgk4hpe7rrjbdq az devops login",
            "env AZURE_DEVOPS_EXT_PAT=[REDACTED] az devops login",
        ),
        ("-e GITHUB_PAT=4f2a9c0d1b -e MY_PATH=/x", "-e GITHUB_PAT=[REDACTED] -e MY_PATH=/x"),
        # lower-case keys in argument text are configuration, not environment variables
        ("tune token_limit=5 cache_key=users", "tune token_limit=5 cache_key=users"),
        ("--max-tokens=4096", "--max-tokens=4096"),
    ],
)
def test_names_in_argument_text(text: str, expected: str) -> None:
    assert PrivacyFilter(PrivacyConfig()).filter_field(text) == expected


def test_a_glob_without_literal_part_matches_every_upper_case_name() -> None:
    pf = PrivacyFilter(PrivacyConfig(useDefaultRedactionPatterns=False, extraEnvNamePatterns=["?*"]))
    assert pf.filter_field("env A=1 LOG=x ./run") == "env A=[REDACTED] LOG=[REDACTED] ./run"


def test_globs() -> None:
    assert glob_to_regex("*_KEY") == "[A-Za-z0-9_]*_KEY"
    rx = name_regex(["A?C", "X*"])
    assert rx.match("abc") and rx.match("X_ANY") and not rx.match("AC") and not rx.match("abcd")
    assert "PGPASSWORD" in DEFAULT_ENV_NAME_PATTERNS
