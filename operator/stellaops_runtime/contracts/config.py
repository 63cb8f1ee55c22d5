"""The agent's configuration: one validated model with clear errors.

The file is YAML in the shape of the agent ConfigMap (``tetragon.*``,
``hotSymbols.*``, ``privacy.*``, plus ``store.*`` and ``metrics.*``). A whole
Kubernetes ConfigMap is accepted too: its first ``data`` entry that parses as
a mapping is the config, so the manifest a user applies is also a valid file
for ``stella-runtime agent --config``.

Unknown keys are errors (a typo such as ``flushIntervalSecond`` must not fall
back silently to a default). Every error names the key path.

The key names are the seed design's (runtime-agents-architecture.md,
"Configuration"): ``tetragon.connectionTimeout``,
``hotSymbols.aggregationWindowSeconds``, ``privacy.useDefaultRedactionPatterns``,
``privacy.symbolIdOnlyMode``. Their earlier names (``timeoutSeconds``,
``windowSeconds``, ``defaultPatterns``, ``symbolIdOnly``) are deprecated
aliases: accepted with one warning per key, an error when given together with
the new name. Every duration (a key in seconds) takes a number of seconds or a
Go/Kubernetes duration string (``30s``, ``1m``, ``1h30m``, ``500ms``).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Literal

from stellaops_runtime.contracts.config_base import (  # noqa: F401 (re-exported)
    ConfigError,
    KeyProblem,
    Seconds,
    WholeSeconds,
    _check_regexes,
    check_regexes,
    divides_a_day,
    parse_duration,
    shown,
)
from stellaops_runtime.contracts.config_fields import (
    Model,
    duration,
    model,
    section,
    setting,
    strings,
)
from stellaops_runtime.contracts.config_node import (
    LifecycleConfig,
    NativeSourceConfig,
    ShutdownConfig,
)
from stellaops_runtime.contracts.config_text import DocumentError, load_document
from stellaops_runtime.contracts.redact import redact
from stellaops_runtime.regular_file import read_regular

log = logging.getLogger(__name__)

DEFAULT_TETRAGON_ADDRESS = "localhost:54321"
DEFAULT_STORE_URL = "sqlite:///stellaops-runtime.db"

EVENT_TYPES = (
    "PROCESS_EXEC",
    "PROCESS_EXIT",
    "PROCESS_KPROBE",
    "PROCESS_TRACEPOINT",
    "PROCESS_LOADER",
    "PROCESS_UPROBE",
    "PROCESS_LSM",
    "PROCESS_USDT",
)


# Environment variable that overrides ``store.url`` for the agent and the query
# CLI (a DaemonSet sets it from a Secret, so the URL and its password stay out
# of the ConfigMap).
STORE_URL_ENV = "STELLA_RUNTIME_STORE"


def _tetragon_address(v: str) -> str:
    if v.startswith("unix://"):
        if not v[len("unix://") :]:
            raise ValueError(
                "unix:// address needs a socket path, e.g. unix:///var/run/tetragon/tetragon.sock"
            )
        return v
    host, sep, port = v.rpartition(":")
    if not sep or not host or not (port.isdigit() and len(port) <= 5) or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT or unix:///path, got {shown(v)}")
    return v


def _store_url(v: str) -> str:
    if not re.match(r"^(sqlite|postgresql)(\+\w+)?://", v):
        raise ValueError(  # never echo a password
            f"expected an SQLAlchemy URL (sqlite:///... or postgresql+psycopg://...), got {shown(v)}"
        )
    return v


@model
class EventFilter(Model):
    """One Tetragon GetEvents filter: set fields are ANDed, list values ORed."""

    namespaces: list[str] = strings()
    pod_regex: list[str] = strings(key="podRegex", check=check_regexes)
    binary_regex: list[str] = strings(key="binaryRegex", check=check_regexes)
    event_types: list[Literal[EVENT_TYPES]] = strings(key="eventTypes", choices=EVENT_TYPES)  # type: ignore[valid-type]


@model
class TetragonConfig(Model):
    _section = "tetragon"
    _deprecated = {"timeoutSeconds": "connectionTimeout"}

    address: str = setting(DEFAULT_TETRAGON_ADDRESS, check=_tetragon_address)
    # Per connection attempt: how long to wait for the gRPC channel to be ready
    # (then the attempt fails and is retried with backoff); also the deadline of
    # GetHealth and of the ObservationNode writer's Tetragon calls.
    timeout_seconds: Seconds = duration(5.0, key="connectionTimeout", gt=0, le=300)
    reconnect_initial_seconds: Seconds = duration(0.2, key="reconnectInitialSeconds", gt=0)
    reconnect_max_seconds: Seconds = duration(30.0, key="reconnectMaxSeconds", gt=0)
    allow: list[EventFilter] = section(EventFilter, many=True)
    deny: list[EventFilter] = section(EventFilter, many=True)
    # Read Tetragon's own metrics (``tetragon_notify_overflowed_events_total``)
    # to report its drops next to ours; empty to disable.
    metrics_url: str = setting("", key="metricsUrl")
    # Follow Tetragon's JSON export file instead of the gRPC stream.
    export_file: str = setting("", key="exportFile")
    # Read the export file from its first line (replays, tests) instead of its end.
    export_from_start: bool = setting(False, key="exportFromStart")
    # How long such a replay waits for the store to say whether an agent ran on the node before
    # (no watch record); past it the file is read from its end, the hole a gap
    # (sources/export_restart.py). Longer where the store may be slow when agents start.
    export_history_wait_seconds: Seconds = duration(10.0, key="exportHistoryWaitSeconds", gt=0, le=600)
    queue_size: int = setting(50_000, key="queueSize", ge=100, le=10_000_000)


@model
class HotSymbolsConfig(Model):
    _section = "hotSymbols"
    _deprecated = {"windowSeconds": "aggregationWindowSeconds"}

    enabled: bool = setting(True)
    window_seconds: WholeSeconds = duration(
        60, key="aggregationWindowSeconds", whole=True, ge=1, le=86_400, check=divides_a_day
    )
    min_confidence_threshold: float = setting(0.20, key="minConfidenceThreshold", ge=0.0, le=1.0)
    flush_interval_seconds: Seconds = duration(10.0, key="flushIntervalSeconds", gt=0, le=3_600)
    # Distinct keys held in memory before an early flush is forced.
    max_keys: int = setting(200_000, key="maxKeys", ge=100)
    # Rows a failing store may hold for retry before the oldest are dropped (counted).
    max_pending_rows: int = setting(1_000_000, key="maxPendingRows", ge=100)
    max_callers_per_symbol: int = setting(256, key="maxCallersPerSymbol", ge=1)
    # Repeats of an event just seen are counted without processing them again (agent/fastpath.py);
    # the results are the same either way (tests/integration/test_fastpath.py).
    fast_path: bool = setting(True, key="fastPath")


@model
class PrivacyConfig(Model):
    _section = "privacy"
    _deprecated = {"defaultPatterns": "useDefaultRedactionPatterns", "symbolIdOnly": "symbolIdOnlyMode"}

    redact_arguments: bool = setting(True, key="redactArguments")
    default_patterns: bool = setting(True, key="useDefaultRedactionPatterns")
    extra_patterns: list[str] = strings(key="extraPatterns", check=check_regexes)
    symbol_id_only: bool = setting(False, key="symbolIdOnlyMode")
    allowed_namespaces: list[str] = strings(key="allowedNamespaces")
    max_argument_bytes: int = setting(4096, key="maxArgumentBytes", ge=64, le=1 << 20)
    # Environment-variable name globs (``*_DSN``) redacted in addition to the defaults.
    extra_env_name_patterns: list[str] = strings(key="extraEnvNamePatterns")
    # High-entropy token detection (docs/privacy.md gives its measured false-positive rate).
    entropy_detection: bool = setting(False, key="entropyDetection")
    entropy_threshold: float = setting(4.0, key="entropyThreshold", gt=0, le=8)
    entropy_min_length: int = setting(20, key="entropyMinLength", ge=8, le=4096)


@model
class StoreConfig(Model):
    url: str = setting(DEFAULT_STORE_URL, check=_store_url)
    migrate: bool = setting(True)  # run schema migrations at start-up
    # Create a SQLite file's missing parent directories; off: a missing directory
    # is a configuration error (a typo must not create a tree somewhere).
    create_directories: bool = setting(False, key="createDirectories")
    # Timeouts (docs/configuration.md): a hung or black-holed database must never hang the agent.
    connect_timeout: Seconds = duration(10.0, key="connectTimeout", ge=1, le=300)
    # 0: leave the server's own setting (a pooler such as PgBouncer refuses startup options).
    statement_timeout: Seconds = duration(30.0, key="statementTimeout", ge=0, le=3_600)
    # A flush still running after this is abandoned: connections closed, batch retried later.
    flush_timeout: Seconds = duration(30.0, key="flushTimeout", ge=1, le=3_600)
    # PostgreSQL ends a session idle inside a transaction after this (releasing its locks).
    idle_in_transaction_timeout: Seconds = duration(60.0, key="idleInTransactionTimeout", ge=0, le=86_400)
    # TCP keepalive and tcp_user_timeout: a dead peer is noticed within about this long.
    tcp_keepalive: Seconds = duration(30.0, key="tcpKeepalive", ge=1, le=3_600)
    # Rows the store cannot take at shutdown are written here and replayed at the next
    # start ("" = off: they are counted as lost). The DaemonSet mounts a hostPath here.
    spool_path: str = setting("", key="spoolPath")
    # Days of per-window history and observation windows kept (store/partitions.py); the
    # evidence's lowest runtime tier needs more than 30 watched days, hence at least 31.
    retention_days: int = setting(90, key="retentionDays", ge=31, le=3_660)


@model
class MetricsConfig(Model):
    address: str = setting("0.0.0.0")
    port: int = setting(8080, ge=0, le=65535)  # 0 picks a free port


@model
class ObservationNodeConfig(Model):
    """The agent's ObservationNode writer (capabilities, heartbeat, Tetragon policy states)."""

    enabled: bool = setting(False)
    heartbeat_seconds: Seconds = duration(30.0, key="heartbeatSeconds", ge=1, le=3_600)
    # Empty: the pod's service account in a cluster, else $KUBECONFIG or ~/.kube/config.
    kubeconfig: str = setting("")


