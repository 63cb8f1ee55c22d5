"""Ed25519 keys for witnesses: generate, load from PEM files, and name them.

A key's id is the SHA-256 (hex) of its 32-byte raw public key, so anyone
holding the public key computes the same id without a registry. Private keys
are PKCS#8 PEM, written with mode 0600; a Kubernetes Secret mounted as a file
works the same way. Only Ed25519 is accepted: one algorithm, nothing to
negotiate.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


class KeyError_(Exception):
    """A key file that cannot be used (the message says which file and why)."""


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def public_hex(public: Ed25519PublicKey) -> str:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def generate(private_path: str | Path, public_path: str | Path) -> str:
    """Write a new key pair (private 0600, refusing to overwrite); returns the key id."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyError_(f"{private_path} exists: not overwriting a key") from None
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    pub = key.public_key()
    Path(public_path).write_bytes(
        pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return key_id(pub)


def load_private(path: str | Path) -> Ed25519PrivateKey:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise KeyError_(f"cannot read private key {path}: {e.strerror or e}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise KeyError_(f"{path} is not an unencrypted PEM private key: {e}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyError_(f"{path} is a {type(key).__name__}, not an Ed25519 key")
    return key


def load_public(path: str | Path) -> Ed25519PublicKey:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise KeyError_(f"cannot read public key {path}: {e.strerror or e}") from None
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        try:  # a private key file holds the public key too
            return load_private(path).public_key()
        except KeyError_:
            raise KeyError_(f"{path} is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyError_(f"{path} is a {type(key).__name__}, not an Ed25519 key")
    return key
