"""``stella-runtime operator``: run the Kubernetes operator (kopf underneath).

Credentials: the pod's service account in a cluster, else a kubeconfig
(``--kubeconfig``, ``$KUBECONFIG`` or ``~/.kube/config``), so the same command
runs in the operator Deployment and from a laptop against any cluster.
Leader election is kopf's peering (``--peering``, default ``stellaops-runtime``;
the ClusterKopfPeering object is created when missing); ``--standalone``
runs without it (one replica only!).

A replica's peering identity is its pod name (``$POD_NAME`` from the downward
API, as the Deployment sets it), else ``host/pid/start-time``
(``operator_identity``). kopf's own default asks the password database for the
user name (``getpass.getuser()``), which fails under a uid without a passwd
entry, as a restricted PodSecurity profile or ``runAsUser: 65532`` chooses.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import socket
import sys
import time
from typing import TYPE_CHECKING

from stellaops_runtime.cli import exitcodes
from stellaops_runtime.contracts.redact import redact_error

if TYPE_CHECKING:
    from stellaops_runtime.controller.settings import ControllerConfig

log = logging.getLogger("stellaops_runtime.operator")

HELP = """\
Run the operator: render RuntimeObservers into the agent fleet, Observation-
and ClusterObservationPolicies into Tetragon TracingPolicies and the native
probes' ConfigMap, compute every pod's observation posture, and fold the
nodes' ObservationNodes into each policy's rollout status.

Without --namespace it watches all namespaces. Credentials: in-cluster
service account, else --kubeconfig / $KUBECONFIG / ~/.kube/config.
SIGTERM/SIGINT stops it; exit 2 when it cannot start (no credentials,
peering CRD missing).
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "operator",
        help="run the Kubernetes operator (CRDs -> agents, Tetragon policies, pod postures)",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    scope = p.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace",
        "-n",
        dest="namespaces",
        action="append",
        default=[],
        metavar="NS",
        help="watch only this namespace (repeatable; glob patterns like 'team-*' allowed); "
        "cluster-scoped kinds are always watched",
    )
    scope.add_argument(
        "--all-namespaces", "-A", action="store_true", help="watch every namespace (the default)"
    )
    p.add_argument(
        "--liveness",
        metavar="URL",
        help="serve kopf's liveness probe here, e.g. http://0.0.0.0:8080/healthz",
    )
    peer = p.add_mutually_exclusive_group()
    peer.add_argument(
        "--peering",
        metavar="NAME",
        default=None,
        help="ClusterKopfPeering used for leader election between replicas (default stellaops-runtime)",
    )
    peer.add_argument(
        "--standalone", action="store_true", help="no leader election (run exactly one replica)"
    )
    p.add_argument(
        "--priority",
        type=int,
        default=None,
        help="peering priority: the highest live replica reconciles, the others pause (default: random, "
        "so identical replicas never tie: kopf pauses every replica of a tied priority)",
    )
    p.add_argument(
        "--kubeconfig",
        metavar="FILE",
        default="",
        help="kubeconfig (default: in-cluster, $KUBECONFIG, ~/.kube/config)",
    )
    p.add_argument(
        "--coalesce-seconds",
        type=float,
        default=1.0,
        metavar="S",
        help="window that merges bursts of related changes into one reconcile (default 1)",
    )
    p.add_argument(
        "--stale-after-seconds",
        type=float,
        default=90.0,
        metavar="S",
        help="an ObservationNode without a heartbeat for this long is stale (default 90)",
    )
    p.add_argument(
        "--tetragon-unreachable-seconds",
        type=float,
        default=120.0,
        metavar="S",
        help="a policy turns Degraded (TetragonUnreachable) once a selected node's agent has "
        "reported Tetragon unreachable for this long, or (NoEventSource) has got no events from a "
        "Tetragon that loaded it for this long (default 120)",
    )
    p.add_argument(
        "--registry-not-in-sync-seconds",
        type=float,
        default=300.0,
        metavar="S",
        help="a RuntimeObserver turns Degraded (RegistryNotInSync) once a node's agent has reported "
        "its container registry not in sync for this long (default 300)",
    )
    p.add_argument(
        "--rollout-refresh-seconds",
        type=float,
        default=30.0,
        metavar="S",
        help="how often every policy's rollout, RuntimeObserver and node staleness is looked at again "
        "without an event (default 30)",
    )
    p.set_defaults(func=run)


