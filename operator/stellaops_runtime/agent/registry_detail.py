"""Why an agent's container registry is not in sync: which runtime, at which address, what failed.

The ``ContainersKnown`` condition of the ObservationNode said only that the
registry is not in sync (``RegistryNotInSync``), so a node that stayed so (its
RuntimeObserver Degraded after the operator's grace period) sent people to
the agent's log to learn which socket it watched and what failed. This reads
the lifecycle part's target and observer for the condition's message
(agent/observation_status.py ``build_status``): the runtime does not answer
(with the observer's last error), its containers are not listed yet, a
container of a containerd namespace the agent does not follow runs, or else
a running container has no image digest or the observer stopped.

The texts are stable while the cause lasts (no counters, no times), so the
status is written again only when the cause changes, and redacted: conditions
are readable cluster-wide.
"""

from __future__ import annotations

from typing import Any

from stellaops_runtime.contracts.redact import redact

ERROR_CHARS = 256  # of the observer's error
SHOWN_NAMESPACES = 3


def registry_detail(lifecycle: Any) -> str | None:
    """Why the registry of ``lifecycle`` (agent/lifecycle_part.py ``LifecyclePart``) is not in sync,
    as far as its observer says; None without a lifecycle part (no socket, or turned off)."""
    if lifecycle is None:
        return None
    target = getattr(lifecycle, "target", None)
    runtime = str(getattr(target, "runtime", "") or "the container runtime")
    address = redact(str(getattr(target, "address", "") or ""))
    where = f"{runtime} at {address}" if address else runtime
    observer = getattr(lifecycle, "observer", None)
    if observer is None:
        return f"{where}: the observer has not started"
    stats = getattr(observer, "stats", None)
    if not getattr(stats, "connected", False):
        error = redact(str(getattr(stats, "last_error", "") or ""))
        if len(error) > ERROR_CHARS:
            error = error[:ERROR_CHARS] + "..."
        return f"{where} does not answer: {error}" if error else f"{where}: not connected yet"
    synced = getattr(observer, "synced", None)
    if synced is not None and not synced.is_set():
        return f"{where}: connected, its containers not listed yet"
    unwatched = getattr(observer, "unwatched", None)
    if unwatched:
        names = sorted({str(ns) for ns, _ in unwatched})
        more = f" and {len(names) - SHOWN_NAMESPACES} more" if len(names) > SHOWN_NAMESPACES else ""
        shown = ", ".join(redact(n)[:64] for n in names[:SHOWN_NAMESPACES])
        return (
            f"{where}: a container of a containerd namespace the agent does not follow runs ({shown}{more})"
        )
    return (
        f"{where}: connected and listed, but a running container has no image digest (its image removed "
        "or its reference moved), or the observer stopped (see the agent's log)"
    )
