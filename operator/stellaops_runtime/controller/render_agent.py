"""A RuntimeObserver rendered into the agent fleet: ServiceAccount, config, DaemonSet and metrics Service.

What the agent pod is granted, and why (docs/operator.md, "The agent DaemonSet";
docs/security.md for the namespace and RBAC around it):

- ``hostPID``: the agent reads ``/proc/<pid>/root`` (files of container
  images) and ``/proc/<pid>/maps`` for the pids events carry, which are host
  pids; with the host's PID namespace the container's own ``/proc`` is the
  host's view, so no ``/proc`` hostPath is mounted.
- capabilities, all others dropped: ``spec.agent.capabilities`` when set,
  else the default of the agent's source (``default_capabilities``;
  the capability rules are in controller/agent_capabilities.py):
  with Tetragon as the source only ``SYS_PTRACE`` (reading another
  process's ``/proc/<pid>/root`` and ``maps`` is a ptrace access check, which
  a process without capabilities fails against any process holding some);
  Tetragon loads every probe, so no BPF capability at all. A native source
  (the agent's own eBPF probes) adds ``BPF`` and ``PERFMON``.
- the **native fallback** (the agent's own BCC probes while Tetragon is
  unreachable, agent/source_switch.py) is on exactly when the agent gets the
  capabilities to load them: ``BPF`` and ``PERFMON``, or ``SYS_ADMIN``
  (``native_fallback``), by the source's default or because
  ``spec.agent.capabilities`` lists them. Only then does the agent config say
  ``native.enabled: true`` (with ``native.probeConfigFile``, the probe
  ConfigMap's ``probes.json``), and only then are the host's
  ``/sys/kernel/tracing``, ``/sys/kernel/debug`` (tracepoints and uprobes),
  ``/lib/modules`` (kernel headers, when the node has them) and
  ``/sys/fs/cgroup`` (cgroup ids of the host's view) mounted read-only, type
  ``Directory``, plus an ``emptyDir`` for the header tree BCC compiles against
  (``$STELLA_CACHE_DIR``; the root filesystem is read-only).
  ``SYS_RESOURCE`` (the locked-memory limit of BPF maps, needed only on
  kernels before 5.11) is never a default: a capability missing from the
  node's bounding set makes runc refuse the container ("unable to apply
  caps"), which the RuntimeObserver's status then reports (Degraded, with
  the kubelet's reason). Add it, or ``DAC_READ_SEARCH`` (image files that
  are not world-readable), through ``spec.agent.capabilities``.
  Runs as root (Tetragon's socket is ``0660 root:root``), no privilege
  escalation, read-only root filesystem, the runtime's default seccomp profile.
- host mounts: ``/var/run/tetragon`` read-only, or the directory of
  ``spec.tetragon.address``'s socket elsewhere (contracts/tetragon_socket.py;
  the directory, so a socket
  re-created by a restarted Tetragon is seen; type ``DirectoryOrCreate``: on
  a node without Tetragon the agent must still start, and fall back to its own
  probes, instead of waiting in ContainerCreating for a directory nobody
  makes; an empty directory is what Tetragon itself would create), the
  container runtime's socket read-only for the container lifecycle observer
  (lifecycle/): the image and pod of every running container, and the
  observation windows of images that ran without a call; by default
  ``/run/containerd`` and ``/var/run/crio`` (CRI-O's CRI socket), type
  ``DirectoryOrCreate`` for the same reason, else the directory (or the
  socket) of ``spec.containerRuntime`` (k3s, Docker, a custom path;
  controller/runtime_socket.py says how, and the agent config's lifecycle
  keys). A runtime's socket is root on the node: whoever holds it can start
  privileged containers; the agent only lists and subscribes. And the spool directory
  ``/var/lib/stellaops-runtime/spool`` read-write (type ``DirectoryOrCreate``:
  it is ours; rows the agent could not store before a shutdown are spooled
  there and survive a rolling update during a store outage), and
  ``/var/lib/stellaops-runtime/index-cache`` read-write (``DirectoryOrCreate``,
  ours: ``symbols.indexCacheDir``, the indexed symbol tables of binaries, so a
  restarted agent does not index the same files again; every file in it is
  validated before use, canonical/indexcache.py). Kernel BTF
  (``/sys/kernel/btf/vmlinux``) and the perf PMUs capability detection reads
  are in the container's own read-only sysfs; no host mount is needed.
- two ConfigMap volumes (read-only): the agent's config in ``/etc/stellaops-runtime/agent``
  and the native probes' config in ``/etc/stellaops-runtime/probes``.

The agents' cluster RBAC (their ObservationNode and Node reads) is not
rendered: the manifests ship one ClusterRole bound to the service accounts
of the agent namespace, so the operator needs no right to write RBAC.

The agent's config document and the paths it names are in
controller/agent_config.py.

A config change rolls the DaemonSet: the pod template carries the SHA-256 of
the ConfigMap's data. Which rollout a pod runs is named by a digest of the
whole template (``stellaops.io/agent-template``, ``agent_template_hash``),
which the agent reads through the downward API and reports in its
ObservationNode's ``status.agentTemplate``: the operator reads a report of an
older one as that node's rollout in progress (controller/observer_nodes.py).
The store URL (with its password) comes from the
RuntimeObserver's Secret reference through ``$STELLA_RUNTIME_STORE``; the
ConfigMap holds none. A change to that Secret's data rolls the agents too:
the template carries ``store_secret_token`` of the Secret, which the
reconciler reads on every reconcile. The token follows the data, not the
resourceVersion: a write that leaves the data as it was (a label, an
annotation, ``kubectl apply --server-side`` taking over managedFields)
changes the resourceVersion and must not restart every agent. It is an
HMAC-SHA256 of the data keyed with the Secret's uid, so whoever can read the
DaemonSet but not the Secret cannot test guessed passwords against it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from stellaops_runtime.contracts.config import STORE_URL_ENV
from stellaops_runtime.contracts.crd_names import (
    AGENT_TEMPLATE_ANNOTATION,
    AGENT_TEMPLATE_ENV,
    API_VERSION,
    CONFIG_HASH_ANNOTATION,
    NODE_IP_ENV,
    OBSERVER_KIND,
    OBSERVER_LABEL,
)
from stellaops_runtime.contracts.crd_specs import RuntimeObserverSpec
from stellaops_runtime.contracts.tetragon_socket import TETRAGON_SOCKET_DIR as TETRAGON_SOCKET_DIR
from stellaops_runtime.controller.agent_capabilities import AgentSource, agent_capabilities, native_fallback
from stellaops_runtime.controller.agent_config import (
    AGENT_CONFIG_KEY,
    CONFIG_DIR,
    INDEX_CACHE_DIR,
    PROBES_DIR,
    SPOOL_DIR,
    agent_config,
)
from stellaops_runtime.controller.naming import (
    canonical_json,
    dns_label,
    managed_labels,
    owner_reference,
    sha256_hex,
)
from stellaops_runtime.controller.runtime_socket import runtime_mounts, tetragon_mount_dir

# On the agent pod template: which version of the store Secret the agents were started with.
STORE_SECRET_ANNOTATION = "stellaops.io/store-secret-hash"

TERMINATION_GRACE_SECONDS = (
    30  # above the agent's shutdown.graceSeconds default (20): it flushes, then spools
)

CACHE_DIR = "/var/cache/stellaops-runtime"  # the BCC header tree (native/headershim.py), an emptyDir
CACHE_ENV = "STELLA_CACHE_DIR"
# What BCC reads on the host, read-only: (volume name, host path), all of type Directory.
NATIVE_HOST_PATHS = (
    ("tracefs", "/sys/kernel/tracing"),
    ("debugfs", "/sys/kernel/debug"),
    ("modules", "/lib/modules"),
    ("cgroup", "/sys/fs/cgroup"),
)
DEFAULT_TOLERATIONS = ({"operator": "Exists"},)  # a node agent belongs on every node
APP_NAME = "stellaops-runtime-agent"


def store_secret_token(secret: Mapping[str, Any] | None) -> str:
    """What identifies the store Secret the agents read: its uid and a keyed digest of its data.

    Equal for two reads of an unchanged Secret whatever happened to its
    metadata; different when its data changes or it is re-created. ``absent``
    when it does not exist (the pods wait in CreateContainerConfigError, and
    its creation rolls them); the reconciler says ``unreadable`` when it may
    not read it.
    """
    if secret is None:
        return "absent"
    uid = str((secret.get("metadata") or {}).get("uid") or "")
    data = {str(k): str(v) for k, v in (secret.get("data") or {}).items()}
    digest = hmac.new(uid.encode(), canonical_json(data).encode(), hashlib.sha256).hexdigest()
    return f"{uid}/{digest}"


def agent_resource_name(observer_name: str) -> str:
    """The name of the ServiceAccount, ConfigMap, DaemonSet and Service."""
    return dns_label("stellaops-agent", observer_name, max_len=52)


def probe_configmap_name(observer_name: str) -> str:
    """The native probes' ConfigMap (``render_policy.render_probe_configmap``) in the agent namespace."""
    return dns_label("stellaops-probes", observer_name, max_len=63)


