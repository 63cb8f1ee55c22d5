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

import yaml
from pydantic import (
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from stellaops_runtime.contracts.config_base import (  # noqa: F401 (re-exported)
    ConfigError,
    Seconds,
    WholeSeconds,
    _check_regexes,
    _Model,
    parse_duration,
)
from stellaops_runtime.contracts.config_node import (
    LifecycleConfig,
    NativeSourceConfig,
    ShutdownConfig,
)
from stellaops_runtime.contracts.redact import redact

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


class EventFilter(_Model):
    """One Tetragon GetEvents filter: set fields are ANDed, list values ORed."""

    namespaces: list[str] = Field(default_factory=list, alias="namespaces")
    pod_regex: list[str] = Field(default_factory=list, alias="podRegex")
    binary_regex: list[str] = Field(default_factory=list, alias="binaryRegex")
    event_types: list[Literal[EVENT_TYPES]] = Field(default_factory=list, alias="eventTypes")  # type: ignore[valid-type]

    _rx = field_validator("pod_regex", "binary_regex")(_check_regexes)


class TetragonConfig(_Model):
    _section = "tetragon"
    _deprecated = {"timeoutSeconds": "connectionTimeout"}

    address: str = DEFAULT_TETRAGON_ADDRESS
    # Per connection attempt: how long to wait for the gRPC channel to be ready
    # (then the attempt fails and is retried with backoff); also the deadline of
    # GetHealth and of the ObservationNode writer's Tetragon calls.
    timeout_seconds: Seconds = Field(5.0, alias="connectionTimeout", gt=0, le=300)
    reconnect_initial_seconds: Seconds = Field(0.2, alias="reconnectInitialSeconds", gt=0)
    reconnect_max_seconds: Seconds = Field(30.0, alias="reconnectMaxSeconds", gt=0)
    allow: list[EventFilter] = Field(default_factory=list)
    deny: list[EventFilter] = Field(default_factory=list)
    # Read Tetragon's own metrics (``tetragon_notify_overflowed_events_total``)
    # to report its drops next to ours; empty to disable.
    metrics_url: str = Field("", alias="metricsUrl")
    # Follow Tetragon's JSON export file instead of the gRPC stream.
    export_file: str = Field("", alias="exportFile")
    # Read the export file from its first line (replays, tests) instead of its end.
    export_from_start: bool = Field(False, alias="exportFromStart")
    queue_size: int = Field(50_000, alias="queueSize", ge=100, le=10_000_000)

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        if v.startswith("unix://"):
            if not v[len("unix://") :]:
                raise ValueError(
                    "unix:// address needs a socket path, e.g. unix:///var/run/tetragon/tetragon.sock"
                )
            return v
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"expected HOST:PORT or unix:///path, got {redact(repr(v))}")
        return v


class HotSymbolsConfig(_Model):
    _section = "hotSymbols"
    _deprecated = {"windowSeconds": "aggregationWindowSeconds"}

    enabled: bool = True
    window_seconds: WholeSeconds = Field(60, alias="aggregationWindowSeconds", ge=1, le=86_400)
    min_confidence_threshold: float = Field(0.20, alias="minConfidenceThreshold", ge=0.0, le=1.0)
    flush_interval_seconds: Seconds = Field(10.0, alias="flushIntervalSeconds", gt=0, le=3_600)
    # Distinct keys held in memory before an early flush is forced.
    max_keys: int = Field(200_000, alias="maxKeys", ge=100)
    # Rows a failing store may hold for retry before the oldest are dropped (counted).
    max_pending_rows: int = Field(1_000_000, alias="maxPendingRows", ge=100)
    max_callers_per_symbol: int = Field(256, alias="maxCallersPerSymbol", ge=1)
    # Repeats of an event just seen are counted without processing them again (agent/fastpath.py);
    # the results are the same either way (tests/integration/test_fastpath.py).
    fast_path: bool = Field(True, alias="fastPath")


class PrivacyConfig(_Model):
    _section = "privacy"
    _deprecated = {"defaultPatterns": "useDefaultRedactionPatterns", "symbolIdOnly": "symbolIdOnlyMode"}

    redact_arguments: bool = Field(True, alias="redactArguments")
    default_patterns: bool = Field(True, alias="useDefaultRedactionPatterns")
    extra_patterns: list[str] = Field(default_factory=list, alias="extraPatterns")
    symbol_id_only: bool = Field(False, alias="symbolIdOnlyMode")
    allowed_namespaces: list[str] = Field(default_factory=list, alias="allowedNamespaces")
    max_argument_bytes: int = Field(4096, alias="maxArgumentBytes", ge=64, le=1 << 20)
    # Environment-variable name globs (``*_DSN``) redacted in addition to the defaults.
    extra_env_name_patterns: list[str] = Field(default_factory=list, alias="extraEnvNamePatterns")
    # High-entropy token detection (docs/privacy.md gives its measured false-positive rate).
    entropy_detection: bool = Field(False, alias="entropyDetection")
    entropy_threshold: float = Field(4.0, alias="entropyThreshold", gt=0, le=8)
    entropy_min_length: int = Field(20, alias="entropyMinLength", ge=8, le=4096)

    _rx = field_validator("extra_patterns")(_check_regexes)


