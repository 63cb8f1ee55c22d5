"""The agent's configuration: one validated model with clear errors.

The file is YAML in the shape of the agent ConfigMap (``tetragon.*``,
``hotSymbols.*``, ``privacy.*``, plus ``store.*`` and ``metrics.*``). A whole
Kubernetes ConfigMap is accepted too: its first ``data`` entry that parses as
a mapping is the config, so the manifest a user applies is also a valid file
for ``stella-runtime agent --config``.

Unknown keys are errors (a typo such as ``flushIntervalSecond`` must not fall
back silently to a default). Every error names the key path.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

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


class ConfigError(ValueError):
    """The configuration file is unreadable or invalid; the message says where and why."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


def _check_regexes(values: list[str]) -> list[str]:
    for v in values:
        try:
            re.compile(v)
        except re.error as e:
            raise ValueError(f"invalid regular expression {v!r}: {e}") from e
    return values


class EventFilter(_Model):
    """One Tetragon GetEvents filter: set fields are ANDed, list values ORed."""

    namespaces: list[str] = Field(default_factory=list, alias="namespaces")
    pod_regex: list[str] = Field(default_factory=list, alias="podRegex")
    binary_regex: list[str] = Field(default_factory=list, alias="binaryRegex")
    event_types: list[Literal[EVENT_TYPES]] = Field(default_factory=list, alias="eventTypes")  # type: ignore[valid-type]

    _rx = field_validator("pod_regex", "binary_regex")(_check_regexes)


class TetragonConfig(_Model):
    address: str = DEFAULT_TETRAGON_ADDRESS
    timeout_seconds: float = Field(5.0, alias="timeoutSeconds", gt=0, le=300)
    reconnect_initial_seconds: float = Field(0.2, alias="reconnectInitialSeconds", gt=0)
    reconnect_max_seconds: float = Field(30.0, alias="reconnectMaxSeconds", gt=0)
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
            raise ValueError(f"expected HOST:PORT or unix:///path, got {v!r}")
        return v


class HotSymbolsConfig(_Model):
    enabled: bool = True
    window_seconds: int = Field(60, alias="windowSeconds", ge=1, le=86_400)
    min_confidence_threshold: float = Field(0.20, alias="minConfidenceThreshold", ge=0.0, le=1.0)
    flush_interval_seconds: float = Field(10.0, alias="flushIntervalSeconds", gt=0, le=3_600)
    # Distinct keys held in memory before an early flush is forced.
    max_keys: int = Field(200_000, alias="maxKeys", ge=100)
    # Rows a failing store may hold for retry before the oldest are dropped (counted).
    max_pending_rows: int = Field(1_000_000, alias="maxPendingRows", ge=100)
    max_callers_per_symbol: int = Field(256, alias="maxCallersPerSymbol", ge=1)


class PrivacyConfig(_Model):
    redact_arguments: bool = Field(True, alias="redactArguments")
    default_patterns: bool = Field(True, alias="defaultPatterns")
    extra_patterns: list[str] = Field(default_factory=list, alias="extraPatterns")
    symbol_id_only: bool = Field(False, alias="symbolIdOnly")
    allowed_namespaces: list[str] = Field(default_factory=list, alias="allowedNamespaces")
    max_argument_bytes: int = Field(4096, alias="maxArgumentBytes", ge=64, le=1 << 20)

    _rx = field_validator("extra_patterns")(_check_regexes)


class StoreConfig(_Model):
    url: str = DEFAULT_STORE_URL
    migrate: bool = True  # run schema migrations at start-up

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^(sqlite|postgresql)(\+\w+)?://", v):
            raise ValueError(
                f"expected an SQLAlchemy URL (sqlite:///... or postgresql+psycopg://...), got {v!r}"
            )
        return v


class MetricsConfig(_Model):
    address: str = "0.0.0.0"
    port: int = Field(8080, ge=0, le=65535)  # 0 picks a free port


class ObservationNodeConfig(_Model):
    """The agent's ObservationNode writer (capabilities, heartbeat, Tetragon policy states)."""

    enabled: bool = False
    heartbeat_seconds: float = Field(30.0, alias="heartbeatSeconds", ge=1, le=3_600)
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


class AgentConfig(_Model):
    node_name: str = Field("", alias="nodeName")
    tetragon: TetragonConfig = Field(default_factory=TetragonConfig)  # type: ignore[arg-type]
    hot_symbols: HotSymbolsConfig = Field(default_factory=HotSymbolsConfig, alias="hotSymbols")  # type: ignore[arg-type]
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)  # type: ignore[arg-type]
    store: StoreConfig = Field(default_factory=StoreConfig)  # type: ignore[arg-type]
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)  # type: ignore[arg-type]
    symbols: SymbolsConfig = Field(default_factory=SymbolsConfig)  # type: ignore[arg-type]
    attribution: AttributionConfig = Field(default_factory=AttributionConfig)  # type: ignore[arg-type]
    observation_node: ObservationNodeConfig = Field(
        default_factory=ObservationNodeConfig,  # type: ignore[arg-type]
        alias="observationNode",
    )

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
        lines.append(f"  {path}: {msg}")
    return "invalid configuration:\n" + "\n".join(lines)


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
        raise ConfigError(f"config file {p} is not valid YAML: {e}") from None
    return parse_config(doc)
