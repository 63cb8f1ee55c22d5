"""End to end: one pod's user stacks do not make "not observed" true of another pod of the image.

A window is one image on one node. The synthetic stream's billing image runs
two pods on each node; here (``MIXED``) pod ``…-2c014`` is traced with user
stacks (EbpfDeep) and pod ``…-25165`` without (its policy asks for no stack
traces: ActiveTracing). ``uncompress`` runs only in the second pod: its
stacks held it, and they are exactly what it did not deliver. The window's
highest posture is EbpfDeep, but a "not observed uncompress" over it would be
false: the real agent records what the weakest pod of the image showed, and
the real CLI answers unknown (exit 3), naming ActiveTracing, and VEX says
under_investigation. With both pods' stacks (``BOTH``) the image is not
observed for a function neither called (exit 1, EbpfDeep).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import harness as h
from tests.e2e.test_posture_evidence_e2e import SOURCE, ZLIB, _kind, _vex
from tests.node_alive import each_node_alive_after

pytestmark = [pytest.mark.e2e]

MIXED = "sha256:" + "e5" * 32
BOTH = "sha256:" + "f6" * 32
FUNCTION = "uncompress"  # called by both pods in the stream; here only by the pod without stacks
NEVER = "inflateGetHeader"  # called by neither


def _stack_has(o: dict[str, Any], fn: str) -> bool:
    return any(f.get("symbol") == fn for f in o[_kind(o)].get("user_stack_trace") or [])


def _strong(o: dict[str, Any]) -> bool:
    return str(o[_kind(o)]["process"]["pod"]["name"]).endswith("-2c014")


def export_lines() -> list[dict[str, Any]]:
    src = [
        o
        for o in h.stream_objects()
        if SOURCE in o[_kind(o)]["process"]["pod"]["container"]["image"]["id"]
        and _kind(o) != "process_uprobe"
    ]
    weak_calls = [
        o for o in src if _kind(o) == "process_kprobe" and not _strong(o) and _stack_has(o, FUNCTION)
    ]
    assert weak_calls, "the second pod must call the function"
    out: list[dict[str, Any]] = []
    for o in src:
        if _kind(o) == "process_kprobe" and _strong(o) and _stack_has(o, FUNCTION):
            continue  # the pod with stacks never calls it
        for digest, stacks in ((MIXED, _strong(o)), (BOTH, True)):
            if digest == BOTH and _stack_has(o, FUNCTION):
                continue
            c = json.loads(json.dumps(o))
            body = c[_kind(c)]
            body["process"]["pod"]["container"]["image"]["id"] = f"registry.example.com/shop/mixed@{digest}"
            if not stacks:
                body.pop("user_stack_trace", None)
            out.append(c)
    out.sort(key=lambda o: o["time"])
    return out


def observed(url: str, image: str, function: str) -> tuple[int, dict[str, Any]]:
    r = h.cli("query", "observed", "--image", image, "--function", function, "--purl", ZLIB, "--json",
              "--store", url)  # fmt: skip
    assert "Traceback" not in r.stderr, r.stderr
    return r.returncode, json.loads(r.stdout)


def test_a_pod_without_stacks_keeps_its_image_unknown(
    tmp_path: Path, sqlite_at_head: Callable[[Path], str]
) -> None:
    url = sqlite_at_head(tmp_path / "hot.db")  # at head (tests/conftest.py): not a migration test
    h.run_export_agent(tmp_path, url, export_lines(), "mixed")
    # its agent exits after the stream: the nodes' agents ran on (tests/node_alive.py)
    each_node_alive_after(url)
    code, doc = observed(url, MIXED, FUNCTION)
    assert (code, doc["answer"]) == (3, "unknown"), doc  # it ran, in the pod without stacks
    assert "only at posture ActiveTracing" in doc["reason"], doc["reason"]
    assert "had events at posture EbpfDeep that some containers of the image showed" in doc["reason"]
    assert observed(url, MIXED, NEVER)[0] == 3
    code, doc = observed(url, BOTH, NEVER)
    assert (code, doc["answer"]) == (1, "not_observed"), doc
    assert doc["coverage"]["posture"]["highest"] == "EbpfDeep"
    st = _vex(tmp_path, url, MIXED)
    assert st["status"] == "under_investigation", st
