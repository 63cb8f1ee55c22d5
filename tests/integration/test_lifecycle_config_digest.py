"""One image, one key, with a real containerd: an image imported with no repo digest.

``ctr images import`` of an OCI layout whose only name is a tag (as ``kind load`` does) gives an
image with no repo digest: Kubernetes' CRI names it by its config digest (kubelet's ``imageID``,
Tetragon's image id), the containerd observer by its manifest digest. The observer reads the
config digest from containerd's content store (``Content/Read``, lifecycle/image_config.py) and
the registry keeps it beside the manifest digest, so a Tetragon event naming the config digest is
filed under the manifest digest, where the agent's own probes file the container's calls
(lifecycle/lookup.py ``enrich``; docs/lifecycle.md "Image digest").
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import subprocess
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from stellaops_runtime.contracts.events import (
    ContainerInfo,
    EventKind,
    PodInfo,
    ProcessInfo,
    RuntimeCallEvent,
)
from stellaops_runtime.lifecycle.containerd_client import ContainerdClient
from stellaops_runtime.lifecycle.image_config import MAX_BLOB, host_arch
from stellaops_runtime.lifecycle.lookup import ContainerLookup
from stellaops_runtime.lifecycle.observer import ContainerdObserver
from tests.containerd_harness import Containerd, Image, Watcher, build_image, running
from tests.e2e.harness import cli


@pytest.fixture(scope="module")
def ctd() -> Iterator[Containerd]:
    yield from running()


@pytest.fixture(scope="module")
def image(ctd: Containerd) -> Image:
    img = build_image(ctd.dir, ref="test.local/no-repo-digest:1")
    ctd.import_image(img)
    return img


def config_of(image: Image) -> str:
    """The config digest, read from the imported tar itself (not through the code under test)."""
    with tarfile.open(image.tar) as tar:
        f = tar.extractfile(f"blobs/sha256/{image.manifest_digest.split(':', 1)[1]}")
        assert f is not None
        return str(json.load(f)["config"]["digest"])


def test_a_tetragon_event_by_the_config_digest_is_filed_under_the_manifest_digest(
    ctd: Containerd, image: Image
) -> None:
    config = config_of(image)
    assert config != image.manifest_digest
    assert "@" not in ctd.ctr("images", "ls", "-q")  # no repo digest: the CRI's image id is the config's
    name = f"cfg-{uuid.uuid4().hex[:8]}"
    client = ContainerdClient(ctd.socket, namespace=ctd.namespace, timeout=2.0)
    with Watcher(ContainerdObserver(client)) as w:
        ctd.ctr("run", "-d", image.ref, name)
        w.wait_record(name, "image_config", config, timeout=20, namespace=ctd.namespace)
        rec = w.query(lambda: w.observer.registry.get(ctd.namespace, name).copy())
        assert rec.image_digest == image.manifest_digest
        # What the agent's lookup makes of Tetragon's event naming the config digest (pod known).
        lookup = ContainerLookup([rec], "containerd")
        ev = RuntimeCallEvent(
            EventKind.SYSCALL, 1, "n1", ProcessInfo(binary="/prog"),
            ContainerInfo(id=name, image_id=config, image_digest=config), PodInfo(namespace="ns", name="p"),
        )  # fmt: skip
        assert lookup.enrich(ev) and ev.image_key == image.manifest_digest
        # A digest the content store does not hold pairs nothing (and does not break the observer).
        missing = "sha256:" + "0" * 64
        assert asyncio.run_coroutine_threadsafe(client.image_config(missing), w._loop).result(10) == ""
    # The user's way to pair kubectl's imageID with the key to ask by: both digests in one row.
    r = cli("containers", "--address", ctd.socket, "--namespace", ctd.namespace, "--json")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line)["registry"] for line in r.stdout.splitlines()]
    row = next(x for x in rows if x["container_id"] == name)
    assert (row["image_digest"], row["image_config"]) == (image.manifest_digest, config)
    ctd.ctr("task", "kill", "-s", "KILL", name, check=False)


def blobs_of(image: Image) -> dict[str, bytes]:
    """The image layout's blobs, by their member name (``blobs/sha256/<hex>``)."""
    with tarfile.open(image.tar) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.name.startswith("blobs/")}  # type: ignore[union-attr]