class _AtDebug(logging.Filter):
    """Re-levels a logger's records to DEBUG: shown only when the root logger is at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger().isEnabledFor(logging.DEBUG)


def operator_identity(env: dict[str, str] | os._Environ[str] | None = None) -> str:
    """This replica's peering identity, without the password database (see the module docstring).

    The pod name when ``$POD_NAME`` is set (unique among the replicas, stable over
    a container restart); else the host name, pid and start time, unique per process.
    """
    env = os.environ if env is None else env
    pod = (env.get("POD_NAME") or "").strip()
    if pod:
        return pod
    host = socket.gethostname() or "localhost"
    return f"{host}/{os.getpid()}/{time.strftime('%Y%m%d%H%M%S', time.gmtime())}"


def run(args: argparse.Namespace) -> int:
    if (
        args.coalesce_seconds < 0
        or args.stale_after_seconds <= 0
        or args.tetragon_unreachable_seconds <= 0
        or not 0 < args.registry_not_in_sync_seconds < float("inf")
        or not 1.0 <= args.rollout_refresh_seconds <= 3600.0
    ):
        print(
            "stella-runtime operator: --coalesce-seconds >= 0, --stale-after-seconds > 0, "
            "--tetragon-unreachable-seconds > 0, --registry-not-in-sync-seconds > 0 (finite) and "
            "--rollout-refresh-seconds between 1 and 3600",
            file=sys.stderr,
        )
        return exitcodes.ERROR
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        # kopf logs "Handler ... succeeded" for every watch event of every pod at INFO.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    # The liveness/readiness probes' requests (kopf's health server, aiohttp's access log) at DEBUG.
    access = logging.getLogger("aiohttp.access")
    if not any(isinstance(f, _AtDebug) for f in access.filters):
        access.addFilter(_AtDebug())
    try:
        return asyncio.run(run_operator(args))
    except KeyboardInterrupt:
        return exitcodes.INTERRUPTED


def controller_config(args: argparse.Namespace) -> ControllerConfig:
    """The operator's settings from its command line."""
    from stellaops_runtime.controller.settings import ControllerConfig

    return ControllerConfig(
        kubeconfig=args.kubeconfig,
        coalesce_seconds=args.coalesce_seconds,
        stale_after_seconds=args.stale_after_seconds,
        tetragon_unreachable_seconds=args.tetragon_unreachable_seconds,
        registry_not_in_sync_seconds=args.registry_not_in_sync_seconds,
        rollout_refresh_seconds=args.rollout_refresh_seconds,
    )


async def run_operator(args: argparse.Namespace) -> int:
    import kopf  # heavy imports only when running

    from stellaops_runtime.controller.handlers import build_registry
    from stellaops_runtime.controller.reconcile import Reconciler
    from stellaops_runtime.controller.settings import DEFAULT_PEERING, operator_settings
    from stellaops_runtime.kube.client import ApiError, KubeClient, KubeConfigError

    config = controller_config(args)
    peering = args.peering or DEFAULT_PEERING
    priority = args.priority if args.priority is not None else random.SystemRandom().randint(1, 2**31 - 2)
    try:
        kube = await KubeClient.connect(kubeconfig=args.kubeconfig, user_agent="stellaops-runtime-operator")
    except KubeConfigError as e:
        print(f"stella-runtime operator: {redact_error(e)}", file=sys.stderr)
        return exitcodes.ERROR
    log.info("Kubernetes API %s (%s)", kube.connection.shown_server, kube.connection.source)
    identity = operator_identity()
    if not args.standalone:
        log.info(
            "leader election through ClusterKopfPeering %s as %s, priority %d", peering, identity, priority
        )
    try:
        if not args.standalone:
            try:
                await ensure_peering(kube, peering)
            except ApiError as e:
                print(f"stella-runtime operator: peering {peering!r}: {redact_error(e)}", file=sys.stderr)
                return exitcodes.ERROR
            except OSError as e:
                why = redact_error(e)
                print(f"stella-runtime operator: cannot reach the API server: {why}", file=sys.stderr)
                return exitcodes.ERROR
        reconciler = Reconciler(config, kube=kube)
        await kopf.operator(
            registry=build_registry(config),
            settings=operator_settings(peering=peering, standalone=args.standalone, priority=priority),
            memo=kopf.Memo(reconciler=reconciler),
            identity=identity,  # type: ignore[arg-type]  # kopf's Identity is a NewType of str
            clusterwide=not args.namespaces,
            namespaces=args.namespaces,
            liveness_endpoint=args.liveness,
            standalone=args.standalone,
            peering_name=None if args.standalone else peering,  # a name makes kopf's peering mandatory
            priority=priority,
        )
    finally:
        await kube.close()
    return exitcodes.OK


async def ensure_peering(kube: object, name: str) -> bool:
    """Create the ClusterKopfPeering ``name`` when missing; True when created.

    Raises ApiError with a hint when kopf's peering CRD is not installed.
    """
    from stellaops_runtime.kube import resources as r
    from stellaops_runtime.kube.client import ApiError, KubeClient

    assert isinstance(kube, KubeClient)
    if await kube.get(r.CLUSTER_KOPF_PEERINGS, name=name) is not None:
        return False
    body = {
        "apiVersion": r.CLUSTER_KOPF_PEERINGS.api_version,
        "kind": r.CLUSTER_KOPF_PEERINGS.kind,
        "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "stellaops-runtime"}},
    }
    try:
        await kube.create(r.CLUSTER_KOPF_PEERINGS, body)
    except ApiError as e:
        if e.conflict:
            return False
        if e.not_found:
            raise ApiError(
                status=e.status,
                reason=e.reason,
                message="kopf's ClusterKopfPeering CRD is not installed: apply manifests/ "
                "(kubectl apply -k), or run one replica with --standalone",
                method="POST",
                path=r.CLUSTER_KOPF_PEERINGS.path(),
            ) from None
        raise
    log.info("created ClusterKopfPeering %s", name)
    return True
