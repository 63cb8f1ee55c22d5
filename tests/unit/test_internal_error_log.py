"""An event that no stage could handle is logged without the secrets its error message may quote.

The pipeline logs the first internal errors in full, for a bug report. An exception's message
can quote the event's text (a path, an argument), and the traceback's last line is that message:
it went to the log unredacted. Now the message goes through the privacy filter's rules and the
traceback's frames are logged without it. The good events around the bad one still count.
"""

from __future__ import annotations

import gzip
import logging
import time
from pathlib import Path

import pytest

from stellaops_runtime.agent.pipeline import Pipeline
from stellaops_runtime.contracts.config import parse_config

STREAM = Path(__file__).resolve().parents[1] / "fixtures/tetragon/synthetic/stream-a.jsonl.gz"
SECRET = "hunter2hunter2XYZ"


def test_an_internal_error_is_logged_without_the_secret_it_quotes(caplog: pytest.LogCaptureFixture) -> None:
    lines = gzip.decompress(STREAM.read_bytes()).splitlines()[:40]
    pipe = Pipeline(parse_config({}), node_name="n", fast_path=False)
    real = pipe.aggregator.observe
    calls = []

    def observe(ev, *a, **kw):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 3:
            raise ValueError(f"cannot read /srv/app --password={SECRET} in {ev.function_name}")
        return real(ev, *a, **kw)

    pipe.aggregator.observe = observe  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="stellaops_runtime.agent.pipeline"):
        pipe.process_json([(line, time.monotonic_ns()) for line in lines])
    assert pipe.internal_errors == 1 and pipe.adapter_stats.malformed["internal_ValueError"] == 1
    assert len(calls) > 3  # the events after the bad one were observed
    text = caplog.text
    assert "event skipped after an internal error (ValueError: cannot read /srv/app --password=" in text
    assert SECRET not in text and "[REDACTED]" in text
    assert "in observe" in text  # where it happened: the traceback's frames
