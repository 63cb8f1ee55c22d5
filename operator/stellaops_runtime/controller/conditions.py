"""Status conditions the way Argo CD, Flux and ``kubectl wait`` read them.

Each of our resources carries the four condition types Ready, Progressing,
Degraded and Stalled (``metav1.Condition`` shape: type, status, reason,
message, observedGeneration, lastTransitionTime). ``merge_conditions`` keeps
``lastTransitionTime`` when a condition's status did not change, so
reconciling an unchanged resource yields a byte-identical status and the
handler can skip the write.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

CONDITION_TYPES = ("Ready", "Progressing", "Degraded", "Stalled")
State = Literal["Ready", "Progressing", "Degraded", "Stalled"]
# Progressing, a policy's or a RuntimeObserver's: an object it renders is being deleted
# (deletionTimestamp set, a finalizer pending), so not applied; made again once gone (owned.py).
WAITING_FOR_DELETION = "WaitingForDeletion"


def condition(*, type: str, status: bool, reason: str, message: str, generation: int | None) -> dict:
    """One condition without its transition time (``merge_conditions`` adds it)."""
    out: dict[str, Any] = {
        "type": type,
        "status": "True" if status else "False",
        "reason": reason,
        "message": message,
    }
    if generation is not None:
        out["observedGeneration"] = generation
    return out


def state_conditions(*, state: State, reason: str, message: str, generation: int | None) -> list[dict]:
    """All four condition types for one overall state, in a fixed order.

    ``Ready``: everything converged. ``Progressing``: applied, waiting for the
    cluster (e.g. nodes still loading a policy). ``Degraded``: applied but part
    of it fails (some nodes report a load error). ``Stalled``: cannot make
    progress without a change by the user (an invalid spec). The condition
    matching ``state`` is True with ``reason``/``message``; the others are False
    and carry the same reason so a reader sees why at a glance.
    """
    if state not in CONDITION_TYPES:
        raise ValueError(f"state must be one of {', '.join(CONDITION_TYPES)}, got {state!r}")
    return [
        condition(type=t, status=t == state, reason=reason, message=message, generation=generation)
        for t in CONDITION_TYPES
    ]


def now_rfc3339(now: datetime | None = None) -> str:
    """UTC time as Kubernetes writes it (seconds precision, ``Z``)."""
    t = (now or datetime.now(UTC)).astimezone(UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_conditions(
    existing: Sequence[Mapping[str, Any]] | None, new: Sequence[Mapping[str, Any]], *, now: str
) -> list[dict]:
    """The conditions to write: ``new`` in its order, then existing types ``new`` does not mention.

    A condition whose status is unchanged keeps its ``lastTransitionTime``; a
    changed or new one gets ``now``. With nothing changed the result equals
    ``existing`` (same keys, same values, same order) so no write is needed.
    """
    before = {str(c.get("type")): c for c in existing or () if isinstance(c, Mapping)}
    out: list[dict] = []
    seen: set[str] = set()
    for c in new:
        t = str(c["type"])
        seen.add(t)
        merged = dict(c)
        old = before.get(t)
        if old is not None and old.get("status") == c.get("status") and old.get("lastTransitionTime"):
            merged["lastTransitionTime"] = old["lastTransitionTime"]
        else:
            merged["lastTransitionTime"] = now
        out.append(merged)
    for c in existing or ():
        if isinstance(c, Mapping) and str(c.get("type")) not in seen:
            out.append(dict(c))
    return out


def find_condition(conditions: Sequence[Mapping[str, Any]] | None, type: str) -> Mapping[str, Any] | None:
    """The condition of ``type`` or None."""
    for c in conditions or ():
        if c.get("type") == type:
            return c
    return None
