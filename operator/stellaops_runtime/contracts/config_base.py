"""What every section of the agent's configuration shares: the error type, value conversions, durations.

Split from :mod:`stellaops_runtime.contracts.config` (which re-exports all of
it) so the field layer (config_fields.py), the node-facing sections
(config_node.py) and the rest share one base without an import cycle. The
conversions turn a YAML value into a key's type the way pydantic's lax mode
did (``"5"`` is 5, ``100.0`` is 100, ``yes`` is true), except where that was
wrong for us: a boolean is never a number, a duration is finite, and a number
too large for a float is an error instead of a crash. Every duration takes
seconds or a Go/Kubernetes duration string. Nothing here imports pydantic: the
agent loads this module (issue 13, memory).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from stellaops_runtime.contracts.redact import redact
from stellaops_runtime.contracts.regex_backtracking import BACKTRACKING_ADVICE, backtracking_risk
from stellaops_runtime.contracts.regex_depth import MAX_GROUP_DEPTH, group_depth


class ConfigError(ValueError):
    """The configuration file is unreadable or invalid; the message says where and why."""


class KeyProblem(ValueError):
    """Raised by a model check to report a problem under one of the model's keys."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


# An integer as text: digits with single underscores between them, optionally ".0".
_INT_TEXT = re.compile(r"[+-]?[0-9]+(?:_[0-9]+)*(?:\.0+)?")
_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})
_INT_LIMIT = 1 << 63  # a float beyond this is not taken as an integer

# Duration-valued keys, as the models annotate them (config_fields.duration converts them).
Seconds = float
WholeSeconds = int

# A Go duration (time.ParseDuration, as Kubernetes writes them): one or more
# <decimal><unit>, units ns, us (µs), ms, s, m, h; no sign.
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION = re.compile(rf"(?:{_DURATION_PART.pattern})+")
_PLAIN_NUMBER = re.compile(r"\d+(?:\.\d*)?|\.\d+")
# No duration is longer; a longer string is refused before any regex runs over it.
_DURATION_MAX_CHARS = 100
# A longer regular expression is refused: compiling one of 10 MB takes about a minute.
REGEX_MAX_CHARS = 4096
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def shown(value: Any) -> str:
    """A value as a message quotes it: a scalar by repr, redacted, cut at 80 characters; others by type.

    A string is redacted before it is cut (a cut URL could hide its password
    from :func:`redact`); one longer than 4096 characters is not quoted at all.
    """
    if isinstance(value, str):
        if len(value) > 4096:
            return f"a string of {len(value)} characters"
        text = repr(redact(value))
    elif isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 256:
        return f"an integer of {value.bit_length()} bits"
    elif value is None or isinstance(value, bool | int | float):
        text = repr(value)
    else:
        return type(value).__name__
    return text if len(text) <= 80 else text[:77] + "..."


def parse_duration(value: Any) -> float:
    """Seconds from a number (seconds) or a duration string: ``30s``, ``1m``, ``1h30m``, ``500ms``."""
    if isinstance(value, bool):  # YAML yes/no: never a duration
        pass
    elif isinstance(value, int | float):
        try:
            return float(value)
        except OverflowError:  # an integer beyond any float
            pass
    elif isinstance(value, str) and len(value) <= _DURATION_MAX_CHARS:
        text = value.strip()
        if _PLAIN_NUMBER.fullmatch(text):
            return float(text)
        if _DURATION.fullmatch(text):
            return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
    raise ValueError(f"expected a duration (e.g. 30s, 1m, 1h30m, 500ms) or seconds, got {shown(value)}")


# -- conversions: each takes a value as given and returns it typed, or raises ValueError ---------


def to_str(v: Any) -> str:
    if isinstance(v, str):
        return v
    raise ValueError(f"expected a string, got {shown(v)}")


def to_text(v: Any) -> str:
    """A scalar string key (a name, path or address): no NUL byte, which no file, socket or name
    holds, and which crashed the agent at the path's first use."""
    text = to_str(v)
    if "\x00" in text:
        raise ValueError("a NUL byte cannot be part of a name, path or address")
    return text