@model
class SymbolsConfig(Model):
    """The frame canonicalizer: build-ids, symbols, demangling, function IDs (docs/symbolization.md)."""

    enabled: bool = setting(True)
    # Where this node's procfs is; process files (maps, /proc/<pid>/root/...) are read below it.
    proc_root: str = setting("/proc", key="procRoot")
    # A directory holding the host's files ("/" or "/host"), used only when the file
    # there has the build-id the process_loader event reported. Empty: not used.
    host_root: str = setting("", key="hostRoot")
    kallsyms_path: str = setting("/proc/kallsyms", key="kallsymsPath")
    max_binaries: int = setting(64, key="maxBinaries", ge=1, le=100_000)
    max_frames: int = setting(65_536, key="maxFrames", ge=16, le=10_000_000)
    # How long the pipeline waits for a binary being parsed on the parse worker (per batch
    # of events); past it the frame is counted unresolved (parse_pending) and resolves later.
    parse_wait_milliseconds: int = setting(200, key="parseWaitMilliseconds", ge=0, le=60_000)
    # Look for separate debug files (/usr/lib/debug/.build-id/, .gnu_debuglink) in the process's
    # root and in hostRoot, accepted only with the binary's build-id (and the link's CRC-32).
    debug_files: bool = setting(True, key="debugFiles")
    # A debuginfod-style cache directory (<dir>/<build-id>/debuginfo) read as it is; never fetched.
    debuginfod_cache_dir: str = setting("", key="debuginfodCacheDir")
    # Indexed symbol tables kept on disk (canonical/indexcache.py), so a restarted agent loads
    # them instead of indexing the same files again. Empty: not kept.
    index_cache_dir: str = setting("", key="indexCacheDir")


