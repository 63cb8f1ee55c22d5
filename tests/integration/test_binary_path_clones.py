"""A ``binaryPath`` function's GCC clones on the node: probed while BCC is the source, facts under Tetragon.

gcc -O2 compiles a static ``crc32`` taking a struct by value into ``crc32.isra.0`` only, and
``inflate_fast`` called with constant arguments into ``inflate_fast.constprop.0`` only
(tests/integration/test_native_purl_clones.py's program, here a node's file). The BCC probes
attached by the exact name, so a ``binaryPath`` function of the probe ConfigMap compiled so was
never counted, and Tetragon's TracingPolicy names the symbol only: an answer about the host image
said "not observed" while the clone ran. Now:

- BCC: each node file's entry clones of the functions probed there are probed too, under their own
  names (every answer counts a clone as its function's), with the function's rateLimit; a clone
  past the probes' room (MAX_UPROBE_TARGETS) is stored as an ``unprobed`` fact of ``host:<node>``;
- Tetragon: the agent reads the probe ConfigMap's ``binaryPath`` files itself and stores their split
  tails and entry clones (neither is in the TracingPolicy) as ``unprobed`` facts of ``host:<node>``,
  so the answer is ``unknown``, naming them.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.contracts.events import EventKind, ProcessInfo, RuntimeCallEvent
from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.native.config import MAX_UPROBE_TARGETS, NativeConfig, UprobeTarget
from stellaops_runtime.native.host_file import host_file
from stellaops_runtime.store.engine import open_store
from tests.cli_run import cli_json
from tests.integration.test_native_purl_clones import PROGRAM
from tests.integration.test_vex import DAY, T0, S

APP = "/usr/bin/stella-clones"
NEEDS = pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("nm") is None, reason="needs gcc")


def _node_root(tmp_path: Path) -> tuple[Path, str, str]:
    """The node's root (a directory) with PROGRAM built gcc -O2 at APP; (root, binary, module) as
    native/policy_config.py makes them of a ``binaryPath`` function there."""
    host = tmp_path / "host"
    exe = host / APP.lstrip("/")
    exe.parent.mkdir(parents=True)
    src = tmp_path / "clones.c"
    src.write_text(PROGRAM)
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(src)], check=True, capture_output=True, timeout=60)
    names = subprocess.run(["nm", str(exe)], check=True, capture_output=True, text=True).stdout
    for premise in (" crc32.isra.0\n", " inflate_fast.constprop.0\n", " adler32.part.0\n"):
        if premise not in names:
            pytest.skip(f"this gcc made no{premise.rstrip()} at -O2")
    assert " crc32\n" not in names  # compiled into its clone only: a probe by name finds nothing
    binary = host_file(str(host), APP)
    return host, binary, str(host) + APP if binary != str(host) + APP else ""


def _probe_file(tmp_path: Path, symbols: list[str], **policy: str) -> Path:
    """The probe ConfigMap's file: one policy naming ``symbols`` of APP by ``binaryPath``."""
    entry = {"functions": [{"binaryPath": APP, "symbols": symbols}], **policy}
    payload = {
        "apiVersion": "stellaops.io/v1alpha1",
        "kind": "ProbeConfig",
        "policies": {"ObservationPolicy/ns/p": entry},
    }
    probes = tmp_path / "probes.json"
    probes.write_text(json.dumps(payload))
    return probes


def _native_cfg(probes: Path) -> Any:
    """An agent's configuration with the native probes reading ``probes`` (no symbols, no attribution)."""
    from stellaops_runtime.contracts.config import parse_config

    native = {"enabled": True, "probeConfigFile": str(probes)}
    return parse_config({"symbols": {"enabled": False}, "attribution": {"enabled": False}, "native": native})


