"""A claims, key or envelope file that cannot be used is an exit 2 naming it, never a hang.

docs/witnesses.md, "In the agent": "A claims or key file that cannot be used
stops the agent at start-up with exit 2, naming the file and the entry", and
"`exploitPath` is `true` or `false` (left out or null: false); anything else
[...] stops the agent at start-up". docs/witnesses.md, `verify`: "2 on usage
errors (an unreadable file, a key that is not Ed25519)"; `keygen`: "Key files
are read to at most 64 KiB (a wrong path such as `/dev/zero` is an error, not
a machine out of memory)".

Before the fix, through the real CLI: a claims file that was a FIFO (a
mistyped path into a pipe, a ConfigMap replaced by one) left the agent
waiting at start-up for ever, as did a FIFO key file (agent, ``witness
sign`` and ``witness verify --key``) and a FIFO envelope (``witness
verify``); a claims file that was not UTF-8 or nested past the recursion
limit ended the agent with an internal error and a traceback; an endless or
huge claims file was read whole into memory; and ``exploitPath: 0`` or
``exploitPath: ""`` was taken as false without a word.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stellaops_runtime.cli.main import main
from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.witness import keys
from stellaops_runtime.witness.bridge import ClaimsError, load_claims
from tests.e2e import harness as h

IMG = "sha256:" + "d" * 64
CLAIM = f"{{image: '{IMG}', purl: 'pkg:deb/debian/zlib1g', function: crc32"
BIG = 4 * 1024 * 1024  # witness/bridge.py MAX_CLAIMS_FILE_BYTES


def _claims(tmp: Path, kind: str) -> tuple[Path, str]:
    """A claims file of ``kind`` and what the agent's message must say of it."""
    path = tmp / f"claims-{kind}.yaml"
    if kind == "fifo":
        os.mkfifo(path)
        return path, "not a regular file (a FIFO)"
    if kind == "device":
        return Path("/dev/zero"), "not a regular file (a character device)"
    if kind == "not-utf8":
        path.write_bytes(b"- " + CLAIM.encode() + b", vulnerability: 'CVE-\xff'}\n")
        return path, "is not YAML or JSON"
    if kind == "deep":
        path.write_text("[" * 20_000 + "]" * 20_000)
        return path, "nested too deeply"
    if kind == "huge":
        path.write_text(f"- {CLAIM}}}\n" + "#" * BIG + "\n")
        return path, f"larger than {BIG} bytes"
    exploit = {"exploit-zero": "0", "exploit-empty": "''", "exploit-list": "[]"}[kind]
    path.write_text(f"- {CLAIM}}}\n- {CLAIM}, exploitPath: {exploit}}}\n")
    return path, "claim 1: exploitPath must be true or false"


def _agent(tmp: Path, claims: Path, key: Path) -> tuple[int, str]:
    config, _ = h.write_config(
        tmp,
        store={"url": f"sqlite:///{tmp}/hot.db"},
        native={"enabled": False},
        witness={"enabled": True, "claimsFile": str(claims), "keyFile": str(key)},
    )
    return h.finish(h.start_agent(config, "--exit-when-idle", "5"), timeout=60)


@pytest.fixture
def key(tmp_path: Path) -> Path:
    keys.generate(tmp_path / "k", tmp_path / "k.pub")
    return tmp_path / "k"


@pytest.mark.parametrize("kind", ["fifo", "device", "not-utf8", "deep", "huge", "exploit-zero"])
def test_an_unusable_claims_file_stops_the_agent_at_start_up(tmp_path: Path, key: Path, kind: str) -> None:
    claims, says = _claims(tmp_path, kind)
    code, out = _agent(tmp_path, claims, key)
    assert code == 2, out
    assert "Traceback" not in out and "internal error" not in out, out
    line = next((ln for ln in out.splitlines() if str(claims) in ln and says in ln), None)
    assert line is not None, f"no line names {claims} and says {says!r}:\n{out}"
    assert "agent stopped" not in out  # refused at start-up: it never ran


@pytest.mark.parametrize("kind", ["exploit-empty", "exploit-list"])
def test_other_falsy_exploit_paths_are_refused_too(tmp_path: Path, kind: str) -> None:
    claims, says = _claims(tmp_path, kind)  # the agent's reader, as above (no agent: no hang to see)
    with pytest.raises(ClaimsError, match=says):
        load_claims(claims)


def test_a_fifo_key_stops_the_agent_and_every_witness_command(
    tmp_path: Path, key: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "key.fifo"
    os.mkfifo(fifo)
    claims = tmp_path / "claims.yaml"
    claims.write_text(f"- {CLAIM}}}\n")
    code, out = _agent(tmp_path, claims, fifo)
    assert code == 2 and f"{fifo}: not a regular file (a FIFO)" in out, out
    assert "agent stopped" not in out

    signed = tmp_path / "w.json"
    _make_witness(tmp_path, key, signed, capsys)
    sign = ["witness", "sign", "--image", IMG, "--purl", "pkg:deb/debian/zlib1g", "--function", "crc32"]
    for args in (
        [*sign, "--store", f"sqlite:///{tmp_path}/w.db", "--key", str(fifo)],
        ["witness", "verify", str(fifo), "--key", str(tmp_path / "k.pub")],
        ["witness", "verify", str(signed), "--key", str(fifo)],
    ):
        r = h.cli(*args, timeout=60)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert str(fifo) in r.stderr and "not a regular file (a FIFO)" in r.stderr, (args, r.stderr)
    for args in (["/dev/zero", "--key", str(tmp_path / "k.pub")], [str(signed), "--key", "/dev/zero"]):
        code = main(["witness", "verify", *args])  # "a wrong path such as /dev/zero is an error"
        err = capsys.readouterr().err
        assert code == 2 and "/dev/zero" in err and "character device" in err, err


def _make_witness(tmp: Path, key: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A witness of crc32 that ran once in a watched window (rows written as the agent writes them)."""
    t0 = 1_700_000_000 * 10**9
    row = HotSymbolDelta(HotSymbolKey(IMG, "/lib/libz.so.1", "crc32", EvidenceKind.INVOKED), t0, 1, t0, t0)
    with open_store(f"sqlite:///{tmp}/w.db") as s:
        s.write([row], [ObservationWindow(IMG, "n", t0, 1, Posture.EBPF_DEEP, 60, "tetragon")])
    code = main(["witness", "sign", "--image", IMG, "--purl", "pkg:deb/debian/zlib1g", "--function", "crc32",
                 "--key", str(key), "--store", f"sqlite:///{tmp}/w.db", "--out", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert main(["witness", "verify", str(out), "--key", str(tmp / "k.pub")]) == 0
    capsys.readouterr()
