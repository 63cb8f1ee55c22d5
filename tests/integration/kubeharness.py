"""A Kubernetes API for tests: the emulated API server over real HTTP, and the real operator on it.

``ApiServer`` (kube_emulator.py) is kmock's emulator with the API server's
bookkeeping (uid, resourceVersion, generation, the status subresource).
``Cluster`` starts it on a loopback port, writes a kubeconfig pointing at it
and offers a small client for the test side (its requests carry their own
User-Agent, so ``writes()`` counts only what the operator and the agent send).
``OperatorRun`` runs the real operator (kopf, our registry and settings) on
its own thread and event loop, talking to the emulator over HTTP; its
``settle()`` waits until kopf has read and processed every watch event the
emulator sent (watch_accounting.py), so a test can assert right after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import kmock
import kopf
import yaml
from kopf._cogs.structs import references as kopf_references

from stellaops_runtime.controller.handlers import build_registry
from stellaops_runtime.controller.reconcile import Reconciler
from stellaops_runtime.controller.settings import ControllerConfig, operator_settings
from stellaops_runtime.kube import resources as r
from stellaops_runtime.kube.client import Connection, KubeClient
from tests.integration.kube_emulator import DECLARED, VERBS, WITH_STATUS, ApiServer, _key
from tests.integration.watch_accounting import PROBE, KopfProbe

__all__ = [
    "DECLARED",
    "TEST_AGENT",
    "VERBS",
    "WITH_STATUS",
    "ApiServer",
    "Cluster",
    "OperatorRun",
    "_key",
    "fast_config",
    "http_get",
    "obj",
    "wait_for",
]

TEST_AGENT = "stellaops-tests"


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
        self.probe = KopfProbe()  # what its kopf has read and processed (watch_accounting.py)
        self.insights: Any = None  # kopf's view of what it watches, set on the operator's thread

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
        PROBE.set(self.probe)  # every task of this loop inherits it
        self.insights = kopf_references.Insights()
        self.reconciler = Reconciler(self.config)
        standalone = self.priority is None
        settings = operator_settings(standalone=standalone, priority=self.priority or 0)
        settings.watching.reconnect_backoff = 0.05
        settings.persistence.consistency_timeout = 1.0
        await kopf.operator(
            registry=build_registry(self.config, reconcile=self.reconcile),
            settings=settings,
            insights=self.insights,
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
        """Wait until the operator has consumed everything: kopf has listed every resource it
        watches, read every event the API server sent on its open watch streams and processed it
        (a retry due within 10 s is waited for, a longer sleep of kopf's counts as done), nothing
        is queued in the reconciler, and no request came for ``quiet`` seconds. A test can assert
        on what its last write causes right after."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last = self.cluster.mark()
        quiet_since = loop.time()
        while True:
            await asyncio.sleep(0.02)
            now = loop.time()
            unstarted = self.probe.unstarted(self.insights) if self.insights is not None else ["kopf"]
            behind = self.cluster.api.behind()
            busy = self.probe.busy()
            pending = len(self.reconciler.scheduler)
            if self.cluster.mark() != last or unstarted or behind or busy > 0 or pending:
                last = self.cluster.mark()
                quiet_since = now
            elif now - quiet_since >= quiet:
                return
            if now > deadline:
                raise TimeoutError(
                    f"the operator did not settle in {timeout:g} s: not yet listed: {unstarted or 'none'}; "
                    f"watch events not read: "
                    f"{behind or 'none'}; events read, not processed: {max(busy, 0)}; "
                    f"reconciles pending: {self.reconciler.scheduler.pending()[:10]}; "
                    f"operator error: {self.error!r}"
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
