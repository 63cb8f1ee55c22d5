"""The pods of the agent's own node and the labels of namespaces, listed from the Kubernetes API.

What the native pod selection (agent/native_selection.py) needs to decide as
a rendered TracingPolicy would: each pod's uid, namespace, name and live
labels (the operator's level labels among them), and the labels of
namespaces for a ClusterObservationPolicy's ``namespaceSelector``. The agent
resolves namespace selectors itself rather than having the operator write
namespace names into the probe ConfigMap: the operator would have to
re-render every cluster policy and rewrite the ConfigMap on each namespace
label change, and the kubelet delivers a ConfigMap up to a minute late; the
agent reads the labels as they are.

A list, repeated every ``interval`` seconds, rather than a watch: one GET of
this node's pods (``fieldSelector=spec.nodeName=<node>``, served from the API
server's watch cache with ``resourceVersion=0``), and, only while some policy
has a ``namespaceSelector``, one of namespaces at most every
``NAMESPACE_INTERVAL_SECONDS`` (their labels change rarely, and a cluster
has many); bounded (``MAX_PODS``, ``MAX_NAMESPACES``; labels as the API
server bounds them). Each result replaces the whole view (``NativeSelection.view``) only
when it differs, so a label change reaches the filter within one interval.
Pods are also filtered by ``spec.nodeName`` here, so a server that ignores
the field selector cannot widen the view. The RBAC this needs is ``list`` on
``pods`` and ``namespaces`` (manifests/agent/rbac.yaml).

Failures (no credentials, API server down, 403) are counted by kind, logged
once per change of error, and retried with backoff up to ``MAX_BACKOFF``;
they never stop the agent. Until a first list succeeds there is no view and
the native probes stay node-wide; after one, the last view is kept.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from stellaops_runtime.agent.native_selection import NativeSelection, PodView, ViewPod
from stellaops_runtime.contracts.redact import redact
from stellaops_runtime.kube.client import ApiError, KubeClient, KubeConfigError
from stellaops_runtime.kube.resources import NAMESPACES, PODS

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 5.0
NAMESPACE_INTERVAL_SECONDS = 30.0
MAX_BACKOFF = 60.0
MAX_PODS = 10_000  # a node runs at most a few hundred pods; anything far beyond is not this node's
MAX_NAMESPACES = 100_000
MAX_LABELS = 512  # labels per object kept (the API server allows far fewer in practice)
USER_AGENT = "stellaops-runtime-agent/pod-view"


@dataclass(slots=True)
class PodViewStats:
    lists: int = 0  # successful listings (pods and namespaces)
    changes: int = 0  # views published
    errors: collections.Counter[str] = field(default_factory=collections.Counter)  # config|api|io|bad
    pods: int = 0
    last_error: str = ""


def _labels(meta: Mapping[str, Any]) -> dict[str, str] | None:
    labels = meta.get("labels") or {}
    if not isinstance(labels, Mapping) or len(labels) > MAX_LABELS:
        return None
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        return None
    return dict(labels)


def view_pods(items: list[Any], node: str) -> tuple[list[ViewPod], int]:
    """Pods of ``node`` among ``items`` (a pods list answer), and how many items were unusable."""
    out: list[ViewPod] = []
    bad = 0
    for it in items[:MAX_PODS]:
        meta = it.get("metadata") if isinstance(it, Mapping) else None
        spec = it.get("spec") if isinstance(it, Mapping) else None
        if not isinstance(meta, Mapping) or not isinstance(spec, Mapping):
            bad += 1
            continue
        if spec.get("nodeName") != node:
            continue
        uid, ns, name, labels = meta.get("uid"), meta.get("namespace"), meta.get("name"), _labels(meta)
        if not (isinstance(uid, str) and isinstance(ns, str) and isinstance(name, str)):
            bad += 1
            continue
        if not (uid and ns and name) or labels is None:
            bad += 1
            continue
        out.append(ViewPod(uid, ns, name, tuple(sorted(labels.items()))))
    return out, bad + max(0, len(items) - MAX_PODS)


def view_namespaces(items: list[Any]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for it in items[:MAX_NAMESPACES]:
        meta = it.get("metadata") if isinstance(it, Mapping) else None
        if not isinstance(meta, Mapping) or not isinstance(meta.get("name"), str):
            continue
        labels = _labels(meta)
        if labels is not None:
            out[meta["name"]] = labels
    return out


class PodViewLister:
    """Keeps ``selection.view`` to this node's pods (see the module docstring)."""

    def __init__(
        self,
        selection: NativeSelection,
        *,
        node_name: str,
        kubeconfig: str = "",
        interval: float = INTERVAL_SECONDS,
        connect: Callable[[], Awaitable[KubeClient]] | None = None,
    ) -> None:
        self.selection = selection
        self.node_name = node_name
        self.interval = interval
        self.stats = PodViewStats()
        # On plain asyncio streams, as the ObservationNode writer: no aiohttp (kube/transport.py).
        self._connect = connect or (
            lambda: KubeClient.connect(kubeconfig=kubeconfig, user_agent=USER_AGENT, transport="streams")
        )
        self._namespaces: dict[str, dict[str, str]] | None = None  # last listed (None: not listed)
        self._namespaces_at = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        """List until ``stop`` is set; never raises (but for cancellation)."""
        kube: KubeClient | None = None
        backoff = 1.0
        try:
            while not stop.is_set():
                try:
                    if kube is None:
                        kube = await self._connect()
                    await self.refresh(kube)
                    backoff = 1.0
                    delay = self.interval
                except KubeConfigError as e:
                    self._error("config", str(e))
                    delay, backoff = backoff, min(MAX_BACKOFF, backoff * 2)
                except ApiError as e:
                    self._error("api", f"{e.status} {e.reason}: {e.message}")
                    delay, backoff = backoff, min(MAX_BACKOFF, backoff * 2)
                except Exception as e:  # I/O, timeouts, a bad answer: counted, retried
                    self._error("io", f"{type(e).__name__}: {e}")
                    delay, backoff = backoff, min(MAX_BACKOFF, backoff * 2)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
        finally:
            if kube is not None:
                await kube.close()

    async def refresh(self, kube: KubeClient) -> bool:
        """One listing; True when it changed the view. Raises what the client raises."""
        params = {"fieldSelector": f"spec.nodeName={self.node_name}", "resourceVersion": "0"}
        doc = await kube.request("GET", PODS.path(), verb="list", resource=PODS, params=params)
        items = (doc or {}).get("items") if isinstance(doc, Mapping) else None
        if not isinstance(items, list):
            raise ValueError("the pods list answer has no items list")
        pods, bad = view_pods(items, self.node_name)
        if bad:
            self.stats.errors["bad"] += bad
        view = PodView(pods, await self._namespace_labels(kube))
        self.stats.lists += 1
        self.stats.pods = len(view)
        if self.stats.last_error:
            log.info("pod view: listing works again (%d pods on %s)", len(view), self.node_name)
            self.stats.last_error = ""
        if view.same_as(self.selection.view):
            return False
        if self.selection.view is None:
            log.info("native probes select pods as the policies do: %d pods on node %s",
                     len(view), self.node_name)  # fmt: skip
        self.selection.view = view  # swapped whole: the pipeline thread reads one or the other
        self.stats.changes += 1
        return True

    async def _namespace_labels(self, kube: KubeClient) -> dict[str, dict[str, str]]:
        """Namespaces' labels while a policy selects namespaces by them ({} otherwise)."""
        if not any(p.namespace_selector is not None for p in self.selection.policies):
            self._namespaces = None
            return {}
        now = asyncio.get_running_loop().time()
        if self._namespaces is None or now - self._namespaces_at >= NAMESPACE_INTERVAL_SECONDS:
            doc = await kube.request(
                "GET", NAMESPACES.path(), verb="list", resource=NAMESPACES, params={"resourceVersion": "0"}
            )
            items = (doc or {}).get("items") if isinstance(doc, Mapping) else None
            if not isinstance(items, list):
                raise ValueError("the namespaces list answer has no items list")
            self._namespaces, self._namespaces_at = view_namespaces(items), now
        return self._namespaces

    def _error(self, kind: str, why: str) -> None:
        why = redact(why)[:500]
        self.stats.errors[kind] += 1
        if why != self.stats.last_error:
            if self.selection.view is None:
                log.warning("pod view unavailable (%s): the native probes stay node-wide until it lists", why)
            else:
                log.warning("pod view not refreshed (%s): the last pods listed are kept", why)
        self.stats.last_error = why
