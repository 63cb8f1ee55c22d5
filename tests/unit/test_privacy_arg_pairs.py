"""A secret split over two traced arguments: a name, then its value (PrivacyFilter.apply).

A traced call often takes a name and a value as two arguments: ``setenv("DB_PASSWORD", X, 1)``,
a header setter ``("Authorization", "Negotiate X")``, a configuration setter ``("api_key", X)``.
Each value was filtered alone, so a value with no recognisable format was stored whole. The
argument after one that names a secret (as an environment name, a key ending in a credential
word, an Authorization header, or such a flag) now goes whole; a path, a number or an innocent
name before it changes nothing.
"""

from __future__ import annotations

import pytest

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.contracts.events import Argument, EventKind, ProcessInfo, RuntimeCallEvent
from stellaops_runtime.privacy import REDACTED, PrivacyFilter

SECRET = "Pl4inV4lue"


def _event(*args: tuple[str, str]) -> RuntimeCallEvent:
    return RuntimeCallEvent(
        kind=EventKind.UPROBE,
        timestamp_ns=1,
        node_name="n",
        process=ProcessInfo(pid=1, binary="/app"),
        function_name="setenv",
        arguments=[Argument(label="", type=t, value=v) for t, v in args],
    )


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("DB_PASSWORD", "password"),
        ("GITHUB_PAT", "env_name"),
        ("api_key", "secret_token"),
        ("--password", "password"),
        ("-token", "secret_token"),
        ("password:", "password"),
        ("Authorization", "authorization_header"),
        ("X-Auth-Token", "secret_token"),
        # a traced buffer holding the C string's NUL, which the adapter makes U+FFFD
        # (adapter/validate.py): a C consumer reads the name up to it
        ("DB_PASSWORD\ufffd", "password"),
        ("api_key\ufffd\ufffd", "secret_token"),
        ("GITHUB_PAT\ufffdjunk", "env_name"),
    ],
)
def test_the_value_after_a_secret_name_goes_whole(name: str, family: str) -> None:
    pf = PrivacyFilter(PrivacyConfig())
    ev = _event(("string_arg", name), ("string_arg", SECRET), ("int_arg", "1"))
    pf.apply(ev)
    assert [a.value for a in ev.arguments] == [name, REDACTED, "1"]
    assert pf.fields_redacted == 1
    assert pf.redactions_by_pattern[family] == 1


@pytest.mark.parametrize(
    "args",
    [
        [("string_arg", "LOG_LEVEL"), ("string_arg", "debug")],
        [("string_arg", "/etc/app/secret"), ("string_arg", "/tmp/copy")],  # paths: rename(old, new)
        [("string_arg", "DB_PASSWORD"), ("int_arg", "12")],  # a length, not the value
        [("string_arg", "the password is"), ("string_arg", "below")],  # no name: a sentence
    ],
)
def test_other_pairs_keep_their_values(args: list[tuple[str, str]]) -> None:
    pf = PrivacyFilter(PrivacyConfig())
    ev = _event(*args)
    pf.apply(ev)
    assert [a.value for a in ev.arguments] == [v for _, v in args]
    assert pf.fields_redacted == 0


def test_pairs_follow_the_default_rules_switch() -> None:
    pf = PrivacyFilter(PrivacyConfig(useDefaultRedactionPatterns=False))
    ev = _event(("string_arg", "DB_PASSWORD"), ("string_arg", SECRET))
    pf.apply(ev)
    assert ev.arguments[1].value == SECRET
