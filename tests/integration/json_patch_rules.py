"""What the API server does with a JSON patch and with a kind it does not serve: one check, two servers.

The operator writes a status as a JSON patch whose first op tests the uid
(controller/status_write.py), and kopf and the finalizer code write JSON patches too. The
emulator (kube_emulator.py) applied such a patch to the whole object, so a /status patch
could change the spec or labels, a main-resource patch could change the status, and an op
that cannot apply was a 500; kube-apiserver v1.20 keeps only the status of a /status patch,
keeps the stored status on a main-resource patch, bumps ``generation`` when the spec changes
and answers 422 Invalid to any op that cannot apply. A kind it does not serve is a bare
"404 page not found" for a list too, where the emulator listed it and then served it.
``check`` asserts the real server's answers; tests/integration/test_kmock_json_patch.py runs it
on the emulator and tests/realkube/test_json_patch_real.py on the real server, so the two agree.
"""

from __future__ import annotations

from typing import Any

from stellaops_runtime.contracts.crds import API_VERSION, POLICY_KIND, TETRAGON_API_VERSION
from stellaops_runtime.kube import resources as r
from stellaops_runtime.kube.client import JSON_PATCH, ApiError, KubeClient

SPEC = {"podSelector": {"matchLabels": {"app": "web"}}, "maxLevel": "ActiveTracing", "syscalls": ["connect"]}
NOT_SERVED = r.Resource(TETRAGON_API_VERSION, "NoSuchKind", "nosuchkinds", True)


async def _patch(kube: KubeClient, name: str, ns: str, ops: list[dict[str, Any]], sub: str | None) -> Any:
    res = r.OBSERVATION_POLICIES
    path = res.path(namespace=ns, name=name, subresource=sub)
    return await kube.request("PATCH", path, verb="patch", resource=res, body=ops, content_type=JSON_PATCH)


async def refusal(call: Any) -> ApiError:
    """The API server's refusal of ``call`` (an AssertionError when it is accepted)."""
    try:
        await call
    except ApiError as e:
        return e
    raise AssertionError("accepted")


async def check(kube: KubeClient, ns: str) -> None:
    """The server's answers, asserted (``ns`` exists and is empty; it is left empty)."""
    res = r.OBSERVATION_POLICIES
    await kube.create(
        res,
        {
            "apiVersion": API_VERSION,
            "kind": POLICY_KIND,
            "metadata": {"name": "p", "namespace": ns},
            "spec": SPEC,
        },
    )
    # A /status patch with ops outside /status: only the status is written.
    ops = [
        {"op": "add", "path": "/spec/syscalls", "value": ["execve"]},
        {"op": "add", "path": "/metadata/labels", "value": {"x": "y"}},
        {"op": "add", "path": "/status", "value": {"observedGeneration": 8}},
    ]
    await _patch(kube, "p", ns, ops, "status")
    live = await kube.get(res, name="p", namespace=ns) or {}
    assert live["spec"]["syscalls"] == ["connect"], "a /status JSON patch changed the spec"
    assert not live["metadata"].get("labels"), "a /status JSON patch changed the labels"
    assert live["metadata"]["generation"] == 1 and live["status"] == {"observedGeneration": 8}
    # A main-resource patch: the status stays as stored; a spec change bumps the generation.
    ops = [
        {"op": "replace", "path": "/status/observedGeneration", "value": 98},
        {"op": "replace", "path": "/spec/syscalls", "value": ["execve"]},
    ]
    await _patch(kube, "p", ns, ops, None)
    live = await kube.get(res, name="p", namespace=ns) or {}
    assert live["status"] == {"observedGeneration": 8}, "a main-resource JSON patch changed the status"
    assert live["spec"]["syscalls"] == ["execve"] and live["metadata"]["generation"] == 2
    # An op that cannot apply is 422 Invalid, as a failed test op is.
    for ops in (
        [{"op": "remove", "path": "/status/noSuchKey"}],
        [{"op": "add", "path": "/status/conditions/7", "value": {}}],
        [{"op": "test", "path": "/metadata/uid", "value": "another"}],
    ):
        e = await refusal(_patch(kube, "p", ns, ops, "status"))
        assert (e.status, e.reason) == (422, "Invalid"), (ops, e)
    # A kind not served: a bare 404 for a list as for an object, and listing it serves nothing.
    lst = NOT_SERVED.path(namespace=ns)
    e = await refusal(kube.request("GET", lst, verb="list", resource=NOT_SERVED))
    assert e.not_found and e.kind_not_served, e
    thing = {
        "apiVersion": TETRAGON_API_VERSION,
        "kind": "NoSuchKind",
        "metadata": {"name": "x", "namespace": ns},
    }
    e = await refusal(kube.create(NOT_SERVED, thing))
    assert e.not_found and e.kind_not_served, e
    await kube.delete(res, name="p", namespace=ns)  # no policy left for a later test's operator