def selector_labels(observer_name: str) -> dict[str, str]:
    """The DaemonSet's (immutable) pod selector."""
    return managed_labels({"app.kubernetes.io/name": APP_NAME, "app.kubernetes.io/instance": observer_name})


def common_labels(observer_name: str) -> dict[str, str]:
    return managed_labels(
        {
            "app.kubernetes.io/name": APP_NAME,
            "app.kubernetes.io/instance": observer_name,
            "app.kubernetes.io/component": "agent",
            "app.kubernetes.io/part-of": "stellaops-runtime",
            OBSERVER_LABEL: observer_name,
        }
    )


def _meta(*, name: str, namespace: str | None, labels: dict[str, str], owner: dict) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": labels, "ownerReferences": [owner]}
    if namespace is not None:
        meta["namespace"] = namespace
    return meta


def render_agent_objects(
    *,
    name: str,
    uid: str,
    namespace: str,
    spec: RuntimeObserverSpec,
    source: AgentSource = "tetragon",
    store_secret: str | None = None,
) -> list[dict]:
    """ServiceAccount, ConfigMap, DaemonSet, Service (in that order), all in ``namespace``.

    ``namespace`` is where the agents run (normally ``spec.agentNamespace``);
    it must exist. Every object is owned by the RuntimeObserver (a
    cluster-scoped owner may own namespaced objects). ``source`` is the
    agents' event source: only ``native`` adds the eBPF capabilities (unless
    ``spec.agent.capabilities`` says). ``store_secret`` is
    ``store_secret_token`` of the store Secret; its hash goes into the pod
    template (None: no annotation).
    """
    owner = owner_reference(api_version=API_VERSION, kind=OBSERVER_KIND, name=name, uid=uid)
    res = agent_resource_name(name)
    labels = common_labels(name)
    agent = spec.agent

    service_account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(name=res, namespace=namespace, labels=labels, owner=owner),
    }
    capabilities = agent_capabilities(source, agent.capabilities)
    native = native_fallback(capabilities)
    # JSON, which is YAML too: the agent reads it without PyYAML (contracts/config_text.py, issue 13).
    config_text = json.dumps(agent_config(spec, native=native), indent=2, sort_keys=True) + "\n"
    config_data = {AGENT_CONFIG_KEY: config_text}
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(name=res, namespace=namespace, labels=labels, owner=owner),
        "data": config_data,
    }

    runtime_socket_mounts, runtime_socket_volumes = runtime_mounts(spec)
    tetragon_dir = tetragon_mount_dir(spec)  # /var/run/tetragon unless the address says
    container: dict[str, Any] = {
        "name": "agent",
        "image": agent.image,
        "imagePullPolicy": agent.pull_policy,
        "command": ["stella-runtime", "agent", "--config", f"{CONFIG_DIR}/{AGENT_CONFIG_KEY}"],
        "env": [
            {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            # tetragon.metricsUrl's $(NODE_IP): Tetragon's metrics listen on the node's network
            {"name": NODE_IP_ENV, "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
            {  # which rollout this pod is: the agent reports it (node_status.py)
                "name": AGENT_TEMPLATE_ENV,
                "valueFrom": {
                    "fieldRef": {"fieldPath": f"metadata.annotations['{AGENT_TEMPLATE_ANNOTATION}']"}
                },
            },
            {
                "name": STORE_URL_ENV,
                "valueFrom": {
                    "secretKeyRef": {"name": spec.store.secret_ref.name, "key": spec.store.secret_ref.key}
                },
            },
        ],
        "ports": [{"name": "metrics", "containerPort": spec.metrics.port, "protocol": "TCP"}],
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "metrics"},
            "periodSeconds": 20,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "metrics"},
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        "resources": {
            k: dict(sorted(v.items()))
            for k, v in (("requests", agent.resources.requests), ("limits", agent.resources.limits))
            if v
        },
        "securityContext": {
            "privileged": False,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsUser": 0,
            "runAsGroup": 0,
            "runAsNonRoot": False,
            "capabilities": {"drop": ["ALL"], "add": capabilities},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "probes", "mountPath": PROBES_DIR, "readOnly": True},
            {"name": "tetragon", "mountPath": tetragon_dir, "readOnly": True},
            *runtime_socket_mounts,  # the container runtime's socket (runtime_socket.py)
            {"name": "spool", "mountPath": SPOOL_DIR, "readOnly": False},
            {"name": "index-cache", "mountPath": INDEX_CACHE_DIR, "readOnly": False},
        ],
    }
    tolerations = (
        [dict(t) for t in DEFAULT_TOLERATIONS]
        if agent.tolerations is None
        else [t.to_dict() for t in agent.tolerations]
    )
    pod_spec: dict[str, Any] = {
        "serviceAccountName": res,
        "automountServiceAccountToken": True,
        "hostPID": True,
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,  # the agent flushes on SIGTERM
        "nodeSelector": dict(sorted({"kubernetes.io/os": "linux", **agent.node_selector}.items())),
        "tolerations": tolerations,
        "containers": [container],
        "volumes": [
            {
                "name": "config",
                "configMap": {"name": res, "items": [{"key": AGENT_CONFIG_KEY, "path": AGENT_CONFIG_KEY}]},
            },
            {"name": "probes", "configMap": {"name": probe_configmap_name(name), "optional": True}},
            # Tetragon's directory: created empty when Tetragon is absent, so the agent starts anyway.
            {"name": "tetragon", "hostPath": {"path": tetragon_dir, "type": "DirectoryOrCreate"}},
            # The container runtime's socket, for the lifecycle observer (runtime_socket.py).
            *runtime_socket_volumes,
            # Ours: created on first start, kept across pod restarts and rolling updates.
            {"name": "spool", "hostPath": {"path": SPOOL_DIR, "type": "DirectoryOrCreate"}},
            {"name": "index-cache", "hostPath": {"path": INDEX_CACHE_DIR, "type": "DirectoryOrCreate"}},
        ],
    }
    if native:
        for vol, path in NATIVE_HOST_PATHS:
            container["volumeMounts"].append({"name": vol, "mountPath": path, "readOnly": True})
            pod_spec["volumes"].append({"name": vol, "hostPath": {"path": path, "type": "Directory"}})
        container["volumeMounts"].append({"name": "cache", "mountPath": CACHE_DIR, "readOnly": False})
        pod_spec["volumes"].append({"name": "cache", "emptyDir": {"sizeLimit": "64Mi"}})
        container["env"].append({"name": CACHE_ENV, "value": CACHE_DIR})
    if agent.priority_class_name:
        pod_spec["priorityClassName"] = agent.priority_class_name
    template_annotations = {CONFIG_HASH_ANNOTATION: sha256_hex(config_data)}
    if store_secret is not None:
        template_annotations[STORE_SECRET_ANNOTATION] = sha256_hex(
            {"secret": spec.store.secret_ref.name, "version": store_secret}
        )
    template: dict[str, Any] = {
        "metadata": {"labels": labels, "annotations": template_annotations},
        "spec": pod_spec,
    }
    template_annotations[AGENT_TEMPLATE_ANNOTATION] = agent_template_hash(template)
    daemon_set = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": _meta(name=res, namespace=namespace, labels=labels, owner=owner),
        "spec": {
            "selector": {"matchLabels": selector_labels(name)},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": template,
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name=res, namespace=namespace, labels=labels, owner=owner),
        "spec": {
            "clusterIP": "None",  # one endpoint per agent: Prometheus scrapes each node
            "selector": selector_labels(name),
            "ports": [
                {"name": "metrics", "port": spec.metrics.port, "targetPort": "metrics", "protocol": "TCP"}
            ],
        },
    }
    return [service_account, config_map, daemon_set, service]


def agent_template_hash(template: Mapping[str, Any]) -> str:
    """What names one rollout of the agent pod template: a digest of all of it (image, config hash,
    store Secret token, mounts, capabilities), without its own annotation."""
    meta = dict(template.get("metadata") or {})
    meta["annotations"] = {
        k: v for k, v in (meta.get("annotations") or {}).items() if k != AGENT_TEMPLATE_ANNOTATION
    }
    return sha256_hex({**template, "metadata": meta})[:16]


def rendered_agent_template(objects: list[dict]) -> str | None:
    """The ``AGENT_TEMPLATE_ANNOTATION`` of the DaemonSet among ``render_agent_objects``'s objects."""
    for obj in objects:
        if obj.get("kind") == "DaemonSet":
            annotations = obj["spec"]["template"]["metadata"].get("annotations") or {}
            value = annotations.get(AGENT_TEMPLATE_ANNOTATION)
            return value if isinstance(value, str) else None
    return None
