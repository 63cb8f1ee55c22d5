"""An image tag moved to another image must not change the digest of containers created before.

containerd names a container's image by reference (``test.local/app:1``) and
the observer asks Images/Get for that name's target digest. Once the tag is
pulled (or imported) again and points at a new image, the running container
still runs the old one: its events must keep being filed under the old
digest, or under no digest when the old one cannot be known (an observer
that starts only after the tag moved), never under the new image's.

Real containerd; two images built in the test under one reference, with the
manifest digests computed here as the truth.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from stellaops_runtime.contracts.lifecycle import LifecycleEventType as T
from stellaops_runtime.lifecycle.containerd_client import ContainerdClient
from stellaops_runtime.lifecycle.observer import ContainerdObserver
from tests.containerd_harness import Containerd, Image, Watcher, build_image, eventually, running

REF = "test.local/retag:1"


@pytest.fixture(scope="module")
def ctd() -> Iterator[Containerd]:
    yield from running()


@pytest.fixture(scope="module")
def images(ctd: Containerd) -> tuple[Image, Image]:
    out = []
    for n in (1, 2):
        d = ctd.dir / f"v{n}"
        d.mkdir()
        out.append(build_image(d, ref=REF, env=(f"VERSION={n}",)))
    assert out[0].manifest_digest != out[1].manifest_digest
    return out[0], out[1]


def observer(ctd: Containerd) -> ContainerdObserver:
    return ContainerdObserver(ContainerdClient(ctd.socket, namespace=ctd.namespace, timeout=5.0))


def _name() -> str:
    return f"c-{uuid.uuid4().hex[:8]}"


def test_a_watched_container_keeps_its_digest_when_the_tag_moves(
    ctd: Containerd, images: tuple[Image, Image]
) -> None:
    v1, v2 = images
    old, new = _name(), _name()
    ctd.import_image(v1)
    try:
        with Watcher(observer(ctd)) as w:
            ctd.ctr("run", "-d", REF, old)
            w.wait_record(old, "status", "running", namespace=ctd.namespace)
            ctd.import_image(v2)  # the tag now names v2
            ctd.ctr("containers", "label", old, "touched=yes")  # /containers/update: fetched again

            def touched() -> object:
                rec = w.observer.registry.get(ctd.namespace, old)
                return rec.labels.get("touched") if rec is not None else None

            assert eventually(lambda: w.query(touched) == "yes"), "the label update was not seen"
            ctd.ctr("run", "-d", REF, new)
            w.wait_for(lambda ev: ev.container_id == new and ev.event_type == T.START)
            get = w.observer.registry.get
            assert w.query(lambda: get(ctd.namespace, old).image_digest) == v1.manifest_digest
            assert w.query(lambda: get(ctd.namespace, new).image_digest) == v2.manifest_digest
    finally:
        ctd.remove_all()


def test_an_observer_started_after_the_tag_moved_never_names_the_new_image(
    ctd: Containerd, images: tuple[Image, Image]
) -> None:
    v1, v2 = images
    old, new = _name(), _name()
    ctd.import_image(v1)
    ctd.ctr("run", "-d", REF, old)
    ctd.import_image(v2)
    ctd.ctr("run", "-d", REF, new)
    try:
        obs = observer(ctd)
        with Watcher(obs) as w:
            get = obs.registry.get
            assert w.query(lambda: get(ctd.namespace, old).image_digest) in ("", v1.manifest_digest)
            assert w.query(lambda: get(ctd.namespace, new).image_digest) == v2.manifest_digest
            assert obs.stats.digest_unverified >= 1
    finally:
        ctd.remove_all()
