"""The node agent loads only what it runs (issue 13): heavy modules stay out of its process.

Every module imported is memory held for the life of the agent, on every
node. A fresh interpreter (a subprocess: this test process has imported
everything) takes the agent's entry path, the way ``stella-runtime agent``
does: the CLI, its agent command, the runner; then builds the agent from a
config, as start-up does before it connects. What it must not have loaded:

- migration tooling (Alembic, Mako, Pygments): a store that needs migrating is
  migrated by a child process (store/migration_process.py), never by the agent;
- the operator's world (kopf, the Kubernetes client, the CRD models and
  pydantic, which only they use);
- the protobuf compiler (``grpc_tools.protoc``) and the debugger (``pdb``,
  which pyelftools' ``construct`` imports: pyelftools loads only where DWARF
  is read);
- HTTP clients and servers: aiohttp not even while serving (the endpoints run on
  plain asyncio, agent/httpserver.py), requests not even with detect-secrets' rules
  loaded (privacy/deferred_import.py);
- package attribution's readers, until the first event (agent/purls.py);
- grpcio, with any config (issue 13: its cygrpc and gRPC core's threads cost ~12 MB): the
  agent's gRPC clients, Tetragon's stream and calls, containerd's and the CRI's, are
  stellaops_runtime.rpc's, on asyncio. The operator, the replay server and the CLI's other
  commands keep grpcio.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# Loaded neither by the entry path nor by building the agent with these configs. (Later, or
# with other settings, some do load where they are used: cryptography with witness.enabled,
# psycopg with a PostgreSQL store, pyelftools when a binary's DWARF is read. Alembic and its
# templates never: a store that needs migrating is migrated by a child process.)
NEVER = (
    "alembic",
    "mako",
    "pygments",
    "kopf",
    "kubernetes",
    "stellaops_runtime.contracts.crds",
    "stellaops_runtime.contracts.crd_specs",  # the CRD models crds re-exports
    "stellaops_runtime.contracts.crd_validation",
    "stellaops_runtime.kube.client",
    "grpc_tools.protoc",
    "pdb",
    "elftools",
    "cryptography",
    "psycopg",
    # The configuration is plain dataclasses (contracts/config_fields.py): pydantic is the CRD models'.
    "pydantic",
    "pydantic_core",
)
# Not at import time: the entry path imports no source, server or detector yet.
NOT_AT_IMPORT = (
    *NEVER,
    "aiohttp",
    "requests",
    "detect_secrets",
    "prometheus_client",
    "stellaops_runtime.rpc",  # the agent's gRPC client: with its sources
    "stellaops_runtime.attribution.attributor",
    "stellaops_runtime.agent.node_status",
)
# Standard-library modules only a rare path uses, imported where it runs (issue 13, ~0.9 MB of the
# idle agent together): detect-secrets' package imports multiprocessing, deferred like requests
# (privacy/library_rules.py); ctypes.util (and tempfile with it) is the GNU demangler's fallback
# for a libstdc++ not found by its soname (canonical/cxx_gnu.py); the email package parses a
# Retry-After given as a date (kube/throttle.py), which the API server sends as seconds.
RARE_PATHS = ("multiprocessing", "tempfile", "ctypes.util", "email")
# What a gRPC node never runs, imported where it runs (issue 13, ~0.6 MB of the idle agent): the
# export file's JSON adapter, with orjson (whose init imports uuid, and uuid imports platform);
# orjson and protobuf's JSON module for Tetragon's rare compound argument types (adapter/common.py,
# adapter/from_proto.py); uuid for the agent's ledger id (stellaops_runtime/random_id.py); platform
# for the C library's and the machine's names (agent/allocator.py, agent/capabilities.py).
EXPORT_OR_RARE = (
    "stellaops_runtime.adapter.from_json",
    "orjson",
    "google.protobuf.json_format",
    "uuid",
    "platform",
)
# PyYAML: the operator writes a node's config as JSON, read without it (contracts/config_text.py);
# only a config text that is not plain JSON imports it, when it is read.
YAML = ("yaml",)
# shutil, with bz2 and lzma: argparse's help formatter imports it for the terminal's width when a
# parser is built; the CLI's formatter finds the width without it (cli/help_format.py).
SHUTIL = ("shutil", "bz2", "lzma")
# SQLite's driver and library (~0.9 MB): imported where a SQLite store opens (store/dbconn.py); a
# node's agent writes to PostgreSQL, and errors are classified by the drivers loaded (store/errors.py).
# Package attribution imports it only to read an image's rpm database (attribution/osdb.py):
# test_package_attribution_loads_sqlite_only_for_an_rpm_database.
SQLITE = ("sqlite3", "_sqlite3")
# The native probes' pod selection, built by the pipeline only where native probes run.
NATIVE_ONLY = (
    "stellaops_runtime.agent.native_selection",
    "stellaops_runtime.agent.native_selection_policies",
    "stellaops_runtime.contracts.label_selector",
)
# The demangler's bindings (~0.45 MB of libraries): loaded with the first C++ or Rust name
# (canonical/demangle.py load_bindings; tests/unit/test_demangle_bindings_lazy.py).
DEMANGLER_BINDINGS = ("pycxxfilt", "pyderust")
# Not after building the agent with the default config (gRPC source, default privacy patterns).
NOT_AT_START = (
    *NEVER,
    *RARE_PATHS,
    *DEMANGLER_BINDINGS,
    *EXPORT_OR_RARE,
    *YAML,
    *SHUTIL,
    *SQLITE,
    *NATIVE_ONLY,
    "aiohttp",
    # detect-secrets' plugins import requests for online verification; the agent loads them
    # with requests deferred (privacy/deferred_import.py), so neither it nor urllib3 loads.
    "requests",
    "urllib3",
    "charset_normalizer",
    "chardet",
    "prometheus_client",
    "stellaops_runtime.attribution.attributor",
    "stellaops_runtime.agent.node_status",
)

# prometheus-client's exposition module and what only it imports (HTTP server and client, WSGI,
# gzip), with the default collectors its package __init__ registers.
PROMETHEUS_EXPOSITION = (
    "prometheus_client.exposition",
    "prometheus_client.gc_collector",
    "prometheus_client.process_collector",
    "prometheus_client.platform_collector",
    "http.server",
    "wsgiref",
    "urllib.request",
    "gzip",
)


def grpc_modules(modules: set[str]) -> list[str]:
    """grpcio's modules (and its companions': grpc_tools, grpc_status ...) among ``modules``."""
    return sorted(m for m in modules if m == "grpc" or m.startswith(("grpc.", "grpc_")))


def _modules(config: dict, *, observer: bool = False) -> tuple[set[str], set[str]]:
    """(modules after the entry path's imports, modules after building the agent); with ``observer``,
    also its container lifecycle observer and that observer's client, as the running agent makes them
    (agent/lifecycle_part.py), without connecting."""
    code = textwrap.dedent(
        f"""
        import json, sys
        from stellaops_runtime.cli import main
        main.build_parser(["agent"])  # the agent command's module, as `stella-runtime agent` loads it
        from stellaops_runtime.agent.runner import Agent
        from stellaops_runtime.contracts.config import parse_config
        imported = sorted(sys.modules)
        agent = Agent(parse_config(json.loads({json.dumps(json.dumps(config))})), node_name="n")
        if {observer!r}:
            agent.lifecycle._make_observer()
        print(json.dumps([imported, sorted(sys.modules)]))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    imported, built = json.loads(out.stdout)
    return set(imported), set(built)


@functools.cache
def _default_modules() -> tuple[set[str], set[str]]:
    """The default config's two sets from one interpreter: its modules at import are those taken
    before it builds the agent, as without the build (the next two tests read one each)."""
    return _modules({})


def test_the_agents_entry_path_imports_no_heavy_module() -> None:
    imported, _ = _default_modules()
    assert "stellaops_runtime.agent.runner" in imported and "stellaops_runtime.cli.agent" in imported
    assert sorted(m for m in NOT_AT_IMPORT if m in imported) == [] and grpc_modules(imported) == []


def test_an_agent_built_with_the_default_config_loads_only_what_it_runs() -> None:
    _, built = _default_modules()
    assert "stellaops_runtime.sources.tetragon_grpc" in built  # its source, on the agent's own gRPC client
    assert "stellaops_runtime.rpc" in built and grpc_modules(built) == []
    assert "detect_secrets" in built  # the default privacy patterns include detect-secrets' rules
    assert sorted(m for m in NOT_AT_START if m in built) == []


def test_optional_parts_load_only_when_configured() -> None:
    # Without the default patterns the privacy filter never loads detect-secrets (nor requests);
    # a JSON export source loads no gRPC.
    config = {
        "privacy": {"useDefaultRedactionPatterns": False},
        "tetragon": {"exportFile": "/nonexistent/tetragon.log"},
    }
    _, built = _modules(config)
    assert "stellaops_runtime.sources.tetragon_export" in built
    assert sorted(m for m in ("detect_secrets", "requests", "stellaops_runtime.rpc") if m in built) == []
    assert grpc_modules(built) == []
    assert sorted(m for m in NOT_AT_START if m in built) == []


@pytest.mark.parametrize(
    ("runtime", "observer", "client"),
    [
        ("containerd", "observer", "containerd_client"),
        ("cri", "cri_observer", "cri_client"),
    ],
)
def test_a_lifecycle_observer_loads_no_grpcio(
    tmp_path: Path, runtime: str, observer: str, client: str
) -> None:
    # containerd's events service and a CRI runtime are gRPC services too: their clients are the
    # agent's own (stellaops_runtime.rpc). The sockets need not exist: the observer is only made.
    config = {
        "lifecycle": {
            "enabled": True,
            "runtime": runtime,
            "containerdAddress": f"{tmp_path}/containerd.sock",
            "criAddresses": [f"{tmp_path}/cri.sock"],
        }
    }
    _, built = _modules(config, observer=True)
    assert {f"stellaops_runtime.lifecycle.{observer}", f"stellaops_runtime.lifecycle.{client}"} <= built
    assert "stellaops_runtime.rpc" in built and grpc_modules(built) == []


def _operators_config(tmp: str, *, native: bool) -> dict:
    """The config document the operator writes into every node's agent ConfigMap
    (controller/agent_config.py), its node paths moved under ``tmp``."""
    from stellaops_runtime.contracts.crd_specs import RuntimeObserverSpec
    from stellaops_runtime.controller.agent_config import agent_config

    spec = RuntimeObserverSpec.model_validate({"store": {"secretRef": {"name": "s", "key": "url"}}})
    doc = agent_config(spec, native=native)
    assert doc["observationNode"] == {"enabled": True}  # what the figures below are about
    doc["store"]["spoolPath"] = f"{tmp}/spool/hot-symbols.spool"
    doc["symbols"]["indexCacheDir"] = f"{tmp}/index-cache"
    doc["native"]["probeConfigFile"] = f"{tmp}/probes/probes.json"
    return doc


# A node's agent writes its ObservationNode through the Kubernetes client, on plain asyncio
# streams (kube/transport.py: no aiohttp); the CRD models, pydantic and the image metadata
# reader are the operator's alone.
NEVER_ON_A_NODE = (
    *(m for m in NEVER if m != "stellaops_runtime.kube.client"),
    *RARE_PATHS,
    *DEMANGLER_BINDINGS,
    *EXPORT_OR_RARE,
    *YAML,
    *SHUTIL,
    *SQLITE,
    "stellaops_runtime.image",  # importlib.metadata, zipfile, email's parser: the operator's image checks
    "aiohttp",
    "yarl",
    "multidict",
)


def test_an_agent_built_with_the_operators_config_loads_no_crd_model(tmp_path: object) -> None:
    # The operator turns the ObservationNode writer on for every node, so the default config above
    # is not what a node runs: this one is. Its writer needs the CRDs' names (group, kinds,
    # labels), never their pydantic models (~10 MB of the idle agent, docs/benchmarks.md).
    for native in (False, True):
        _, built = _modules(_operators_config(str(tmp_path), native=native))
        assert "stellaops_runtime.agent.node_status" in built and "stellaops_runtime.kube.client" in built
        assert sorted(m for m in NEVER_ON_A_NODE if m in built) == [], f"native={native}"
        # Its Tetragon probe and policy list (agent/capabilities.py) too: no grpcio.
        assert "stellaops_runtime.agent.capabilities" in built, f"native={native}"
        assert grpc_modules(built) == [], f"native={native}"
        # Pod selection for native probes (agent/native_selection.py) only where they run.
        assert sorted(m for m in NATIVE_ONLY if m in built) == (sorted(NATIVE_ONLY) if native else [])


def test_a_serving_agent_has_no_aiohttp() -> None:
    # The running agent, its endpoints answered once: they are served on plain asyncio
    # (agent/httpserver.py). aiohttp stays a dependency of the operator and of the optional
    # parts (Tetragon's metrics poller, the ObservationNode writer), not of the default agent.
    code = textwrap.dedent(
        """
        import asyncio, json, sys, tempfile
        from stellaops_runtime.agent.runner import Agent
        from stellaops_runtime.contracts.config import parse_config

        async def main():
            # The store may still be migrating in its child process when the agent is stopped this
            # early (a loaded machine); its files may appear while the directory is removed.
            with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as d:
                cfg = parse_config({
                    "tetragon": {"address": "127.0.0.1:1"},  # nobody there: the agent retries
                    "store": {"url": f"sqlite:///{d}/hs.db"},
                    "metrics": {"address": "127.0.0.1", "port": 0},
                })
                agent = Agent(cfg, node_name="n")
                task = asyncio.create_task(agent.run())
                for _ in range(2400):  # up to 120 s on a loaded machine
                    if agent.http_port:
                        break
                    await asyncio.sleep(0.05)
                statuses = []
                for path in ("/metrics", "/healthz", "/readyz"):
                    r, w = await asyncio.open_connection("127.0.0.1", agent.http_port)
                    w.write(f"GET {path} HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n".encode())
                    statuses.append(int((await r.read()).split()[1]))
                    w.close()
                agent.stop("done")
                await asyncio.wait_for(task, 60)
                print(json.dumps([statuses, sorted(sys.modules)]))

        asyncio.run(main())
        """
    )
    cmd = [sys.executable, "-c", code]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-4000:]
    statuses, modules = json.loads(done.stdout.splitlines()[-1])
    assert statuses == [200, 200, 503]  # not ready: no Tetragon to connect to
    assert sorted(m for m in ("aiohttp", "yarl", "multidict") if m in modules) == []
    # Its store is new: a child process migrated it (store/migration_process.py), not the agent.
    assert sorted(m for m in ("alembic", "sqlalchemy", "mako") if m in modules) == []
    # Its Tetragon source tried to connect, through the agent's own gRPC client: no grpcio.
    assert "stellaops_runtime.rpc" in modules and grpc_modules(set(modules)) == []
    # prometheus-client without its package __init__ (agent/prometheus_core.py): the agent renders
    # /metrics itself, so neither the library's exposition module nor what it imports is loaded.
    assert "prometheus_client.metrics_core" in modules
    assert sorted(m for m in PROMETHEUS_EXPOSITION if m in modules) == []


