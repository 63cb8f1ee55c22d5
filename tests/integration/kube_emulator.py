"""The API server the operator tests run against: kmock's emulator with the API server's bookkeeping.

kmock's KubernetesEmulator stores objects and streams watch events, but it
assigns no ``uid``, ``resourceVersion`` or ``generation`` and knows nothing
of the status subresource. ``ApiServer`` adds what the operator relies on,
the way a real API server does it:

- on create: ``uid``, ``creationTimestamp``, ``resourceVersion`` and ``generation: 1``;
- on every write: a new ``resourceVersion``; ``generation`` + 1 when ``spec`` changes;
- a merge patch naming another ``metadata.uid`` than the stored object's is 422 Invalid
  (the API server's uid precondition), except on a custom resource's ``/status``, where the real
  server copies the stored metadata over the patch and applies it
  (tests/realkube/test_status_write_uid_real.py);
- a 404 says what the real server's does: a Status naming the object (``details.name``) when
  the object is missing, a bare "404 page not found" when the kind is not served, for a list
  or a watch too (tests/realkube/test_not_found_real.py, test_json_patch_real.py);
- a delete whose ``preconditions.uid`` names another object is 409 Conflict, "the UID in the
  precondition (...) does not match the UID in record (...)";
- a delete of an object a finalizer holds bumps its ``generation`` as it marks it deleted
  (deletion_rules.py, checked on both servers);
- a JSON patch whose ``test`` op fails (kopf's optimistic concurrency on
  ``resourceVersion``, the status write's uid), or with an op that cannot apply, is 422
  Invalid, not a 500; on a resource with a ``status`` subresource a JSON patch of ``/status``
  writes the status only, one of the main resource keeps the stored status and bumps
  ``generation`` when it changes the spec (json_patch_rules.py, checked on both servers);
- for resources declared with a ``status`` subresource: a create and a PATCH
  of the main resource drop ``status``, a PATCH of ``/status`` keeps only ``status``
  (so code that writes status the wrong way fails here as it would there);
- its watch streams are numbered and counted (watch_accounting.py), so the harness
  can tell when kopf has read everything it was sent.

``kubeharness`` serves it over HTTP (``Cluster``) and runs the operator against it.
"""

from __future__ import annotations

import copy
import datetime
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp.web
import jsonpatch
import jsonpointer
import kmock
from kmock._internal import parsing as _kmock_parsing

from stellaops_runtime.kube import resources as r
from tests.integration.watch_accounting import WatchAccounting

VERBS = {"list", "watch", "get", "create", "patch", "update", "delete"}
WITH_STATUS = (
    r.RUNTIME_OBSERVERS,
    r.OBSERVATION_POLICIES,
    r.CLUSTER_OBSERVATION_POLICIES,
    r.OBSERVATION_NODES,
    r.DAEMONSETS,
    r.PODS,
    r.NODES,
)
DECLARED = (
    r.NAMESPACES,
    r.EVENTS,
    r.CRDS,
    r.NODES,
    r.PODS,
    r.CONFIGMAPS,
    r.SERVICES,
    r.SERVICE_ACCOUNTS,
    r.DAEMONSETS,
    r.CLUSTER_ROLES,
    r.CLUSTER_ROLE_BINDINGS,
    r.RUNTIME_OBSERVERS,
    r.OBSERVATION_POLICIES,
    r.CLUSTER_OBSERVATION_POLICIES,
    r.OBSERVATION_NODES,
    r.TRACING_POLICIES,
    r.TRACING_POLICIES_NAMESPACED,
    r.CLUSTER_KOPF_PEERINGS,
    r.KOPF_PEERINGS,
)


# Every action on a kind: the real server answers a list or a watch of a kind it does not serve with
# the same bare 404 (tests/realkube/test_json_patch_real.py); kmock listed it and served it from then on.
_KIND_ACTIONS = (
    kmock.action.CREATE,
    kmock.action.UPDATE,
    kmock.action.DELETE,
    kmock.action.FETCH,
    kmock.action.LIST,
    kmock.action.WATCH,
)
_kmock_parse_path = _kmock_parsing.parse_path


def _parse_path(path: str) -> Any:
    """kmock 0.8 reads ``/api/v1/namespaces[/NAME]`` as the prefix of a namespaced path and fails
    (listing or creating Namespace objects is a 500); route those paths to the Namespace resource."""
    parts = path.strip("/").split("/")
    if len(parts) >= 3 and parts[0] == "api" and parts[2] == "namespaces":
        rest = parts[3:]
        if len(rest) <= 1 or (len(rest) == 2 and rest[1] in ("status", "finalize")):
            return _kmock_parsing.ParsedPath(
                "",
                parts[1],
                "namespaces",
                None,
                rest[0] if rest else None,
                rest[1] if len(rest) == 2 else None,
            )
    return _kmock_parse_path(path)