def write_layout(path: Path, blobs: dict[str, bytes], target: bytes, media_type: str, ref: str) -> str:
    """An OCI layout tar at ``path`` naming ``target`` (added to ``blobs``) ``ref``; its digest."""
    digest = "sha256:" + hashlib.sha256(target).hexdigest()
    blobs = {**blobs, f"blobs/sha256/{digest.split(':', 1)[1]}": target}
    top = {"schemaVersion": 2, "manifests": [{
        "mediaType": media_type, "digest": digest, "size": len(target),
        "annotations": {"io.containerd.image.name": ref, "org.opencontainers.image.ref.name": ref},
    }]}  # fmt: skip
    with tarfile.open(path, "w") as t:
        for name, data in {
            "oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
            "index.json": json.dumps(top).encode(),
            **blobs,
        }.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return digest


def as_index(image: Image, directory: Path, ref: str) -> tuple[Path, str]:
    """The image's layout re-tagged with a multi-platform index as its target (as a pull of a
    multi-arch image exported and imported again gives): this node's platform and another one whose
    blobs are absent. Returns the tar and the index digest."""
    other = "s390x" if host_arch() != "s390x" else "amd64"
    blobs = blobs_of(image)
    manifest = blobs[f"blobs/sha256/{image.manifest_digest.split(':', 1)[1]}"]
    index = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + "d" * 64,
             "size": 100, "platform": {"os": "linux", "architecture": other}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": image.manifest_digest,
             "size": len(manifest), "platform": {"os": "linux", "architecture": host_arch()}},
        ],
    }).encode()  # fmt: skip
    path = directory / "multi.tar"
    return path, write_layout(path, blobs, index, "application/vnd.oci.image.index.v1+json", ref)


def test_an_index_target_pairs_the_config_of_this_platforms_manifest(ctd: Containerd, image: Image) -> None:
    ref = "test.local/multi-arch:1"
    tar, index_digest = as_index(image, ctd.dir, ref)
    ctd.ctr("images", "import", str(tar))
    name = f"idx-{uuid.uuid4().hex[:8]}"
    with Watcher(ContainerdObserver(ContainerdClient(ctd.socket, namespace=ctd.namespace, timeout=2.0))) as w:
        ctd.ctr("run", "-d", ref, name)
        w.wait_record(name, "image_config", config_of(image), timeout=20, namespace=ctd.namespace)
        assert w.query(lambda: w.observer.registry.get(ctd.namespace, name).image_digest) == index_digest
        ctd.ctr("task", "kill", "-s", "KILL", name, check=False)


