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


# -- an image id whose "digest" is no digest ------------------------------------------------------


def _line(i: int, image_id: str) -> dict[str, object]:
    cid = f"{i:02x}" * 32
    return {
        "process_exec": {
            "process": {
                "exec_id": f"img-{i}",
                "pid": 300 + i,
                "binary": "/usr/bin/app",
                "arguments": "--port 1",
                "start_time": "2026-11-24T09:00:00Z",
                "pod": {
                    "namespace": "shop",
                    "name": f"p{i}",
                    "container": {
                        "id": f"containerd://{cid}",
                        "name": "c",
                        "image": {"id": image_id, "name": "app:1"},
                    },
                },
            }
        },
        "node_name": "node-1",
        "time": "2026-11-24T09:00:00Z",
    }


# What follows the id's last "@" was the stored key whenever it held a ":", unfiltered: scrub_image
# filters the name and id, never the digest taken from the id.
NOT_DIGESTS = [
    f"registry.example.com/app@sha256:{'ab' * 32}?access_token={SECRET}",
    f"registry.example.com/app@sha256:abc#token={SECRET}",
    f"sha256:{'cd' * 32}?token={SECRET}",
]


def test_an_image_id_whose_digest_part_is_no_digest_is_no_stored_key() -> None:
    import orjson
    from google.protobuf import json_format

    from stellaops_runtime.wire.tetragon import events_pb2

    lines = [_line(i, image_id) for i, image_id in enumerate(NOT_DIGESTS)]
    for fast_path in (False, True):
        for encoding in ("json", "proto"):
            pipeline = Pipeline(
                parse_config({"symbols": {"enabled": False}, "attribution": {"enabled": False}}),
                node_name="node-1",
                fast_path=fast_path,
            )
            if encoding == "json":
                pipeline.process_json([(orjson.dumps(o), T0) for o in lines])
            else:
                msgs = [json_format.ParseDict(o, events_pb2.GetEventsResponse()) for o in lines]
                pipeline.process_proto([(m.SerializeToString(), T0) for m in msgs])
            deltas, windows = pipeline.drain()
            keys = {d.key.image_digest for d in deltas} | {w.image_digest for w in windows}
            assert len({d.key.image_digest for d in deltas}) == len(NOT_DIGESTS), (encoding, keys)
            assert not [k for k in keys if SECRET in k], (encoding, fast_path, keys)
            assert f"registry.example.com/app@sha256:{'ab' * 32}?access_token=[REDACTED]" in keys


def test_a_digest_is_still_the_key() -> None:
    from stellaops_runtime.adapter.common import image_digest

    for image_id, digest in (
        (f"registry.example.com/app@sha256:{'ab' * 32}", f"sha256:{'ab' * 32}"),
        (f"sha512:{'ef' * 64}", f"sha512:{'ef' * 64}"),
        ("docker.io/cilium/starwars@sha256:f92c", "sha256:f92c"),
        ("registry.example.com/app:1", ""),
    ):
        assert image_digest(image_id) == digest
    for image_id in NOT_DIGESTS:
        assert image_digest(image_id) == ""


# Image names whose last path component ends in a credential word: the rules read ``auth:2`` as
# a key and its value, so the tag (and a digest after it) went: every version of
# thomseddon/traefik-forward-auth was one stored key, and a name with a digest lost the digest.
LOOK_ALIKES = [
    "thomseddon/traefik-forward-auth:2",
    "thomseddon/traefik-forward-auth:2.2.0",
    "ghcr.io/org/ext-token:1",
    "org/my-secret:v1.2",
    "org/session-cookie:1",
    "reg.example.com:5000/ns/db-pass:3",
    "org/ldap-pw:1",
    "org/x-signature:1",
    "org/pass:1",
    "reg.io/ns/basic-auth:1.0@sha256:" + "ab" * 32,
    "reg.io/ns/basic-auth@sha256:" + "ab" * 32,
]


def test_an_image_name_ending_in_a_credential_word_keeps_its_tag_and_digest() -> None:
    pf = PrivacyFilter(PrivacyConfig())
    for name in LOOK_ALIKES:
        assert scrub_ref(name, pf) == name
        ev = _event(name, 1)
        assert ev.container is not None
        ev.container.image_id = name
        pf.scrub_image(ev)
        assert (ev.container.image_ref, ev.container.image_id) == (name, name)
    pipeline = Pipeline(
        parse_config({"symbols": {"enabled": False}, "attribution": {"enabled": False}}), node_name="node-1"
    )
    for i, name in enumerate(LOOK_ALIKES[:2]):
        pipeline._finish(_event(name, i))
    deltas, windows = pipeline.drain()
    assert {d.key.image_digest for d in deltas} | {w.image_digest for w in windows} == set(LOOK_ALIKES[:2])


def test_a_credential_in_an_image_name_still_goes_where_the_name_is_a_reference() -> None:
    pf = PrivacyFilter(PrivacyConfig())
    ghp = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
    cases = {
        NAME: "https://ci:[REDACTED]@registry.example.com/shop/app:1",  # not a reference: text
        f"ci:{SECRET}@reg.io/app:1": "ci:[REDACTED]/app:1",
        TOKEN_NAME: "registry.example.com/app:1?access_token=[REDACTED]",
        f"reg.io/app:{ghp}": "reg.io/app:ghp_[REDACTED]",  # a token as the tag
    }
    for name, want in cases.items():
        assert scrub_ref(name, pf) == want, name
        ev = _event(name, 1)
        pf.scrub_image(ev)
        assert ev.container is not None and ev.container.image_ref == want
