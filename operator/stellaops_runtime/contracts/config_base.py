"""What every section of the agent's configuration shares: strict models, durations, the error type.

Split from :mod:`stellaops_runtime.contracts.config` (which re-exports all of
it) so the node-facing sections (config_node.py) and the rest can share one
base without an import cycle. A model forbids unknown keys, accepts its
deprecated key names with one warning, and every duration takes seconds or a
Go/Kubernetes duration string.
"""

from __future__ import annotations

import logging
import re
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    model_validator,
)

log = logging.getLogger("stellaops_runtime.contracts.config")


class ConfigError(ValueError):
    """The configuration file is unreadable or invalid; the message says where and why."""


# A Go duration (time.ParseDuration, as Kubernetes writes them): one or more
# <decimal><unit>, units ns, us (µs), ms, s, m, h; no sign.
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION = re.compile(rf"(?:{_DURATION_PART.pattern})+")
_PLAIN_NUMBER = re.compile(r"\d+(?:\.\d*)?|\.\d+")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: Any) -> float:
    """Seconds from a number (seconds) or a duration string: ``30s``, ``1m``, ``1h30m``, ``500ms``."""
    if isinstance(value, bool):  # YAML yes/no: never a duration
        raise ValueError(f"expected a duration (e.g. 30s, 1m, 1h30m, 500ms) or seconds, got {value!r}")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if _PLAIN_NUMBER.fullmatch(text):
            return float(text)
        if _DURATION.fullmatch(text):
            return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
    raise ValueError(f"expected a duration (e.g. 30s, 1m, 1h30m, 500ms) or seconds, got {value!r}")


def _whole_seconds(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    seconds = parse_duration(value)
    if seconds != int(seconds):
        raise ValueError(f"must be a whole number of seconds, got {value!r}")
    return int(seconds)


# Duration-valued keys: a number of seconds or a Go/Kubernetes duration string.
Seconds = Annotated[float, BeforeValidator(parse_duration)]
WholeSeconds = Annotated[int, BeforeValidator(_whole_seconds)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    # The section's key path, for messages, and its deprecated YAML names: old -> new.
    _section: ClassVar[str] = ""
    _deprecated: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _deprecated_names(cls, data: Any) -> Any:
        """Accept a deprecated name as its replacement: one warning per key, an error with both."""
        if not cls._deprecated or not isinstance(data, dict):
            return data
        data = dict(data)
        for old, new in cls._deprecated.items():
            if old not in data:
                continue
            where = f"{cls._section}." if cls._section else ""
            if new in data:
                raise ValueError(
                    f"{where}{old} is the deprecated name of {where}{new}: give only {where}{new}"
                )
            log.warning("config key %s%s is deprecated, use %s%s", where, old, where, new)
            data[new] = data.pop(old)
        return data


def _check_regexes(values: list[str]) -> list[str]:
    for v in values:
        try:
            re.compile(v)
        except re.error as e:
            raise ValueError(f"invalid regular expression {v!r}: {e}") from e
    return values
