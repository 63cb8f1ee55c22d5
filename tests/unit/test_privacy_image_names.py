"""An image name holding a credential never becomes a stored image key (PrivacyFilter.scrub_image).

containerd accepts any image name (``ctr run https://ci:SECRET@reg/app:1``), and
Tetragon reports it with every event of the container. With no digest and no id
the name is the hot-symbol index's key (``RuntimeCallEvent.image_key``, inlined
in hotsymbols/aggregate.py) and the image of the windows and gaps noted before
the privacy filter ran: ``SECRET`` was stored in hot-symbol rows, observation
windows and opted-out gaps. The pipeline now filters the name and id first,
as the lifecycle observer does (lifecycle/scrub.py).
"""

from __future__ import annotations

from stellaops_runtime.agent.pipeline import Pipeline
from stellaops_runtime.contracts.config import PrivacyConfig, parse_config
from stellaops_runtime.contracts.events import (
    ContainerInfo,
    EventKind,
    PodInfo,
    ProcessInfo,
    RuntimeCallEvent,
)
from stellaops_runtime.lifecycle.scrub import scrub_ref
from stellaops_runtime.privacy import PrivacyFilter

SECRET = "S3cretReg-7f1"
NAME = f"https://ci:{SECRET}@registry.example.com/shop/app:1"
TOKEN_NAME = f"registry.example.com/app:1?access_token={SECRET}"
T0 = 1_795_510_800 * 10**9


def _event(image_ref: str, i: int, *, annotations: dict[str, str] | None = None) -> RuntimeCallEvent:
    return RuntimeCallEvent(
        kind=EventKind.EXEC,
        timestamp_ns=T0 + i,
        node_name="node-1",
        process=ProcessInfo(pid=100 + i, binary="/usr/bin/app", exec_id=f"e{i}"),
        container=ContainerInfo(id=f"{i:x}" * 12, image_ref=image_ref),
        pod=PodInfo(namespace="shop", name=f"p{i}", annotations=annotations or {}),
    )


def test_an_image_name_with_a_credential_is_no_stored_key() -> None:
    pipeline = Pipeline(
        parse_config({"symbols": {"enabled": False}, "attribution": {"enabled": False}}), node_name="node-1"
    )
    for i in range(4):
        pipeline._finish(_event(NAME if i % 2 else TOKEN_NAME, i))
    pipeline._finish(_event(NAME, 9, annotations={"stellaops.io/observe-level": "None"}))  # opted out
    deltas, windows = pipeline.drain()
    keys = {d.key.image_digest for d in deltas} | {w.image_digest for w in windows}
    assert keys, "nothing was counted"
    assert not [k for k in keys if SECRET in k], keys
    assert "https://ci:[REDACTED]@registry.example.com/shop/app:1" in keys
    assert "registry.example.com/app:1?access_token=[REDACTED]" in keys


def test_the_event_key_is_the_name_the_lifecycle_observer_keeps() -> None:
    pf = PrivacyFilter(PrivacyConfig())
    for name in (NAME, TOKEN_NAME, "docker.io/library/nginx:1.25", "reg/app@sha256:" + "ab" * 32):
        ev = _event(name, 1)
        assert ev.container is not None
        ev.container.image_id = name
        pf.scrub_image(ev)
        assert ev.container.image_ref == scrub_ref(name, pf) == ev.container.image_id
        assert SECRET not in ev.image_key
    ev = _event("", 1)
    assert ev.container is not None
    ev.container.image_id = "sha256:" + "cd" * 32
    pf.scrub_image(ev)
    assert ev.image_key == "sha256:" + "cd" * 32


def test_with_every_rule_off_the_name_is_kept() -> None:
    pf = PrivacyFilter(PrivacyConfig(redact_arguments=False, default_patterns=False))
    ev = _event(NAME, 1)
    pf.scrub_image(ev)
    assert ev.container is not None and ev.container.image_ref == NAME
