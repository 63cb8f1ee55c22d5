"""The agent's config document as the operator writes it into the agent ConfigMap, and the paths it names.

The paths are where the agent pod mounts its config, the probe ConfigMap,
the spool and the symbol index cache (``controller/render_agent.py`` mounts
them; its docstring says why each is there). The document carries no store
URL: that comes from the RuntimeObserver's Secret through an environment
variable.
"""

from __future__ import annotations

from typing import Any

from stellaops_runtime.contracts.crd_specs import RuntimeObserverSpec
from stellaops_runtime.controller.runtime_socket import lifecycle_section

AGENT_CONFIG_KEY = "agent.yaml"
CONFIG_DIR = "/etc/stellaops-runtime/agent"
PROBES_DIR = "/etc/stellaops-runtime/probes"
SPOOL_DIR = "/var/lib/stellaops-runtime/spool"
INDEX_CACHE_DIR = "/var/lib/stellaops-runtime/index-cache"  # symbols.indexCacheDir (canonical/indexcache.py)
SPOOL_PATH = f"{SPOOL_DIR}/hot-symbols.spool"
PROBE_CONFIG_FILE = f"{PROBES_DIR}/probes.json"  # render_policy.PROBE_CONFIG_KEY (a test checks)


def agent_config(spec: RuntimeObserverSpec, *, native: bool = False) -> dict[str, Any]:
    """The agent's config document (``stellaops_runtime.contracts.config`` keys); no store URL.

    Written with the seed design's key names (``connectionTimeout``,
    ``aggregationWindowSeconds``, ``useDefaultRedactionPatterns``,
    ``symbolIdOnlyMode``), never the deprecated ones the agent would warn about.
    """
    p = spec.privacy
    return {
        "tetragon": {
            "address": spec.tetragon.address,
            "connectionTimeout": spec.tetragon.timeout_seconds,
            # $(NODE_IP): the pod's env (render_agent), expanded by the agent; "" turns it off
            "metricsUrl": spec.tetragon.metrics_url,
        },
        "hotSymbols": {
            "aggregationWindowSeconds": spec.hot_symbols.window_seconds,
            "minConfidenceThreshold": spec.hot_symbols.min_confidence_threshold,
            "flushIntervalSeconds": spec.hot_symbols.flush_interval_seconds,
        },
        "privacy": {
            "redactArguments": p.redact_arguments,
            "useDefaultRedactionPatterns": p.default_patterns,
            "extraPatterns": list(p.extra_patterns),
            "symbolIdOnlyMode": p.symbol_id_only,
            "allowedNamespaces": list(p.allowed_namespaces),
        },
        "metrics": {"address": "0.0.0.0", "port": spec.metrics.port},
        "observationNode": {"enabled": True},
        # No url here (it comes from the Secret); the spool is on a hostPath (render_agent's docstring).
        "store": {"spoolPath": SPOOL_PATH},
        # Indexed symbol tables survive a restart of the agent pod (a hostPath, see render_agent).
        "symbols": {"indexCacheDir": INDEX_CACHE_DIR},
        # The BCC fallback, only when the pod may load BPF programs (native_fallback).
        # The probe ConfigMap is read on every node: the operator's list of opted-out pods is in it.
        "native": {"enabled": native, "probeConfigFile": PROBE_CONFIG_FILE},
        # The runtime socket render_agent mounts: spec.containerRuntime's, else containerd's or CRI-O's.
        "lifecycle": lifecycle_section(spec),
    }
