"""The agent's node-facing sections: the container lifecycle observer, the BCC fallback, shutdown.

Split from :mod:`stellaops_runtime.contracts.config` (which re-exports them)
to keep that module small; the keys are documented in docs/configuration.md
(``lifecycle``, ``native``, ``shutdown``).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, ClassVar, Literal

from stellaops_runtime.contracts.config_base import Seconds
from stellaops_runtime.contracts.config_fields import (
    Model,
    anything,
    choice,
    duration,
    model,
    setting,
    strings,
)

# containerd's identifier rule for namespaces (its identifiers package): letters and digits in runs
# joined by one of . _ -, at most 76 characters. Anything else containerd refuses, and a CR, LF or
# NUL would have gone raw into the containerd-namespace header of every call.
_NAMESPACE = re.compile(r"[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*")
_NAMESPACE_MAX = 76


def _containerd_namespace(v: str) -> str:
    if len(v) > _NAMESPACE_MAX or not _NAMESPACE.fullmatch(v):
        raise ValueError(
            f"{v!r} is not a containerd namespace: letters and digits, joined by single . _ or -, "
            f"at most {_NAMESPACE_MAX} characters (Kubernetes' CRI plugin uses k8s.io)"
        )
    return v


@model
class LifecycleConfig(Model):
    """The container lifecycle observer inside the agent (docs/lifecycle.md, "In the agent")."""

    _section = "lifecycle"

    # "auto": on when the runtime's socket exists at start-up; true: on (retried while absent); false: off.
    enabled: Literal["auto"] | bool = choice("auto", ("auto",), or_bool=True)
    # "auto": containerd when its socket exists, else Docker's, else the first CRI socket that exists.
    runtime: Literal["auto", "containerd", "docker", "cri"] = choice(
        "auto", ("auto", "containerd", "docker", "cri")
    )
    containerd_address: str = setting("/run/containerd/containerd.sock", key="containerdAddress")
    containerd_namespace: str = setting(
        "k8s.io", key="containerdNamespace", min_length=1, check=_containerd_namespace
    )
    docker_address: str = setting("/var/run/docker.sock", key="dockerAddress")
    # The CRI sockets tried in order (containerd's CRI plugin, CRI-O); the first that exists is watched.
    cri_addresses: list[str] = strings(
        default=("/run/containerd/containerd.sock", "/var/run/crio/crio.sock"),
        key="criAddresses",
        min_length=1,
    )
    # Where the CRI runtime has no GetContainerEvents (containerd 1.6), how often it is relisted.
    cri_relist_seconds: Seconds = duration(2.0, key="criRelistSeconds", gt=0, le=3_600)
    timeout_seconds: Seconds = duration(10.0, key="connectionTimeout", gt=0, le=300)
    reconnect_initial_seconds: Seconds = duration(0.5, key="reconnectInitialSeconds", gt=0)
    reconnect_max_seconds: Seconds = duration(30.0, key="reconnectMaxSeconds", gt=0)
    # A window's lifecycle rows wait this long after it ends, for its late events' posture.
    window_settle_seconds: Seconds = duration(5.0, key="windowSettleSeconds", ge=0, le=3_600)

    def _check(self) -> None:
        if self.reconnect_max_seconds < self.reconnect_initial_seconds:
            raise ValueError("lifecycle.reconnectMaxSeconds must be >= lifecycle.reconnectInitialSeconds")


@model
class ShutdownConfig(Model):
    """SIGTERM: the agent stores (or spools) what it holds and exits within ``graceSeconds``."""

    # Below Kubernetes' default terminationGracePeriodSeconds (30), so the kubelet never kills it.
    grace_seconds: Seconds = duration(20.0, key="graceSeconds", ge=1, le=3_600)


def _probe_settings(cfg: Any) -> dict[str, Any]:
    """A NativeConfig in the camelCase form ``NativeConfig.from_dict`` reads: the fields set, not defaults."""
    out: dict[str, Any] = {}
    default = type(cfg)()
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if v == getattr(default, f.name):
            continue
        if f.name == "uprobes":
            v = [{"binary": t.binary, "symbol": t.symbol} for t in v]
        elif f.name == "usdt":
            v = [
                {"binary": t.binary, "provider": t.provider, "name": t.name}
                | ({} if t.string_args is None else {"stringArgs": list(t.string_args)})
                for t in v
            ]
        elif isinstance(v, tuple):
            v = list(v)
        head, *rest = f.name.split("_")
        out[head + "".join(p.title() for p in rest)] = v
    return out


def _short(message: str) -> str:
    """A probe-settings message that quotes a huge value, without the value (redacting it would take long)."""
    if len(message) <= 4096:
        return message
    head = message.partition(":")[0]
    return (
        f"{head if len(head) <= 100 else 'a probe setting'}: invalid (a message of {len(message)} characters)"
    )


@model
class NativeSourceConfig(Model):
    """The agent's own BCC probes: the fallback source when Tetragon is unreachable (docs/native-probes.md).

    The switching keys are fields here; every other key of the ``native:``
    section is the probes' own configuration (``native/config.py``,
    ``NativeConfig.from_dict``), held in ``probes``.
    """

    _section = "native"
    _switch_keys: ClassVar[dict[str, str]] = {
        "enabled": "enabled",
        "fallbackAfterSeconds": "fallback_after_seconds",
        "probeConfigFile": "probe_config_file",
        "tetragonCheckSeconds": "tetragon_check_seconds",
        "retrySeconds": "retry_seconds",
    }

    # Falls back to BCC when Tetragon is unreachable and BCC works on the node.
    enabled: bool = setting(True)
    # How long Tetragon must be unreachable (or never reached) before the BCC probes start.
    fallback_after_seconds: Seconds = duration(30.0, key="fallbackAfterSeconds", ge=0, le=86_400)
    # The operator's probe ConfigMap payload (probes.json), read each time the probes start.
    probe_config_file: str = setting("", key="probeConfigFile")
    # While BCC runs: how often Tetragon is asked whether it is back.
    tetragon_check_seconds: Seconds = duration(5.0, key="tetragonCheckSeconds", gt=0, le=3_600)
    # A probe load that failed is tried again after this long.
    retry_seconds: Seconds = duration(30.0, key="retrySeconds", gt=0, le=86_400)
    probes: Any = anything()  # NativeConfig (native/config.py), built from the section's other keys

    def _dump_extra(self, out: dict[str, Any]) -> None:
        """Dumped as written: the probe settings beside the switching keys (parse_config reads it back)."""
        if self.probes is not None:
            out.update(_probe_settings(self.probes))

    @classmethod
    def _before(cls, data: dict[Any, Any]) -> dict[Any, Any]:
        """Switching keys stay; the rest is ``NativeConfig.from_dict``'s (its error names the field)."""
        if "probes" in data:
            raise ValueError("probes: unknown key (the probe settings go directly under native:)")
        from stellaops_runtime.native.config import NativeConfig, NativeConfigError

        known = set(cls._switch_keys) | set(cls._switch_keys.values())
        own = {k: v for k, v in data.items() if k in known}
        try:
            own["probes"] = NativeConfig.from_dict({k: v for k, v in data.items() if k not in known})
        except NativeConfigError as e:
            msg = _short(str(e).removeprefix("native."))
            if "unknown field" in msg:
                msg += f"; switching keys: {', '.join(sorted(cls._switch_keys))}"
            raise ValueError(msg) from None
        except (TypeError, AttributeError, OverflowError, RecursionError) as e:
            # a value of the wrong type deep inside (e.g. a mapping for a list)
            raise ValueError(_short(f"invalid probe settings: {e}")) from None
        return own
