"""A Kubernetes API for tests: kmock's emulator over real HTTP, with the API server's bookkeeping.

kmock's KubernetesEmulator stores objects and streams watch events, but it
assigns no ``uid``, ``resourceVersion`` or ``generation`` and knows nothing
of the status subresource. ``ApiServer`` adds what the operator relies on,
the way a real API server does it:

- on create: ``uid``, ``creationTimestamp``, ``resourceVersion`` and ``generation: 1``;
- on every write: a new ``resourceVersion``; ``generation`` + 1 when ``spec`` changes;
- a JSON patch whose ``test`` op fails (kopf's optimistic concurrency on
  ``resourceVersion``) is 422 Invalid, not a 500;
- for resources declared with a ``status`` subresource: a create and a PATCH
  of the main resource drop ``status``, a PATCH of ``/status`` keeps only ``status``
  (so code that writes status the wrong way fails here as it would there).

``Cluster`` starts it on a loopback port, writes a kubeconfig pointing at it
and offers a small client for the test side (its requests carry their own
User-Agent, so ``writes()`` counts only what the operator and the agent send).
``OperatorRun`` runs the real operator (kopf, our registry and settings) on
its own thread and event loop, talking to the emulator over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime
import json
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import aiohttp.web
import jsonpatch
import kmock
import kopf
import yaml
from kmock._internal import parsing as _kmock_parsing

from stellaops_runtime.controller.handlers import build_registry
from stellaops_runtime.controller.reconcile import Reconciler
from stellaops_runtime.controller.settings import ControllerConfig, operator_settings
from stellaops_runtime.kube import resources as r
from stellaops_runtime.kube.client import Connection, KubeClient

TEST_AGENT = "stellaops-tests"
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


class ApiServer(kmock.KubernetesEmulator):
    """kmock's emulator plus uid/resourceVersion/generation and status-subresource rules."""

    def __attrs_post_init__(self) -> None:
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
        if res is not None:
            info = self.resources.get(res, None)
            has_status = info is not None and "status" in info.subresources
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
            elif request.action == kmock.action.UPDATE and isinstance(data, list):
                data.append({"op": "add", "path": "/metadata/resourceVersion", "value": self._next_rv()})
        try:
            return await super()._handle(request)
        except jsonpatch.JsonPatchTestFailed as e:  # a failed "test" op is 422 Invalid, as kopf expects
            raise kmock.KubernetesError(status=422, reason="Invalid", message=str(e)) from None


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


