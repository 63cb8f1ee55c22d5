"""What an agent's ObservationNode status says: its working source, posture ceiling and conditions.

Pure (no I/O): split from :mod:`stellaops_runtime.agent.node_status`, whose
writer polls Tetragon and the kernel and writes what :func:`build_status`
returns; the tests and the Argo CD health checks build statuses with the very
same code. ``working_source`` decides ``status.source`` and
``status.maxPosture``; ``purl_state`` is the native probes' per-function report;
``agent_template`` which rollout of the agent's pod template wrote the report;
``bounded_policies`` holds Tetragon's policy list to what a status can carry.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from stellaops_runtime import __version__
from stellaops_runtime.agent.capabilities import Capabilities, TetragonInfo
from stellaops_runtime.agent.tetragon_losses_status import LOSSES_CONDITION as LOSSES
from stellaops_runtime.contracts.crd_names import AGENT_TEMPLATE_ENV
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.contracts.redact import redact
from stellaops_runtime.controller.conditions import condition, merge_conditions
from stellaops_runtime.controller.posture import NodeCapabilities


class StreamState(Protocol):
    """The agent's event source as the writer sees it (the sources' stats objects)."""

    connected: bool


@dataclass(frozen=True, slots=True)
class NativeState:
    """The agent's own BCC probes as the status sees them (from the source switch's stats)."""

    active: bool  # the switch runs them now (Tetragon unreachable)
    connected: bool  # ... and they are attached
    posture: Posture | None  # detect.py's answer (None: not asked yet)
    why: str = ""  # what their posture lacks (posture None: why they cannot run)


def native_state(stream: object) -> NativeState | None:
    """The native side of a source switch's stats; None for a plain Tetragon source."""
    active = getattr(stream, "active", None)
    if active is None:
        return None
    return NativeState(
        active=active == "bcc",
        connected=active == "bcc" and bool(getattr(stream, "connected", False)),
        posture=getattr(stream, "native_posture", None),
        why=str(getattr(stream, "native_why", "") or ""),
    )


def working_source(
    *,
    capabilities: Capabilities,
    tetragon: TetragonInfo,
    stream_connected: bool | None,
    native: NativeState | None = None,
) -> tuple[str, Posture, str]:
    """``(source, max posture, why)`` of what delivers events on this node now.

    ``stream_connected`` is whether the agent's Tetragon event stream is
    connected (None when the writer is not told: Tetragon answering is then
    taken as the stream working). ``native`` is the BCC probes' state when the
    agent runs the source switch.
    """
    address = redact(tetragon.address)
    if native is not None and native.connected and native.posture is not None:
        why = f"the agent's own BCC probes deliver (Tetragon at {address} is not the source now)"
        if native.posture < Posture.FULL_INSTRUMENTATION and native.why:
            why += f"; {native.why}"
        return "native", native.posture, why
    found = _tetragon_source(capabilities=capabilities, tetragon=tetragon, stream_connected=stream_connected)
    if found[0] == "none" and native is not None:
        if native.posture is Posture.NONE:
            return "none", Posture.NONE, f"{found[2]}; the BCC probes cannot run here: {native.why}"
        if native.active:
            return "none", Posture.NONE, f"{found[2]}; the BCC probes are not attached (yet)"
    return found


def _tetragon_source(
    *, capabilities: Capabilities, tetragon: TetragonInfo, stream_connected: bool | None
) -> tuple[str, Posture, str]:
    address = redact(tetragon.address)
    if tetragon.reachable and stream_connected is not False:
        caps = NodeCapabilities(
            source="tetragon", tetragon_reachable=True, uprobes=capabilities.uprobes, usdt=capabilities.usdt
        )
        level, why = caps.capability_ceiling()
        return "tetragon", level, why
    if stream_connected:
        why = f"Tetragon's events arrive but its API at {address} does not answer: process events only"
        return "tetragon", Posture.PASSIVE, why
    if tetragon.reachable:
        return (
            "none",
            Posture.NONE,
            f"Tetragon at {address} answers but the agent's event stream is not connected",
        )
    error = redact(tetragon.error) or "no answer"
    return "none", Posture.NONE, f"no event source works: Tetragon at {address} does not answer: {error}"


