"""One image, one key: an image with no repo digest is not split between its config and manifest digests.

For an image with no repo digest (``ctr import`` without a digest reference, ``kind load``)
Kubernetes' CRI names the image by its image id, the digest of its config: kubelet's
``imageID``, and so Tetragon's ``pod.container.image.id``. The containerd observer names it by
its target in the image store, the manifest digest. Events of one image were then filed under
two keys (Tetragon's under the config digest, the agent's own probes' under the manifest digest
from the registry), and a question by one digest could say "not observed" of a call filed under
the other. The registry now records the config digest beside the manifest digest
(``ContainerRecord.image_config``, lifecycle/image_config.py), and the pipeline files a Tetragon
event that names its container's config digest under the registry's manifest digest
(lifecycle/lookup.py ``enrich``): one key per image on every node with the lifecycle part.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from stellaops_runtime import rpc
from stellaops_runtime.agent.pipeline import Pipeline
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.contracts.events import (
    ContainerInfo,
    EventKind,
    PodInfo,
    ProcessInfo,
    RuntimeCallEvent,
)
from stellaops_runtime.lifecycle.image_aliases import ALIASES_MAX, TARGETS_MAX, ImageConfigs, realias
from stellaops_runtime.lifecycle.image_config import config_digest, pick_manifest
from stellaops_runtime.lifecycle.lookup import ContainerLookup
from stellaops_runtime.lifecycle.registry import ContainerRecord, ContainerRegistry
from tests.unit.test_container_lookup import CID, LABELS

OTHER = "9" * 64
MANIFEST = "sha256:" + "1" * 64
CONFIG = "sha256:" + "c" * 64
ELSE = "sha256:" + "e" * 64


def record(cid: str = CID, cgroup: int = 4242) -> ContainerRecord:
    return ContainerRecord(
        container_id=cid, namespace="k8s.io", image_ref="test.local/cart:1", image_digest=MANIFEST,
        labels=dict(LABELS), status="running", pid=77, cgroup_id=cgroup, image_config=CONFIG,
    )  # fmt: skip


def event(container: ContainerInfo, pod: PodInfo | None = None) -> RuntimeCallEvent:
    return RuntimeCallEvent(EventKind.SYSCALL, 1, "n1", ProcessInfo(binary="/bin/cart"), container, pod)


def test_a_tetragon_event_naming_the_config_digest_is_filed_under_the_manifest_digest() -> None:
    lk = ContainerLookup([record()], "containerd")
    pod = PodInfo(namespace="shop", name="cart-1")
    ev = event(ContainerInfo(id=CID, image_id=CONFIG, image_digest=CONFIG), pod)
    assert lk.enrich(ev)
    assert ev.image_key == MANIFEST and ev.container.image_id == CONFIG  # Tetragon's id is kept as it came
    assert ev.pod is pod and lk.stats.fields["image_digest"] == 1
    # The agent's own probes name the container by its cgroup: the same key.
    assert lk.by_cgroup(4242).image_digest == MANIFEST
    # A digest that is neither (another image, a reference moved) is never rewritten.
    other = event(ContainerInfo(id=CID, image_digest=ELSE), pod)
    assert not lk.enrich(other) and other.image_key == ELSE
    # Nor is the config digest of another container's image.
    stranger = event(ContainerInfo(id=OTHER, image_digest=CONFIG), pod)
    assert not lk.enrich(stranger) and stranger.image_key == CONFIG
    # A record with no config digest (Docker, CRI, an unreadable manifest) rewrites nothing.
    bare = record()
    bare.image_config = ""
    plain = event(ContainerInfo(id=CID, image_digest=CONFIG), pod)
    assert not ContainerLookup([bare], "containerd").enrich(plain) and plain.image_key == CONFIG


def tetragon_line(ts: str) -> bytes:
    """A Tetragon export line (compact, time last, as Tetragon writes it: the fast path keys it)."""
    return json.dumps({
        "process_kprobe": {
            "process": {
                "exec_id": "e1", "pid": 7, "binary": "/bin/cart", "docker": CID[:31],
                "pod": {"namespace": "shop", "name": "cart-1",
                        "container": {"id": f"containerd://{CID}", "name": "cart",
                                      "image": {"id": CONFIG, "name": "test.local/cart:1"}}},
            },
            "function_name": "__x64_sys_write",
        },
        "node_name": "n1", "time": ts,
    }, separators=(",", ":")).encode()  # fmt: skip


def test_the_pipeline_files_tetragon_and_probe_events_of_one_image_under_one_key() -> None:
    """The split as a user met it: Tetragon's event (config digest, pod given) and the registry's
    key for the same container were two keys; the windows of both are now one image's. Repeats
    take the fast path (agent/fastpath.py), which replays the remembered, rewritten event; one
    remembered before the registry knew the container is not replayed once it does."""
    p = Pipeline(
        parse_config({"symbols": {"enabled": False}, "attribution": {"enabled": False}}), node_name="n1"
    )
    assert p.fast_path is not None
    p.container_lookup = ContainerLookup([], "containerd")  # in sync, this container not read yet
    for i in range(4):
        p.process_json([(tetragon_line(f"2026-12-03T09:00:0{i}Z"), time.monotonic_ns())])
    hits = p.fast_path.stats.hits
    assert hits > 0  # remembered under the config digest
    deltas, _ = p.drain()
    assert {(d.key.image_digest, d.invocation_count) for d in deltas} == {(CONFIG, 4)}
    lk = ContainerLookup([record()], "containerd")
    p.container_lookup = lk
    for i in range(6):
        p.process_json([(tetragon_line(f"2026-12-03T09:01:0{i}Z"), time.monotonic_ns())])
    assert p.fast_path.stats.hits > hits + 2  # repeats replayed, all under the manifest digest
    assert lk.stats.fields["image_digest"] == 6  # each one counted as filled, replayed or not
    deltas, windows = p.drain()
    assert {(d.key.image_digest, d.invocation_count) for d in deltas} == {(MANIFEST, 6)}
    assert {w.image_digest for w in windows} == {MANIFEST}


def test_another_manifest_of_the_same_config_is_filed_under_the_containers_digest() -> None:
    """kubelet names a container's image by the first repo digest of any image of its config
    (lifecycle/image_aliases.py): that digest is filed under the registry's, no other is."""
    m2 = "sha256:" + "2" * 64
    rec = record()
    rec.image_aliases = (m2,)
    lk = ContainerLookup([rec], "containerd")
    pod = PodInfo(namespace="shop", name="cart-1")
    ev = event(ContainerInfo(id=CID, image_id=f"registry.test/cart@{m2}", image_digest=m2), pod)
    assert lk.enrich(ev) and ev.image_key == MANIFEST and lk.stats.fields["image_digest"] == 1
    # Learnt after the snapshot was made: the agent swaps in the new one (agent/lifecycle_part.py
    # _refresh replaces a lookup that is not the same_as the old; the swap resets the fast path).
    assert not lk.same_as(ContainerLookup([record()], "containerd"))
    unpodded = event(ContainerInfo(id=CID, image_digest=m2))  # the slow branch: the pod filled too
    assert lk.enrich(unpodded) and unpodded.image_key == MANIFEST and unpodded.pod is not None
    for digest in (ELSE, MANIFEST):  # another config's digest, or the registry's own: kept
        kept = event(ContainerInfo(id=CID, image_digest=digest), pod)
        assert not lk.enrich(kept) and kept.image_key == digest
    stranger = event(ContainerInfo(id=OTHER, image_digest=m2), pod)  # not this container's
    assert not lk.enrich(stranger) and stranger.image_key == m2
    bare = record()
    bare.image_config, bare.image_aliases = "", (m2,)  # no config read: no alias is trusted
    plain = event(ContainerInfo(id=CID, image_digest=m2), pod)
    assert not ContainerLookup([bare], "containerd").enrich(plain) and plain.image_key == m2


