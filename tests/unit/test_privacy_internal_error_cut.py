"""An internal error's message is redacted before it is cut for the log, never after.

The pipeline logs the first 2,000 characters of an internal error's message,
which can quote an event's text. It cut first and redacted the cut text, so
a secret the cut went through lost what its rule needs to be recognised (the
``@host`` of a connection string) and its first part reached the log.
"""

from __future__ import annotations

import logging

import pytest

from stellaops_runtime.agent.pipeline import Pipeline
from stellaops_runtime.contracts.config import parse_config

PASSWORD = "LongSecretPassw0rdXYZ"


def test_a_secret_across_the_cut_of_an_internal_error_message_is_redacted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pipe = Pipeline(parse_config({}), node_name="n", fast_path=False)
    url = f" postgres://app:{PASSWORD}@db/shop"
    pad = 2000 - len(" postgres://app:") - 15  # the cut leaves 15 characters of the password
    message = "q" * pad + url
    with caplog.at_level(logging.ERROR, logger="stellaops_runtime.agent.pipeline"):
        try:
            raise ValueError(message)
        except ValueError as e:
            pipe._internal_error(e)
    assert PASSWORD[:8] not in caplog.text
    assert "postgres://app:[REDACTED]" in caplog.text
    assert pipe.internal_errors == 1


def test_a_rule_failing_on_an_event_loses_neither_the_batch_nor_a_secret(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rule that raises on a text, quoting it, raises again on the message that quotes it: the
    internal error's own redaction must not end the batch (the good events after it) or log it."""
    import orjson

    from stellaops_runtime.privacy import redactor

    real = redactor.Redactor.redact

    def failing(self, text, **kw):  # type: ignore[no-untyped-def]
        if "BOOM" in text:
            raise RuntimeError(f"rule failed on {text}")
        return real(self, text, **kw)

    monkeypatch.setattr(redactor.Redactor, "redact", failing)
    pipe = Pipeline(
        parse_config({"symbols": {"enabled": False}, "attribution": {"enabled": False}}),
        node_name="n",
        fast_path=False,
    )

    def line(i: int, arguments: str) -> bytes:
        container = {
            "id": "containerd://" + "ab" * 32,
            "name": "c",
            "image": {"id": "r/a@sha256:" + "cd" * 32},
        }
        process = {
            "exec_id": f"x{i}",
            "pid": 5 + i,
            "binary": "/bin/app",
            "arguments": arguments,
            "start_time": "2026-11-24T09:00:00Z",
            "pod": {"namespace": "a", "name": "p", "container": container},
        }
        return orjson.dumps(
            {"process_exec": {"process": process}, "node_name": "n", "time": "2026-11-24T09:00:00Z"}
        )

    items = [(line(0, f"BOOM --password {PASSWORD}"), 1), (line(1, "--port 80"), 1)]
    with caplog.at_level(logging.ERROR, logger="stellaops_runtime.agent.pipeline"):
        pipe.process_json(items)
    assert pipe.internal_errors == 1 and pipe.processed == 1  # the good event after it counted
    assert PASSWORD not in caplog.text and "RuntimeError" in caplog.text
    deltas, _ = pipe.drain()
    assert deltas and not [d for d in deltas if PASSWORD in str(d.sample)]