class StoreConfig(_Model):
    url: str = DEFAULT_STORE_URL
    migrate: bool = True  # run schema migrations at start-up
    # Create a SQLite file's missing parent directories; off: a missing directory
    # is a configuration error (a typo must not create a tree somewhere).
    create_directories: bool = Field(False, alias="createDirectories")
    # Timeouts (docs/configuration.md): a hung or black-holed database must never hang the agent.
    connect_timeout: Seconds = Field(10.0, alias="connectTimeout", ge=1, le=300)
    # 0: leave the server's own setting (a pooler such as PgBouncer refuses startup options).
    statement_timeout: Seconds = Field(30.0, alias="statementTimeout", ge=0, le=3_600)
    # A flush still running after this is abandoned: connections closed, batch retried later.
    flush_timeout: Seconds = Field(30.0, alias="flushTimeout", ge=1, le=3_600)
    # PostgreSQL ends a session idle inside a transaction after this (releasing its locks).
    idle_in_transaction_timeout: Seconds = Field(60.0, alias="idleInTransactionTimeout", ge=0, le=86_400)
    # TCP keepalive and tcp_user_timeout: a dead peer is noticed within about this long.
    tcp_keepalive: Seconds = Field(30.0, alias="tcpKeepalive", ge=1, le=3_600)
    # Rows the store cannot take at shutdown are written here and replayed at the next
    # start ("" = off: they are counted as lost). The DaemonSet mounts a hostPath here.
    spool_path: str = Field("", alias="spoolPath")
    # Days of per-window history and observation windows kept (store/partitions.py); the
    # evidence's lowest runtime tier needs more than 30 watched days, hence at least 31.
    retention_days: int = Field(90, alias="retentionDays", ge=31, le=3_660)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^(sqlite|postgresql)(\+\w+)?://", v):
            raise ValueError(  # never echo a password
                "expected an SQLAlchemy URL (sqlite:///... or postgresql+psycopg://...), "
                f"got {redact(repr(v))}"
            )
        return v


class MetricsConfig(_Model):
    address: str = "0.0.0.0"
    port: int = Field(8080, ge=0, le=65535)  # 0 picks a free port


class ObservationNodeConfig(_Model):
    """The agent's ObservationNode writer (capabilities, heartbeat, Tetragon policy states)."""

    enabled: bool = False
    heartbeat_seconds: Seconds = Field(30.0, alias="heartbeatSeconds", ge=1, le=3_600)
    # Empty: the pod's service account in a cluster, else $KUBECONFIG or ~/.kube/config.
    kubeconfig: str = ""


class SymbolsConfig(_Model):
    """The frame canonicalizer: build-ids, symbols, demangling, function IDs (docs/symbolization.md)."""

    enabled: bool = True
    # Where this node's procfs is; process files (maps, /proc/<pid>/root/...) are read below it.
    proc_root: str = Field("/proc", alias="procRoot")
    # A directory holding the host's files ("/" or "/host"), used only when the file
    # there has the build-id the process_loader event reported. Empty: not used.
    host_root: str = Field("", alias="hostRoot")
    kallsyms_path: str = Field("/proc/kallsyms", alias="kallsymsPath")
    max_binaries: int = Field(64, alias="maxBinaries", ge=1, le=100_000)
    max_frames: int = Field(65_536, alias="maxFrames", ge=16, le=10_000_000)
    # How long the pipeline waits for a binary being parsed on the parse worker (per batch
    # of events); past it the frame is counted unresolved (parse_pending) and resolves later.
    parse_wait_milliseconds: int = Field(200, alias="parseWaitMilliseconds", ge=0, le=60_000)
    # Look for separate debug files (/usr/lib/debug/.build-id/, .gnu_debuglink) in the process's
    # root and in hostRoot, accepted only with the binary's build-id (and the link's CRC-32).
    debug_files: bool = Field(True, alias="debugFiles")
    # A debuginfod-style cache directory (<dir>/<build-id>/debuginfo) read as it is; never fetched.
    debuginfod_cache_dir: str = Field("", alias="debuginfodCacheDir")
    # Indexed symbol tables kept on disk (canonical/indexcache.py), so a restarted agent loads
    # them instead of indexing the same files again. Empty: not kept.
    index_cache_dir: str = Field("", alias="indexCacheDir")