@model
class AttributionConfig(Model):
    """Package attribution: hot-symbol rows get the PURL of the package owning their file/function."""

    enabled: bool = setting(True)
    # SBOMs per image digest: <digest>.json / .cdx.json / .spdx.json (docs/attribution.md).
    sbom_dir: str = setting("", key="sbomDir")
    # Like symbols.hostRoot: a directory holding the host's files, used for a file whose
    # process root is gone or on another node, only when its build-id there is the one
    # the events reported. Answers from it are cached apart from the image's own.
    host_root: str = setting("", key="hostRoot")
    max_images: int = setting(64, key="maxImages", ge=1, le=10_000)
    max_entries: int = setting(20_000, key="maxEntries", ge=100, le=10_000_000)


@model
class WitnessConfig(Model):
    """The witness bridge (witness/bridge.py, docs/witnesses.md): signed witnesses for claims."""

    enabled: bool = setting(False)
    # Claims (image, purl, function, vulnerability?) as YAML or JSON: a file or a mounted ConfigMap.
    claims_file: str = setting("", key="claimsFile")
    # Ed25519 private key (PKCS#8 PEM): a file or a mounted Secret.
    key_file: str = setting("", key="keyFile")
    interval_seconds: Seconds = duration(300.0, key="intervalSeconds", ge=1, le=86_400)
    output_dir: str = setting("", key="outputDir")  # also write each witness here ("" = store only)
    sign_concurrency: int = setting(1, key="signConcurrency", ge=1, le=16)

    def _check(self) -> None:
        if self.enabled and not (self.claims_file and self.key_file):
            raise ValueError("witness.enabled needs witness.claimsFile and witness.keyFile")


