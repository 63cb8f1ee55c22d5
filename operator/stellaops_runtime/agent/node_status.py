"""The agent's ObservationNode: what this node can observe, and which Tetragon policies loaded here.

One cluster-scoped ObservationNode per node, named after the node and owned
by the Node (so it goes when the node goes). The agent creates it, then keeps
its status current:

- ``capabilities``: kernel facts detected once at start-up, plus Tetragon's
  reachability and version, re-checked on every poll;
- ``source``: the event source that works *now*, re-decided on every poll
  (``working_source``): ``tetragon`` when Tetragon answers (and, when the
  agent's event stream is known, that stream is connected), or when the
  stream delivers while Tetragon's API does not answer; ``native`` while the
  agent's own BCC probes deliver instead (agent/source_switch.py, Tetragon
  unreachable); ``none`` otherwise. Kernel capabilities alone are no source;
- ``maxPosture`` / ``maxPostureReason``: the highest posture that source
  delivers now: with Tetragon answering, what the kernel's probe kinds allow
  (``posture.NodeCapabilities.capability_ceiling``); with only its event
  stream (API down), ``Passive`` (process events still arrive, policy load
  states cannot be read); with the BCC probes, the posture their capability
  report gives (native/detect.py); with no working source, ``None`` (and
  the reason says why BCC is no fallback, when it was tried). The operator
  never lets a node's pods go above it;
- ``policies``: Tetragon's ListTracingPolicies on this node (state without
  ``TP_STATE_``, error message, sensors, kernel memory): the only per-node
  truth about policy loading, which the operator folds into each policy's
  rollout status; bounded, the rest counted in ``policiesOmitted``
  (``observation_status.bounded_policies``);
- ``purlFunctions`` (with the source switch only): per function a policy
  names by package URL, whether the BCC probes attached it in this node's
  running containers (``attached``, ``not_found``, ``not_in_package``,
  ``unsupported``, ``error``, with a reason and the number of containers;
  agent/source_switch.py, native/purl_wiring.py); empty while Tetragon is the
  source, which cannot trace them. At most 256 entries, the rest counted in
  ``purlFunctionsOmitted``;
- ``conditions``: ``Ready`` (Tetragon reachable or not), ``EventSource`` (False,
  ``NoEventSource``, since the source became ``none``: the operator times its
  policies' ``NoEventSource`` by it) and, for the JSON
  export source with a watch record, ``ExportPositionRecorded``: False
  (``WatchRecordUnwritable``) while the record cannot be written, so the
  source's drains are held and nothing read since is stored (``/readyz``'s
  ``export_position_unrecorded``); and ``ContainersKnown``: False while the
  agent cannot count a container of an image that sent no event (no runtime
  socket, registry not in sync, ``lifecycle.enabled: false``; ``/readyz``'s
  ``lifecycle``);
- ``agentTemplate``: which rollout of its RuntimeObserver's agent pod template
  this agent runs (the pod's ``stellaops.io/agent-template``, through the
  downward API; absent outside such a pod): the operator reads a report of an
  older one as that node's rollout in progress, not as the new agent's state;
- ``heartbeatTime``: refreshed every ``heartbeatSeconds``.

Tetragon's part of a poll (its reachability, ListTracingPolicies told to the policy-load watch, the
look at its socket) is agent/tetragon_poll.py's. Writes are rare on purpose: Tetragon is polled every
third of a heartbeat, but the status is patched only when something other than the heartbeat
changed or the heartbeat is due. Every failure (no credentials, API server
down, Node missing, Tetragon down) is logged once per change of error and
counted; it never stops the agent, and the next poll retries.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stellaops_runtime import __version__
from stellaops_runtime.agent.capabilities import Capabilities, TetragonInfo, detect_kernel, without_ids
from stellaops_runtime.agent.observation_status import (  # noqa: F401 (re-exported)
    NativeState,
    StreamState,
    agent_template,
    build_status,
    export_position,
    native_state,
    purl_state,
    working_source,
)
from stellaops_runtime.agent.policy_load_gaps import PolicyLoadWatch
from stellaops_runtime.agent.status_patch import patchable
from stellaops_runtime.agent.tetragon_poll import TetragonPoll, tetragon_connected
from stellaops_runtime.contracts import crd_names as crds  # the names, not the CRD models (pydantic)
from stellaops_runtime.contracts.config import ObservationNodeConfig, TetragonConfig
from stellaops_runtime.contracts.redact import redact
from stellaops_runtime.controller.conditions import now_rfc3339
from stellaops_runtime.kube.client import ApiError, KubeClient, KubeConfigError
from stellaops_runtime.kube.resources import NODES, OBSERVATION_NODES

log = logging.getLogger(__name__)

MANAGED_BY_AGENT = "stellaops-runtime-agent"


@dataclass(slots=True)
class NodeStatusStats:
    """Counters exported on the agent's /metrics."""

    writes: collections.Counter[str] = field(default_factory=collections.Counter)  # created|changed|heartbeat
    errors: collections.Counter[str] = field(default_factory=collections.Counter)  # kubernetes|tetragon|node
    policies: int = 0  # entries in the last ListTracingPolicies answer
    last_error: str = ""
    last_write: float = 0.0  # monotonic time of the last status write (0: never)