def _switch(cfg: Any, pipeline: Any) -> Any:
    from stellaops_runtime.agent.source_switch import SourceSwitch
    from stellaops_runtime.sources.queue import EventQueue

    async def in_thread(fn: Any, *args: Any) -> Any:
        return fn(*args)

    return SourceSwitch(cfg, queue=EventQueue(10), pipeline=pipeline, in_pipeline=in_thread)


def _configured(monkeypatch: pytest.MonkeyPatch, base: NativeConfig) -> tuple[NativeConfig, Any]:
    """What the switch gives its BCC probes for ``base`` (BCC's detection stood in for), and the
    facts it hands the pipeline."""
    from stellaops_runtime.agent.pipeline import Pipeline
    from stellaops_runtime.contracts.config import parse_config
    from stellaops_runtime.native import detect

    rep = detect.Report(kernel="6.1", machine="x86_64", posture=Posture.PASSIVE)
    monkeypatch.setattr(detect, "detect", lambda **kw: rep)
    cfg = parse_config({"symbols": {"enabled": False}, "attribution": {"enabled": False}})
    pipeline = Pipeline(cfg, node_name="node-1")

    async def configure() -> NativeConfig:
        sw = _switch(cfg, pipeline)
        assert await sw._make_bcc()
        sw._probe_config = lambda: base  # type: ignore[method-assign]
        out: NativeConfig = await sw._configure()
        return out

    return asyncio.run(configure()), pipeline.unprobed.current


@NEEDS
def test_a_binary_path_function_s_entry_clones_are_probed_by_bcc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seen failing before the fix: the probes' targets were crc32 and inflate_fast only (crc32 is
    not in the file at all), so every call of both ran unseen."""
    _host, binary, module = _node_root(tmp_path)
    crc, fast = UprobeTarget(binary, "crc32", module), UprobeTarget(binary, "inflate_fast", module)
    adler = UprobeTarget(binary, "adler32", module)
    base = NativeConfig(uprobes=(crc, fast, adler), uprobe_periods=((crc.label(), 5),))
    cfg, facts = _configured(monkeypatch, base)
    clones = [
        UprobeTarget(binary, "crc32.isra.0", module),
        UprobeTarget(binary, "inflate_fast.constprop.0", module),
    ]
    assert cfg.uprobes == (crc, fast, adler, *clones)
    # the function's rateLimit is its clone's too (Tetragon's per thread and probe)
    assert dict(cfg.uprobe_periods) == {crc.label(): 5, clones[0].label(): 5}
    # the split tail is no entry: a fact, as before (native/host_tails.py), never a probe
    assert list(facts) == [("host:node-1", module or binary, "adler32.part.0")]


@NEEDS
def test_clones_past_the_probes_room_are_facts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No room left for a clone's probe (MAX_UPROBE_TARGETS): it is an ``unprobed`` fact of the host
    image instead, so the answer is unknown, not "not observed"."""
    _host, binary, module = _node_root(tmp_path)
    crc, fast = UprobeTarget(binary, "crc32", module), UprobeTarget(binary, "inflate_fast", module)
    adler = UprobeTarget(binary, "adler32", module)
    others = tuple(UprobeTarget(str(tmp_path / f"gone{i}"), "f") for i in range(MAX_UPROBE_TARGETS - 4))
    cfg, facts = _configured(monkeypatch, NativeConfig(uprobes=(*others, crc, fast, adler)))
    assert cfg.uprobes == (*others, crc, fast, adler, UprobeTarget(binary, "crc32.isra.0", module))
    path = module or binary
    assert sorted(facts) == [("host:node-1", path, t) for t in ("adler32.part.0", "inflate_fast.constprop.0")]
    assert all(len(bid) == 40 and purl == "" for bid, purl in facts.values())


