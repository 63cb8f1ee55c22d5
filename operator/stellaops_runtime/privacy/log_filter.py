"""A logging filter that masks secrets in every record the agent logs, its traceback too.

Why this exists: each log call that may carry a secret (a store URL, an
exception's message) masks it itself with ``contracts/redact``. One that does
not, or an exception whose message or traceback quotes what it was given (a
reader's ``int()`` quoting event bytes, a driver quoting a DSN), went to the
log as it was. This filter is the second line: attached to the agent's log
handlers (``cli/agent.py``), it runs the message redaction over every
record's message, and over its traceback and stack text first the agent's
privacy rules (``PrivacyFilter.redact_text``: tokens, keys, JWTs, PEM blocks
quoted from events) then the message redaction.

The message itself is masked only by ``contracts/redact`` (idempotent: a
message its caller already masked, ``postgresql://u:***@db``, stays as it
is, so log lines keep their text).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from stellaops_runtime.contracts.redact import redact


class RedactingLogFilter(logging.Filter):
    """Masks secrets in a record's message, traceback and stack text (always lets it through)."""

    def __init__(self, redact_text: Callable[[str], str] | None = None) -> None:
        super().__init__()
        self._rules = redact_text  # the agent's privacy rules, for tracebacks

    def _deep(self, text: str) -> str:
        if self._rules is not None:
            text = self._rules(text)
        return redact(text)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # a bad format string: logging reports it itself, with the record
            return True
        safe = redact(msg)
        if safe != msg:
            record.msg, record.args = safe, None
        if record.exc_info and record.exc_info[0] is not None:
            text = record.exc_text or logging.Formatter().formatException(record.exc_info)
            record.exc_text = self._deep(text)
        elif record.exc_text:
            record.exc_text = self._deep(record.exc_text)
        if record.stack_info:
            record.stack_info = self._deep(record.stack_info)
        return True


def attach(redact_text: Callable[[str], str] | None = None) -> RedactingLogFilter:
    """Add one filter to every handler of the root logger (records of every logger pass there)."""
    f = RedactingLogFilter(redact_text)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(x, RedactingLogFilter) for x in handler.filters):
            handler.addFilter(f)
    return f
