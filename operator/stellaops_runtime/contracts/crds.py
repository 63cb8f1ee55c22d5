"""Our custom resources as plain data: names, well-known labels, and validated spec models.

The one import for callers that use several of these at once; the
definitions are split by concern:

- ``contracts/crd_names.py``: API group and version, kinds and plurals (ours
  and Tetragon's), the labels and annotations the operator writes and reads,
  the defaults of the specs;
- ``contracts/crd_specs.py``: the frozen spec models (camelCase keys,
  snake_case attributes), :class:`SpecError` and the rate-limit period;
- ``contracts/crd_validation.py``: ``parse_observer_spec`` and
  ``parse_policy_spec``, the checks the CRDs' schemas cannot make (and their
  CEL rules, which kmock and older API servers do not evaluate).
"""

from __future__ import annotations

from stellaops_runtime.contracts.crd_names import (
    API_VERSION,
    CLUSTER_POLICY_KIND,
    CLUSTER_POLICY_PLURAL,
    CONFIG_HASH_ANNOTATION,
    DEFAULT_AGENT_NAMESPACE,
    DEFAULT_TETRAGON_ADDRESS,
    FEATURE_LABEL_PREFIX,
    GROUP,
    LEVELS,
    MANAGED_BY,
    NODE_KIND,
    NODE_PLURAL,
    OBSERVE_DEEP_LABEL,
    OBSERVE_FULL_LABEL,
    OBSERVE_LABEL,
    OBSERVE_LEVEL_ANNOTATION,
    OBSERVE_OFF_LABEL,
    OBSERVER_KIND,
    OBSERVER_LABEL,
    OBSERVER_PLURAL,
    POLICY_KIND,
    POLICY_KIND_LABEL,
    POLICY_NAME_LABEL,
    POLICY_NAMESPACE_LABEL,
    POLICY_PLURAL,
    POSTURE_ANNOTATION,
    POSTURE_REASON_ANNOTATION,
    RESERVED_POD_LABEL_KEYS,
    TETRAGON_API_VERSION,
    TETRAGON_NAMESPACED_KIND,
    TETRAGON_NAMESPACED_PLURAL,
    TETRAGON_POLICY_KIND,
    TETRAGON_POLICY_PLURAL,
    VERSION,
)
from stellaops_runtime.contracts.crd_specs import (
    QUANTITY_PATTERN,
    RATE_LIMIT_PATTERN,
    SPEC_ERROR_REASONS,
    PolicySpec,
    RuntimeObserverSpec,
    SpecError,
    rate_limit_seconds,
)
from stellaops_runtime.contracts.crd_validation import parse_observer_spec, parse_policy_spec

__all__ = [
    "API_VERSION",
    "CLUSTER_POLICY_KIND",
    "CLUSTER_POLICY_PLURAL",
    "CONFIG_HASH_ANNOTATION",
    "DEFAULT_AGENT_NAMESPACE",
    "DEFAULT_TETRAGON_ADDRESS",
    "FEATURE_LABEL_PREFIX",
    "GROUP",
    "LEVELS",
    "MANAGED_BY",
    "NODE_KIND",
    "NODE_PLURAL",
    "OBSERVER_KIND",
    "OBSERVER_LABEL",
    "OBSERVER_PLURAL",
    "OBSERVE_DEEP_LABEL",
    "OBSERVE_FULL_LABEL",
    "OBSERVE_LABEL",
    "OBSERVE_LEVEL_ANNOTATION",
    "OBSERVE_OFF_LABEL",
    "POLICY_KIND",
    "POLICY_KIND_LABEL",
    "POLICY_NAMESPACE_LABEL",
    "POLICY_NAME_LABEL",
    "POLICY_PLURAL",
    "POSTURE_ANNOTATION",
    "POSTURE_REASON_ANNOTATION",
    "QUANTITY_PATTERN",
    "RATE_LIMIT_PATTERN",
    "RESERVED_POD_LABEL_KEYS",
    "SPEC_ERROR_REASONS",
    "TETRAGON_API_VERSION",
    "TETRAGON_NAMESPACED_KIND",
    "TETRAGON_NAMESPACED_PLURAL",
    "TETRAGON_POLICY_KIND",
    "TETRAGON_POLICY_PLURAL",
    "VERSION",
    "PolicySpec",
    "RuntimeObserverSpec",
    "SpecError",
    "parse_observer_spec",
    "parse_policy_spec",
    "rate_limit_seconds",
]
