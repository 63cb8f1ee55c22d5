"""Tests for the privacy filter: the corpus of secrets and innocent arguments, and the filter's modes.

The corpus (tests/fixtures/privacy/corpus.yaml) holds, among others, every
secret-bearing ``process.arguments`` string of the synthetic Tetragon stream
(tests/fixtures/tetragon/synthetic/stream-a, copied from the shared fixtures), so this test does not need
/work/shared. Timings are printed (run with ``-s``), never asserted.
"""

from __future__ import annotations

import collections
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.contracts.events import (
    Argument,
    ContainerInfo,
    EventKind,
    PodInfo,
    ProcessInfo,
    RuntimeCallEvent,
    StackFrame,
)
from stellaops_runtime.privacy import DEFAULT_PATTERN_NAMES, PrivacyFilter
from stellaops_runtime.privacy.filter import LIBRARY_COUNTER_PREFIX
from stellaops_runtime.privacy.library_rules import LIBRARY_RULES

CORPUS: dict[str, Any] = yaml.safe_load(
    (Path(__file__).parents[1] / "fixtures" / "privacy" / "corpus.yaml").read_text(encoding="utf-8")
)

STREAM_A_SECRET_ARGUMENTS = [
    "--port 8080 --db-url=postgres://admin:S3cr3tPass@db:5432/shop",
    "--port 8080 --email alice@example.com",
    "--port 8080 --password=hunter2",
    "--port 8080 --token ghp_16C7e42F292c6912E7710c838347Ae178B4a",
    "--port 8080 -H Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl",
    "--port 8080 AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
]


def _filter(**kw: Any) -> PrivacyFilter:
    return PrivacyFilter(PrivacyConfig(**kw))


def _event(
    *, arguments: str = "", args: list[Argument] | None = None, namespace: str | None = "shop"
) -> RuntimeCallEvent:
    return RuntimeCallEvent(
        kind=EventKind.KPROBE,
        timestamp_ns=1,
        node_name="node-1",
        process=ProcessInfo(pid=42, binary="/usr/bin/app", arguments=arguments, cwd="/app"),
        container=ContainerInfo(id="abc", image_digest="sha256:" + "0" * 64),
        pod=PodInfo(namespace=namespace, name="app-1") if namespace is not None else None,
        function_name="__x64_sys_openat",
        module="/usr/lib/x86_64-linux-gnu/libc.so.6",
        arguments=args or [],
        user_stack=[StackFrame(module="/usr/lib/x86_64-linux-gnu/libc.so.6", symbol="open", offset=0x10)],
    )


# -- corpus -----------------------------------------------------------------


@pytest.mark.parametrize("case", CORPUS["secrets"], ids=lambda c: f"{c['pattern']}:{c['input'][:40]}")
def test_secret_is_redacted(case: dict[str, Any]) -> None:
    pf = _filter()
    out = pf.filter_field(case["input"])
    assert out == case["expected"]
    for secret in case["secrets"]:
        assert secret not in out
    assert pf.redactions_by_pattern[case["pattern"]] >= 1
    assert pf.fields_redacted == 1
    # The same text through the log path gives the same result and counts nothing more.
    assert pf.redact_text(case["input"]) == case["expected"]
    assert pf.fields_redacted == 1


@pytest.mark.parametrize("text", CORPUS["innocent"])
def test_innocent_text_passes_unchanged(text: str) -> None:
    pf = _filter()
    assert pf.filter_field(text) == text
    assert pf.filter_field(text) == text  # second time from the innocent cache
    assert pf.redact_text(text) == text
    assert pf.fields_redacted == 0
    assert not any(pf.redactions_by_pattern.values())