def test_a_pod_view_keeps_a_clone_s_calls_as_its_function_s() -> None:
    """With a pod view, a native event is kept only where a selecting policy names its probe: a
    clone's event (function name ``crc32.isra.0``) is its ``binaryPath`` function's; the agent's own
    uprobes' clones are kept for every pod. Seen failing before the fix: not asked (dropped as
    not_selected)."""
    from stellaops_runtime.agent import native_selection as ns
    from stellaops_runtime.agent.native_selection_policies import parse_policies

    entry = {
        "kind": "ObservationPolicy", "namespace": "shop", "podSelector": {"matchLabels": {"app": "a"}},
        "functions": [{"binaryPath": APP, "symbols": ["crc32"]}],
    }  # fmt: skip
    policies, bad = parse_policies({"ObservationPolicy/shop/p": entry}, host_root="/proc/1/root")
    assert not bad and len(policies) == 1
    module = "/proc/1/root" + APP

    def ev(name: str, at: str = module) -> RuntimeCallEvent:
        return RuntimeCallEvent(EventKind.UPROBE, 1, "node-1", ProcessInfo(), function_name=name, module=at)

    for name, kept in (("crc32", True), ("crc32.isra.0", True), ("crc32.constprop.1", True),
                       ("crc32.part.0", False), ("crc32x.isra.0", False), ("crc32.cold", False)):  # fmt: skip
        assert ns.asks(policies[0], ev(name), True, None) is kept, name
    assert not ns.asks(policies[0], ev("crc32.isra.0", "/other"), True, None)
    wide = ns.node_wide_probes(NativeConfig(uprobes=(UprobeTarget(module, "crc32"),)))
    node_wide = ns.probe_is_node_wide
    assert node_wide(("uprobe", f"{module}\x00crc32.isra.0"), wide)
    assert not node_wide(("uprobe", f"{module}\x00crc32.part.0"), wide)
    assert not node_wide(("uprobe", "/other\x00crc32.isra.0"), wide)


@NEEDS
def test_under_tetragon_a_binary_path_function_s_tails_and_clones_are_facts(
    tmp_path: Path, sqlite_at_head: Callable[[Path], str]
) -> None:
    """Tetragon is the source: its TracingPolicy names ``crc32``, ``inflate_fast`` and ``adler32`` by
    symbol, so their clones and tail are never probed. Seen failing before the fix: no fact, and
    ``query observed --image host:node-1 --function adler32`` said not_observed (exit 1) over 40
    days of EbpfDeep windows; now unknown (exit 3) naming the tail, and for crc32 the clone."""
    from stellaops_runtime.agent.pipeline import Pipeline

    host, binary, module = _node_root(tmp_path)
    cfg = _native_cfg(_probe_file(tmp_path, ["adler32", "crc32", "inflate_fast"], maxLevel="EbpfDeep"))
    pipeline = Pipeline(cfg, node_name="node-1")

    async def tick() -> None:  # Tetragon is the source (the switch starts with it)
        sw = _switch(cfg, pipeline)
        sw.host_root = str(host)  # the node's root as the agent reaches it (/proc/1/root on a node)
        await sw._tick_tetragon(time.monotonic())
        await asyncio.sleep(0)

    asyncio.run(tick())
    path = module or binary
    rows = pipeline.unprobed.deltas(node_name="node-1", now_ns=T0 + 3 * DAY, window_seconds=60)
    got = sorted((r.key.image_digest, r.key.module, r.key.function_name, r.key.evidence) for r in rows)
    assert got == [
        ("host:node-1", path, name, EvidenceKind.UNPROBED)
        for name in ("adler32.part.0", "crc32.isra.0", "inflate_fast.constprop.0")
    ]
    url = sqlite_at_head(tmp_path / "hot.db")
    start = T0 + 3 * DAY
    call = HotSymbolDelta(
        HotSymbolKey("host:node-1", path, "main", EvidenceKind.INVOKED), start, 5, start + S, start + S,
        build_id=rows[0].build_id, node_name="node-1",
    )  # fmt: skip
    windows = [
        ObservationWindow("host:node-1", "node-1", T0 + d * DAY, 9, Posture.EBPF_DEEP, 60, "tetragon")
        for d in range(40)
    ]
    from stellaops_runtime.store.batches import Batch

    with open_store(url) as s:
        s.write([call], windows)
        assert not s.write_batch(Batch("node-1/agent", 1, rows)).errors
    for fn, named in (("adler32", "adler32.part.0"), ("crc32", "crc32.isra.0")):
        code, doc = cli_json(
            "query", "observed", "--image", "host:node-1", "--function", fn, "--store", url, "--json"
        )
        assert (code, doc["answer"]) == (3, "unknown") and named in doc["reason"], doc