class FakeContainerd:
    """Images/List and each target's config, as containerd_client gives them."""

    def __init__(self, configs: dict[str, str]) -> None:
        self.configs = configs
        self.fail = False
        self.reads = 0

    async def image_targets(self) -> list[str]:
        if self.fail:
            raise rpc.RpcError(rpc.StatusCode.UNAVAILABLE, "containerd is restarting")
        return list(self.configs)

    async def image_config(self, target: str) -> str:
        self.reads += 1
        return self.configs.get(target, "")


def test_the_observers_image_configs_follow_the_image_list_and_image_events() -> None:
    m2, m3 = "sha256:" + "2" * 64, "sha256:" + "3" * 64
    ctd = FakeContainerd({MANIFEST: CONFIG, m2: CONFIG, ELSE: "sha256:" + "f" * 64, m3: ""})
    images = ImageConfigs()
    asyncio.run(images.relist(ctd))
    assert images.aliases(CONFIG, MANIFEST) == (m2,) and images.aliases(CONFIG, "") == ()
    assert images.aliases("", MANIFEST) == ()  # no config known: no alias
    ctd.fail = True  # a list that fails keeps what was known
    asyncio.run(images.relist(ctd))
    assert images.aliases(CONFIG, MANIFEST) == (m2,)
    registry = ContainerRegistry()
    registry.put(record())
    ctd.configs[m3] = CONFIG  # an image event names a target of the config
    assert asyncio.run(images.learn(ctd, m3)) and not asyncio.run(images.learn(ctd, m3))
    realias(registry, images)
    got = registry.get("k8s.io", CID)
    assert got is not None and got.image_aliases == (m2, m3)
    # Thousands of manifests of one config (a hostile node's images): a bounded few are aliases.
    many = FakeContainerd({f"sha256:{i:064x}": CONFIG for i in range(TARGETS_MAX + 10)})
    asyncio.run(images.relist(many))
    assert len(images.aliases(CONFIG, MANIFEST)) == ALIASES_MAX and many.reads == TARGETS_MAX


