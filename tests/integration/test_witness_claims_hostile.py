"""A claims file's ``exploitPath`` is a boolean or the agent refuses it.

``exploitPath: "false"`` (a string, as a generated ConfigMap or a JSON claims file may hold it)
was read with ``bool()``: true. The claim then recorded a confirmed vulnerable flow, and its
witness said LiveExploitPath with confidence 1.00 of a function that merely ran: a signed
statement saying more than anyone claimed.

Also the bridge's staging protocol for a write that runs while counts keep arriving: claims
touched by counts drained during the write are due only after the write that stores them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stellaops_runtime.witness.bridge import ClaimsError, load_claims

IMG = "sha256:" + "d" * 64


@pytest.mark.parametrize("value", ["false", "no", 1, "true", [True]])
def test_an_exploit_path_that_is_no_boolean_is_refused(tmp_path: Path, value: object) -> None:
    path = tmp_path / "claims.json"
    path.write_text(json.dumps([{"image": IMG, "purl": "pkg:deb/debian/zlib1g", "function": "crc32",
                                 "exploitPath": value}]))  # fmt: skip
    with pytest.raises(ClaimsError, match=r"claim 0: exploitPath must be true or false"):
        load_claims(path)


def test_an_exploit_path_given_as_a_boolean_or_left_out_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "claims.yaml"
    claim = f"{{image: '{IMG}', purl: 'pkg:deb/debian/zlib1g', function: "  # three claims: one each
    path.write_text(
        f"- {claim}crc32, exploitPath: true}}\n- {claim}inflate}}\n- {claim}adler32, exploitPath: null}}\n"
    )
    assert [c.exploit_path for c in load_claims(path)] == [True, False, False]


def test_claims_staged_while_a_write_runs_wait_for_the_next_write(tmp_path: Path) -> None:
    # the protocol agent/runner.py can follow around each periodic flush: take, write, stored(taken)
    from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey
    from stellaops_runtime.witness import keys
    from stellaops_runtime.witness.bridge import Claim, WitnessBridge

    keys.generate(tmp_path / "k", tmp_path / "k.pub")
    claims = [Claim(IMG, "pkg:deb/debian/zlib1g", fn) for fn in ("crc32", "inflate")]
    bridge = WitnessBridge(claims, key_file=str(tmp_path / "k"))

    def rows(fn: str) -> list[HotSymbolDelta]:
        return [HotSymbolDelta(HotSymbolKey(IMG, "/lib/libz.so.1", fn, EvidenceKind.INVOKED), 0, 1, 0, 0)]

    bridge.observe(rows("crc32"))
    taken = bridge.take_staged()  # the write starts
    bridge.observe(rows("inflate"))  # an early drain while it runs: not in that write
    bridge.stored(taken)
    assert bridge.marked == 1  # crc32 only
    failed = bridge.take_staged()  # the next write fails
    bridge.restage(failed)
    bridge.stored(bridge.take_staged())  # and the one after succeeds
    assert bridge.marked == 2