@model
class AgentConfig(Model):
    node_name: str = setting("", key="nodeName")
    tetragon: TetragonConfig = section(TetragonConfig)
    hot_symbols: HotSymbolsConfig = section(HotSymbolsConfig, key="hotSymbols")
    privacy: PrivacyConfig = section(PrivacyConfig)
    store: StoreConfig = section(StoreConfig)
    metrics: MetricsConfig = section(MetricsConfig)
    shutdown: ShutdownConfig = section(ShutdownConfig)
    witness: WitnessConfig = section(WitnessConfig)
    symbols: SymbolsConfig = section(SymbolsConfig)
    attribution: AttributionConfig = section(AttributionConfig)
    lifecycle: LifecycleConfig = section(LifecycleConfig)
    observation_node: ObservationNodeConfig = section(ObservationNodeConfig, key="observationNode")
    native: NativeSourceConfig = section(NativeSourceConfig)

    def _check(self) -> None:
        t = self.tetragon
        if t.reconnect_max_seconds < t.reconnect_initial_seconds:
            raise KeyProblem(
                "tetragon", "tetragon.reconnectMaxSeconds must be >= tetragon.reconnectInitialSeconds"
            )
        for i, f in enumerate(t.deny):  # Tetragon ANDs the set fields: none set matches every event
            if not (f.namespaces or f.pod_regex or f.binary_regex or f.event_types):
                raise KeyProblem(
                    "tetragon",
                    f"tetragon.deny.{i} sets no field (tetragon.deny.{i}.namespaces, "
                    f"tetragon.deny.{i}.podRegex, tetragon.deny.{i}.binaryRegex and "
                    f"tetragon.deny.{i}.eventTypes are empty): it would deny every event, the drop "
                    "signals too, and the node would look watched with nothing sent",
                )


def _unwrap_configmap(doc: dict[str, Any]) -> dict[str, Any]:
    if doc.get("kind") != "ConfigMap":
        return doc
    data = doc.get("data") or {}
    if not isinstance(data, dict):
        raise ConfigError(f"ConfigMap data: expected a mapping, got {shown(data)}")
    for name, text in data.items():
        try:
            inner = load_document(text) if isinstance(text, str) else None
        except (DocumentError, ValueError, RecursionError) as e:
            # PyYAML quotes the offending line, which may hold a URL with a password.
            raise ConfigError(redact(f"ConfigMap data key {shown(name)} is not valid YAML: {e}")) from None
        if isinstance(inner, dict):
            return inner
        raise ConfigError(f"ConfigMap data key {shown(name)} is not a YAML mapping")
    raise ConfigError("ConfigMap has no data entry holding the agent config")


def parse_config(doc: Any) -> AgentConfig:
    """Validate a parsed YAML document (or ConfigMap) into an AgentConfig."""
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError(f"configuration must be a YAML mapping, got {type(doc).__name__}")
    doc = _unwrap_configmap(doc)
    # Messages may quote the value (a URL, an address): format_problems redacts them.
    return AgentConfig.model_validate(doc)


MAX_CONFIG_FILE_BYTES = 4 * 1024 * 1024  # a ConfigMap holds at most 1 MiB


def load_config(path: str | Path) -> AgentConfig:
    p = Path(path)
    try:  # a FIFO or device (/dev/zero) is an error, not a start-up that never ends
        data = read_regular(p, MAX_CONFIG_FILE_BYTES)
    except OSError as e:
        raise ConfigError(f"cannot read config file {p}: {e.strerror}") from None
    if len(data) > MAX_CONFIG_FILE_BYTES:
        raise ConfigError(f"config file {p} is larger than {MAX_CONFIG_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {p} is not UTF-8 text (byte {e.start})") from None
    try:
        doc = load_document(text)  # plain JSON (the operator's) without PyYAML: contracts/config_text.py
    except DocumentError as e:
        # PyYAML quotes the offending line, which may hold a URL with a password.
        raise ConfigError(redact(f"config file {p} is not valid YAML: {e}")) from None
    except (ValueError, RecursionError) as e:  # an integer of more than 4300 digits; nesting too deep
        raise ConfigError(f"config file {p} is not valid YAML: {type(e).__name__}: {shown(str(e))}") from None
    return parse_config(doc)
