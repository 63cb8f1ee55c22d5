"""The idle agent's memory, before and after a change, in one run (issue 13): medians of runs.

Each run starts a real ``stella-runtime agent`` (agent_memory_bench.py's ``_Agent``: connected
to the replay server, which sends nothing, a migrated store), waits until it is ready, lets it
idle 3 s and reads its ``/proc/<pid>/status``: VmRSS, RssAnon, RssFile. The two checkouts
alternate (A B A B ...), so a machine that gets busier or quieter moves both alike; the medians
of ``--runs`` runs each are compared.

Two configurations (``--configs``):

- ``default``: every setting at its default (the figure docs/benchmarks.md has carried since
  the first pass);
- ``node``: the document the operator writes into every node's agent ConfigMap
  (controller/agent_config.py, for a RuntimeObserver with defaults), its node paths moved into
  the run's directory, written as the operator writes it (JSON, controller/render_agent.py). It
  turns the ObservationNode writer on and names the probe ConfigMap's file (written empty, as
  the operator's is with no native probes). The agent runs as in a pod:
  ``KUBERNETES_SERVICE_HOST``/``PORT`` set and a service account (a token and a CA certificate
  made for the run) mounted where the kubelet mounts it, in a private mount namespace (``unshare
  --mount``, a tmpfs over ``/run``: root only; elsewhere the agent runs without them and says so
  in ``in_cluster``). Nobody answers at that address, so the writer logs the error and retries,
  as on a node whose API server is down. ``NODE_IP`` is set (127.0.0.1), as the pod's downward
  API sets it, and the Tetragon metrics URL the operator renders (``http://$(NODE_IP):2112/metrics``)
  is kept with its port moved to a page this script serves (:func:`tetragon_metrics_port`: Tetragon's
  watched counters, at 0), so the agent scrapes and parses it as on a node. (Without ``NODE_IP`` the
  agent looked up the name ``$(NODE_IP)``, which loaded the IDNA codec, ``stringprep`` and
  ``unicodedata``, ~0.3 MB a node never pays, and failed every scrape.) This is what a node pays.

``--fresh-store``: the store is a new SQLite file (or PostgreSQL database) nobody migrated, as on
a node's first start: the agent migrates it (since session 51 in a child process, before in its
own). Each run also gives ``ready_s``, the seconds from the agent's start to its first ``/readyz``
ready (polled every 20 ms).

Usage::

    git archive <before> operator | tar -x -C /tmp/before
    git archive <after> operator | tar -x -C /tmp/after
    .venv/bin/python bench/agent_idle_ab.py --before /tmp/before/operator --after /tmp/after/operator \\
        [--runs 5] [--configs default,node] [--postgres] [--fresh-store]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import agent_memory_bench as bench

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ("default", "node")
FIELDS = ("VmRSS", "RssAnon", "RssFile")
NODE_IP = "127.0.0.1"  # the pod's NODE_IP (status.hostIP), where the served Tetragon page listens

# A Tetragon metrics page: the counters the agent watches (sources/tetragon_metrics_text.py
# WATCHED), at 0, with Tetragon's label names, and a few of the families it skips.
TETRAGON_PAGE = """\
# HELP tetragon_events_total The total number of Tetragon events
# TYPE tetragon_events_total counter
tetragon_events_total{binary="",namespace="",pod="",type="PROCESS_EXEC",workload=""} 0
# HELP tetragon_notify_overflowed_events_total The total number of events dropped
# TYPE tetragon_notify_overflowed_events_total counter
tetragon_notify_overflowed_events_total 0
# HELP tetragon_bpf_missed_events_total Number of Tetragon perf events that are failed to be sent
# TYPE tetragon_bpf_missed_events_total counter
tetragon_bpf_missed_events_total{error="",msg_op="5"} 0
# HELP tetragon_observer_ringbuf_events_lost_total Number of perf events Tetragon ring buffer lost
# TYPE tetragon_observer_ringbuf_events_lost_total counter
tetragon_observer_ringbuf_events_lost_total 0
# HELP tetragon_observer_ringbuf_queue_events_lost_total Number of lost events in the queue
# TYPE tetragon_observer_ringbuf_queue_events_lost_total counter
tetragon_observer_ringbuf_queue_events_lost_total 0
# HELP tetragon_missed_prog_probes_total The total number of Tetragon probe missed by program
# TYPE tetragon_missed_prog_probes_total counter
tetragon_missed_prog_probes_total{attach="sys_execve",policy="base"} 0
# HELP tetragon_missed_link_probes_total The total number of Tetragon probe missed by link
# TYPE tetragon_missed_link_probes_total counter
tetragon_missed_link_probes_total{attach="sys_execve",policy="base"} 0
# HELP tetragon_msg_op_total The total number of times we encounter a given message opcode
# TYPE tetragon_msg_op_total counter
tetragon_msg_op_total{msg_op="5"} 0
"""


class _TetragonPage(http.server.BaseHTTPRequestHandler):
    served = 0  # pages served: a node run that read none measured an agent that did not scrape

    def do_GET(self) -> None:
        _TetragonPage.served += 1
        body = TETRAGON_PAGE.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@functools.cache
def tetragon_metrics_port() -> int:
    """The port of Tetragon's metrics page, served by a thread of this process from its first call."""
    server = http.server.ThreadingHTTPServer((NODE_IP, 0), _TetragonPage)
    threading.Thread(target=server.serve_forever, name="tetragon-page", daemon=True).start()
    return int(server.server_address[1])


