"""A secret's name as a quoted literal and its value as the next one (privacy/named_literals.py).

Found by the P7 corpus (session 45): no ``=`` or ``:`` joins them, so the key rules kept the value.
"""

from __future__ import annotations

import pytest

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.privacy import PrivacyFilter
from tests.linear_cost import growth


def _filter(text: str) -> str:
    return PrivacyFilter(PrivacyConfig()).filter_field(text)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        # WordPress's wp-config.php (https://developer.wordpress.org/advanced-administration/wordpress/wp-config/)
        ("define( 'DB_PASSWORD', 'P7n-1' );", "define( 'DB_PASSWORD', [REDACTED] );"),
        (
            "sed -i \"s/password_here/P7n-1/; s/.*AUTH_KEY.*/define('AUTH_KEY', 'P7n-2');/\" wp.php",
            'sed -i "s/password_here/[REDACTED]/; s/.*AUTH_KEY.*/[REDACTED]/" wp.php',
        ),
        ("php -r \"define('DB_PASSWORD', 'P7n-1');\"", "php -r \"define('DB_PASSWORD', [REDACTED]);\""),
        ("define('NONCE_SALT', 'P7n-1');", "define('NONCE_SALT', [REDACTED]);"),
        # sed's replacement of a secret's placeholder or key (the replacement holding the key: key rules)
        ("sed -i 's|{{DB_PASSWORD}}|P7n-1|g' app.conf", "sed -i 's|{{DB_PASSWORD}}|[REDACTED]|g' app.conf"),
        ("sed -i 's/API_TOKEN_HERE/P7n-1/' .env", "sed -i 's/API_TOKEN_HERE/[REDACTED]/' .env"),
        # setenv(3), Go's os.Setenv, Java's System.setProperty
        ('setenv("API_TOKEN", "P7n-1", 1);', 'setenv("API_TOKEN", [REDACTED], 1);'),
        ('os.Setenv("DB_PASS", "P7n-1")', 'os.Setenv("DB_PASS", [REDACTED])'),
        (
            'System.setProperty("javax.net.ssl.keyStorePassword", "P7n-1");',
            'System.setProperty("javax.net.ssl.keyStorePassword", [REDACTED]);',
        ),
        # a subscript assigned: Python's os.environ, phpMyAdmin's config.inc.php, Ruby's ENV
        (
            'python3 -c \'import os; os.environ["DB_PASSWORD"] = "P7n-1"\'',
            "python3 -c 'import os; os.environ[\"DB_PASSWORD\"] = [REDACTED]'",
        ),
        ("$cfg['Servers'][$i]['password'] = 'P7n-1';", "$cfg['Servers'][$i]['password'] = [REDACTED];"),
        ("ENV['GITHUB_TOKEN'] = 'it\\'s-P7n-1'", "ENV['GITHUB_TOKEN'] = [REDACTED]"),
        # .NET: NuGet.config's packageSourceCredentials, web.config's appSettings
        ('<add key="ClearTextPassword" value="P7n-1" />', '<add key="ClearTextPassword" value=[REDACTED] />'),
        ('<add key="StripeSecretKey" value="P7n-1"/>', '<add key="StripeSecretKey" value=[REDACTED]/>'),
    ],
)
def test_a_value_after_a_quoted_secret_name_goes(text: str, want: str) -> None:
    out = _filter(text)
    assert out == want
    assert "P7n" not in out


@pytest.mark.parametrize(
    "text",
    [
        "define('DB_HOST', 'db.corp');",
        "t('bypass', 'Umgehen')",
        "d.get('password', '')",  # empty: a default, no secret
        "getattr(o, 'token', None)",
        'setenv("PATH", "/usr/bin", 1);',
        '<add key="ClearTextPassword" />',
        '<add key="Username" value="bob" />',
        "x['compass'] = 'north'",
        "sed -i 's/localhost/db.corp/' app.conf",
        "sed -i 's/passwordless/open/g' a.md",
    ],
)
def test_other_pairs_of_literals_stay(text: str) -> None:
    assert _filter(text) == text


@pytest.mark.parametrize("unit", ["'password', ", "['token'] = ", 'key="pass" value=', "'a_pwd'"])
def test_its_cost_grows_linearly_with_a_hostile_field(unit: str) -> None:
    ratio = growth(PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 20)).redact_text, unit)
    assert ratio < 10, f"{unit!r}: 64 KiB costs {ratio:.1f}x the 16 KiB field"
