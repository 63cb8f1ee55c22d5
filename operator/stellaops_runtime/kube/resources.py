"""The Kubernetes resources the operator and the agent read and write, and their URL paths.

A fixed table instead of API discovery: the operator writes only a known
handful of kinds (its own CRDs, Tetragon's, and a few built-in ones), so a
table keeps every request one round trip and makes a typo a KeyError at
start-up rather than a 404 at run time.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from stellaops_runtime.contracts import crd_names as crds  # the names, not the CRD models (pydantic)


@dataclass(frozen=True, slots=True)
class Resource:
    """One API resource: ``group/version``, kind, plural, and whether objects live in a namespace."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    def path(self, *, namespace: str | None = None, name: str | None = None, subresource: str = "") -> str:
        """``/api/v1/namespaces/NS/pods/NAME/status`` and the like (names are URL-quoted)."""
        base = f"/apis/{self.api_version}" if "/" in self.api_version else f"/api/{self.api_version}"
        if self.namespaced:
            if not namespace and name is not None:
                raise ValueError(f"{self.kind} {name!r} is namespaced: a namespace is required")
            if namespace:
                base += f"/namespaces/{quote(namespace, safe='')}"
        parts = [base, self.plural]
        if name is not None:
            parts.append(quote(name, safe=""))
            if subresource:
                parts.append(subresource)
        return "/".join(parts)

    def __str__(self) -> str:
        return f"{self.plural}.{self.api_version}"


NAMESPACES = Resource("v1", "Namespace", "namespaces", False)
NODES = Resource("v1", "Node", "nodes", False)
PODS = Resource("v1", "Pod", "pods", True)
EVENTS = Resource("v1", "Event", "events", True)
CONFIGMAPS = Resource("v1", "ConfigMap", "configmaps", True)
SERVICES = Resource("v1", "Service", "services", True)
SERVICE_ACCOUNTS = Resource("v1", "ServiceAccount", "serviceaccounts", True)
DAEMONSETS = Resource("apps/v1", "DaemonSet", "daemonsets", True)
CLUSTER_ROLES = Resource("rbac.authorization.k8s.io/v1", "ClusterRole", "clusterroles", False)
CLUSTER_ROLE_BINDINGS = Resource(
    "rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "clusterrolebindings", False
)
ROLES = Resource("rbac.authorization.k8s.io/v1", "Role", "roles", True)
ROLE_BINDINGS = Resource("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings", True)
CRDS = Resource("apiextensions.k8s.io/v1", "CustomResourceDefinition", "customresourcedefinitions", False)
CLUSTER_KOPF_PEERINGS = Resource("kopf.dev/v1", "ClusterKopfPeering", "clusterkopfpeerings", False)
KOPF_PEERINGS = Resource("kopf.dev/v1", "KopfPeering", "kopfpeerings", True)

RUNTIME_OBSERVERS = Resource(crds.API_VERSION, crds.OBSERVER_KIND, crds.OBSERVER_PLURAL, False)
OBSERVATION_POLICIES = Resource(crds.API_VERSION, crds.POLICY_KIND, crds.POLICY_PLURAL, True)
CLUSTER_OBSERVATION_POLICIES = Resource(
    crds.API_VERSION, crds.CLUSTER_POLICY_KIND, crds.CLUSTER_POLICY_PLURAL, False
)
OBSERVATION_NODES = Resource(crds.API_VERSION, crds.NODE_KIND, crds.NODE_PLURAL, False)

TRACING_POLICIES = Resource(
    crds.TETRAGON_API_VERSION, crds.TETRAGON_POLICY_KIND, crds.TETRAGON_POLICY_PLURAL, False
)
TRACING_POLICIES_NAMESPACED = Resource(
    crds.TETRAGON_API_VERSION, crds.TETRAGON_NAMESPACED_KIND, crds.TETRAGON_NAMESPACED_PLURAL, True
)

KNOWN: tuple[Resource, ...] = (
    NAMESPACES,
    NODES,
    PODS,
    EVENTS,
    CONFIGMAPS,
    SERVICES,
    SERVICE_ACCOUNTS,
    DAEMONSETS,
    CLUSTER_ROLES,
    CLUSTER_ROLE_BINDINGS,
    ROLES,
    ROLE_BINDINGS,
    CRDS,
    CLUSTER_KOPF_PEERINGS,
    KOPF_PEERINGS,
    RUNTIME_OBSERVERS,
    OBSERVATION_POLICIES,
    CLUSTER_OBSERVATION_POLICIES,
    OBSERVATION_NODES,
    TRACING_POLICIES,
    TRACING_POLICIES_NAMESPACED,
)
_BY_KIND = {(r.api_version, r.kind): r for r in KNOWN}


def resource_for(api_version: str, kind: str) -> Resource:
    """The resource of an object's ``apiVersion`` and ``kind``; KeyError for a kind we never write."""
    try:
        return _BY_KIND[(api_version, kind)]
    except KeyError:
        raise KeyError(f"no resource known for apiVersion {api_version!r} kind {kind!r}") from None


def resource_of(obj: dict) -> Resource:
    """The resource of a whole object."""
    return resource_for(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
