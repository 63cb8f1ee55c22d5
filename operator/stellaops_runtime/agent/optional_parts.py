"""The agent's parts that only some configs use, each imported only when its config turns it on.

Split from :mod:`stellaops_runtime.agent.runner` for issue 13 (an agent that
costs little on every node): a module imported is memory held for the life of
the process, so the runner imports none of these at module level.

- the event source: Tetragon's gRPC stream (stellaops_runtime.rpc) or its JSON export file; with
  ``native.enabled`` (the default) the gRPC stream runs inside the source switch
  (agent/source_switch.py), which imports the BCC probes only when it falls back; so it
  does without them while a probe loads file of the last agent is there
  (``<store.spoolPath>.probe-loads``: its first stream skips the calls that agent's
  probes counted; agent/source_switch_loads.py), and never falls back;
- Tetragon's metrics poller (aiohttp), with ``tetragon.metricsUrl``;
- the witness bridge (cryptography), with ``witness.enabled``;
- the ObservationNode writer (the Kubernetes client), with ``observationNode.enabled``;
- the pod view that selects native probe events by pod (agent/pod_view.py), with the source
  switch, ``native.probeConfigFile`` and ``observationNode.enabled`` (an agent that talks to the API).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from stellaops_runtime.contracts.config import AgentConfig, ConfigError
from stellaops_runtime.sources.queue import EventQueue

if TYPE_CHECKING:
    from stellaops_runtime.agent.node_status import ObservationNodeWriter
    from stellaops_runtime.agent.pipeline import Pipeline
    from stellaops_runtime.agent.pod_view import PodViewLister
    from stellaops_runtime.agent.source_switch import SourceSwitch
    from stellaops_runtime.sources.tetragon_export import TetragonExportSource
    from stellaops_runtime.sources.tetragon_grpc import TetragonGrpcSource
    from stellaops_runtime.sources.tetragon_metrics import TetragonMetricsPoller
    from stellaops_runtime.witness.bridge import WitnessBridge


def make_source(
    config: AgentConfig,
    queue: EventQueue,
    pipeline: Pipeline,
    in_pipeline: Callable[..., Awaitable[Any]] | None = None,
) -> tuple[
    TetragonExportSource | TetragonGrpcSource | SourceSwitch, Callable[[list[tuple[bytes, int]]], None]
]:
    """The configured source, and the pipeline method its payloads go to.

    ``in_pipeline`` runs a call on the pipeline thread (the source switch marks its gaps through it).
    """
    t = config.tetragon
    if t.export_file:
        from stellaops_runtime.sources.tetragon_export import TetragonExportSource

        source = TetragonExportSource(t.export_file, queue=queue, from_start=t.export_from_start,
                                      history_wait=t.export_history_wait_seconds)  # fmt: skip
        source.keep_lock = True  # released after the last flush (agent/runner.py)
        return source, pipeline.process_json
    if in_pipeline is not None and (config.native.enabled or _probe_loads_left(config)):
        from stellaops_runtime.agent.source_switch import SourceSwitch

        switch = SourceSwitch(config, queue=queue, pipeline=pipeline, in_pipeline=in_pipeline)
        return switch, switch.process
    from stellaops_runtime.sources.tetragon_grpc import TetragonGrpcSource

    return TetragonGrpcSource(t, queue=queue), pipeline.process_proto


def _probe_loads_left(config: AgentConfig) -> bool:
    """The last agent ran the native probes and left their loads (an agent restarted with
    ``native.enabled: false``): Tetragon's cache may send calls they counted."""
    import os

    return bool(config.store.spool_path) and os.path.lexists(config.store.spool_path + ".probe-loads")


def make_poller(config: AgentConfig) -> TetragonMetricsPoller | None:
    """Tetragon's metrics poller, when ``tetragon.metricsUrl`` is set (the operator's ``$(NODE_IP)``
    in it expanded from the environment; no other name)."""
    url = config.tetragon.metrics_url
    if not url:
        return None
    # Its page parser is prometheus-client's: without its package __init__ (agent/prometheus_core.py,
    # imported first), or every node's agent would load the library's exposition server (~4 MB).
    from stellaops_runtime.agent import prometheus_core  # noqa: F401
    from stellaops_runtime.sources.tetragon_metrics import TetragonMetricsPoller, expand_url

    return TetragonMetricsPoller(expand_url(url))


def make_witness(config: AgentConfig) -> WitnessBridge | None:
    """The witness bridge (witness/bridge.py), when enabled: claims touched by drained counts get
    signed witnesses. A bad claims or key file is a ConfigError (the CLI reports it and exits 2)."""
    w = config.witness
    if not w.enabled:
        return None
    from stellaops_runtime.witness.bridge import ClaimsError, WitnessBridge, load_claims
    from stellaops_runtime.witness.keys import KeyError_

    try:
        return WitnessBridge(
            load_claims(w.claims_file), key_file=w.key_file, output_dir=w.output_dir,
            concurrency=w.sign_concurrency,
        )  # fmt: skip
    except (ClaimsError, KeyError_) as e:
        raise ConfigError(f"witness: {e}") from None


def make_node_status(
    config: AgentConfig, *, node_name: str, stream: Any = None
) -> ObservationNodeWriter | None:
    """The ObservationNode writer (capabilities, heartbeat, Tetragon policy states), when enabled.

    ``stream`` is the agent's source's stats (``connected``; from the source switch also
    ``active`` and the native probes' posture), so the status names the source that works.
    """
    if not config.observation_node.enabled:
        return None
    from stellaops_runtime.agent.node_status import ObservationNodeWriter

    return ObservationNodeWriter(
        node_name=node_name, config=config.observation_node, tetragon=config.tetragon, stream=stream
    )


def make_pod_view(config: AgentConfig, pipeline: Pipeline, *, node_name: str) -> PodViewLister | None:
    """The lister of this node's pods for the native pod selection, when the agent can use one.

    Only with the source switch (``native.enabled``), the probe ConfigMap
    (``native.probeConfigFile``: the policies to select by) and
    ``observationNode.enabled`` (the agent is configured to reach the Kubernetes
    API, with the same credentials). Otherwise the native probes stay node-wide.
    """
    sel = pipeline.native_selection
    if sel is None or not config.observation_node.enabled:
        return None
    if config.tetragon.export_file:  # the export source never runs the native probes
        return None
    from stellaops_runtime.agent.pod_view import PodViewLister

    return PodViewLister(sel, node_name=node_name, kubeconfig=config.observation_node.kubeconfig)