_kmock_parsing.parse_path = _parse_path


def _key(res: r.Resource) -> str:
    return f"{res.api_version}/{res.plural}"


class ApiServer(WatchAccounting, kmock.KubernetesEmulator):
    """kmock's emulator plus uid/resourceVersion/generation, status-subresource rules and
    watch accounting (watch_accounting.py: what each kopf watch stream was sent)."""

    def __attrs_post_init__(self) -> None:
        self._watch_streams = {}
        super().__attrs_post_init__()
        self._rv = 1000
        self.log: list[Any] = []  # every request, in arrival order
        self.status: dict[int, int] = {}  # id(request) -> HTTP status of the response
        self._inflight: set[int] = set()
        # Optional authorizer: a request it returns False for is 403 Forbidden (RBAC tests).
        self.authorize: Callable[[Any], bool] | None = None
        # Optional throttle: a request it returns a Retry-After value for (a string, sent as is;
        # "" for none) is 429 TooManyRequests, as API Priority and Fairness answers.
        self.throttle: Callable[[Any], str | None] | None = None

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _served(self, res: Any) -> bool:
        return any(declared == res for declared in self._get_resources())

    def _stored(self, request: Any) -> Any:
        try:
            return self.objects[request.resource, request.namespace, request.name]
        except KeyError:
            return None

    async def _handle(self, request: Any) -> Any:
        # kmock matches each request against its reactions by scanning its whole request log
        # (quadratic over a long run): keep the log here and only in-flight requests there.
        self.log.append(request)
        self._inflight.add(id(request))
        self._requests[:] = [q for q in self._requests if id(q) in self._inflight]
        status = 500
        try:
            response = await self._handle_one(request)
            status = response.status
            return response
        except kmock.KubernetesError as e:
            status = e.status
            raise
        finally:
            self._inflight.discard(id(request))
            self.status[id(request)] = status

    async def _handle_one(self, request: Any) -> Any:
        if self.throttle is not None and (retry_after := self.throttle(request)) is not None:
            return aiohttp.web.json_response(
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "message": "Too many requests, please try again later.",
                    "reason": "TooManyRequests",
                    "code": 429,
                },
                status=429,
                headers={"Retry-After": retry_after} if retry_after else None,
            )
        if self.authorize is not None and not self.authorize(request):
            raise kmock.KubernetesError(
                status=403,
                reason="Forbidden",
                message=f"{request.method.value} {request.url.path} is forbidden",
            )
        res = request.resource
        if res is not None and res.plural and request.action in _KIND_ACTIONS and not self._served(res):
            # a kind not served (its CRD not installed): the real server's bare answer, no Status
            return aiohttp.web.Response(status=404, text="404 page not found\n")
        if res is not None:
            info = self.resources.get(res, None)
            has_status = info is not None and "status" in getattr(info, "subresources", ())
            data = request.data
            if request.action == kmock.action.CREATE and isinstance(data, dict):
                if has_status:
                    data.pop("status", None)
                meta = data.setdefault("metadata", {})
                meta.setdefault("uid", str(uuid.uuid4()))
                meta.setdefault(
                    "creationTimestamp", datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                )
                meta["resourceVersion"] = self._next_rv()
                meta.setdefault("generation", 1)
            elif request.action == kmock.action.UPDATE and isinstance(data, dict):
                if not (request.subresource == "status" and res.group not in ("", "apps")):
                    _uid_conflict(data, self._stored(request))  # a custom resource's /status drops it
                if has_status and request.subresource == "status":
                    for k in list(data):
                        if k != "status":
                            del data[k]
                elif has_status:
                    data.pop("status", None)
                meta = data.setdefault("metadata", {})
                meta["resourceVersion"] = self._next_rv()
                stored = self._stored(request)
                if "spec" in data and request.subresource is None and stored is not None:
                    old = dict(stored).get("metadata", {}).get("generation") or 0
                    new_spec = _merged(dict(stored).get("spec"), data["spec"])
                    if new_spec != dict(stored).get("spec"):
                        meta["generation"] = int(old) + 1
            elif request.action == kmock.action.DELETE:
                if isinstance(data, dict):
                    _delete_precondition(data, self._stored(request), res, str(request.name))
                _mark_deleting(self._stored(request))
            elif request.action == kmock.action.UPDATE and isinstance(data, list):
                stored = self._stored(request)
                if stored is not None and not getattr(stored, "deleted", False):
                    data[:] = _json_patch_as_served(data, stored.raw, has_status, request.subresource)
                data.append({"op": "add", "path": "/metadata/resourceVersion", "value": self._next_rv()})
        try:
            return await super()._handle(request)
        except kmock.KubernetesObjectNotFoundError:  # the real server's Status names the object
            assert res is not None
            what = f"{res.plural}.{res.group}" if res.group else str(res.plural)
            raise kmock.KubernetesError(
                status=404,
                reason="NotFound",
                message=f'{what} "{request.name}" not found',
                details={"name": request.name, "group": res.group, "kind": res.plural},
            ) from None
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as e:
            # a failed "test" op (kopf's optimistic concurrency) or an op that cannot apply: 422 Invalid
            raise kmock.KubernetesError(status=422, reason="Invalid", message=str(e)) from None


