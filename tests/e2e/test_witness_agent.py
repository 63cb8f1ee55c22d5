"""The witness bridge in the real agent: claims from a file, witnesses signed while it runs and at shutdown.

The agent reads the synthetic stream from Tetragon replayed over gRPC
into PostgreSQL; a claim on billing-70's zlib ``crc32`` (which the stream calls) gets
a witness that ``witness verify`` accepts, ``witness list`` finds by its
claim, and ``tetragon_witness_generated`` counts; a claim nothing touches
gets none. A claims file that cannot be read, or with a key no claim has,
stops the agent with exit 2.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey

from stellaops_runtime.replay.server import ReplayServer
from stellaops_runtime.witness import keys
from tests.cli_run import cli_in_process
from tests.e2e import harness as h

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

IMAGE = h.EXPECTED["images"][0]["digest"]  # billing-70


async def test_the_agent_signs_witnesses_for_the_claims_its_counts_touch(tmp_path: Path, pg_url: str) -> None:
    """Tetragon replayed over gRPC, PostgreSQL; witnesses verified by our CLI and by securesystemslib."""
    server = ReplayServer(h.stream_events())
    addr = await server.start("127.0.0.1:0")
    keygen = ("witness", "keygen", "--private", str(tmp_path / "k"), "--public", str(tmp_path / "k.pub"))
    assert cli_in_process(*keygen).returncode == 0
    claims = tmp_path / "claims.yaml"
    claims.write_text(
        f"- {{image: '{IMAGE}', purl: 'pkg:deb/debian/zlib1g', function: crc32,"
        " vulnerability: CVE-2022-37434}\n"
        f"- {{image: '{IMAGE}', purl: 'pkg:deb/debian/zlib1g', function: inflateBack}}\n"
    )
    url = pg_url
    cfg, port = h.write_config(
        tmp_path,
        tetragon={"address": addr},
        store={"url": url},
        # the host's own libz (its build-id is the stream's) gives the purl, as in test_query_answers
        symbols={"hostRoot": "/"},
        attribution={"hostRoot": "/"},
        witness={"enabled": True, "claimsFile": str(claims), "keyFile": str(tmp_path / "k"),
                 "intervalSeconds": 1, "outputDir": str(tmp_path / "witnesses")},
    )  # fmt: skip
    proc = h.start_agent(cfg, "--exit-when-idle", "3")
    generated = 0.0
    try:  # witnesses come every intervalSeconds while it runs, and once more at shutdown
        while proc.poll() is None:
            generated = max(generated, h.metric(h.scrape(port), "tetragon_witness_generated"))
            await asyncio.sleep(0.2)
        code, out = await asyncio.to_thread(h.finish, proc, 60)
    finally:
        if proc.poll() is None:
            proc.kill()
        await server.stop()
    assert code == 0, out
    m = re.search(r"(\d+) witnesses", out)
    assert m and int(m.group(1)) >= max(1, generated), out  # the seed's counter, and the final count
    r = h.cli("witness", "list", "--store", url, "--image", IMAGE, "--purl", "pkg:deb/debian/zlib1g",
              "--function", "crc32", "--vuln", "CVE-2022-37434", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    found = json.loads(r.stdout)["witnesses"]
    assert found and all(w["state"] == "DynamicReachable" for w in found)
    files = sorted((tmp_path / "witnesses").iterdir())
    assert len(files) == len(found)
    public = keys.load_public(tmp_path / "k.pub")
    sslib_key = SSlibKey(keys.key_id(public), "ed25519", "ed25519", {"public": keys.public_hex(public)})
    for f in files:
        # the CLI's own entry point in this process (tests/cli_run.py): a new interpreter for each
        # of the agent's witnesses was ~0.5 s each; the lists around it are real subprocesses
        v = cli_in_process("witness", "verify", str(f), "--key", str(tmp_path / "k.pub"), "--image", IMAGE)
        assert v.returncode == 0, v.stderr
        assert sslib_key.keyid in Envelope.from_dict(json.loads(f.read_text())).verify([sslib_key], 1)
    r = h.cli("witness", "list", "--store", url, "--image", IMAGE, "--purl", "pkg:deb/debian/zlib1g",
              "--function", "inflateBack")  # fmt: skip
    assert r.returncode == 1  # never called: no count touched that claim, so no witness


@pytest.mark.parametrize(
    ("claim", "names"),
    [
        ("{image: not-a-digest, purl: 'pkg:deb/debian/z', function: f}", "not-a-digest"),
        # snake case: silently dropped, the witness would sign a claim without the exploit path
        (f"{{image: '{IMAGE}', purl: 'pkg:deb/debian/z', function: f, exploit_path: true}}", "exploit_path"),
    ],
)
def test_a_bad_claims_file_is_exit_2(tmp_path: Path, claim: str, names: str) -> None:
    (tmp_path / "claims.yaml").write_text(f"- {claim}\n")
    assert (
        h.cli(
            "witness", "keygen", "--private", str(tmp_path / "k"), "--public", str(tmp_path / "k.pub")
        ).returncode
        == 0
    )
    cfg, _ = h.write_config(
        tmp_path,
        store={"url": f"sqlite:///{tmp_path}/hot.db"},
        witness={
            "enabled": True,
            "claimsFile": str(tmp_path / "claims.yaml"),
            "keyFile": str(tmp_path / "k"),
        },
    )
    code, out = h.finish(h.start_agent(cfg), 60)
    assert code == 2 and "witness: claims file" in out and "claim 0" in out and names in out, out