def test_corpora_cover_every_default_pattern_three_times() -> None:
    """Counted by what the filter reports for each case of all three corpora, not by the labels."""
    per_pattern: collections.Counter[str] = collections.Counter()
    fixtures = Path(__file__).parents[1] / "fixtures" / "privacy"
    inputs = [c["input"] for c in CORPUS["secrets"]]
    for name in ("cli_corpus.yaml", "formats_corpus.yaml"):
        inputs += [
            c["input"] for c in yaml.safe_load((fixtures / name).read_text(encoding="utf-8"))["secrets"]
        ]
    for text in inputs:
        pf = _filter()
        pf.filter_field(text)
        per_pattern.update(k for k, v in pf.redactions_by_pattern.items() if v)
    for name in DEFAULT_PATTERN_NAMES:
        assert per_pattern[name] >= 3, name
    assert per_pattern["cli_option"] >= 3
    assert per_pattern["env_name"] >= 3
    assert len(CORPUS["innocent"]) >= 20


def test_corpus_holds_every_secret_argument_of_the_synthetic_stream() -> None:
    inputs = {c["input"] for c in CORPUS["secrets"]}
    for args in STREAM_A_SECRET_ARGUMENTS:
        assert args in inputs
    assert "--port 8080" in CORPUS["innocent"]


# -- events -----------------------------------------------------------------


def test_apply_redacts_process_arguments_and_traced_arguments_and_counts() -> None:
    pf = _filter()
    ev = _event(
        arguments="--port 8080 --password=hunter2 --token abc123",
        args=[
            Argument(label="path", type="file_arg", value="/etc/app/config.yaml"),
            Argument(label="buf", type="bytes_arg", value="Authorization: Bearer tok_0123456789"),
        ],
    )
    assert pf.apply(ev) is ev
    assert ev.process.arguments == "--port 8080 --password=[REDACTED] --token [REDACTED]"
    assert ev.arguments[0].value == "/etc/app/config.yaml"
    assert ev.arguments[1].value == "Authorization: Bearer [REDACTED]"
    assert ev.process.cwd == "/app"
    assert pf.events_seen == 1
    assert pf.events_filtered == 0
    assert pf.fields_redacted == 2
    assert pf.redactions_by_pattern["password"] == 1
    assert pf.redactions_by_pattern["secret_token"] == 1
    assert pf.redactions_by_pattern["authorization_header"] == 1
    assert pf.arguments_truncated == 0


def test_redaction_off_keeps_arguments_but_still_truncates() -> None:
    pf = _filter(redact_arguments=False, max_argument_bytes=64)
    ev = _event(arguments="--password=hunter2 " + "x" * 100)
    pf.apply(ev)
    assert ev.process.arguments.startswith("--password=hunter2 ")
    assert ev.process.arguments.endswith("…[truncated 55 bytes]")
    assert pf.arguments_truncated == 1
    assert pf.fields_redacted == 0
    # Logs are redacted whatever redact_arguments says.
    assert pf.redact_text("--password=hunter2") == "--password=[REDACTED]"


def test_default_patterns_off_only_extra_patterns_apply() -> None:
    pf = _filter(default_patterns=False, extra_patterns=[r"internal-\d+"])
    assert pf.filter_field("--password=hunter2 internal-42") == "--password=hunter2 [REDACTED]"
    assert "password" not in pf.redactions_by_pattern
    assert pf.redactions_by_pattern == {"extra_0": 1}


def test_extra_patterns_named_group_group_one_and_whole_match() -> None:
    pf = _filter(
        extra_patterns=[
            r"--license[= ](?P<secret>\S+)",  # named group: only the group goes
            r"tenant=(\w+)",  # group 1
            r"ACME-[0-9A-F]{8}",  # no group: the whole match
        ]
    )
    out = pf.filter_field("app --license=LIC-123 tenant=blue key ACME-DEADBEEF end")
    assert out == "app --license=[REDACTED] tenant=[REDACTED] key [REDACTED] end"
    assert pf.redactions_by_pattern["extra_0"] == 1
    assert pf.redactions_by_pattern["extra_1"] == 1
    assert pf.redactions_by_pattern["extra_2"] == 1
    assert pf.fields_redacted == 1
    # A pattern that can match the empty string must not spray markers.
    assert _filter(extra_patterns=[r"z*"]).filter_field("abc") == "abc"