def build_status(
    *,
    capabilities: Capabilities,
    tetragon: TetragonInfo,
    source: str | None = None,
    policies: list[dict[str, Any]] | None,
    existing_conditions: list[dict[str, Any]] | None,
    now: str,
    stream_connected: bool | None = None,
    native: NativeState | None = None,
    purl_functions: tuple[list[dict[str, Any]], int] | None = None,
    export_position: tuple[bool, str] | None = None,
    containers: str | None = None,
    agent_template: str | None = None,
    containers_detail: str | None = None,
    tetragon_losses: tuple[bool, str, str] | None = None,
) -> dict[str, Any]:
    """The ObservationNode status without ``heartbeatTime`` (so two polls compare equal).

    ``source`` and ``maxPosture`` come from ``working_source``; a ``source``
    given by the caller can only lower what it finds (anything but a working
    ``tetragon`` is reported as ``none`` with posture None). ``export_position``:
    (recorded, message) for the :data:`EXPORT_CONDITION` condition of an export
    source with a watch record (:func:`export_position`); None: no such condition
    (one written before, with another source, is removed). ``containers``: what the
    agent knows of the node's containers (agent/lifecycle_part.py ``lifecycle_state``)
    for the :data:`CONTAINERS_CONDITION` condition; None: none written; ``containers_detail``: why the
    registry is not in sync (agent/registry_detail.py), added to that message with since when (the
    condition's transition, kept while it lasts). ``agent_template``: which
    rollout of its RuntimeObserver's pod template the agent runs (:func:`agent_template`), written as
    ``agentTemplate`` so the operator can tell an older agent's report from this one's.
    ``tetragon_losses``: (known, reason, message) of ``TetragonLossesKnown``
    (agent/tetragon_losses_status.py); None: none written (one written before is removed).
    """
    found, max_posture, max_why = working_source(
        capabilities=capabilities, tetragon=tetragon, stream_connected=stream_connected, native=native
    )
    if source is not None and source != found and found != "none":
        found, max_posture, max_why = "none", Posture.NONE, f"source {source!r} is not working"
    caps = capabilities.to_status()
    caps["tetragon"] = tetragon.to_status()
    address = redact(tetragon.address)  # conditions are readable cluster-wide
    if tetragon.reachable:
        ready = condition(
            type="Ready",
            status=True,
            reason="TetragonReachable",
            message=f"Tetragon {tetragon.version or '(unknown version)'} at {address}",
            generation=None,
        )
    else:
        ready = condition(
            type="Ready",
            status=False,
            reason="TetragonUnreachable",
            message=f"Tetragon at {address} does not answer: {redact(tetragon.error) or 'no answer'}",
            generation=None,
        )
    existing, new = existing_conditions, [ready, _event_source_condition(found, max_why)]
    if containers in CONTAINERS_STATES:
        known, reason, message = CONTAINERS_STATES[containers]
        if not known and containers == "not_in_sync" and containers_detail:
            since = _since(existing_conditions, reason) or now
            message = f"{message}; why: {containers_detail} (since {since})"
        new.append(
            condition(
                type=CONTAINERS_CONDITION, status=known, reason=reason, message=message, generation=None
            )
        )
    if export_position is not None:
        new.append(_export_condition(*export_position))
    else:  # no export position kept (now): a condition about it written before would stay stale
        existing = [
            c for c in existing or () if not (isinstance(c, dict) and c.get("type") == EXPORT_CONDITION)
        ]
    if tetragon_losses is not None:
        known, reason, message = tetragon_losses
        new.append(condition(type=LOSSES, status=known, reason=reason, message=message, generation=None))
    else:
        existing = [c for c in existing or () if not (isinstance(c, dict) and c.get("type") == LOSSES)]
    status: dict[str, Any] = {
        "agentVersion": __version__,
        "source": found,
        "maxPosture": max_posture.value,
        "maxPostureReason": max_why[:1024],
        "capabilities": caps,
        "conditions": merge_conditions(existing, new, now=now),
    }
    status["policies"], status["policiesOmitted"] = bounded_policies(policies)
    if agent_template is not None:
        status["agentTemplate"] = agent_template
    if purl_functions is not None:  # written empty too: a merge patch would keep an old list
        status["purlFunctions"], status["purlFunctionsOmitted"] = purl_functions
    return status


