"""What the witness tests share: the real CLI (in this process or as a subprocess), a key pair,
reading a witness's statement, and two DSSE verifiers that are not ours.

Each witness test file had its own copy of these runners and verifiers (``cli``, ``run``,
``spec_verify``, keygen into the test's directory). A traceback or "internal error" on stderr
fails the test: the CLI must answer with an exit code and a clear message, never a crash.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey

from stellaops_runtime.cli.main import main
from stellaops_runtime.witness import keys
from tests.cli_run import cli_in_process

ROOT = Path(__file__).resolve().parents[1]
WITNESS_SCHEMA = json.loads((ROOT / "docs" / "schemas" / "runtime-witness-v1.schema.json").read_text())


def _no_crash(stderr: str) -> None:
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr


def cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``stella-runtime <args>`` as a subprocess (the timeout bounds a hang, on a loaded machine)."""
    r = subprocess.run([sys.executable, "-m", "stellaops_runtime.cli.main", *args],
                       capture_output=True, text=True, timeout=timeout, cwd=ROOT)  # fmt: skip
    _no_crash(r.stderr)
    return r


def witness_cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``stella-runtime witness <args>`` as a subprocess."""
    return cli("witness", *args, timeout=timeout)


def witness_in_process(*args: str, real: bool = False) -> subprocess.CompletedProcess[str]:
    """``stella-runtime witness <args>`` through the CLI's own entry point in this process
    (tests/cli_run.py ``cli_in_process``: same argv, exit status, stdout and stderr, without a new
    interpreter's ~0.35 s of CPU), or ``real``ly as a subprocess (:func:`witness_cli`)."""
    if real:
        return witness_cli(*args)
    r = cli_in_process("witness", *args)
    _no_crash(r.stderr)
    return r


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``stella-runtime <args>`` in this process: (exit code, stdout, stderr)."""
    code = main(list(args))
    out, err = capsys.readouterr()
    _no_crash(err)
    return code, out, err


def run_witness(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``stella-runtime witness <args>`` in this process: (exit code, stdout, stderr)."""
    return run_main(capsys, "witness", *args)


def key_pair(directory: Path, name: str = "w") -> tuple[Path, Path]:
    """A new Ed25519 key pair ``<name>.key`` and ``<name>.pub`` in ``directory`` (witness/keys.py,
    as ``witness keygen`` writes it)."""
    private, public = directory / f"{name}.key", directory / f"{name}.pub"
    keys.generate(private, public)
    return private, public


def statement(path: Path) -> dict[str, Any]:
    """The statement an envelope file carries (its payload, not verified)."""
    stmt: dict[str, Any] = json.loads(base64.b64decode(json.loads(path.read_text())["payload"]))
    return stmt


# -- DSSE verifiers that are not ours ------------------------------------------------------


def spec_pae(payload_type: str, body: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding (spec): "DSSEv1 SP len(type) SP type SP len(body) SP body"."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 " + str(len(t)).encode() + b" " + t + b" " + str(len(body)).encode() + b" " + body


def spec_verify(env: dict[str, Any], public: Ed25519PublicKey) -> bytes:
    """The payload of ``env`` when one of its signatures verifies with ``public`` (DSSE from the
    spec); raises InvalidSignature otherwise."""
    body = base64.b64decode(env["payload"], validate=True)
    for s in env["signatures"]:
        try:
            public.verify(base64.b64decode(s["sig"], validate=True), spec_pae(env["payloadType"], body))
            return body
        except InvalidSignature:
            continue
    raise InvalidSignature


def signed_predicate(path: Path, public: Path) -> dict[str, Any]:
    """The predicate the envelope file ``path`` signs, read with :func:`spec_verify` under the public
    key file ``public``, after checking it against the predicate's JSON schema, formats included."""
    stmt = json.loads(spec_verify(json.loads(path.read_text()), keys.load_public(public)))
    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    jsonschema.validate(stmt["predicate"], WITNESS_SCHEMA, format_checker=checker)
    predicate: dict[str, Any] = stmt["predicate"]
    return predicate


def sslib_key(public: Ed25519PublicKey) -> SSlibKey:
    """``public`` as securesystemslib's key, under our key id."""
    return SSlibKey(keys.key_id(public), "ed25519", "ed25519", {"public": keys.public_hex(public)})


def sslib_verifies(env: dict[str, Any], public: Ed25519PublicKey) -> bool:
    """Whether securesystemslib's DSSE implementation verifies ``env`` with ``public``."""
    key = sslib_key(public)
    return key.keyid in Envelope.from_dict(env).verify([key], 1)