@NEEDS
def test_facts_not_handed_over_yet_survive_a_switch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The switch replaces the pipeline's facts at each configure of the probes and (now) while
    Tetragon runs; a fact not drained yet must not be lost with the old set (Tetragon's facts read at
    the start, BCC taking over before the first flush). Seen failing before the fix: the Tetragon
    facts were gone once the BCC probes were configured."""
    from stellaops_runtime.agent.pipeline import Pipeline
    from stellaops_runtime.native import detect

    host, binary, module = _node_root(tmp_path)
    cfg = _native_cfg(_probe_file(tmp_path, ["adler32"]))
    pipeline = Pipeline(cfg, node_name="node-1")
    rep = detect.Report(kernel="6.1", machine="x86_64", posture=Posture.PASSIVE)
    monkeypatch.setattr(detect, "detect", lambda **kw: rep)

    async def tetragon_then_bcc() -> None:
        sw = _switch(cfg, pipeline)
        sw.host_root = str(host)
        await sw._tick_tetragon(time.monotonic())  # Tetragon's facts: adler32's tail
        assert await sw._make_bcc()
        sw._probe_config = lambda: NativeConfig()  # type: ignore[method-assign]
        await sw._configure()  # BCC takes over before any drain

    asyncio.run(tetragon_then_bcc())
    rows = pipeline.unprobed.deltas(node_name="node-1", now_ns=T0, window_seconds=60)
    assert [(r.key.module, r.key.function_name) for r in rows] == [(module or binary, "adler32.part.0")]
    assert pipeline.unprobed.deltas(node_name="node-1", now_ns=T0, window_seconds=60) == []  # once


@NEEDS
def test_an_agent_without_the_switch_stores_tetragon_s_facts_too(tmp_path: Path) -> None:
    """An agent reading Tetragon's JSON export file (or with ``native.enabled: false``) has no source
    switch, and so read no ``binaryPath`` file: no fact, "not observed" while a tail ran. Now it
    runs its own TetragonFacts. Seen failing before the fix: the agent had none."""
    from stellaops_runtime.agent import tetragon_facts
    from stellaops_runtime.agent.runner import Agent
    from stellaops_runtime.contracts.config import parse_config
    from stellaops_runtime.native import policy_config

    assert tetragon_facts.DEFAULT_HOST_ROOT == policy_config.DEFAULT_HOST_ROOT
    host, binary, module = _node_root(tmp_path)
    probes = _probe_file(tmp_path, ["crc32"])
    for native in (
        {"enabled": True, "probeConfigFile": str(probes)},  # the export file's agent
        {"enabled": False, "probeConfigFile": str(probes)},  # the gRPC agent without native probes
    ):
        doc = {
            "symbols": {"enabled": False}, "attribution": {"enabled": False}, "native": native,
            "store": {"url": f"sqlite:///{tmp_path}/hs.db"},
        }  # fmt: skip
        if native["enabled"]:
            doc["tetragon"] = {"exportFile": str(tmp_path / "tetragon.log")}
        agent = Agent(parse_config(doc), node_name="node-1")
        watch = agent.tetragon_facts
        assert watch is not None, native
        watch.host_root = str(host)
        asyncio.run(watch.poll(time.monotonic()))
        assert list(agent.pipeline.unprobed.current) == [("host:node-1", module or binary, "crc32.isra.0")]