# status.policies is bounded (docs/operator.md, ObservationNode): a node with thousands of Tetragon
# policies, each with its error (1 KiB), sensors and failed hooks, made a status past etcd's 1.5 MiB,
# every status patch was refused, no heartbeat was written and the node went stale.
MAX_POLICY_ENTRIES = 1000
POLICY_ENTRIES_BYTES = 512 * 1024  # of the kept entries' JSON
MAX_SENSORS = 16  # per entry, each cut at SENSOR_CHARS; the rest counted in sensorsOmitted
SENSOR_CHARS = 128
# Kept first: the operator's own objects (it reads no other entry; one left out reads pending, its
# failure unseen), failed and partial loads first among them, then the other failed or partial loads.
_FAILED_FIRST = frozenset({"LOAD_ERROR", "ERROR", "DISABLED", "PARTIALLY_ENABLED"})
OPERATOR_PREFIX = "stellaops-"  # every Tetragon object the operator renders (render_policy names)


NUMBER_WIDTH = 19  # digits of the largest int64, what kernelMemoryBytes is held to (capabilities)


def _narrower(value: Any) -> int:
    """How many digits the numbers in ``value`` are short of :data:`NUMBER_WIDTH` (see bounded_policies)."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(0, NUMBER_WIDTH - len(str(value)))
    if isinstance(value, dict):
        return sum(_narrower(v) for v in value.values())
    if isinstance(value, list):
        return sum(_narrower(v) for v in value)
    return 0


def _bounded_entry(entry: dict[str, Any]) -> dict[str, Any]:
    sensors = entry.get("sensors")
    if not isinstance(sensors, list) or (
        len(sensors) <= MAX_SENSORS and all(len(str(x)) <= SENSOR_CHARS for x in sensors)
    ):
        return entry
    out = dict(entry)
    out["sensors"] = [str(x)[:SENSOR_CHARS] for x in sensors[:MAX_SENSORS]]
    if len(sensors) > MAX_SENSORS:
        out["sensorsOmitted"] = len(sensors) - MAX_SENSORS
    return out


def bounded_policies(policies: list[dict[str, Any]] | None) -> tuple[list[dict[str, Any]], int]:
    """Tetragon's policy list as ``status.policies`` carries it, and how many entries were left out.

    At most :data:`MAX_POLICY_ENTRIES` entries and :data:`POLICY_ENTRIES_BYTES` of them; past that,
    the operator's own objects (named ``stellaops-...``) are kept first, their failed and partial
    loads before the rest, then the other failed and partial loads, then the rest, each in
    Tetragon's order, and the kept ones are written in Tetragon's order. A list within the bounds
    is written as it is (sensors aside). Each number counts at its widest (:data:`NUMBER_WIDTH`
    digits), so a number that changes (``kernelMemoryBytes``) never moves which entries are kept:
    near the bound it pushed the last kept entry out and back, and the list churned with it.
    """
    entries = [_bounded_entry(e) for e in policies or ()]
    sizes = [len(json.dumps(e, separators=(",", ":")).encode()) + 1 + _narrower(e) for e in entries]
    if len(entries) <= MAX_POLICY_ENTRIES and sum(sizes) <= POLICY_ENTRIES_BYTES:
        return entries, 0

    def rank(i: int) -> tuple[int, int, int]:
        e = entries[i]
        ours = str(e.get("name") or "").startswith(OPERATOR_PREFIX)
        return (0 if ours else 1, 0 if str(e.get("state") or "") in _FAILED_FIRST else 1, i)

    kept: list[int] = []
    used = 0
    for i in sorted(range(len(entries)), key=rank):
        if len(kept) >= MAX_POLICY_ENTRIES:
            break
        if used + sizes[i] <= POLICY_ENTRIES_BYTES:
            kept.append(i)
            used += sizes[i]
    return [entries[i] for i in sorted(kept)], len(entries) - len(kept)


def _since(existing: list[dict[str, Any]] | None, reason: str) -> str | None:
    """The ``lastTransitionTime`` of the ContainersKnown condition written before, if it is False for
    ``reason`` (the same episode: its start is kept), else None."""
    for c in existing or ():
        if isinstance(c, dict) and (c.get("type"), c.get("status"), c.get("reason")) == (
            CONTAINERS_CONDITION,
            "False",
            reason,
        ):
            at = c.get("lastTransitionTime")
            return at if isinstance(at, str) and at else None
    return None


# Whether an event source works now (``status.source`` not ``none``); while it is False
# (``NoEventSource``) its lastTransitionTime says since when nothing reaches the agent, and the operator
# turns the policies Degraded once that has lasted ``tetragon_unreachable_seconds`` (policy_state).
EVENT_SOURCE_CONDITION = "EventSource"


def _event_source_condition(source: str, why: str) -> dict[str, Any]:
    working = source != "none"
    return condition(
        type=EVENT_SOURCE_CONDITION,
        status=working,
        reason="SourceWorking" if working else "NoEventSource",
        message=f"source {source}: {why}"[:1024],
        generation=None,
    )


# What the agent knows of the node's containers (docs/lifecycle.md, "Without the lifecycle part"):
# False while a container of an image that sent no event cannot be counted.
CONTAINERS_CONDITION = "ContainersKnown"
_CAPPED = "no observation window of a container's image reads above ActiveTracing (none backs 'not observed')"
CONTAINERS_STATES: dict[str, tuple[bool, str, str]] = {
    "in_sync": (
        True,
        "RegistryInSync",
        "the container runtime's registry is in sync: a container of an image that ran without "
        "sending an event counts at Passive in the image's windows",
    ),
    "not_in_sync": (
        False,
        "RegistryNotInSync",
        "the container runtime's registry is not in sync (before its first sample, the runtime away, "
        f"or its observer stopped): {_CAPPED}",
    ),
    "no_runtime_socket": (
        False,
        "NoRuntimeSocket",
        f"lifecycle.enabled: auto found no runtime socket at start (a missing mount or an odd path): "
        f"{_CAPPED}; mount the runtime's socket and set lifecycle.containerdAddress, dockerAddress or "
        "criAddresses to it (in a cluster: the RuntimeObserver's spec.containerRuntime), or "
        "lifecycle.enabled: false",
    ),
    "off": (
        False,
        "LifecycleDisabled",
        "lifecycle.enabled: false: observation windows rest only on the containers that sent events; "
        "a container of the image that sent none is not counted",
    ),
}


# The export source's position in the node's watch record (agent/watch_record.py): False while a
# drain is held because the record cannot be written, so nothing read since is stored.
EXPORT_CONDITION = "ExportPositionRecorded"


def _export_condition(recorded: bool, message: str) -> dict[str, Any]:
    reason = "Recorded" if recorded else "WatchRecordUnwritable"
    return condition(type=EXPORT_CONDITION, status=recorded, reason=reason, message=message, generation=None)


def export_position(record: Any) -> tuple[bool, str] | None:
    """(recorded, message) of the export source's watch record; None: the agent keeps none
    (another source, no ``store.spoolPath``)."""
    if record is None or not record.enabled or getattr(record.export, "positions", None) is None:
        return None
    if not record.unrecorded:
        return True, "the export file's read position is recorded in the node's watch record"
    return False, (
        f"the node's watch record {record.path} cannot be written, so the export file's read "
        "position cannot be recorded: the counts read since are held, not stored "
        "(export_drains_held_total); if the agent stops now, the next one reads those lines again"
    )  # no count in it: the status is written again only when the condition changes


def purl_state(stream: object) -> tuple[list[dict[str, Any]], int] | None:
    """The source switch's PURL function entries and how many were left out (None: no switch)."""
    entries = getattr(stream, "purl_functions", None)
    if not isinstance(entries, list):
        return None
    return [dict(e) for e in entries], int(getattr(stream, "purl_functions_omitted", 0) or 0)


def agent_template(environ: Mapping[str, str]) -> str | None:
    """The pod template's ``stellaops.io/agent-template`` as the downward API hands it to the agent
    (``STELLA_AGENT_TEMPLATE``); None outside a RuntimeObserver's pod, or if it is not such a digest."""
    value = environ.get(AGENT_TEMPLATE_ENV, "").strip()
    return value if _TEMPLATE.fullmatch(value) else None


_TEMPLATE = re.compile(r"[0-9a-f]{1,64}")