class Cluster:
    """The emulated API server on a loopback port, a kubeconfig for it, and a test-side client."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.api = ApiServer()
        self.server = kmock.Server(self.api)
        self.url = ""
        self.kubeconfig = tmp / "kubeconfig.yaml"
        self.client: KubeClient | None = None
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Cluster:
        for res in DECLARED:
            subresources = {"status"} if res in WITH_STATUS else set()
            self.api.resources[_key(res)] = kmock.ResourceInfo(
                kind=res.kind, namespaced=res.namespaced, verbs=VERBS, subresources=subresources
            )
        await self._stack.enter_async_context(self.api)
        await self._stack.enter_async_context(self.server)
        self.url = str(self.server.url).rstrip("/")
        self.kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "kmock", "cluster": {"server": self.url}}],
                    "users": [{"name": "tester", "user": {"token": "test-token"}}],
                    "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "tester"}}],
                    "current-context": "kmock",
                }
            )
        )
        conn = await asyncio.to_thread(Connection.load, kubeconfig=str(self.kubeconfig))
        self.client = await self._stack.enter_async_context(KubeClient(conn, user_agent=TEST_AGENT))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    # -- test-side API -----------------------------------------------------------------------

    @property
    def kube(self) -> KubeClient:
        assert self.client is not None
        return self.client

    async def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        return await self.kube.create(r.resource_of(obj), obj)

    def put(self, obj: dict[str, Any]) -> None:
        """Store an object directly, with the server's bookkeeping but no request and no watch event.

        For seeding big clusters before any watcher starts (a watch replays what is stored).
        """
        res = r.resource_of(obj)
        body = json.loads(json.dumps(obj))
        meta = body.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        meta["resourceVersion"] = self.api._next_rv()
        meta.setdefault("generation", 1)
        self.api.objects[_key(res), meta.get("namespace"), meta["name"]] = body

    async def get(self, res: r.Resource, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        return await self.kube.get(res, name=name, namespace=namespace)

    async def patch(
        self, res: r.Resource, name: str, patch: dict, *, namespace: str | None = None, status: bool = False
    ) -> dict[str, Any]:
        return await self.kube.patch(
            res, name=name, namespace=namespace, patch=patch, subresource="status" if status else ""
        )

    async def delete(self, res: r.Resource, name: str, namespace: str | None = None) -> bool:
        return await self.kube.delete(res, name=name, namespace=namespace)

    def stored(self, res: r.Resource, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """The object as the emulator holds it now (no request)."""
        try:
            obj = self.api.objects[_key(res), namespace, name]
        except KeyError:
            return None
        if obj.deleted:
            return None
        return json.loads(json.dumps(obj.raw))

    def listed(self, res: r.Resource, namespace: str | None = None) -> list[dict[str, Any]]:
        out = []
        for (rk, ns, _name), obj in list(self.api.objects.items()):
            if rk == kmock.resource(_key(res)) and not obj.deleted and (namespace is None or ns == namespace):
                out.append(json.loads(json.dumps(obj.raw)))
        return out

    # -- request accounting --------------------------------------------------------------------

    def requests(self) -> list[Any]:
        return list(self.api.log)

    def writes(self, since: int = 0, *, rejected: bool = False) -> list[str]:
        """Writes sent by anyone but the tests themselves since request number ``since``.

        Only those the server applied, or with ``rejected`` only those it refused (4xx/5xx).
        """
        out = []
        for req in self.requests()[since:]:
            if req.method.value in ("GET", "HEAD", "OPTIONS"):
                continue
            if req.headers.get("User-Agent", "").startswith(TEST_AGENT):
                continue
            failed = self.api.status.get(id(req), 200) >= 400
            if failed == rejected:
                out.append(f"{req.method.value} {req.url.path}")
        return out

    def mark(self) -> int:
        return len(self.api.log)


class OperatorRun:
    """The real operator (kopf + our handlers) against a Cluster, on its own thread and event loop.

    Its own loop, like the process it is in production: when kopf stops, it
    cancels every task of its loop that it did not find there when it started,
    which in a shared loop would include the test's own tasks.
    """

    def __init__(
        self,
        cluster: Cluster,
        config: ControllerConfig | None = None,
        *,
        reconcile: bool = True,
        priority: int | None = None,
        liveness: str | None = None,
    ) -> None:
        self.cluster = cluster
        self.liveness = liveness  # kopf's health endpoint, as `stella-runtime operator --liveness`
        self.config = config or fast_config(cluster)
        self.reconcile = reconcile
        self.priority = priority  # None: standalone; else peering "stellaops-runtime" at this priority
        self.reconciler: Reconciler = None  # type: ignore[assignment]  # set on the operator's thread
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    async def __aenter__(self) -> OperatorRun:
        self._thread = threading.Thread(target=self._main, name="operator", daemon=True)
        self._thread.start()
        if not await asyncio.to_thread(self._ready.wait, 20):
            raise TimeoutError(f"the operator did not start: {self.error!r}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as e:  # surfaced by __aenter__ / stop
            self.error = e
            self._ready.set()

    async def _run(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.reconciler = Reconciler(self.config)
        standalone = self.priority is None
        settings = operator_settings(standalone=standalone, priority=self.priority or 0)
        settings.watching.reconnect_backoff = 0.05
        settings.persistence.consistency_timeout = 1.0
        await kopf.operator(
            registry=build_registry(self.config, reconcile=self.reconcile),
            settings=settings,
            memo=kopf.Memo(reconciler=self.reconciler),
            clusterwide=True,
            standalone=standalone,
            priority=self.priority or 0,
            peering_name=None if standalone else settings.peering.name,
            stop_flag=self._stop,
            ready_flag=self._ready,
            liveness_endpoint=self.liveness,
        )

    def call(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` on the operator's loop (e.g. ``op.call(op.reconciler.resync)``)."""
        assert self.loop is not None
        self.loop.call_soon_threadsafe(fn)

    async def stop(self) -> None:
        """Stop kopf and wait for its thread (idempotent)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.to_thread(thread.join, 30)
            if thread.is_alive():
                raise TimeoutError("the operator did not stop within 30 s")

    async def settle(self, *, quiet: float = 0.25, timeout: float = 60.0) -> None:  # noqa: ASYNC109
        """Wait until the operator has nothing queued and sent no request for ``quiet`` seconds.

        It cannot tell an operator that is done from one that has not yet seen the test's last
        write (a starved watch): after a write, wait for what it must cause, then settle.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last = self.cluster.mark()
        quiet_since = loop.time()
        while True:
            await asyncio.sleep(0.02)
            now = loop.time()
            if self.cluster.mark() != last:
                last = self.cluster.mark()
                quiet_since = now
            if len(self.reconciler.scheduler) == 0 and now - quiet_since >= quiet:
                return
            if now > deadline:
                raise TimeoutError(
                    f"operator did not settle; pending: {self.reconciler.scheduler.pending()[:10]}"
                )


def fast_config(cluster: Cluster, **kw: Any) -> ControllerConfig:
    base: dict[str, Any] = {
        "kubeconfig": str(cluster.kubeconfig),
        "coalesce_seconds": 0.05,
        "retry_initial_seconds": 0.2,
        "retry_max_seconds": 1.0,
        "rollout_refresh_seconds": 3600.0,
    }
    base.update(kw)
    return ControllerConfig(**base)


async def wait_for(
    check: Callable[[], Any], *, limit_s: float = 60.0, interval: float = 0.02, what: str = "condition"
) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy (at once when it already is:
    the generous default only lets a loaded machine's operator catch up)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)


def obj(api_version: str, kind: str, name: str, *, namespace: str | None = None, **fields: Any) -> dict:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    for key in ("labels", "annotations"):
        if key in fields:
            meta[key] = fields.pop(key)
    return {"apiVersion": api_version, "kind": kind, "metadata": meta, **fields}


async def http_get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as s, s.get(url) as resp:
        return resp.status, await resp.text()