def _json_patch_as_served(
    ops: list[Any], stored: dict[str, Any], has_status: bool, subresource: str | None
) -> list[Any]:
    """``ops`` with what the API server (v1.20) makes of them on an object with a status subresource:
    a ``/status`` patch writes the status only, a main-resource patch keeps the stored status, and a
    spec change bumps ``generation`` (tests/realkube/test_json_patch_real.py). The ops are applied to
    a copy first: one that cannot apply (a failed ``test`` too) is 422 Invalid, as there."""
    try:
        result = jsonpatch.apply_patch(copy.deepcopy(stored), ops)
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as e:
        raise kmock.KubernetesError(status=422, reason="Invalid", message=str(e)) from None
    if not has_status:
        return ops
    if subresource == "status":
        keep = {k: v for k, v in result.items() if k == "status"}
        return [
            {
                "op": "replace",
                "path": "",
                "value": copy.deepcopy({**{k: v for k, v in stored.items() if k != "status"}, **keep}),
            }
        ]
    out = [*ops, {"op": "remove", "path": "/status"}] if "status" in result else list(ops)
    if "status" in stored:
        out.append({"op": "add", "path": "/status", "value": copy.deepcopy(stored["status"])})
    if subresource is None and result.get("spec") != stored.get("spec"):
        generation = int((stored.get("metadata") or {}).get("generation") or 0) + 1
        out.append({"op": "add", "path": "/metadata/generation", "value": generation})
    return out


def _uid_conflict(data: dict[str, Any], stored: Any) -> None:
    """A merge patch naming another uid than the stored object's: 422 Invalid, "field is immutable",
    as the API server (v1.20) answers it (its uid precondition; the answer is checked on the real
    server by tests/realkube/test_pod_patch_uid_real.py)."""
    meta = data.get("metadata")
    want = meta.get("uid") if isinstance(meta, dict) else None
    have = (dict(stored).get("metadata") or {}).get("uid") if stored is not None else None
    if want and have and want != have:
        raise kmock.KubernetesError(
            status=422,
            reason="Invalid",
            message=f'metadata.uid: Invalid value: "{want}": field is immutable',
        )


def _delete_precondition(options: dict[str, Any], stored: Any, res: Any, name: str) -> None:
    """A delete whose ``preconditions.uid`` names another object than the stored one: 409 Conflict,
    as the API server (v1.20) answers it (tests/realkube/test_owned_delete_uid_real.py)."""
    pre = options.get("preconditions")
    want = pre.get("uid") if isinstance(pre, dict) else None
    if not want or stored is None or getattr(stored, "deleted", False):
        return
    have = (dict(stored).get("metadata") or {}).get("uid")
    if have and want != have:
        what = f"{res.plural}.{res.group}" if res.group else str(res.plural)
        raise kmock.KubernetesError(
            status=409,
            reason="Conflict",
            message=f'Operation cannot be fulfilled on {what} "{name}": the UID in the precondition '
            f"({want}) does not match the UID in record ({have}). The object might have been deleted "
            "and then recreated",
        )


def _mark_deleting(stored: Any) -> None:
    """An object a finalizer holds, deleted: kube-apiserver v1.20 bumps its ``generation`` and sets
    ``deletionGracePeriodSeconds: 0`` as it sets ``deletionTimestamp`` (which kmock sets next), once
    (tests/integration/deletion_rules.py, checked on both servers)."""
    if stored is None or getattr(stored, "deleted", False):
        return
    meta = dict(stored).get("metadata") or {}
    if not meta.get("finalizers") or meta.get("deletionTimestamp"):
        return
    changes: dict[str, Any] = {"deletionGracePeriodSeconds": 0}
    if meta.get("generation"):
        changes["generation"] = int(meta["generation"]) + 1
    stored.patch({"metadata": changes})


def _merged(old: Any, patch: Any) -> Any:
    if not isinstance(patch, dict) or not isinstance(old, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(old)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = _merged(out.get(k), v)
    return out
