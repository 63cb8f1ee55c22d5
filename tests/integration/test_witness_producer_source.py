"""A witness names the sources that watched its image, not "tetragon" whatever they were.

``predicate.producer.source`` was "tetragon" in every witness, from ``witness sign``, ``vex`` and
the agent's bridge alike, also when every observation of the image came from the BCC fallback
(the agent's source switch): a false statement under a signature, beside the coverage's true
``source`` ("bcc"). It now names the sources of the windows the witness rests on, in the
schema's names: ``tetragon``, ``native`` (the BCC probes), ``native,tetragon`` when both
watched, ``unknown`` when no window names one. Read from the signed payload with a DSSE verifier
written from the spec, and checked against the predicate's schema.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from stellaops_runtime import __version__
from stellaops_runtime.contracts.hotsymbols import EvidenceKind, ObservationWindow
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.witness.bridge import Claim, WitnessBridge
from tests.integration.test_vex import DAY, IMG, T0, delta
from tests.witness_helpers import key_pair, run_witness, signed_predicate

ZLIB = "pkg:deb/debian/zlib1g"


def _windows(*sources: str) -> list[ObservationWindow]:
    """A window at EbpfDeep on each day, from the source given for that day."""
    return [
        ObservationWindow(IMG, "node-1", T0 + d * DAY, 9, Posture.EBPF_DEEP, 60, s)
        for d, s in enumerate(sources)
    ]


@pytest.mark.parametrize(
    ("sources", "expected"),
    [
        (("bcc", "bcc"), "native"),
        (("tetragon",), "tetragon"),
        (("bcc", "tetragon"), "native,tetragon"),
        ((), "unknown"),
    ],
)
def test_witness_sign_names_the_sources_that_watched(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], sources: tuple[str, ...], expected: str
) -> None:
    with open_store(url) as s:
        s.write([delta("", 0, 1, EvidenceKind.LOADED), delta("crc32", 0, 12)], _windows(*sources))
    private, public = key_pair(tmp_path)
    out = tmp_path / "crc32.witness.json"
    code, _, err = run_witness(capsys, "sign", "--store", url, "--image", IMG, "--purl", ZLIB,
                               "--function", "crc32", "--key", str(private), "--out", str(out))  # fmt: skip
    assert code == 0, err
    predicate = signed_predicate(out, public)
    assert predicate["producer"] == predicate["producer"] | {"source": expected}  # type: ignore[operator]


async def test_the_bridge_names_the_bcc_fallback(tmp_path: Path) -> None:
    """The agent's bridge signed "tetragon" too (its default), on a node watched by BCC alone."""
    private, public = key_pair(tmp_path)
    store = open_store(f"sqlite:///{tmp_path}/hot.db")
    try:
        store.write([delta("", 0, 1, EvidenceKind.LOADED), delta("crc32", 0, 12)], _windows("bcc"))
        bridge = WitnessBridge(
            [Claim(IMG, ZLIB, "crc32")], key_file=str(private), output_dir=str(tmp_path / "out")
        )
        bridge.observe([delta("crc32", 0, 12)])
        bridge.stored()
        assert await bridge.flush(store.engine) == 1, bridge.last_error
    finally:
        store.engine.dispose()
    [path] = (tmp_path / "out").glob("*.witness.json")
    assert signed_predicate(path, public)["producer"] == {
        "name": "stellaops-runtime",
        "version": __version__,
        "source": "native",
    }
