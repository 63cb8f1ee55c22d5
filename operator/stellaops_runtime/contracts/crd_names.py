"""Names of our custom resources and the labels and annotations the operator and agents share.

API group and version, kinds and plurals (ours and Tetragon's), the
well-known labels and annotations on pods and on what the operator renders,
and the defaults the spec models fall back to. Plain strings, no models:
``contracts/crd_specs.py`` has the spec models, ``contracts/crd_validation.py``
what checks them, and ``contracts/crds.py`` re-exports what callers use.
"""

from __future__ import annotations

from typing import Literal

# The agent reads these two too, without the CRD models: defined in contracts/posture.py.
# "observe-off" is "true" when the pod opted out with its observe-level annotation (None).
from stellaops_runtime.contracts.posture import OBSERVE_LEVEL_ANNOTATION as OBSERVE_LEVEL_ANNOTATION
from stellaops_runtime.contracts.posture import OBSERVE_OFF_LABEL

GROUP = "stellaops.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

OBSERVER_KIND, OBSERVER_PLURAL = "RuntimeObserver", "runtimeobservers"  # cluster-scoped
POLICY_KIND, POLICY_PLURAL = "ObservationPolicy", "observationpolicies"  # namespaced
CLUSTER_POLICY_KIND, CLUSTER_POLICY_PLURAL = "ClusterObservationPolicy", "clusterobservationpolicies"
NODE_KIND, NODE_PLURAL = "ObservationNode", "observationnodes"  # cluster-scoped, one per node

TETRAGON_GROUP = "cilium.io"
TETRAGON_VERSION = "v1alpha1"
TETRAGON_API_VERSION = f"{TETRAGON_GROUP}/{TETRAGON_VERSION}"
TETRAGON_POLICY_KIND, TETRAGON_POLICY_PLURAL = "TracingPolicy", "tracingpolicies"
TETRAGON_NAMESPACED_KIND, TETRAGON_NAMESPACED_PLURAL = "TracingPolicyNamespaced", "tracingpoliciesnamespaced"

POSTURE_ANNOTATION = "stellaops.io/observe-posture"  # written by the operator: effective posture
POSTURE_REASON_ANNOTATION = "stellaops.io/observe-posture-reason"
OBSERVE_LABEL = "stellaops.io/observe"  # "true" exactly when eBPF tracing applies (ActiveTracing or more)
OBSERVE_DEEP_LABEL = "stellaops.io/observe-deep"  # "true" at EbpfDeep or more
OBSERVE_FULL_LABEL = "stellaops.io/observe-full"  # "true" at FullInstrumentation
LEVEL_LABEL_KEYS = (OBSERVE_LABEL, OBSERVE_DEEP_LABEL, OBSERVE_FULL_LABEL)
# Written by the operator from the computed posture: a policy's podSelector may not use them.
RESERVED_POD_LABEL_KEYS = (*LEVEL_LABEL_KEYS, OBSERVE_OFF_LABEL)
MANAGED_BY = ("app.kubernetes.io/managed-by", "stellaops-runtime")
FEATURE_LABEL_PREFIX = "feature.stellaops.io/"
CONFIG_HASH_ANNOTATION = "stellaops.io/config-hash"  # on the agent pod template
# On the agent pod template: which rollout of it a pod runs (render_agent); the agent reads it through
# the downward API (AGENT_TEMPLATE_ENV) and reports it as its ObservationNode's status.agentTemplate.
AGENT_TEMPLATE_ANNOTATION = "stellaops.io/agent-template"
AGENT_TEMPLATE_ENV = "STELLA_AGENT_TEMPLATE"
OBSERVER_LABEL = "stellaops.io/observer"  # on every object a RuntimeObserver owns
POLICY_KIND_LABEL = "stellaops.io/policy-kind"  # on rendered Tetragon policies
POLICY_NAME_LABEL = "stellaops.io/policy-name"
POLICY_NAMESPACE_LABEL = "stellaops.io/policy-namespace"

DEFAULT_AGENT_NAMESPACE = "stellaops-agent"  # privileged PSA; the operator runs in stellaops-system
DEFAULT_TETRAGON_ADDRESS = "unix:///var/run/tetragon/tetragon.sock"  # Helm default since v1.7
# Tetragon's metrics server listens on the node's network (Helm: hostNetwork, port 2112); the agent
# pod does not, so it asks the node's address: NODE_IP_ENV from the downward API (status.hostIP),
# expanded by the agent (sources/tetragon_metrics.py expand_url).
NODE_IP_ENV = "NODE_IP"
DEFAULT_TETRAGON_METRICS_URL = f"http://$({NODE_IP_ENV}):2112/metrics"
# Where the node's root filesystem appears inside Tetragon's own container (the
# Helm chart mounts the host's /proc at /procRoot): uprobe paths are resolved
# by Tetragon in its filesystem view, so a host binary /usr/bin/x is
# /procRoot/1/root/usr/bin/x to it.
DEFAULT_TETRAGON_HOST_ROOT = "/procRoot/1/root"

# The posture levels in order (controller.posture.Posture has the same values).
LEVELS = ("None", "Passive", "ActiveTracing", "EbpfDeep", "FullInstrumentation")
Level = Literal["None", "Passive", "ActiveTracing", "EbpfDeep", "FullInstrumentation"]
