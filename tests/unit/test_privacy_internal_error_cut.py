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
