"""Secrets of clients and options that no rule read: anaconda's token, pulumi's ``--``, gradle's signing key.

Left by P7 and RP7 (session 45): ``anaconda -t TOKEN upload`` (anaconda-client's global ``-t``,
``--token`` was read by the generic rule), ``pulumi config set --secret K -- X`` (``--`` ends pulumi's
options: it was taken for the value and the value stored), gradle's ``-PsigningKey=…`` (the signing
plugin's in-memory key: a camelCase name ending in ``Key``, which no credential word ended), the flags
``--pass-phrase X`` and ``--rootpw X`` (a credential word split by a dash; ``pw`` glued to a word in a
two-dash flag). Each case runs through the filter the agent uses, as an exec of the client and as text
in a ``sh -c`` script; the same tools' other words stay.
"""

from __future__ import annotations

import shlex

import pytest

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.contracts.events import EventKind, ProcessInfo, RuntimeCallEvent
from stellaops_runtime.privacy import PrivacyFilter, filter_env
from tests.linear_cost import growth

_PW = "P8-unruled"


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
        # https://docs.anaconda.com/anaconda-org/user-guide/work-with-tokens/ (anaconda -t TOKEN upload;
        # argparse: -t=TOKEN and -tTOKEN too; after -s SITE or -v)
        (f"anaconda -t {_PW} upload pkg.tar.bz2", _PW),
        (f"anaconda -t={_PW} upload pkg.tar.bz2", _PW),
        (f"anaconda -t{_PW} upload pkg.tar.bz2", _PW),
        (f"anaconda -v -s https://api.anaconda.org -t '{_PW} x' upload pkg.tar.bz2", f"'{_PW} x'"),
        # https://www.pulumi.com/docs/iac/cli/commands/pulumi_config_set/ (-- before a value that may
        # start with a dash)
        (f"pulumi config set --secret dbKey -- {_PW}", None),  # (--secret takes the key too: known)
        (f"pulumi config set --secret dbKey -- -{_PW}", None),
        (f"pulumi config set dbPassword -- {_PW}", _PW),
        # https://docs.gradle.org/current/userguide/signing_plugin.html#using_in_memory_ascii_armored_openpgp_subkeys
        (f"gradle publish -PsigningKey={_PW} -PsigningKeyId=24875D73", _PW),
        (f"gradlew -PsigningInMemoryKey={_PW} publish", _PW),
        (f"gradle publish -Psigning.key={_PW}", _PW),
        # a credential word split by a dash; pw glued in a two-dash flag (kickstart's --rootpw, slapd's)
        (f"app --pass-phrase {_PW}", _PW),
        (f"app --pass-phrase={_PW}", _PW),
        (f"app --pass_phrase {_PW}", _PW),
        (f"app --rootpw {_PW}", _PW),
        (f"app --adminPw {_PW}", _PW),
    ],
)
def test_a_clients_secret_that_no_rule_read_is_gone(line: str, secret: str | None) -> None:
    out = _exec(line)
    assert _PW not in out, out
    script = f"sh -c {shlex.quote(line + ' && echo done')}"
    assert _PW not in _text(script)
    if secret is not None:
        assert _text(line) == line.replace(secret, "[REDACTED]", 1)


def test_pulumis_value_after_dash_dash_goes() -> None:
    line = f"pulumi config set --secret dbKey -- -{_PW} --stack dev"
    assert _text(line) == "pulumi config set --secret [REDACTED] -- [REDACTED] --stack dev"


def test_gradles_armored_key_goes_whole() -> None:
    block = "PGP PRIVATE KEY BLOCK-----"
    key = f"-----BEGIN {block}\n\nlQdGBF{_PW}\n=AbCd\n-----END {block}"
    out = _exec(f'gradle publish "-PsigningKey={key}" -PsigningPassword=x')
    assert _PW not in out and "=AbCd" not in out, out


def test_the_passphrase_and_signing_key_words_name_environment_variables_too() -> None:
    assert _text(f"env GPG_PASS_PHRASE={_PW} ./sign") == "env GPG_PASS_PHRASE=[REDACTED] ./sign"
    assert filter_env([f"GPG_PASS_PHRASE={_PW}"]) == ["GPG_PASS_PHRASE=[REDACTED]"]
    # gradle reads a project property from ORG_GRADLE_PROJECT_<name> too
    for name in ("ORG_GRADLE_PROJECT_signingKey", "ORG_GRADLE_PROJECT_signingInMemoryKey"):
        assert _text(f"env {name}={_PW} ./gradlew") == f"env {name}=[REDACTED] ./gradlew"
        kept = f"{name}Id=24875D73"
        assert filter_env([f"{name}={_PW}", kept]) == [f"{name}=[REDACTED]", kept]


@pytest.mark.parametrize(
    "line",
    [
        "anaconda upload -t conda pkg.tar.bz2",  # upload's -t is the package type
        "anaconda search -t conda numpy",
        "anaconda -v upload pkg.tar.bz2",
        "pip install anaconda -t /opt/target",
        "pulumi config set region -- us-east-1",  # a key naming no secret, without --secret
        "gradle publish -PsigningKeyId=24875D73 -Psigning.secretKeyRingFile=/k/secring.gpg",
        "gradle build -PkeyAlias=upload -Pversion=1.2",
        "git -c user.signingkey=3AA5C34371567BD2 commit -S",  # git's: a key's id
        "git config --global user.signingKey ~/.ssh/id_ed25519.pub",
        "app --pass-through --passphrase-file /run/pp --rootpw-file /run/pw",
        "tar -cpw f.tar dir",
    ],
)
def test_the_same_tools_other_words_stay(line: str) -> None:
    assert _exec(line) == line.partition(" ")[2]
    assert _text(line) == line


def test_the_new_rules_cost_linearly() -> None:
    pf = PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 17))  # (uncut: the default cuts at 4096)
    units = ("anaconda -v -t ", "anaconda -s s ", "config set --secret k -- ", "-PsigningKey=", "--rootpw ")
    for unit in units:
        assert growth(pf.filter_field, unit, size=32768) < 10, unit