def test_namespace_allowlist_drops_and_counts() -> None:
    pf = _filter(allowed_namespaces=["shop"])
    assert pf.apply(_event(namespace="shop")) is not None
    assert pf.apply(_event(namespace="kube-system")) is None
    assert pf.apply(_event(namespace=None)) is None  # host event: "" not allowed
    assert pf.events_seen == 3
    assert pf.events_filtered == 2

    with_host = _filter(allowed_namespaces=["shop", ""])
    assert with_host.apply(_event(namespace=None)) is not None
    assert with_host.events_filtered == 0

    everyone = _filter()
    assert everyone.apply(_event(namespace="anything")) is not None
    assert everyone.apply(_event(namespace=None)) is not None


def test_symbol_id_only_keeps_module_identity_only() -> None:
    pf = _filter(symbol_id_only=True)
    ev = _event(
        arguments="--password=hunter2 --config /etc/app.yaml",
        args=[Argument(label="path", type="file_arg", value="/home/alice/notes.txt")],
    )
    assert pf.apply(ev) is ev
    assert ev.process.arguments == ""
    assert ev.arguments == []
    assert ev.process.cwd == ""
    assert ev.process.binary == "/usr/bin/app"
    assert ev.module == "/usr/lib/x86_64-linux-gnu/libc.so.6"
    assert ev.user_stack[0].module == "/usr/lib/x86_64-linux-gnu/libc.so.6"
    assert ev.user_stack[0].symbol == "open"
    assert ev.function_name == "__x64_sys_openat"


# -- truncation -------------------------------------------------------------


def test_one_mebibyte_argument_is_truncated_fast_and_still_redacted() -> None:
    pf = _filter()  # max_argument_bytes 4096
    big = "--password=hunter2 " + "A" * (1 << 20)
    t0 = time.perf_counter()
    out = pf.filter_field(big)
    elapsed_us = (time.perf_counter() - t0) * 1e6
    print(f"\n1 MiB argument: {elapsed_us:.0f} us")
    removed = len(big) - 4096
    assert out == "--password=[REDACTED] " + "A" * (4096 - 19) + f"…[truncated {removed} bytes]"
    assert "hunter2" not in out
    assert pf.arguments_truncated == 1
    assert pf.fields_redacted == 1


def test_truncation_counts_utf8_bytes_and_cuts_on_a_character_boundary() -> None:
    pf = _filter(max_argument_bytes=64)
    text = "é" * 40  # 80 bytes
    out = pf.filter_field(text)
    assert out == "é" * 32 + "…[truncated 16 bytes]"
    text = "ab" + "€" * 30  # 2 + 90 bytes: byte 64 falls inside a 3-byte character
    out = pf.filter_field(text)
    assert out == "ab" + "€" * 20 + "…[truncated 30 bytes]"
    assert pf.arguments_truncated == 2
    # Exactly at the limit: untouched.
    assert pf.filter_field("b" * 64) == "b" * 64


@pytest.mark.parametrize(
    ("text", "kept", "gone"),
    [
        (
            "--key -----BEGIN RSA PRIVATE KEY----- MIIEowIBAAKCAQEA7bq98jFqvm3mZ"
            + "Q" * 200
            + " -----END RSA PRIVATE KEY-----",
            "--key -----BEGIN RSA PRIVATE KEY-----[REDACTED]",
            "MIIEowIBAAKCAQEA",
        ),
        ("x" * 40 + " postgres://app:verylongpassword@db/x", "postgres://app:[REDACTED]", "verylong"),
        ("x" * 40 + " ghp_16C7e42F292c6912E7710c838347Ae178B4a", "ghp_[REDACTED]", "16C7e4"),
        ("x" * 40 + " hf_AbCdEfGhIjKlMnOpQrStUvWxYzAbCdEfGh", "hf_[REDACTED]", "AbCdEf"),
        ("x" * 40 + " npm_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789", "npm_[REDACTED]", "AbCdEf"),
        ("x" * 40 + " eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.sig", "[REDACTED]", "eyJzdW"),
        ("x" * 30 + " --password=hunter2hunter2hunter2hunter2", "--password=[REDACTED]", "hunter2"),
    ],
)
def test_secret_cut_by_truncation_is_still_redacted(text: str, kept: str, gone: str) -> None:
    pf = _filter(max_argument_bytes=64)
    out = pf.filter_field(text)
    assert "…[truncated " in out
    assert kept in out
    assert gone not in out
    assert pf.fields_redacted == 1


