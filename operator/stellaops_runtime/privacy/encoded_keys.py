"""A PEM private key encoded in base64, as one blob (a kubeconfig's ``client-key-data``), or its DER body.

Why this exists: a private key passed through base64 (``kubectl config set
users.u.client-key-data LS0t…``, ``echo LS0t… | base64 -d > ~/.ssh/id_rsa``, a
Secret's ``tls.key`` value) holds no ``-----BEGIN`` line for the PEM rule to
see, and a blob of base64 is caught otherwise only by the entropy detector
(off by default). Data that starts with ``-----BEGIN `` encodes to a fixed
prefix, ``LS0tLS1CRUdJTi``, and a private key's BEGIN line to one per key type:
the rule takes a blob that starts with one of those (its lines wrapped at 76
characters too, by a newline or a written ``\\n``). A certificate's blob
(``certificate-authority-data``, ``-----BEGIN CERTIFICATE``) stays.

Whole base64 blobs of other secrets (``user:password`` for ``Authorization: Basic``
without the header) are not decoded: nothing tells them from innocent data
(docs/privacy.md, Known limits).
"""

from __future__ import annotations

import base64

from stellaops_runtime.privacy.base import SecretPattern

# The key types whose BEGIN line is taken: PEM (RSA, EC, DSA, PKCS#8 and its encrypted form),
# OpenSSH, PGP (``PRIVATE KEY BLOCK``).
_KEY_TYPES = ("RSA ", "EC ", "DSA ", "", "ENCRYPTED ", "OPENSSH ", "PGP ")


def _encoded_begin(key_type: str) -> str:
    """``-----BEGIN <type>PRIVATE KEY`` in base64, as far as whole 3-byte groups go (the data starts
    with it, so its encoding is fixed; the characters after depend on what follows)."""
    raw = f"-----BEGIN {key_type}PRIVATE KEY".encode()
    return base64.b64encode(raw[: len(raw) // 3 * 3]).decode()


# Every prefix starts with ``LS0tLS1CRUdJTi`` (``-----BEGIN ``): the rest after it, as alternatives.
_COMMON = "LS0tLS1CRUdJTi"
_TAILS = "|".join(sorted({_encoded_begin(t).removeprefix(_COMMON) for t in _KEY_TYPES}))
_B64 = "A-Za-z0-9+/"

# A private key's DER body in base64 with no BEGIN line at all (``echo MIIEvg… | base64 -d >
# key.der``, a key's body as an argument): its first bytes are fixed per key type, so their
# encoding is (the length bytes aside): PKCS#8 RSA (``…IBADANBgkqhkiG9w0BAQEFAASC``), PKCS#1 RSA
# (``…IBAAKC``; under 2048 bits ``…IBAAKB``, 1024, and ``…IBAAJB``, 512), PKCS#8 EC
# (``…AgEAMB?GByqGSM49AgEG``), SEC1 EC P-256/384/521 (``MHcCAQEEI``,
# ``MIGkAgEBBDA``, ``MIHcAgEBBEI``), PKCS#8 Ed25519 (``MC4CAQAwBQYDK2VwBCIEI``) and OpenSSH's
# ``openssh-key-v1`` (``b3BlbnNzaC1rZXktdjE``). A certificate (``MIIC…CCA``) and a public key
# (``AAAAC3NzaC1…``) start otherwise and stay.
_DER_STARTS = (
    rf"M(?<![{_B64}]M)(?:II[{_B64}]{{2}}[AQgw]IBA(?:DANBgkqhkiG9w0BAQEFAASC|A[JK][BC])"
    rf"|I[GH][{_B64}]AgEAMB[AM]GByqGSM49AgEG|HcCAQEEI|IGkAgEBBDA|IHcAgEBBEI|C4CAQAwBQYDK2VwBCIEI)"
    rf"|b(?<![{_B64}]b)3BlbnNzaC1rZXktdjE"
)
_BLOB_REST = rf"[{_B64}]*+(?:(?:\r?\n|\\n)[{_B64}]++)*+={{0,2}}"

BASE64_PEM_KEY = SecretPattern(
    "pem_private_key",
    # The prefix decides (no validator: a rejected match would be tried again from every line of
    # a long blob). Possessive runs: each character is read once; a wrapped line (a newline or a
    # written ``\n``) continues the blob only when more base64 follows it.
    rf"L(?<![{_B64}]L)S0tLS1CRUdJTi(?:{_TAILS}){_BLOB_REST}(?P<w>)"
    rf"|(?:{_DER_STARTS}){_BLOB_REST}(?P<w_2>)",
    triggers=(
        "ls0tls1crudjti",
        "gkqhkig9w0baqefaasc",
        "ibaakc",
        "ibaakb",
        "ibaajb",
        "byqgsm49ageg",
        "mhccaqeei",
        "igkagebbda",
        "ihcagebbei",
        "mc4caqawbqydk2vwbciei",
        "b3blbnnzac1rzxktdje",
    ),
)