class AttributionConfig(_Model):
    """Package attribution: hot-symbol rows get the PURL of the package owning their file/function."""

    enabled: bool = True
    # SBOMs per image digest: <digest>.json / .cdx.json / .spdx.json (docs/attribution.md).
    sbom_dir: str = Field("", alias="sbomDir")
    # Like symbols.hostRoot: a directory holding the host's files, used for a file whose
    # process root is gone or on another node, only when its build-id there is the one
    # the events reported. Answers from it are cached apart from the image's own.
    host_root: str = Field("", alias="hostRoot")
    max_images: int = Field(64, alias="maxImages", ge=1, le=10_000)
    max_entries: int = Field(20_000, alias="maxEntries", ge=100, le=10_000_000)


class WitnessConfig(_Model):
    """The witness bridge (witness/bridge.py, docs/witnesses.md): signed witnesses for claims."""

    enabled: bool = False
    # Claims (image, purl, function, vulnerability?) as YAML or JSON: a file or a mounted ConfigMap.
    claims_file: str = Field("", alias="claimsFile")
    # Ed25519 private key (PKCS#8 PEM): a file or a mounted Secret.
    key_file: str = Field("", alias="keyFile")
    interval_seconds: Seconds = Field(300.0, alias="intervalSeconds", ge=1, le=86_400)
    output_dir: str = Field("", alias="outputDir")  # also write each witness here ("" = store only)
    sign_concurrency: int = Field(1, alias="signConcurrency", ge=1, le=16)

    @model_validator(mode="after")
    def _files(self) -> WitnessConfig:
        if self.enabled and not (self.claims_file and self.key_file):
            raise ValueError("witness.enabled needs witness.claimsFile and witness.keyFile")
        return self


class AgentConfig(_Model):
    node_name: str = Field("", alias="nodeName")
    tetragon: TetragonConfig = Field(default_factory=TetragonConfig)  # type: ignore[arg-type]
    hot_symbols: HotSymbolsConfig = Field(default_factory=HotSymbolsConfig, alias="hotSymbols")  # type: ignore[arg-type]
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)  # type: ignore[arg-type]
    store: StoreConfig = Field(default_factory=StoreConfig)  # type: ignore[arg-type]
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)  # type: ignore[arg-type]
    shutdown: ShutdownConfig = Field(default_factory=ShutdownConfig)  # type: ignore[arg-type]
    witness: WitnessConfig = Field(default_factory=WitnessConfig)  # type: ignore[arg-type]
    symbols: SymbolsConfig = Field(default_factory=SymbolsConfig)  # type: ignore[arg-type]
    attribution: AttributionConfig = Field(default_factory=AttributionConfig)  # type: ignore[arg-type]
    lifecycle: LifecycleConfig = Field(default_factory=LifecycleConfig)  # type: ignore[arg-type]
    observation_node: ObservationNodeConfig = Field(
        default_factory=ObservationNodeConfig,  # type: ignore[arg-type]
        alias="observationNode",
    )
    native: NativeSourceConfig = Field(default_factory=NativeSourceConfig)  # type: ignore[arg-type]

    @model_validator(mode="after")
    def _backoff(self) -> AgentConfig:
        t = self.tetragon
        if t.reconnect_max_seconds < t.reconnect_initial_seconds:
            raise ValueError("tetragon.reconnectMaxSeconds must be >= tetragon.reconnectInitialSeconds")
        return self


def _unwrap_configmap(doc: dict[str, Any]) -> dict[str, Any]:
    if doc.get("kind") != "ConfigMap":
        return doc
    for name, text in (doc.get("data") or {}).items():
        inner = yaml.safe_load(text) if isinstance(text, str) else None
        if isinstance(inner, dict):
            return inner
        raise ConfigError(f"ConfigMap data key {name!r} is not a YAML mapping")
    raise ConfigError("ConfigMap has no data entry holding the agent config")


def _format_error(e: ValidationError) -> str:
    lines = []
    for err in e.errors():
        path = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "value_error":  # our own message, without pydantic's prefix
            msg = msg.removeprefix("Value error, ")
        lines.append(f"  {path}: {msg}")
    # Messages may quote the value (a URL, an address): never its password.
    return redact("invalid configuration:\n" + "\n".join(lines))


def parse_config(doc: Any) -> AgentConfig:
    """Validate a parsed YAML document (or ConfigMap) into an AgentConfig."""
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError(f"configuration must be a YAML mapping, got {type(doc).__name__}")
    doc = _unwrap_configmap(doc)
    try:
        return AgentConfig.model_validate(doc)
    except ValidationError as e:
        raise ConfigError(_format_error(e)) from None


def load_config(path: str | Path) -> AgentConfig:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read config file {p}: {e.strerror}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        # PyYAML quotes the offending line, which may hold a URL with a password.
        raise ConfigError(redact(f"config file {p} is not valid YAML: {e}")) from None
    return parse_config(doc)
