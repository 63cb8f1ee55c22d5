"""A short-lived JVM container of a PURL-probed JNI package: its JAR is told though the container is gone.

A package probed by PURL (its library resolved by the probes' own read of the package's file list,
native/purl_files.py) whose library lies in the plain library directory, with a JAR listed beside
it, is JNI code only the ``listed`` row shows (agent/listed_jars.py). That row was made at the
drain, by reading the package database through a running process of the image
(agent/purls.py ``_probed_jar``). A container that ran its library and stopped before the drain
(a short-lived job) left no root to read: no ``listed`` row, and ``query functions --purl`` answered
``not_observed`` about Java methods no probe watches. The probes' resolution, made while the
container ran, now hands the JAR over with the probed file's PURL (``PurlWiring.probed_jars``).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from stellaops_runtime.agent.purls import HotSymbolAttribution
from stellaops_runtime.agent.source_switch_purl import ProbeReloads
from stellaops_runtime.agent.unprobed import UnprobedTails
from stellaops_runtime.contracts.config import AttributionConfig
from stellaops_runtime.contracts.events import ContainerInfo, EventKind, ProcessInfo, RuntimeCallEvent
from stellaops_runtime.contracts.hotsymbols import EvidenceKind
from stellaops_runtime.native.config import NativeConfig
from stellaops_runtime.native.policy_config import PurlFunction
from stellaops_runtime.native.purl_wiring import wire
from tests.cli_run import cli_json
from tests.integration.test_answer_interpreted import filled, row
from tests.integration.test_answer_jni_package import JVM
from tests.integration.test_vex import IMG

LIB = "/usr/lib/x86_64-linux-gnu/libstellajni.so.1"
JAR = "/usr/share/java/stella-jni.jar"
PURL = "pkg:deb/debian/stella-jni"


def _root(root: Path, tmp_path: Path) -> None:
    """A Debian root whose dpkg database lists the JNI library (built here) and its JAR."""
    (root / LIB.lstrip("/")).parent.mkdir(parents=True)
    src = tmp_path / "jni.c"
    src.write_text(
        "int Java_org_stella_Jni_call(int x) { return x * 3 + 1; }\nint jni_fn(int x) { return x + 7; }\n"
    )
    cmd = ["gcc", "-O2", "-shared", "-fPIC", "-o", str(root / LIB.lstrip("/")), str(src)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    (root / "etc").mkdir()
    (root / "etc/os-release").write_text('ID=debian\nVERSION_ID="12"\n')
    info = root / "var/lib/dpkg/info"
    info.mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text(
        "Package: stella-jni\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.0-1\n\n"
    )
    (info / "stella-jni:amd64.list").write_text(f"/usr\n/usr/lib\n{LIB}\n/usr/share/java\n{JAR}\n")


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_a_probed_jni_library_s_jar_is_told_after_its_container_stopped(tmp_path: Path) -> None:
    """Seen failing before the fix: no ``listed`` row, and the package question answered
    not_observed (exit 1)."""
    proc = tmp_path / "proc"
    root = proc / "100" / "root"
    _root(root, tmp_path)
    wiring = wire(
        [PurlFunction("p", PURL, ("jni_fn",))], [("c100", 100)], NativeConfig(), proc_root=str(proc)
    )
    try:
        att = HotSymbolAttribution(AttributionConfig(), proc_root=str(proc), node_name="node-1")
        switch = SimpleNamespace(pipeline=SimpleNamespace(attribution=att, unprobed=UnprobedTails()))
        ProbeReloads._note_probed(switch, wiring, {"c100": IMG}, {})  # type: ignore[arg-type]
    finally:
        wiring.close()
    purl = att.probed[(IMG, LIB)]
    assert purl.startswith("pkg:deb/debian/stella-jni@1.0-1"), att.probed
    container = ContainerInfo(id="c100", image_digest=IMG)
    att.note(RuntimeCallEvent(kind=EventKind.EXEC, timestamp_ns=1, node_name="node-1",
                              process=ProcessInfo(pid=100), container=container))  # fmt: skip
    shutil.rmtree(proc / "100")  # the job ended before the drain
    deltas = [row(LIB, "", EvidenceKind.LOADED, "", bid="5e" * 20)]
    att.fill(deltas)
    assert [(d.key.module, d.purl) for d in deltas if d.key.evidence == EvidenceKind.LISTED] == [(JAR, purl)]
    url = filled(tmp_path, *deltas, row(JVM[0], "", EvidenceKind.LOADED, JVM[1], bid="cd" * 20))
    code, doc = cli_json("query", "functions", "--image", IMG, "--purl", PURL, "--store", url, "--json")
    assert (code, doc["answer"]) == (3, "unknown") and JAR in doc["reason"], doc
