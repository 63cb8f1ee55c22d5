"""docs/privacy.md's `pem_private_key` row names six DER prefixes of a key in base64 with no BEGIN
line; corpus.yaml's cases (after "a private key's DER body") hold three of them (PKCS#8 RSA, SEC1
EC, OpenSSH). These are the other three the page promises: PKCS#1 RSA ``MII…IBAAKC``, PKCS#8 EC
and PKCS#8 Ed25519 ``MC4CAQAwBQYDK2VwBCIEI``; and a blob one byte off such a prefix stays (the
rule is told by the prefix, not by any base64 of that length).
"""

from __future__ import annotations

import pytest

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.privacy import PrivacyFilter

BODIES = {
    "pkcs1_rsa": "MIIEpAIBAAKCAQEAx8kZ3pQ2mV7tLr9wXbN4cY6aE1fHjK0oUiP5sDgT",
    "pkcs8_ec": "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgR7tYu2Io9Pa4Sd",
    "pkcs8_ed25519": "MC4CAQAwBQYDK2VwBCIEIJq7xv2Lm9pQ4sR8tY1uW3zA6bC0dE5fG7hI",
}


@pytest.mark.parametrize("kind", sorted(BODIES))
def test_a_keys_der_body_with_no_begin_line_goes(kind: str) -> None:
    text = f"printf %s {BODIES[kind]} | base64 -d > a.bin"
    assert PrivacyFilter(PrivacyConfig()).redact_text(text) == "printf %s [REDACTED] | base64 -d > a.bin"


def test_a_blob_one_byte_off_the_pkcs1_prefix_stays() -> None:
    text = "printf %s MIIEpAIBAxCKCAQEAx8kZ3pQ2mV7tLr9wXbN4cY6aE1fHjK0oUiP5sDgT | base64 -d > a.bin"
    assert PrivacyFilter(PrivacyConfig()).redact_text(text) == text
