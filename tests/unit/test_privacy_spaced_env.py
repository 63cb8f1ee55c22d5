"""A secret environment variable set with a blank, not ``=``: fish's ``set``, csh's ``setenv``, ``ENV``.

P7's second known limit (session 45): ``set -x DB_PASSWORD x`` (fish), ``setenv DB_PASSWORD x`` (csh,
tcsh) and a Dockerfile's legacy ``ENV DB_PASSWORD x`` have no ``=``, so the environment-name rule
(``NAME=value``) kept the value. Each case runs through the filter the agent uses, as a ``fish -c`` /
``csh -c`` exec and as a traced buffer; the look-alikes (bash's ``set -x``, ``set -euo pipefail``,
``setenv PATH``, ``kubectl set env``) must stay.
"""

from __future__ import annotations

import pytest

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.privacy import PrivacyFilter
from tests.linear_cost import growth
from tests.privacy_events import exec_arguments as _exec

_PW = "Rp7-env"


def _text(text: str) -> str:
    return PrivacyFilter(PrivacyConfig()).filter_field(text)


@pytest.mark.parametrize(
    ("script", "secret"),
    [
        (f"set -x DB_PASSWORD {_PW}; exec app", _PW),
        (f"set -gx GITHUB_TOKEN '{_PW} x'", f"'{_PW} x'"),
        (f"set --export --global API_KEY {_PW}", _PW),
        (f"setenv DB_PASSWORD {_PW} && ./app", _PW),
        (f'setenv AWS_SECRET_ACCESS_KEY "{_PW}"', f'"{_PW}"'),
    ],
)
def test_a_secret_variable_set_with_a_blank_loses_its_value(script: str, secret: str) -> None:
    out = _exec("/usr/bin/fish", f'-c "{script}"')
    assert _PW not in out, out
    assert _text(script) == script.replace(secret, "[REDACTED]", 1)


def test_a_dockerfiles_legacy_env_line_loses_its_value() -> None:
    text = f"FROM alpine\nENV DB_PASSWORD {_PW}\nENV APP_HOME /app\n"
    assert _text(text) == text.replace(_PW, "[REDACTED]")


@pytest.mark.parametrize(
    "text",
    [
        "set -x",
        "set -euo pipefail",
        "set -x PATH /usr/local/bin $PATH",
        "setenv PATH /usr/bin",
        "setenv LANG C.UTF-8",
        "kubectl set image deploy/app app=img:2",
        "gsettings set org.gnome.desktop.interface gtk-theme Adwaita",
        "ENV APP_HOME /app",
        "set -x DB_HOST db.corp",
        "gh secret set DEPLOY_KEY --repo org/app < key.pem",
    ],
)
def test_look_alikes_stay(text: str) -> None:
    assert _text(text) == text


@pytest.mark.parametrize("unit", ["set -x ", "setenv DB_PASSWORD ", "set -x DB_TOKEN a;"])
def test_its_cost_grows_linearly_with_a_hostile_field(unit: str) -> None:
    ratio = growth(PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 20)).redact_text, unit)
    assert ratio < 10, f"{unit!r}: 64 KiB costs {ratio:.1f}x the 16 KiB field"


def test_a_value_an_earlier_rule_took_is_counted_once() -> None:
    f = PrivacyFilter(PrivacyConfig())
    out = f.filter_field(f'setenv AWS_SECRET_ACCESS_KEY "{_PW}"')
    assert out == "setenv AWS_SECRET_ACCESS_KEY [REDACTED]"  # (the aws rule's, quotes and all)
    assert sum(f.redactions_by_pattern.values()) == 1 and f.fields_redacted == 1
    f.filter_field(f"set -x DB_PASSWORD {_PW}")
    assert f.redactions_by_pattern["env_name"] == 1 and f.fields_redacted == 2


@pytest.mark.parametrize(
    ("binary", "arguments", "kept"),
    [
        # csh's value in escaped double quotes inside a double-quoted script (P8, session 46)
        ("/bin/csh", f'-c "setenv DB_PASSWORD \\"{_PW} x\\" && ./app"', "&& ./app"),
        # fish's set takes a list: every word to the command's end is the value (P8)
        ("/usr/bin/fish", f"-c 'set -gx DB_PASSWORD {_PW} {_PW}2; ./app'", "; ./app"),
        ("/usr/bin/fish", f"-c 'set -x API_TOKEN (cat /run/t) {_PW}'", "-c 'set -x API_TOKEN"),
    ],
)
def test_an_escaped_quote_or_a_list_loses_the_whole_value(binary: str, arguments: str, kept: str) -> None:
    out = _exec(binary, arguments)
    assert _PW not in out and " x" not in out and kept in out, out


def test_a_list_of_a_name_naming_no_secret_stays() -> None:
    text = "set -x PATH /usr/local/bin /usr/bin; set -gx EDITOR vim"
    assert _text(text) == text