def node_config(tmp: Path) -> dict[str, Any]:
    """The operator's agent config document, its hostPaths under ``tmp`` (see the docstring)."""
    from stellaops_runtime.contracts.crd_specs import RuntimeObserverSpec
    from stellaops_runtime.controller.agent_config import agent_config

    spec = RuntimeObserverSpec.model_validate({"store": {"secretRef": {"name": "store", "key": "url"}}})
    doc = agent_config(spec)
    (tmp / "spool").mkdir()
    (tmp / "probes").mkdir()
    doc["store"]["spoolPath"] = str(tmp / "spool" / "hot-symbols.spool")
    doc["symbols"]["indexCacheDir"] = str(tmp / "index-cache")
    doc["native"]["probeConfigFile"] = str(tmp / "probes" / "probes.json")
    (tmp / "probes" / "probes.json").write_text("{}")
    url = doc["tetragon"]["metricsUrl"]
    assert url == "http://$(NODE_IP):2112/metrics", url  # what the operator renders (see above)
    doc["tetragon"]["metricsUrl"] = url.replace(":2112/", f":{tetragon_metrics_port()}/")
    return doc


def _ca_certificate() -> bytes:
    """A self-signed certificate (PEM) for the service account's ``ca.crt``."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench-apiserver")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def pod_env(*, in_cluster: bool) -> dict[str, str]:
    """The pod's environment the agent reads: ``NODE_IP`` (the downward API's ``status.hostIP``) and,
    in a cluster, the API server's address (nobody answers there: see the docstring)."""
    env = {"NODE_IP": NODE_IP}
    if in_cluster:
        env |= {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(bench._free_port())}
    return env


