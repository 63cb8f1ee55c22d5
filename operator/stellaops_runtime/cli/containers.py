"""``stella-runtime containers``: what the lifecycle observer sees on this node.

For operators checking the container lifecycle observer by hand: it connects
to containerd's socket (or Docker's, with ``--runtime docker``), prints the registry (every container of the
namespace with its status, pid, cgroup id, image digest and pod) and, with
``--watch``, every lifecycle event after it until SIGINT or SIGTERM, printing
the registry again after each reconnect. Environment values, labels,
annotations and image references in the output have been through the
privacy filter in the observer (lifecycle/scrub.py), like everything the
agent reports: whoever starts a container chooses them
(``--label db.password=...``, an image named ``user:pass@registry/app``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from typing import Any

from stellaops_runtime.cli import exitcodes
from stellaops_runtime.contracts.lifecycle import (
    ContainerLifecycleEvent,
)
from stellaops_runtime.lifecycle.base import LifecycleObserver
from stellaops_runtime.lifecycle.containerd_client import DEFAULT_ADDRESS, DEFAULT_NAMESPACE, ContainerdClient
from stellaops_runtime.lifecycle.cri_client import DEFAULT_ADDRESSES as CRI_ADDRESSES
from stellaops_runtime.lifecycle.cri_client import CriClient
from stellaops_runtime.lifecycle.cri_observer import CriObserver
from stellaops_runtime.lifecycle.docker_client import DEFAULT_DOCKER_ADDRESS, DockerClient
from stellaops_runtime.lifecycle.docker_observer import DockerObserver
from stellaops_runtime.lifecycle.observer import ContainerdObserver
from stellaops_runtime.lifecycle.registry import (
    ContainerRecord,
    ContainerRegistry,
)

log = logging.getLogger(__name__)

DESCRIPTION = """\
List the containers of a containerd namespace (or, with --runtime docker, of
a Docker Engine; with --runtime cri, of a CRI runtime: CRI-O, or containerd's
CRI plugin, pod sandboxes included) as the lifecycle observer's registry holds them (status,
init pid, cgroup v2 id, image digest, pod), and with --watch stream the
lifecycle events (create, start, die, stop, delete, image_pull) as they
happen. With --json every line is one JSON object:
{"registry": {...container...}} for each container, then (with --watch)
{"synced": {"containers": N}} once the list is complete, then {"event": {...}}.
After a reconnect the list and the synced line are printed again.
Exit status 2 when the runtime cannot be reached (without --watch; with it,
the observer keeps reconnecting).
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "containers",
        help="show containers and lifecycle events as the node agent sees them (containerd, docker, cri)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--runtime",
        choices=("containerd", "docker", "cri"),
        default="containerd",
        help="container runtime (default containerd)",
    )
    parser.add_argument(
        "--address",
        default=None,
        help=f"runtime socket (default {DEFAULT_ADDRESS}; docker: {DEFAULT_DOCKER_ADDRESS}; "
        f"cri: the first of {', '.join(CRI_ADDRESSES)} that exists)",
    )
    parser.add_argument(
        "--namespace", default=DEFAULT_NAMESPACE, help=f"containerd namespace (default {DEFAULT_NAMESPACE})"
    )
    parser.add_argument("--watch", action="store_true", help="after the list, print events until interrupted")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument(
        "--timeout", type=float, default=5.0, help="seconds to wait for the runtime (default 5)"
    )
    parser.set_defaults(func=run)


def _short(digest: str) -> str:
    return digest[:19] if digest else "-"


def _clean(text: str) -> str:
    """``text`` with every unprintable character escaped (``\\n``, ``\\x1b``): a container's labels
    are chosen by whoever created it, and must not forge rows or drive the operator's terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _table(records: list[ContainerRecord]) -> str:
    rows = [("CONTAINER", "STATUS", "PID", "CGROUP_ID", "DIGEST", "POD", "IMAGE")]
    for r in records:
        pod = f"{r.pod_namespace}/{r.pod_name}" if r.pod_name else "-"
        rows.append(
            (
                _clean(r.container_id),
                r.status,
                str(r.pid or "-"),
                str(r.cgroup_id or "-"),
                _clean(_short(r.image_digest)),
                _clean(pod),
                _clean(r.image_ref or "-"),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        for row in rows
    )


def _event_line(ev: ContainerLifecycleEvent) -> str:
    when = ev.timestamp.isoformat() if ev.timestamp else "-"
    parts = [when, str(ev.event_type), ev.container_id or ev.image_ref]
    if ev.pid:
        parts.append(f"pid={ev.pid}")
    if ev.cgroup_id:
        parts.append(f"cgroup_id={ev.cgroup_id}")
    if ev.exit_code is not None:
        parts.append(f"exit={ev.exit_code}")
    if ev.oom_killed:
        parts.append("oom_killed")
    elif ev.oom_killed is None:
        parts.append("oom_killed=unknown")
    if ev.image_digest:
        parts.append(f"digest={ev.image_digest}")
    if ev.pod_name:
        parts.append(f"pod={ev.pod_namespace}/{ev.pod_name}")
    return _clean(" ".join(parts))


def _print(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _show_registry(registry: ContainerRegistry, *, as_json: bool, watching: bool = False) -> None:
    records = registry.records()
    if as_json:
        for r in records:
            _print(json.dumps({"registry": r.to_json()}, sort_keys=True))
        if watching:  # the list is complete: every event from here on is new
            _print(json.dumps({"synced": {"containers": len(records)}}))
    else:
        _print(_table(records))
        if watching:
            _print(f"-- watching events ({len(records)} containers) --")


async def _list_once(obs: LifecycleObserver, as_json: bool) -> int:
    try:
        await obs.resync()
    except Exception as e:
        print(f"error: cannot read containers from {obs.runtime} at {obs.address}: {e}", file=sys.stderr)
        return exitcodes.ERROR
    finally:
        await obs.close()
    _show_registry(obs.registry, as_json=as_json)
    return exitcodes.OK


async def _watch(obs: LifecycleObserver, as_json: bool) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async for ev in obs.events(stop):
        shown = json.dumps({"event": ev.to_json()}, sort_keys=True)
        _print(shown if as_json else _event_line(ev))
    return exitcodes.OK


def run(args: argparse.Namespace) -> int:
    obs: LifecycleObserver
    if args.runtime == "docker":
        obs = DockerObserver(DockerClient(args.address or DEFAULT_DOCKER_ADDRESS, timeout=args.timeout))
    elif args.runtime == "cri":
        address = args.address or next((a for a in CRI_ADDRESSES if os.path.exists(a)), CRI_ADDRESSES[0])
        obs = CriObserver(CriClient(address, timeout=args.timeout))
    else:
        client = ContainerdClient(
            args.address or DEFAULT_ADDRESS, namespace=args.namespace, timeout=args.timeout
        )
        obs = ContainerdObserver(client)
    if not args.watch:
        return asyncio.run(_list_once(obs, args.json))
    obs.on_sync = lambda registry: _show_registry(registry, as_json=args.json, watching=True)
    return asyncio.run(_watch(obs, args.json))