# -- odd input ---------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        b"\xff\xfe".decode("utf-8", "surrogateescape"),
        b"--password=\xff\xfehunter2".decode("utf-8", "surrogateescape"),
        b"--password=\xff\xfehunter2".decode("utf-8", "replace"),
        "\ud800 lone high surrogate --token=\udfff",
        "\x00\x01 nul and controls \x7f",
        "\u2168 \u017fecret=\ufb00 \u0130stanbul \u212a",  # long s, ligature, dotted I, Kelvin
        b"\xed\xa0\x80".decode("utf-8", "surrogateescape") * 3000,
    ],
)
def test_invalid_utf8_and_odd_text_never_raises(text: str) -> None:
    pf = _filter(max_argument_bytes=64)
    out = pf.filter_field(text)
    assert isinstance(out, str)
    assert isinstance(pf.redact_text(text), str)
    ev = _event(arguments=text, args=[Argument(label="a", type="string_arg", value=text)])
    assert pf.apply(ev) is ev
    if "hunter2" in text:
        assert "hunter2" not in out


def test_redact_text_is_idempotent_and_does_not_count() -> None:
    pf = _filter()
    once = pf.redact_text("login --password=hunter2 as bob@example.com")
    assert once == "login --password=[REDACTED] as [REDACTED]"
    assert pf.redact_text(once) == once
    assert not any(pf.redactions_by_pattern.values())
    assert pf.fields_redacted == 0
    assert pf.redact_text("") == ""


def test_counters_start_at_zero_for_every_pattern() -> None:
    pf = _filter(extra_patterns=["x"])
    assert set(pf.redactions_by_pattern) == {
        *DEFAULT_PATTERN_NAMES,
        "truncated_secret",
        "cli_option",
        "env_name",
        *(LIBRARY_COUNTER_PREFIX + r.name for r in LIBRARY_RULES),
        "extra_0",
    }
    assert "high_entropy" in _filter(entropy_detection=True).redactions_by_pattern
    assert (pf.events_seen, pf.events_filtered, pf.fields_redacted, pf.arguments_truncated) == (0, 0, 0, 0)


# -- informal timing (printed, never asserted) -----------------------------------


def test_process_arguments_are_filtered_once_per_process_but_counted_per_event() -> None:
    pf = _filter()
    outs = []
    for _ in range(3):
        ev = _event(arguments="--port 8080 --password=hunter2")
        ev.process.exec_id = "exec-1"
        outs.append(pf.apply(ev).process.arguments)  # type: ignore[union-attr]
    assert outs == ["--port 8080 --password=[REDACTED]"] * 3
    assert pf.fields_redacted == 3 and pf.redactions_by_pattern["password"] == 3
    # The cache holds no raw secret, only a hash of the raw text.
    assert "hunter2" not in repr(pf._by_process)
    # Same exec_id, different text (not expected from Tetragon): filtered afresh, never stale.
    ev = _event(arguments="--token=abc123secret")
    ev.process.exec_id = "exec-1"
    assert pf.apply(ev).process.arguments == "--token=[REDACTED]"  # type: ignore[union-attr]
    assert pf.fields_redacted == 4