def in_pod(tmp: Path) -> tuple[list[str] | None, dict[str, str] | None]:
    """The command and environment that run the agent as in a pod (see the docstring)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return None, pod_env(in_cluster=False)
    account = tmp / "serviceaccount"
    account.mkdir()
    (account / "token").write_text("bench-token")
    (account / "ca.crt").write_bytes(_ca_certificate())
    mount = (
        "mount -t tmpfs none /run && mkdir -p /run/secrets/kubernetes.io/serviceaccount"
        f' && mount --bind "{account}" /run/secrets/kubernetes.io/serviceaccount && exec "$@"'
    )
    wrap = ["unshare", "--mount", "--propagation", "private", "sh", "-c", mount, "sh"]
    return wrap, pod_env(in_cluster=True)


def one_run(
    agent_path: str | None, config: str, store_url: str | None, fresh: bool = False
) -> dict[str, Any]:
    """One agent, idle: its status fields (MB), allocator and seconds from its start to ready."""
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        doc, wrap, env = None, None, None
        if config == "node":
            doc = node_config(tmp)
            wrap, env = in_pod(tmp)
        served = _TetragonPage.served
        a = bench._Agent(
            tmp,
            events=0,
            fixed_time=False,
            agent_path=agent_path,
            store_url=store_url,
            config=doc,
            wrap=wrap,
            extra_env=env,
            as_operator_writes=doc is not None,  # the operator's document, as the operator writes it
            fresh_store=fresh,
        )
        try:
            while not a.ready():
                if time.monotonic() - a.started > 120:
                    raise RuntimeError("timed out waiting for the agent to be ready")
                time.sleep(0.02)
            ready_s = time.monotonic() - a.started
            time.sleep(3)  # idle: a few flush loop turns, no event
            st = a.status()
            allocator = a.allocator()
            metrics = a.metrics()
            if bench._metric(metrics, "stellaops_runtime_events_received_total") != 0:
                raise RuntimeError("the idle agent received an event")
            if config == "node" and (
                _TetragonPage.served == served
                or bench._metric(metrics, "stellaops_runtime_tetragon_metrics_scrape_errors_total") != 0
            ):
                raise RuntimeError("the idle agent did not read Tetragon's metrics page, as a node does")
        finally:
            a.close()
    in_cluster = wrap is not None
    return {
        **{k: st[k] for k in FIELDS},
        "allocator": allocator,
        "in_cluster": in_cluster,
        "ready_s": ready_s,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, help="the operator/ directory of the code before")
    ap.add_argument("--after", help="the operator/ directory of the code after (default: this checkout)")
    ap.add_argument("--runs", type=int, default=5, help="runs of each side per configuration (default 5)")
    ap.add_argument("--configs", default=",".join(CONFIGS), help="default, node or both (default)")
    ap.add_argument("--postgres", action="store_true", help="a PostgreSQL store (a private cluster)")
    ap.add_argument("--fresh-store", action="store_true", help="a new store the agent must migrate")
    args = ap.parse_args(argv)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    if unknown := set(configs) - set(CONFIGS):
        ap.error(f"unknown config(s): {', '.join(sorted(unknown))}")
    sides = {"before": args.before, "after": args.after}
    out: dict[str, Any] = {"store": "postgres" if args.postgres else "sqlite", "runs": args.runs, **sides}
    out["fresh_store"] = args.fresh_store
    with contextlib.ExitStack() as stack:
        server = None
        if args.postgres:
            sys.path.insert(0, str(ROOT))
            from tests.pg import make_server

            server = make_server()
            server.setup()
            stack.callback(server.teardown)
        for config in configs:
            runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
            for _ in range(args.runs):
                for side, path in sides.items():
                    url = server.fresh_database() if server is not None else None
                    runs[side].append(one_run(path, config, url, args.fresh_store))
            out[config] = {
                side: {
                    **{f"median_{k}": round(statistics.median(r[k] for r in rs), 1) for k in FIELDS},
                    "VmRSS_runs": [r["VmRSS"] for r in rs],
                    "median_ready_s": round(statistics.median(r["ready_s"] for r in rs), 2),
                    "ready_s_runs": [round(r["ready_s"], 2) for r in rs],
                    "allocator": sorted({r["allocator"] for r in rs}),
                    "in_cluster": sorted({r["in_cluster"] for r in rs}),
                }
                for side, rs in runs.items()
            }
            before, after = out[config]["before"], out[config]["after"]
            out[config]["median_VmRSS_change"] = round(after["median_VmRSS"] - before["median_VmRSS"], 1)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