def to_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int | float) and v in (0, 1):
        return bool(v)
    if isinstance(v, str):
        low = v.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    raise ValueError(f"expected true or false, got {shown(v)}")


def to_int(v: Any) -> int:
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, float) and v.is_integer() and abs(v) < _INT_LIMIT:
        return int(v)
    if isinstance(v, str):
        text = v.strip()
        if len(text) <= 4300 and _INT_TEXT.fullmatch(text):
            return int(text.partition(".")[0])
    raise ValueError(f"expected an integer, got {shown(v)}")


def to_float(v: Any) -> float:
    if isinstance(v, float):
        return v
    if isinstance(v, int) and not isinstance(v, bool):
        try:
            return float(v)
        except OverflowError:
            pass
    elif isinstance(v, str) and v.isascii():
        try:
            return float(v)
        except ValueError:
            pass
    raise ValueError(f"expected a number, got {shown(v)}")


def to_seconds(v: Any) -> float:
    seconds = parse_duration(v)
    if not math.isfinite(seconds):
        raise ValueError(f"expected a finite duration, got {shown(v)}")
    return seconds


def to_whole_seconds(v: Any) -> int:
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    seconds = to_seconds(v)
    if not seconds.is_integer():
        raise ValueError(f"must be a whole number of seconds, got {shown(v)}")
    return int(seconds)


def as_given(v: Any) -> Any:
    return v


CONVERT: dict[type, Callable[[Any], Any]] = {str: to_text, bool: to_bool, int: to_int, float: to_float}


def one_of(choices: tuple[str, ...], or_bool: bool = False) -> Callable[[Any], Any]:
    """A conversion to one of ``choices`` (exactly as written); ``or_bool``: else to a boolean."""

    def convert(v: Any) -> Any:
        if isinstance(v, str) and v in choices:
            return v
        if or_bool:
            try:
                return to_bool(v)
            except ValueError:
                pass
        options = ", ".join(repr(c) for c in choices) + (", true, false" if or_bool else "")
        raise ValueError(f"expected one of {options}, got {shown(v)}")

    return convert


SECONDS_PER_DAY = 86_400


def divides_a_day(seconds: int) -> int:
    """An aggregation window that divides a UTC day (60, 300, 3600, ...): windows start at
    multiples of it, so one that does not divide 86,400 s starts one window a day before midnight
    and ends it after, and that window's calls and gaps are dated the day before (a day's evidence
    then rests on a window that is partly the next day's). The operator checks the same."""
    if isinstance(seconds, int) and seconds > 0 and SECONDS_PER_DAY % seconds:
        raise ValueError(
            f"{seconds} s does not divide a day (86400 s): windows would straddle midnight; "
            "give a divisor of 86400 (e.g. 60, 300, 600, 900, 1800, 3600, 86400)"
        )
    return seconds


def check_regexes(values: list[str]) -> list[str]:
    """A list of regular expressions, each of which compiles."""
    for v in values:
        if len(v) > REGEX_MAX_CHARS:
            raise ValueError(f"a regular expression has at most {REGEX_MAX_CHARS} characters, got {shown(v)}")
        if (depth := group_depth(v)) > MAX_GROUP_DEPTH:  # as the operator: the same verdict everywhere
            raise ValueError(
                f"regular expression {shown(v)} nests groups {depth} deep, at most {MAX_GROUP_DEPTH}"
            )
        try:
            re.compile(v)
        except (re.error, RecursionError, OverflowError) as e:
            raise ValueError(f"invalid regular expression {shown(v)}: {e}") from None
        if why := backtracking_risk(v):  # as the operator (contracts/regex_backtracking.py)
            raise ValueError(f"regular expression {shown(v)} {BACKTRACKING_ADVICE.format(why=why)}")
    return values


_check_regexes = check_regexes  # the name the models used before (config.py re-exports it)
