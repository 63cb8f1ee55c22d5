"""A witness key file others can read (private) or write (public) is loaded with a warning.

Whoever reads the private key signs witnesses the verifiers trust; whoever writes the public key
decides which witnesses verify. ssh refuses such files; the witness tools warn instead (naming the
file, its mode and the fix) and go on: a Kubernetes Secret is mounted 0644 unless its
``defaultMode`` says otherwise, and the docs promise a mounted Secret works. A file of the
right mode loads without a word (docs/witnesses.md).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from stellaops_runtime.witness import keys
from tests.witness_helpers import key_pair, witness_cli


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o666])
def test_a_private_key_group_or_others_can_read_is_loaded_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: int
) -> None:
    priv, _ = key_pair(tmp_path)
    os.chmod(priv, mode)
    with caplog.at_level(logging.WARNING, logger="stellaops_runtime.witness.keys"):
        keys.load_private(priv)
    text = caplog.text
    assert str(priv) in text and f"{mode:04o}" in text and "chmod 600" in text and "defaultMode" in text, text
    assert "BEGIN" not in text  # no key material


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_a_private_key_only_its_owner_reads_loads_without_a_word(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: int
) -> None:
    priv, _ = key_pair(tmp_path)
    os.chmod(priv, mode)
    with caplog.at_level(logging.WARNING, logger="stellaops_runtime.witness.keys"):
        keys.load_private(priv)
    assert not caplog.records, caplog.text


def test_a_public_key_others_can_write_is_loaded_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _, pub = key_pair(tmp_path)
    os.chmod(pub, 0o644)
    with caplog.at_level(logging.WARNING, logger="stellaops_runtime.witness.keys"):
        keys.load_public(pub)
    assert not caplog.records, caplog.text  # readable by all: what a public key is for
    os.chmod(pub, 0o666)
    with caplog.at_level(logging.WARNING, logger="stellaops_runtime.witness.keys"):
        keys.load_public(pub)
    assert str(pub) in caplog.text and "0666" in caplog.text and "writ" in caplog.text, caplog.text


def test_witness_sign_with_a_loose_key_warns_on_stderr_and_signs(
    tmp_path: Path, sqlite_at_head: Callable[[Path], str]
) -> None:
    """The real CLI: the warning reaches the user, and the witness is still written (exit 0)."""
    url = sqlite_at_head(tmp_path / "hot.db")
    priv, _ = key_pair(tmp_path)
    os.chmod(priv, 0o644)
    out = tmp_path / "w.json"
    image = "sha256:" + "d" * 64
    r = witness_cli("sign", "--store", url, "--image", image, "--purl", "pkg:deb/debian/zlib1g",
                    "--function", "crc32", "--key", str(priv), "--out", str(out))  # fmt: skip
    assert r.returncode == 0 and out.exists(), r.stderr
    assert "WARNING" in r.stderr and "readable by group or others" in r.stderr and "0644" in r.stderr, (
        r.stderr
    )