class ObservationNodeWriter:
    """Creates this node's ObservationNode and keeps its status current (see the module docstring)."""

    def __init__(
        self,
        *,
        node_name: str,
        config: ObservationNodeConfig,
        tetragon: TetragonConfig,
        stream: StreamState | None = None,
        root: Path = Path("/"),
        try_bpf: bool = True,
        poll_seconds: float | None = None,
    ) -> None:
        self.node_name = node_name
        self.config = config
        self.tetragon = tetragon
        self.stream = stream  # the agent's event source (its ``connected``), when the agent wires it
        self.record: Any = None  # the node's watch record (agent/watch_record.py), when the agent keeps one
        self.containers: Callable[[], str] | None = None  # agent/lifecycle_part.py lifecycle_state, wired
        self.containers_detail: Callable[[], str | None] | None = None  # agent/registry_detail.py, wired
        # agent/tetragon_losses_status.py tetragon_losses, wired when tetragon.metricsUrl is set
        self.tetragon_losses: Callable[[], tuple[bool, str, str] | None] | None = None
        self.policy_watch: PolicyLoadWatch | None = None  # agent/policy_load_gaps.py, wired
        self.root = root
        self.try_bpf = try_bpf
        self.poll_seconds = poll_seconds or max(
            1.0, min(config.heartbeat_seconds, config.heartbeat_seconds / 3)
        )
        self.stats = NodeStatusStats()
        self.template = agent_template(os.environ)  # which rollout of its pod template (downward API)
        self.capabilities: Capabilities | None = None
        self._kube: KubeClient | None = None
        self._exists = False
        self._written: dict[str, Any] | None = None  # last status written, without heartbeatTime
        self._conditions: list[dict[str, Any]] = []
        self._beat_at = 0.0  # monotonic time of the last heartbeat written
        self._last_logged = ""
        self._poll = TetragonPoll(tetragon)  # agent/tetragon_poll.py: Tetragon, its policies, its socket

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set (or cancelled); never raises for Kubernetes or Tetragon failures."""
        try:
            while not stop.is_set():
                await self.tick()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.poll_seconds)
        finally:
            if self._kube is not None:
                await self._kube.close()
                self._kube = None

    async def tick(self) -> bool:
        """One poll: returns True when the status was written."""
        try:
            return await self._tick()
        except asyncio.CancelledError:
            raise
        except (ApiError, TimeoutError, KubeConfigError, OSError) as e:  # streams' I/O errors are OSErrors
            self._error("kubernetes", f"{type(e).__name__}: {e}")
        except Exception as e:  # a bug must not take the agent down: count it and keep polling
            self._error("internal", f"{type(e).__name__}: {e}")
            log.debug("observation node writer failed", exc_info=True)
        return False

    def _error(self, kind: str, message: str) -> None:
        message = redact(message)  # API server URLs, Tetragon addresses: never their passwords
        self.stats.errors[kind] += 1
        self.stats.last_error = message
        if message != self._last_logged:
            log.warning("ObservationNode %s: %s error: %s", self.node_name, kind, message)
            self._last_logged = message

    async def _client(self) -> KubeClient:
        if self._kube is None:
            # On plain asyncio streams: aiohttp would cost every node's agent ~10 MB (kube/transport.py).
            self._kube = await KubeClient.connect(
                kubeconfig=self.config.kubeconfig,
                user_agent=f"stellaops-runtime-agent/{__version__}",
                transport="streams",
            )
        return self._kube

    async def _ensure_object(self, kube: KubeClient) -> bool:
        """Create the ObservationNode owned by the Node (or fix its owner); False when the Node is missing."""
        node = await kube.get(NODES, name=self.node_name)
        if node is None:
            self._error("node", f"Node {self.node_name!r} not found: cannot own the ObservationNode yet")
            return False
        uid = (node.get("metadata") or {}).get("uid")
        if not uid:
            self._error("node", f"Node {self.node_name!r} has no metadata.uid")
            return False
        owner = {"apiVersion": "v1", "kind": "Node", "name": self.node_name, "uid": uid}
        current = await kube.get(OBSERVATION_NODES, name=self.node_name)
        if current is None:
            body = {
                "apiVersion": crds.API_VERSION,
                "kind": crds.NODE_KIND,
                "metadata": {
                    "name": self.node_name,
                    "labels": {crds.MANAGED_BY[0]: MANAGED_BY_AGENT},
                    "ownerReferences": [owner],
                },
                "spec": {"nodeName": self.node_name},
            }
            try:
                current = await kube.create(OBSERVATION_NODES, body)
                self.stats.writes["created"] += 1
                log.info("created ObservationNode %s", self.node_name)
            except ApiError as e:
                if not e.conflict:
                    raise
                current = await kube.get(OBSERVATION_NODES, name=self.node_name) or {}
        refs = [
            r for r in (current.get("metadata") or {}).get("ownerReferences") or [] if isinstance(r, dict)
        ]
        nodes = {r.get("uid") for r in refs if r.get("kind") == "Node"}
        if uid not in nodes:
            await kube.patch(
                OBSERVATION_NODES, name=self.node_name, patch={"metadata": {"ownerReferences": [owner]}}
            )
            self.stats.writes["owner"] += 1
        self._written = None
        status = current.get("status") or {}
        # The object of a Node deleted and made again under this name (the garbage collector not done
        # yet): its conditions' transitions are the old node's, not carried over (an old Tetragon
        # outage read as this node's: test_observation_node.py).
        replaced = uid not in nodes and bool(nodes)
        self._conditions = [] if replaced else list(status.get("conditions") or [])
        return True

    async def _tick(self) -> bool:
        if self.capabilities is None:
            self.capabilities = await self._detect()
        tetragon, policies = await self._read_tetragon()  # before the API server: the policy watch
        kube = await self._client()
        if not self._exists:
            self._exists = await self._ensure_object(kube)
            if not self._exists:
                return False
        if tetragon.error:  # after the API server's errors: one change of error is logged once
            self._error("tetragon", tetragon.error)
        status = build_status(
            capabilities=self.capabilities,
            tetragon=tetragon,
            policies=policies,
            existing_conditions=self._conditions,
            now=now_rfc3339(),
            stream_connected=tetragon_connected(self.stream),
            native=native_state(self.stream),
            purl_functions=purl_state(self.stream),
            export_position=export_position(self.record),
            containers=self.containers() if self.containers is not None else None,
            containers_detail=self.containers_detail() if self.containers_detail is not None else None,
            agent_template=self.template,
            tetragon_losses=self.tetragon_losses() if self.tetragon_losses is not None else None,
        )
        if self._written is not None and status["maxPosture"] != self._written.get("maxPosture"):
            log.info(
                "ObservationNode %s: source %s, posture ceiling %s (%s)",
                self.node_name, status["source"], status["maxPosture"], status["maxPostureReason"],
            )  # fmt: skip
        now = time.monotonic()
        changed = status != self._written
        due = now - self._beat_at >= self.config.heartbeat_seconds
        if not changed and not due:
            return False
        beat = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        # a merge patch: None takes away an agentTemplate an earlier agent of the node wrote
        patch = {"status": patchable({"agentTemplate": None, **status, "heartbeatTime": beat})}
        # a new ceiling relabels the pods: a policy-load gap until Tetragon can have followed
        relabel = (
            self.policy_watch if status["maxPosture"] != (self._written or {}).get("maxPosture") else None
        )
        if relabel is not None:
            relabel.ceiling_told(now_ns=time.time_ns())
        try:
            await kube.patch(OBSERVATION_NODES, name=self.node_name, patch=patch, subresource="status")
        except ApiError as e:
            if e.not_found:  # deleted under us: re-create on the next poll
                self._exists = False
            raise
        if relabel is not None:
            relabel.reported(now_ns=time.time_ns())
        self._written = status
        self._conditions = status["conditions"]
        self._beat_at = now
        self.stats.last_write = now
        self.stats.writes["changed" if changed else "heartbeat"] += 1
        if self._last_logged and not tetragon.error:
            log.info("ObservationNode %s: status written again", self.node_name)
            self._last_logged = ""
        return True

    async def _read_tetragon(self) -> tuple[TetragonInfo, list[dict[str, Any]] | None]:
        """Tetragon's reachability and ListTracingPolicies (None: not answered), told to the
        policy watch (agent/tetragon_poll.py) whether or not the API server answers."""
        tetragon, policies = await self._poll.read(stream=self.stream, policy_watch=self.policy_watch)
        self.stats.policies = len(policies or ())
        return tetragon, without_ids(policies)  # each load's number: the policy watch's only

    async def _detect(self) -> Capabilities:
        kernel = await asyncio.to_thread(detect_kernel, root=self.root, try_bpf=self.try_bpf)
        notes = tuple(kernel.pop("notes"))
        caps = Capabilities(tetragon=TetragonInfo(address=self.tetragon.address), notes=notes, **kernel)
        log.info(
            "node %s: kernel %s, btf=%s bpf=%s tracepoints=%s uprobes=%s kprobes=%s usdt=%s ringbuf=%s%s",
            self.node_name, caps.kernel_version, caps.btf, caps.bpf_permitted, caps.tracepoints, caps.uprobes,
            caps.kprobes, caps.usdt, caps.ring_buffer, f" ({'; '.join(notes)})" if notes else "",
        )  # fmt: skip
        return caps
