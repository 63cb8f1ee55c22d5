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

It fails closed and loses no record: a message that cannot be formatted (a
wrong ``%d``; logging's own report of that, ``Handler.handleError``, prints
the arguments raw to stderr) or a text the redaction raises on is replaced
by a fixed text naming the failure, and the record is logged.
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

    def _deep(self, text: str, what: str) -> str:
        try:
            if self._rules is not None:
                text = self._rules(text)
            return redact(text)
        except Exception as e:  # fail closed: the text is not shown
            return f"({what} not shown: the privacy rules failed on it: {type(e).__name__})"

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception as e:  # a bad format string: logging's report would print the arguments raw
            record.msg, record.args = (
                f"(log message not shown: formatting it failed: {type(e).__name__})",
                None,
            )
        else:
            try:
                safe = redact(msg)
            except Exception as e:
                safe = f"(log message not shown: the privacy rules failed on it: {type(e).__name__})"
            if safe != msg:
                record.msg, record.args = safe, None
        if record.exc_info and record.exc_info[0] is not None:
            try:
                text = record.exc_text or logging.Formatter().formatException(record.exc_info)
            except Exception as e:
                text = f"(traceback not shown: formatting it failed: {type(e).__name__})"
            record.exc_text = self._deep(text, "traceback")
        elif record.exc_text:
            record.exc_text = self._deep(record.exc_text, "traceback")
        if record.stack_info:
            record.stack_info = self._deep(record.stack_info, "stack")
        return True


def attach(redact_text: Callable[[str], str] | None = None) -> RedactingLogFilter:
    """Add one filter to every handler of the root logger (records of every logger pass there)."""
    f = RedactingLogFilter(redact_text)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(x, RedactingLogFilter) for x in handler.filters):
            handler.addFilter(f)
    return f
