"""Why an agent pod cannot start, read from the container statuses the kubelet writes.

A DaemonSet's own status only counts pods (``numberReady < desired``), which
looks the same for a pod that is still pulling and for one that will never
start. When runc refuses a capability the node's bounding set lacks, the
kubelet reports the container as waiting with reason ``RunContainerError``
(or ``CreateContainerError``) and runc's message ("unable to apply caps:
operation not permitted"), and after the first restarts as
``CrashLoopBackOff`` with that failure as the last termination
(``lastState.terminated``: reason ``StartError``, exit code 128). These
reasons, and the other ones a container never gets past (a missing Secret
or ConfigMap key, an image that cannot be pulled), make the RuntimeObserver
Degraded with the kubelet's reason and message (``reconcile_observers``).

Pure functions over the pod object; ``state.PodSnapshot`` keeps their result.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# Waiting reasons of a container that is not going to start by itself.
STUCK_REASONS = frozenset(
    {
        "CreateContainerError",
        "CreateContainerConfigError",  # e.g. the store Secret or its key is missing
        "RunContainerError",
        "CrashLoopBackOff",
        "ErrImagePull",
        "ImagePullBackOff",
        "ErrImageNeverPull",
        "InvalidImageName",
    }
)
# A condition reason (metav1.Condition); the kubelet's reasons are CamelCase words.
_REASON_RE = re.compile(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
MAX_MESSAGE = 600  # of one container's message in a condition
MAX_LISTED = 3  # pods named in the condition message


@dataclass(frozen=True, slots=True)
class ContainerProblem:
    """One container that cannot start: its name, the kubelet's reason and message."""

    container: str
    reason: str
    message: str


def _clip(text: str, limit: int = MAX_MESSAGE) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def container_problems(pod: Mapping[str, Any]) -> tuple[ContainerProblem, ...]:
    """The containers (init containers first) of ``pod`` waiting for a reason in ``STUCK_REASONS``."""
    status = pod.get("status")
    if not isinstance(status, Mapping):
        return ()
    out: list[ContainerProblem] = []
    for key in ("initContainerStatuses", "containerStatuses"):
        statuses = status.get(key)
        if not isinstance(statuses, list):
            continue
        for cs in statuses:
            if not isinstance(cs, Mapping):
                continue
            state = cs.get("state")
            waiting = state.get("waiting") if isinstance(state, Mapping) else None
            if not isinstance(waiting, Mapping):
                continue
            reason = str(waiting.get("reason") or "")
            if reason not in STUCK_REASONS:
                continue
            message = str(waiting.get("message") or "")
            last = cs.get("lastState")
            terminated = last.get("terminated") if isinstance(last, Mapping) else None
            if isinstance(terminated, Mapping):
                why = str(terminated.get("message") or "").strip()
                code = terminated.get("exitCode")
                last_reason = str(terminated.get("reason") or "")
                detail = f"last exit {code} ({last_reason})" if last_reason else f"last exit {code}"
                message = f"{message}; {detail}: {why}" if why else f"{message}; {detail}"
            out.append(ContainerProblem(str(cs.get("name") or ""), reason, _clip(message.strip("; "))))
    return tuple(out)


def _hint(message: str) -> str:
    if "apply caps" in message or "capabilit" in message.lower():
        return (
            " (a capability the agent adds is missing from the node's bounding set: "
            "set spec.agent.capabilities to what the node allows)"
        )
    return ""


def fleet_problem(pods: Iterable[tuple[str, str, tuple[ContainerProblem, ...]]]) -> tuple[str, str] | None:
    """Condition reason and message for agent pods that cannot start, or None when none is stuck.

    ``pods`` are ``(pod name, node name, problems)``. The reason is the kubelet's
    reason of the first stuck pod by name (``CrashLoopBackOff`` ranks after the
    reasons that say why); the message names up to ``MAX_LISTED`` pods.
    """
    stuck = sorted(
        ((name, node, problems) for name, node, problems in pods if problems),
        key=lambda p: (all(x.reason == "CrashLoopBackOff" for x in p[2]), p[0]),
    )
    if not stuck:
        return None
    problems = stuck[0][2]
    first = next((x for x in problems if x.reason != "CrashLoopBackOff"), problems[0])
    parts = []
    for pod, node, probs in stuck[:MAX_LISTED]:
        where = f"pod {pod}" + (f" on node {node}" if node else "")
        said = "; ".join(f"container {x.container}: {x.reason}: {x.message}" for x in probs)
        parts.append(f"{where}: {said}")
    more = len(stuck) - MAX_LISTED
    message = f"{len(stuck)} agent pod(s) cannot start: " + " | ".join(parts)
    if more > 0:
        message += f" | and {more} more"
    reason = first.reason if _REASON_RE.match(first.reason) else "AgentPodsCannotStart"
    return reason, message + _hint(" ".join(x.message for x in problems))