def _attribute_first_event(proc: Path, module: str) -> tuple[str, bool]:
    """(the PURL a fresh agent process's package attribution gives ``module`` of the container whose
    root is ``proc``/100/root, at its first event; whether SQLite's driver is loaded after)."""
    code = textwrap.dedent(
        f"""
        import json, sys
        from stellaops_runtime.agent.purls import HotSymbolAttribution
        from stellaops_runtime.contracts.config import AttributionConfig
        from stellaops_runtime.contracts.events import ContainerInfo, EventKind, ProcessInfo, RuntimeCallEvent
        from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey

        att = HotSymbolAttribution(AttributionConfig(), proc_root={str(proc)!r}, node_name="n")
        container = ContainerInfo(id="c100", image_digest="sha256:" + "d" * 64)
        att.note(RuntimeCallEvent(kind=EventKind.EXEC, timestamp_ns=1, node_name="n",
                                  process=ProcessInfo(pid=100), container=container))
        d = HotSymbolDelta(HotSymbolKey(container.image_digest, {module!r}, "", EvidenceKind.LOADED),
                           0, 1, 1, 1, node_name="n")
        att.fill([d])
        print(json.dumps([d.purl, any(m in sys.modules for m in {SQLITE!r})]))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    purl, loaded = json.loads(out.stdout.splitlines()[-1])
    return purl, loaded


def test_package_attribution_loads_sqlite_only_for_an_rpm_database(tmp_path: Path) -> None:
    """RX3 (s42): attribution/osdb.py imported sqlite3 with package attribution, at the first event,
    so a node's agent on PostgreSQL held SQLite's ~0.9 MB from then on even where no image has an
    rpm database. Now only reading an rpm database imports it. Seen failing before the change."""
    lib = "/usr/lib/x86_64-linux-gnu/libstella.so.1"
    root = tmp_path / "root"
    (root / "var/lib/dpkg/info").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text(
        "Package: libstella1\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.0-1\n\n"
    )
    (root / "var/lib/dpkg/info/libstella1:amd64.list").write_text(f"{lib}\n")
    (root / lib.lstrip("/")).parent.mkdir(parents=True)
    (root / lib.lstrip("/")).write_bytes(b"\x7fELF")
    (tmp_path / "proc/100").mkdir(parents=True)
    (tmp_path / "proc/100/root").symlink_to(root)
    purl, loaded = _attribute_first_event(tmp_path / "proc", lib)
    assert purl.startswith("pkg:deb/") and "libstella1@1.0-1" in purl, purl
    assert not loaded, "SQLite's driver loaded by package attribution of an image with no rpm database"
    (root / "var/lib/dpkg/status").unlink()  # an image of rpm's: its database is read (refused here)
    (root / "var/lib/rpm").mkdir(parents=True)
    (root / "var/lib/rpm/rpmdb.sqlite").write_bytes(b"not a database")
    purl, loaded = _attribute_first_event(tmp_path / "proc", lib)
    assert (purl, loaded) == ("", True)


# psycopg (with its binary implementation, the libpq it bundles and libpq's own OpenSSL: ~10 MB, issue
# 13): a node's agent on PostgreSQL writes through its own client (store/pg_connect.py). (The ssl
# module is no sign of a driver here: asyncio's base_events imports it in every agent.)
POSTGRES_DRIVERS = ("psycopg", "psycopg_binary", "psycopg_c", "sqlite3")


@pytest.mark.postgres
def test_an_agent_on_postgresql_writes_without_psycopg(pg_url: str) -> None:
    # The agent's store opened as its flusher opens it (agent/flusher.py), then what an agent writes
    # first: its start row and a batch through the ledger, to the test server (no TLS).
    code = textwrap.dedent(
        f"""
        import json, sys, time
        from stellaops_runtime.agent.runner import Agent
        from stellaops_runtime.contracts.config import parse_config
        from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey
        from stellaops_runtime.store.batches import Batch
        from stellaops_runtime.store.node_liveness import Liveness, write_start

        cfg = parse_config({{"store": {{"url": {pg_url!r}}}, "tetragon": {{"exportFile": "/none/t.log"}}}})
        agent = Agent(cfg, node_name="n")
        store = agent.flusher._open()
        now = time.time_ns() // 60_000_000_000 * 60_000_000_000
        write_start(store.db, Liveness("n", "n/1", 1.0, now, 0.0, now, 10.0, 60))
        d = HotSymbolDelta(HotSymbolKey("sha256:" + "a" * 64, "/lib/l.so", "f", EvidenceKind.INVOKED),
                           now, 3, now, now, node_name="n")
        result = store.write_batch(Batch("n/1", 1, [d]))
        with store.db.connect() as conn:
            kind = type(conn.raw).__module__
        print(json.dumps([result.written, kind, sorted(sys.modules)]))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-4000:]
    written, kind, modules = json.loads(out.stdout.splitlines()[-1])
    assert written == 1 and kind.startswith("stellaops_runtime.pgwire"), (written, kind)
    assert sorted(m for m in (*POSTGRES_DRIVERS, "alembic", "sqlalchemy") if m in modules) == []
