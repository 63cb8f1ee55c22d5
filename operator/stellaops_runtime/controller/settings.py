"""kopf's settings for this operator, and the operator's own tunables.

Choices that matter for a GitOps-managed cluster:

- **Leader election** is kopf's peering: replicas that share a peering name
  see each other through a ``ClusterKopfPeering`` object (``kopf.dev/v1``, its
  CRD ships in ``manifests/``); all but the highest-priority one pause, so
  two replicas never reconcile at once. Peering keep-alives are the only
  periodic writes the operator makes (one patch of the peering object per
  replica about every ``lifetime`` seconds), and they touch no user object.
- **Persistence**: kopf keeps a handler's progress and the last-handled
  spec in annotations. Our reconciles are level-triggered
  (``@kopf.on.event``, which kopf never persists), so kopf writes such
  annotations only on the two policy kinds, whose ``@kopf.on.delete``
  handler needs a finalizer: the finalizer itself (once per object), and
  ``operator.stellaops.io/last-handled-configuration`` when the spec changes
  (a digest of it, ``diffbase.py``, not kopf's copy of the whole spec).
  An unchanged resource gets no write from kopf either.
- **Events**: kopf turns per-object log messages at ``posting.level`` and
  above into Kubernetes Events; WARNING keeps routine "handler succeeded"
  chatter out of ``kubectl describe`` while failures still show. The
  operator's own Events (invalid spec, invalid observe level) are posted
  directly.
- **Server-side label selectors** for the owned kinds (ConfigMaps,
  DaemonSets, ...): kopf watches only objects labelled managed-by us, not
  every ConfigMap of the cluster.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import kopf

from stellaops_runtime.contracts.crds import MANAGED_BY
from stellaops_runtime.controller.diffbase import DigestDiffBaseStorage
from stellaops_runtime.kube import resources as r

FINALIZER = "stellaops.io/finalizer"
ANNOTATION_PREFIX = "operator.stellaops.io"
DIFFBASE_KEY = "last-handled-configuration"
DEFAULT_PEERING = "stellaops-runtime"
COMPONENT = "stellaops-runtime-operator"

# The kinds the operator owns (watched by its managed-by label to restore drift). No RBAC
# kinds: the agents' ClusterRole and binding ship with the manifests (docs/security.md).
OWNED: tuple[r.Resource, ...] = (
    r.CONFIGMAPS,
    r.SERVICES,
    r.SERVICE_ACCOUNTS,
    r.DAEMONSETS,
    r.TRACING_POLICIES,
    r.TRACING_POLICIES_NAMESPACED,
)


@dataclass(frozen=True, slots=True)
class ControllerConfig:
    """The operator's own tunables (the CLI sets them; tests shorten the delays)."""

    # Fan-out triggers (a policy change re-evaluating pods, heartbeats refolding rollouts,
    # pod changes recounting postures) wait this long so a burst becomes one reconcile.
    coalesce_seconds: float = 1.0
    # An ObservationNode without a heartbeat for this long is stale (3 missed 30 s heartbeats).
    stale_after_seconds: float = 90.0
    # How often each policy's rollout is refolded even without events (staleness is time-driven).
    rollout_refresh_seconds: float = 30.0
    # How often the indexes are checked for objects deleted while a watch was down (index_audit).
    index_audit_seconds: float = 300.0
    # Reconciles talking to the API server at once.
    concurrency: int = 16
    # First retry delay of a failed reconcile (doubles up to retry_max_seconds).
    retry_initial_seconds: float = 1.0
    retry_max_seconds: float = 60.0
    # The operator's own API client: empty means in-cluster, else $KUBECONFIG / ~/.kube/config.
    kubeconfig: str = ""
    # Failures listed in a policy's status.rollout.
    max_rollout_messages: int = 5
    # A policy waiting on a node whose agent cannot reach Tetragon turns Degraded
    # (reason TetragonUnreachable) once the node has reported it unreachable this long
    # (counted from the lastTransitionTime of the ObservationNode's Ready=False); and (reason
    # NoEventSource) once a node whose Tetragon loaded it has had no event source this long
    # (its EventSource=False).
    tetragon_unreachable_seconds: float = 120.0
    # A RuntimeObserver one of whose nodes reports ContainersKnown RegistryNotInSync is Progressing
    # (an agent's start), then Degraded once that has lasted this long (by the node's own account:
    # heartbeatTime minus the condition's lastTransitionTime, so its clock's skew cancels).
    registry_not_in_sync_seconds: float = 300.0


def operator_settings(
    *, peering: str = DEFAULT_PEERING, standalone: bool = False, priority: int = 0
) -> kopf.OperatorSettings:
    """kopf settings as described in the module docstring."""
    settings = kopf.OperatorSettings()
    settings.peering.name = peering
    settings.peering.standalone = standalone
    settings.peering.mandatory = not standalone
    settings.peering.clusterwide = True
    settings.peering.priority = priority
    settings.peering.stealth = True
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    # A digest, not kopf's copy of the spec: a big policy must fit the annotations' 256 KiB (diffbase.py).
    settings.persistence.diffbase_storage = DigestDiffBaseStorage(prefix=ANNOTATION_PREFIX, key=DIFFBASE_KEY)
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = COMPONENT
    settings.posting.event_name_prefix = "stellaops-operator-"
    selector = f"{MANAGED_BY[0]}={MANAGED_BY[1]}"
    for res in OWNED:
        settings.watching.label_selectors[(res.group or "v1", res.version, res.plural)] = selector
    return settings