def blob(doc: object) -> bytes:
    return json.dumps(doc).encode()


def test_config_digest_of_a_manifest() -> None:
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": CONFIG, "size": 9},
    }
    assert config_digest(blob(manifest)) == CONFIG
    docker = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
              "config": {"digest": CONFIG.upper().replace("SHA256", "sha256")}}  # fmt: skip
    assert config_digest(blob(docker)) == CONFIG  # lower-cased: the key Tetragon's digest is compared with


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff not json",
        b"[]",
        b'{"config": "sha256:abc"}',
        b'{"config": {"digest": 7}}',
        b'{"config": {"digest": "sha256:short"}}',
        b'{"config": {"digest": "md5:' + b"a" * 32 + b'"}}',
        b'{"config": {"digest": "sha256:' + b"g" * 64 + b'"}}',
        b'{"config": {"digest": "sha256:' + b"a" * 64 + b'\\u0000"}}',
        b'{"manifests": [{"digest": "sha256:' + b"a" * 64 + b'"}]}',  # an index has no config
        b"[" * 100_000,  # deeply nested: no RecursionError escapes
    ],
)
def test_a_manifest_without_a_readable_config_digest_gives_none(raw: bytes) -> None:
    assert config_digest(raw) == ""


def test_the_index_entry_of_this_platform_is_picked() -> None:
    amd = "sha256:" + "a" * 64
    arm = "sha256:" + "b" * 64
    index = {"manifests": [
        {"digest": arm, "platform": {"os": "linux", "architecture": "arm64"}},
        {"digest": amd, "platform": {"os": "linux", "architecture": "amd64"}},
        {"digest": ELSE, "platform": {"os": "unknown", "architecture": "unknown"}},  # an attestation
    ]}  # fmt: skip
    assert pick_manifest(blob(index), "amd64") == amd
    assert pick_manifest(blob(index), "arm64") == arm
    assert pick_manifest(blob(index), "s390x") == ""
    # Two entries for this platform (variants, duplicates): which one the CRI unpacked is not known.
    linux_amd = {"os": "linux", "architecture": "amd64"}
    twice = {"manifests": [{"digest": amd, "platform": linux_amd}, {"digest": ELSE, "platform": linux_amd}]}
    assert pick_manifest(blob(twice), "amd64") == ""
    # One entry with no platform: the only image there is.
    assert pick_manifest(blob({"manifests": [{"digest": amd}]}), "amd64") == amd
    for raw in (b"", b"{}", b'{"manifests": 3}', b'{"manifests": [3]}', b'{"manifests": [{"digest": 3}]}'):
        assert pick_manifest(raw, "amd64") == ""