def test_a_manifest_over_the_size_cap_pairs_nothing(ctd: Containerd) -> None:
    """A manifest is a few KiB; one over MAX_BLOB (an image built to make the agent read gigabytes)
    is not read past the cap, and pairs nothing. The same manifest under the cap is read."""
    config = "sha256:" + "c" * 64
    doc = json.dumps({"schemaVersion": 2, "config": {"digest": config}}).encode()

    def ingest(data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        subprocess.run(
            ["ctr", "-a", ctd.address, "-n", ctd.namespace, "content", "ingest",
             "--expected-digest", digest, f"t-{uuid.uuid4().hex[:8]}"],
            input=data, check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        return digest

    async def config_of_blob(digest: str) -> tuple[str, str, int]:
        """Its config digest, read twice, and how many blobs the two reads read."""
        client = ContainerdClient(ctd.socket, namespace=ctd.namespace, timeout=5.0)
        reads, read = [], client.read_blob

        async def counted(d: str) -> bytes | None:
            reads.append(d)
            return await read(d)

        client.read_blob = counted  # type: ignore[method-assign]
        try:
            return await client.image_config(digest), await client.image_config(digest), len(reads)
        finally:
            await client.close()

    # Each read right after its ingest: content no image references is collected at the next GC.
    assert asyncio.run(config_of_blob(ingest(doc))) == (config, config, 1)
    # Over the cap: read once (a blob's size never changes), not at every resync and image event
    # (the observer reads every image of its namespace: lifecycle/image_aliases.py).
    assert asyncio.run(config_of_blob(ingest(doc + b" " * MAX_BLOB))) == ("", "", 1)
    # Absent: asked again (containerd may have it later).
    assert asyncio.run(config_of_blob("sha256:" + "0" * 64)) == ("", "", 2)


def same_config(image: Image, directory: Path, ref: str) -> tuple[Path, str]:
    """The image's layout with another manifest of the same config and layers (an annotation added,
    as another build or compression of one image gives). Returns the tar and the manifest digest."""
    blobs = blobs_of(image)
    doc = json.loads(blobs[f"blobs/sha256/{image.manifest_digest.split(':', 1)[1]}"])
    doc["annotations"] = {"org.opencontainers.image.title": "same config, another manifest"}
    path = directory / f"same-{uuid.uuid4().hex[:8]}.tar"
    manifest = json.dumps(doc).encode()
    return path, write_layout(path, blobs, manifest, "application/vnd.oci.image.manifest.v1+json", ref)


def test_another_manifest_of_the_same_config_is_filed_under_the_containers_digest(
    ctd: Containerd, image: Image
) -> None:
    """Kubernetes' CRI groups images by config: a container's ``imageID`` (kubelet's, so Tetragon's)
    is the first repo digest of ANY image of its config, so a container of ``test.local/...:1``
    (manifest M1) is named by ``registry/app@M2`` once an image of the same config but another manifest
    was pulled. The observer knows every manifest of the config (Images/List at a resync, an image
    event after it), and the lookup files such an event under the container's own digest; a digest
    of another config is kept."""
    manifest = image.manifest_digest
    name = f"two-{uuid.uuid4().hex[:8]}"

    def key_of(w: Watcher, digest: str) -> str:
        rec = w.query(lambda: w.observer.registry.get(ctd.namespace, name).copy())
        ev = RuntimeCallEvent(
            EventKind.SYSCALL, 1, "n1", ProcessInfo(binary="/prog"),
            ContainerInfo(id=name, image_id=digest, image_digest=digest), PodInfo(namespace="ns", name="p"),
        )  # fmt: skip
        ContainerLookup([rec], "containerd").enrich(ev)
        return ev.image_key

    def wait_key(w: Watcher, digest: str, want: str) -> None:
        deadline = time.monotonic() + 20
        while (got := key_of(w, digest)) != want and time.monotonic() < deadline:
            time.sleep(0.05)
        assert got == want, f"an event naming {digest} is filed under {got}, not {want}"

    with Watcher(ContainerdObserver(ContainerdClient(ctd.socket, namespace=ctd.namespace, timeout=2.0))) as w:
        ctd.ctr("run", "-d", image.ref, name)
        w.wait_record(name, "image_config", config_of(image), timeout=20, namespace=ctd.namespace)
        # Imported while the container runs: learnt from containerd's image event.
        tar, later = same_config(image, ctd.dir, f"registry.test/app:{uuid.uuid4().hex[:8]}")
        assert later != manifest
        ctd.ctr("images", "import", str(tar))
        wait_key(w, later, manifest)
        unrelated = "sha256:" + "7" * 64
        assert key_of(w, unrelated) == unrelated
    # A new observer (an agent restart) learns it from the image list.
    tar, listed = same_config(image, ctd.dir, f"registry.test/app:{uuid.uuid4().hex[:8]}")
    ctd.ctr("images", "import", str(tar))
    with Watcher(ContainerdObserver(ContainerdClient(ctd.socket, namespace=ctd.namespace, timeout=2.0))) as w:
        w.wait_record(name, "image_config", config_of(image), timeout=20, namespace=ctd.namespace)
        assert key_of(w, listed) == manifest and key_of(w, later) == manifest
    ctd.ctr("task", "kill", "-s", "KILL", name, check=False)
