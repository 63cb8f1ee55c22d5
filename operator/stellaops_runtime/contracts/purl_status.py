"""The status shapes of functions named by package URL: per node (agent) and per policy (operator).

Tetragon cannot trace a function inside a pod's image (cilium/tetragon#5105);
the agent's native probes can. Each agent says in its ObservationNode which
of the probe ConfigMap's PURL functions it attached (``status.purlFunctions``)
and the operator folds those into each policy's ``status.purlFunctions``
(which source covers the function on how many nodes). Both lists are bounded
so a status object stays small; the CRD schemas (manifests/crds/) carry the
same bounds, and a test checks they agree.
"""

from __future__ import annotations

# Per node: the state of one function (policy, purl, symbol) over the node's running containers.
ATTACHED = "attached"
NOT_FOUND = "not_found"  # no running container has the package installed (or none runs)
NOT_IN_PACKAGE = "not_in_package"  # installed, but none of its files defines the symbol
UNSUPPORTED = "unsupported"  # not a PURL, or a type the agent does not resolve (only deb, apk)
ERROR = "error"  # a root or database could not be read, or the probe did not attach
NODE_STATES = (ATTACHED, NOT_FOUND, NOT_IN_PACKAGE, UNSUPPORTED, ERROR)

SOURCE_NATIVE = "native"  # the only source that covers a PURL function today
SOURCE_NONE = "none"

MAX_NODE_ENTRIES = 256  # ObservationNode status.purlFunctions items
MAX_POLICY_ENTRIES = 64  # ObservationPolicy status.purlFunctions items
MAX_NODES_LISTED = 10  # per policy entry: nodes named where nothing covers the function
MAX_REASON_CHARS = 512
