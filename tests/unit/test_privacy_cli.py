"""Credential options of command-line clients (tests/fixtures/privacy/cli_corpus.yaml) through the filter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.contracts.events import EventKind, ProcessInfo, RuntimeCallEvent
from stellaops_runtime.privacy import PrivacyFilter
from stellaops_runtime.privacy.cli_infra_options import INFRA_RULES
from stellaops_runtime.privacy.cli_options import _RULES, TOOL_RULES, TOOLS, client_name

CORPUS: dict[str, Any] = yaml.safe_load(
    (Path(__file__).parents[1] / "fixtures" / "privacy" / "cli_corpus.yaml").read_text(encoding="utf-8")
)


def _exec_event(binary: str, arguments: str, exec_id: str = "") -> RuntimeCallEvent:
    return RuntimeCallEvent(
        kind=EventKind.EXEC,
        timestamp_ns=1,
        node_name="n",
        process=ProcessInfo(pid=7, binary=binary, arguments=arguments, exec_id=exec_id),
    )


def _run(case: dict[str, Any]) -> tuple[str, PrivacyFilter]:
    """The case through PrivacyFilter.apply, as Tetragon would give it (binary separate from arguments)."""
    pf = PrivacyFilter(PrivacyConfig())
    ev = _exec_event(case.get("binary", "/bin/sh"), case["input"])
    pf.apply(ev)
    return ev.process.arguments, pf


@pytest.mark.parametrize("case", CORPUS["secrets"], ids=lambda c: f"{c['client']}:{c['input'][:50]}")
def test_client_credential_is_redacted(case: dict[str, Any]) -> None:
    out, pf = _run(case)
    assert out == case["expected"]
    for secret in case["secrets"]:
        assert secret not in out
    assert pf.fields_redacted == 1
    assert case["source"].startswith("https://")


@pytest.mark.parametrize("case", CORPUS["innocent"], ids=lambda c: f"{c['client']}:{c['input'][:50]}")
def test_client_look_alike_is_kept(case: dict[str, Any]) -> None:
    out, pf = _run(case)
    assert out == case["input"]
    assert pf.fields_redacted == 0
    assert case["why"]


def test_at_least_fifteen_clients_with_every_syntax_kind() -> None:
    clients = {c["client"] for c in CORPUS["secrets"]}
    assert len(clients) >= 15
    inputs = [c["input"] for c in CORPUS["secrets"]]
    # a separate argument, an =-joined value, a value glued to a short option
    assert any(" -p " in i for i in inputs)
    assert any("--password=" in i for i in inputs)
    assert any(" -pS3cretMyPw" in i for i in inputs)
    # every client the corpus names for a short option has rules (a version after its name too)
    for c in CORPUS["secrets"]:
        if c.get("binary"):
            assert client_name(c["binary"].rpartition("/")[2]) in TOOLS


def test_every_executable_of_a_client_family_has_the_family_rules() -> None:
    # (a client may have rules in both tables: cli_infra_options.INFRA_RULES adds to _RULES')
    for tools in (*_RULES, *INFRA_RULES):
        assert {id(TOOL_RULES[t]) for t in tools} == {id(TOOL_RULES[tools[0]])}, tools
    assert TOOL_RULES["mariadb-dump"] is TOOL_RULES["mysql"]
    assert TOOL_RULES["podman"] is TOOL_RULES["docker"]
    assert {t for table in (_RULES, INFRA_RULES) for tools in table for t in tools} == TOOLS


def test_client_rules_come_from_the_binary_only_for_its_own_arguments() -> None:
    pf = PrivacyFilter(PrivacyConfig())
    # -pX is a password for mysql, nothing for a program without client rules
    assert pf.filter_field("-uroot -pS3cret db", tool="mysql") == "-uroot -p[REDACTED] db"
    assert pf.filter_field("-uroot -pS3cret db") == "-uroot -pS3cret db"
    # The innocent cache is per binary: the mysql result must not leak into the other and back.
    assert pf.filter_field("-uroot -pS3cret db", tool="mysql") == "-uroot -p[REDACTED] db"
    ev = _exec_event("/usr/bin/mysql", "-uroot -pS3cret db", exec_id="e1")
    pf.apply(ev)
    assert ev.process.arguments == "-uroot -p[REDACTED] db"


def test_a_command_named_in_the_text_ends_at_the_shell_separator() -> None:
    pf = PrivacyFilter(PrivacyConfig())
    out = pf.redact_text("mysql -uapp -pS3cret db; docker run -p 8080:80 nginx && sshpass -p Pw1 ssh h")
    assert out == "mysql -uapp -p[REDACTED] db; docker run -p 8080:80 nginx && sshpass -p [REDACTED] ssh h"
    # docker's -p counts only after "login" in the same command
    assert pf.redact_text("docker run -p 8080:80 img | docker login -p Pw2 r") == (
        "docker run -p 8080:80 img | docker login -p [REDACTED] r"
    )
    # A separator inside a word is part of it (a password holding '&' or ';'); one standing apart ends it.
    assert pf.redact_text("redis-cli AUTH app R3d&is;Pw; redis-cli -a x&&ls -a") == (
        "redis-cli AUTH [REDACTED]; redis-cli -a [REDACTED]&&ls -a"
    )


def test_client_name_must_be_a_whole_word() -> None:
    pf = PrivacyFilter(PrivacyConfig())
    for text in ("mysqlx -pfoo", "my-mysql -pfoo", "/opt/mysql-tools/run -pfoo", "curling -u a:b"):
        assert pf.redact_text(text) == text
    assert pf.redact_text("/usr/bin/mysql -pfoo") == "/usr/bin/mysql -p[REDACTED]"
    assert pf.redact_text('sh -c "mysql -pfoo db"') == 'sh -c "mysql -p[REDACTED] db"'


def test_a_tool_name_without_client_rules_is_no_crash() -> None:
    # filter_field(tool=...) and redact_text(tool=...) are public: a name that has no client
    # rules (keytool's options are everyone's rules) raised KeyError from inside the passes.
    pf = PrivacyFilter(PrivacyConfig())
    assert pf.filter_field("-storepass Kt0ol&Pw -list", tool="keytool") == "-storepass [REDACTED] -list"
    assert pf.redact_text("-p 8080", tool="no-such-client") == "-p 8080"
