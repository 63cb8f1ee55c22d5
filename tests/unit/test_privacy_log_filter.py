"""Secrets never reach the agent's log: each record and traceback is masked (privacy/log_filter.py).

The agent attaches :class:`RedactingLogFilter` to its log handlers
(``cli/agent.py``). A log call that forgot to mask its arguments, or an
exception whose message quotes what it was given (a token read from an event,
a DSN), was logged as it was, traceback included; the BCC source logged a
probe's attach failure text unmasked and kept it in ``stats.failed``.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from stellaops_runtime.cli.agent import _redact_logs
from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.native.config import NativeConfig
from stellaops_runtime.native.source import NativeProbeSource
from stellaops_runtime.privacy.log_filter import RedactingLogFilter
from stellaops_runtime.sources.queue import EventQueue

TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.S1gnatureQ9x"
PW = "hunter2-s3cret"


def _detach() -> None:
    """Take the filter off every root handler again: ``_redact_logs`` attaches it to all of them,
    pytest's capture handlers included, which outlive the test and would mask the log text later
    tests of the worker read (``***`` where they look for the privacy filter's ``[REDACTED]``)."""
    for handler in logging.getLogger().handlers:
        for f in [x for x in handler.filters if isinstance(x, RedactingLogFilter)]:
            handler.removeFilter(f)


@pytest.fixture
def agent_log() -> Iterator[io.StringIO]:
    """The root logger's handler as ``cli/main.py`` sets it, with the agent's filter attached."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    old = root.level
    root.setLevel(logging.DEBUG)
    try:
        _redact_logs(PrivacyConfig())
        yield out
    finally:
        _detach()
        root.removeHandler(handler)
        root.setLevel(old)


def test_a_message_and_a_traceback_quoting_secrets_are_masked(agent_log: io.StringIO) -> None:
    log = logging.getLogger("stellaops_runtime.test")
    log.warning("connect to %s failed", f"postgresql://app:{PW}@db/x?password={PW}")
    try:
        int(f"token {TOKEN} and {JWT}")
    except ValueError:
        log.error("reading a record failed", exc_info=True)
    log.info("stack here", stack_info=True)
    text = agent_log.getvalue()
    assert "connect to postgresql://app:***@db/x?password=*** failed" in text
    assert "Traceback (most recent call last)" in text and "ValueError: invalid literal for int()" in text
    for secret in (PW, TOKEN[4:], "S1gnatureQ9x", "eyJzdWIiOiIxMjMifQ"):
        assert secret not in text, text
    assert "Stack (most recent call last)" in text


def test_messages_without_secrets_and_messages_masked_before_keep_their_text(agent_log: io.StringIO) -> None:
    log = logging.getLogger("stellaops_runtime.test")
    lines = [
        "store postgresql://u:***@127.0.0.1:5432/x not usable (will retry)",
        "window 2026-12-05T08:00:00Z flushed: 12 keys, image sha256:" + "ab" * 32,
        "memory allocator: jemalloc (/usr/lib/x86_64-linux-gnu/libjemalloc.so.2) for alice@example.com",
        "100% of 3 events; 50%s",
    ]
    for line in lines:
        log.info("%s", line)
    assert agent_log.getvalue().splitlines() == [f"INFO stellaops_runtime.test: {x}" for x in lines]


def test_the_filter_is_attached_once_and_lets_every_record_through() -> None:
    f = RedactingLogFilter()
    bad = logging.LogRecord("x", logging.INFO, __file__, 1, "%d", ("not a number",), None)
    assert f.filter(bad) is True  # kept, with a fixed text in place of its message
    assert bad.getMessage() == "(log message not shown: formatting it failed: TypeError)"
    handler = logging.StreamHandler(io.StringIO())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        _redact_logs(PrivacyConfig())
        _redact_logs(PrivacyConfig())
        assert sum(isinstance(x, RedactingLogFilter) for x in handler.filters) == 1
    finally:
        _detach()
        root.removeHandler(handler)


def test_a_probe_attach_failure_is_masked_in_the_log_and_in_stats(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    why = f"cannot attach: open postgres://app:{PW}@db/x failed, password={PW}"
    probes = SimpleNamespace(
        attached=[], failed=[("uprobe:/app:f", why)], former=SimpleNamespace(former=0), watch=None
    )

    def load(*args: Any, **kwargs: Any) -> Any:
        return probes

    monkeypatch.setattr("stellaops_runtime.native.source.load", load)
    src = NativeProbeSource(NativeConfig(exec_events=False), queue=EventQueue(10), kernel_source="")
    with caplog.at_level("WARNING"):
        src._load()
    assert (
        "native probe uprobe:/app:f not attached: cannot attach: open postgres://app:***@db/x" in caplog.text
    )
    assert PW not in caplog.text
    assert src.stats.failed == [
        ("uprobe:/app:f", "cannot attach: open postgres://app:***@db/x failed, password=***")
    ]


def test_a_log_call_whose_format_fails_logs_a_fixed_text_and_none_of_its_arguments(
    agent_log: io.StringIO, capsys: pytest.CaptureFixture[str]
) -> None:
    """A call with a wrong format (``%d`` given a DSN) used to be left for logging to report, and
    logging's report (``Handler.handleError``) printed the record's arguments raw to stderr."""
    log = logging.getLogger("stellaops_runtime.test")
    log.warning("connect to %d failed", f"postgresql://app:{PW}@db/x")
    log.warning("token %s and %s", TOKEN)  # too few arguments
    err = capsys.readouterr().err
    text = agent_log.getvalue()
    for out in (err, text):
        assert PW not in out and TOKEN[4:] not in out, out
    assert (
        text.splitlines()
        == ["WARNING stellaops_runtime.test: (log message not shown: formatting it failed: TypeError)"] * 2
    )
    assert "Logging error" not in err  # nothing left for logging to report


def _raise(text: str) -> str:
    raise RuntimeError(f"rule failed on {text}")


def test_a_rule_failing_on_a_record_neither_loses_it_nor_lets_its_text_through(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A record whose redaction raises is kept, with fixed texts naming the failure in place of the
    message and the traceback (fail closed, as the pipeline's own messages: fcebc9f)."""
    f = RedactingLogFilter(redact_text=_raise)
    try:
        int(f"token {TOKEN}")
    except ValueError:
        import sys

        exc = sys.exc_info()
    rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "read %s", (f"password={PW}",), exc)
    rec.stack_info = f"Stack: {TOKEN}"
    assert f.filter(rec) is True
    assert rec.getMessage() == "read password=***"
    assert rec.exc_text == "(traceback not shown: the privacy rules failed on it: RuntimeError)"
    assert rec.stack_info == "(stack not shown: the privacy rules failed on it: RuntimeError)"
    out = logging.Formatter().format(rec)
    assert PW not in out and TOKEN[4:] not in out, out

    monkeypatch.setattr("stellaops_runtime.privacy.log_filter.redact", _raise)
    rec = logging.LogRecord("x", logging.WARNING, __file__, 1, "read %s", (f"password={PW}",), None)
    assert f.filter(rec) is True
    assert rec.getMessage() == "(log message not shown: the privacy rules failed on it: RuntimeError)"
