"""The infra and package clients' credentials (cli_infra_options.py) in the other forms their parsers read.

Found by the RP7 review's own corpus (session 45): the rules read ``-t VALUE`` but not ``-t=VALUE``
(Go's flag package, urfave/cli, clap, pflag and picocli all read it), nor a key share or a secret
after an option that takes a value (``vault operator unseal -address https://v:8200 KEY``,
``pulumi config set --stack dev dbPassword X``, ``doppler secrets set -p proj -c dev NAME X``): the
option's value was taken for the key, and the key or the secret was stored. Each case runs through
the filter the agent uses, as an exec of the client; no character of the secret may stay.
"""

from __future__ import annotations

import pytest

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.contracts.events import EventKind, ProcessInfo, RuntimeCallEvent
from stellaops_runtime.privacy import PrivacyFilter
from tests.linear_cost import growth

_KEY = "IXyR0OJnSFobekZMMCKCoVEpT7wI6l+USMzE3IcyDyo="
_PW = "Rp7-sec"


def _exec(line: str) -> str:
    binary, _, arguments = line.partition(" ")
    ev = RuntimeCallEvent(
        kind=EventKind.EXEC,
        timestamp_ns=1,
        node_name="n",
        process=ProcessInfo(pid=7, exec_id="e1", binary=f"/usr/bin/{binary}", arguments=arguments),
    )
    PrivacyFilter(PrivacyConfig()).apply(ev)
    assert ev.process is not None
    return ev.process.arguments


def _text(line: str) -> str:
    return PrivacyFilter(PrivacyConfig()).filter_field(line)


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        # an option with its value before the key share (Go flags: ``-address URL``)
        (f"vault operator unseal -address https://v:8200 {_KEY}", _KEY),
        (f"vault operator unseal -tls-skip-verify -address https://v:8200 {_KEY}", _KEY),
        (f"bao operator rekey -address http://b:8200 {_KEY}", _KEY),
        (f"nomad operator gossip keyring install -address http://n:4646 {_KEY}", _KEY),
        # pulumi: an option with a value among config set's words
        (f"pulumi config set --stack dev dbPassword {_PW}", _PW),
        (f"pulumi config set --secret --stack dev dbPassword {_PW}", _PW),
        (f"pulumi config set --secret -s dev region-id {_PW}", _PW),
        (f"pulumi config set -s dev region-id {_PW} --secret", _PW),
        (f"pulumi config set --cwd infra --secret region {_PW}", _PW),
        # doppler: the project and config options before the pair
        (f"doppler secrets set -p proj -c dev STRIPE {_PW}", _PW),
        (f"doppler secrets set --config=dev STRIPE {_PW}", _PW),
        (f"doppler secrets set --project p --config dev STRIPE {_PW}", _PW),
        # ``-t=VALUE``, ``-p=VALUE``: urfave/cli (influx, gitlab-runner), pflag (glab), clap (uv), picocli
        (f"influx bucket list -t={_PW}", _PW),
        (f"glab auth login -t={_PW}", _PW),
        (f"gitlab-runner register -r={_PW}", _PW),
        (f"uv publish -t={_PW}", _PW),
        (f"uv publish -u bob -p={_PW}", _PW),
        (f"poetry publish -p={_PW}", _PW),
        (f"cypher-shell -u neo4j -p={_PW}", _PW),
        # useradd's -p glued to its hash (getopt)
        (f"useradd -p'$6$salt${_PW}' bob", f"$6$salt${_PW}"),
        (f"usermod -p$6$salt${_PW} bob", f"$6$salt${_PW}"),
        # composer config --auth (the key already taken by any program's --auth X) with an option or
        # another command after the secret
        (f"composer config --auth http-basic.repo.corp bob {_PW} --global", _PW),
        (f"composer config --auth github-oauth.github.com {_PW} -g", _PW),
        (f"composer config --auth http-basic.repo.corp bob {_PW} && composer install", _PW),
        (f"composer config --auth gitlab-token.gitlab.corp {_PW}; composer install", _PW),
        (f"composer config --auth --global http-basic.repo.corp bob {_PW}", _PW),
        # snyk's setting quoted whole (a script's "api=T"); pulumi's key in a script's quotes
        (f'snyk config set "api={_PW}"', _PW),
        (f"snyk config set 'api={_PW}'", _PW),
        (f"pulumi config set 'db:apiToken' {_PW}", _PW),
        # conda token set with an option and its value first
        (f"conda token set -s https://a {_PW}", _PW),
    ],
)
def test_a_credential_after_an_option_with_a_value_or_after_eq_goes(line: str, secret: str) -> None:
    for out in (_exec(line), _text(line), _text(f'sh -c "{line}"')):
        assert _PW[:6] not in out and secret not in out, out


@pytest.mark.parametrize(
    "line",
    [
        "vault operator unseal -reset",
        "vault operator rekey -init -key-shares=5 -key-threshold=3",
        "nomad operator gossip keyring list -address http://n:4646",
        "pulumi config set aws:region eu-west-1",
        "pulumi config set --stack dev aws:region eu-west-1",
        "pulumi config get dbPassword --stack dev",
        "doppler secrets get API_URL --plain",
        "influx write -b b -o o -p s 'm v=1'",
        "influx bucket list -tls-skip-verify",
        "uv run -p 3.12 pytest",
        "useradd -m -s /bin/bash bob",
        "conda token list -s https://a",
        "snyk config set 'org=acme'",
    ],
)
def test_the_same_tools_other_words_stay(line: str) -> None:
    assert _text(line) == line
    assert _exec(line) == line.partition(" ")[2]


@pytest.mark.parametrize(
    "unit",
    # (32 characters: the field ends with an option, so no command of it ends with a value)
    [
        "conda token set -xxxxxxxxxxxxxx ",
        "vault operator unseal -a b -c d ",
        "doppler secrets set a -x -s dev ",
    ],
)
def test_the_last_word_rules_cost_grows_linearly_with_a_hostile_field(unit: str) -> None:
    # the key or token as a command's last word is looked for from each subcommand: an earlier draft
    # (any words, then the value, then the end) read the rest of the command from each of them
    ratio = growth(PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 20)).redact_text, unit)
    assert ratio < 10, f"{unit!r}: 64 KiB costs {ratio:.1f}x the 16 KiB field"


def test_pulumis_key_in_a_single_quoted_scripts_escaped_quotes_loses_its_value() -> None:
    # bash -lc of a command shlex.join built: the key's quotes are the script's '"'"'
    out = _exec(f"""bash -lc "pulumi config set '"'"'db:apiToken'"'"' {_PW}\"""")
    assert _PW not in out, out
