"""``witness verify`` given an empty claim value refuses it: it never checks nothing.

``--vuln ""`` (an unset shell variable: ``--vuln "$CVE"``) was read as no vulnerability at all,
so ``verify`` checked no vulnerability and passed a witness of any claim's vulnerability, or of
none, with exit 0: a pipeline gating on "this witness is about CVE-X" passed every witness of the
image. An empty or blank value of ``--vuln``, ``--purl`` or ``--function`` is now a usage error
(exit 2) naming the option; ``sign`` and ``list`` keep reading an empty ``--vuln`` as none.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_vex import IMG, store
from tests.witness_helpers import run_main as cli


@pytest.fixture
def signed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    url = store(tmp_path, range(40))
    key, pub, out = (str(tmp_path / n) for n in ("w.key", "w.pub", "w.json"))
    assert cli(capsys, "witness", "keygen", "--private", key, "--public", pub)[0] == 0
    code, _, err = cli(capsys, "witness", "sign", "--store", url, "--image", IMG,
                       "--purl", "pkg:deb/debian/zlib1g", "--function", "crc32",
                       "--vuln", "CVE-2022-37434", "--key", key, "--out", out)  # fmt: skip
    assert code == 0, err
    return {"pub": pub, "out": out}


@pytest.mark.parametrize("option", ["--vuln", "--purl", "--function"])
@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_claim_value_is_a_usage_error(
    signed: dict[str, str], capsys: pytest.CaptureFixture[str], option: str, value: str
) -> None:
    code, out, err = cli(capsys, "witness", "verify", signed["out"], "--key", signed["pub"], option, value)
    assert code == 2, (code, out, err)
    assert option in err and "empty" in err, err
    assert "verified" not in out


def test_the_witness_still_verifies_with_its_own_and_fails_with_another_vulnerability(
    signed: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    ok = cli(capsys, "witness", "verify", signed["out"], "--key", signed["pub"], "--vuln", "cve-2022-37434")
    assert ok[0] == 0, ok
    other = cli(capsys, "witness", "verify", signed["out"], "--key", signed["pub"], "--vuln", "CVE-2024-1")
    assert other[0] == 1, other
