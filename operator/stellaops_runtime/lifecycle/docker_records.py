"""Registry records from the Docker Engine's answers: an inspect, its times and its image's digest.

Pure: the Docker observer (docker_observer.py) asks the Engine and hands the
JSON here. Wrong-typed fields read as absent; Go's zero time is no time; the
manifest digest is the registry's (``RepoDigests``), never Docker's image id.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from stellaops_runtime.lifecycle.registry import ContainerRecord

# a Docker container State -> the registry's status (anything else: stopped)
STATUS_OF = {"created": "created", "running": "running", "restarting": "running", "paused": "paused"}


def listed_differs(status: str, state: str) -> bool:
    """Whether a container list's ``State`` differs from the registry's ``status`` (the observer's
    backstop list, unreported.py). A container with a restart policy waits ``restarting`` (up to a
    minute, moby restartmanager) between its ``die`` (the registry: stopped) and its ``start``; its
    inspect reads running: either is its registry status, and that wait no unreported change."""
    if state == "restarting":
        return status not in ("stopped", "running")
    return status != STATUS_OF.get(state, "stopped")


def field_of(d: dict[str, Any], key: str, kind: type[Any], default: Any) -> Any:
    """``d[key]`` when it is of ``kind`` (a bool is no int here), else ``default``."""
    v = d.get(key)
    return v if isinstance(v, kind) and not (kind is int and isinstance(v, bool)) else default


# date and time, an optional fraction (any number of digits), then Z or a numeric offset (none: UTC)
_RFC3339 = re.compile(r"(\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})?")


def docker_time(text: object) -> datetime | None:
    """An RFC 3339 time from the Engine (nanoseconds cut to microseconds); ``None`` for Go's zero time."""
    if not isinstance(text, str) or not text or text.startswith("0001-"):
        return None
    m = _RFC3339.fullmatch(text)
    if m is None:
        return None
    main, frac, zone = m.group(1), (m.group(2) or "")[:7], m.group(3) or "Z"
    try:
        value = datetime.fromisoformat(main + frac + ("+00:00" if zone in ("Z", "z") else zone))
    except ValueError:
        return None
    return value.astimezone(UTC)  # the instant, whatever offset the Engine wrote it in


def digest_of(image: dict[str, Any] | None, ref: str) -> str:
    """The manifest digest in an image inspect's RepoDigests (the one of ``ref``'s repository first)."""
    if not isinstance(image, dict):
        return ""
    digests = [d for d in image.get("RepoDigests") or [] if isinstance(d, str) and "@" in d]
    repo = ref.split("@", 1)[0].rsplit(":", 1)[0] if ref else ""
    for d in digests:
        if d.split("@", 1)[0] == repo:
            return d.split("@", 1)[1]
    return digests[0].split("@", 1)[1] if digests else ""


def record_from_inspect(
    info: dict[str, Any], *, digest: str, env_filter: Callable[[list[str]], list[str]]
) -> ContainerRecord:
    """A registry record from ``GET /containers/{id}/json`` (wrong-typed fields read as absent)."""
    config: dict[str, Any] = field_of(info, "Config", dict, {})
    state: dict[str, Any] = field_of(info, "State", dict, {})
    labels: dict[str, Any] = field_of(config, "Labels", dict, {})
    env: list[Any] = field_of(config, "Env", list, [])
    status = STATUS_OF.get(str(state.get("Status", "")), "stopped")
    pid: int = field_of(state, "Pid", int, 0)
    exit_code: int | None = field_of(state, "ExitCode", int, None)
    return ContainerRecord(
        container_id=str(info.get("Id", "")),
        namespace="",
        image_ref=str(config.get("Image", "")),
        image_digest=digest,
        labels={str(k): str(v) for k, v in labels.items()},
        env_vars=tuple(env_filter([e for e in env if isinstance(e, str)])),
        status=status,
        pid=pid if status != "stopped" else 0,
        started_at=docker_time(state.get("StartedAt")),
        stopped_at=docker_time(state.get("FinishedAt")) if status == "stopped" else None,
        exit_code=exit_code if status == "stopped" else None,
        oom_killed=bool(state.get("OOMKilled")),
    )
