"""Ed25519 keys for witnesses: generate, load from PEM files, and name them.

A key's id is the SHA-256 (hex) of its 32-byte raw public key, so anyone
holding the public key computes the same id without a registry. Private keys
are PKCS#8 PEM, written with mode 0600; a Kubernetes Secret mounted as a file
works the same way. Only Ed25519 is accepted: one algorithm, nothing to
negotiate.

:func:`generate` never overwrites or follows an existing path (private or
public: a trusted public key replaced would make every earlier witness fail
to verify), and leaves no half-written pair behind. Key files are read to at
most :data:`MAX_KEY_FILE_BYTES`, and only when regular files (regular_file.py),
so a wrong path (``/dev/zero``, a FIFO, a log) is an error, not a machine out
of memory or a command that never returns. Error messages name the file and
never quote its content.

A private key file group or others can read, or a public key file they can
write, is loaded with a WARNING naming the file, its mode and the fix
(:func:`_warn_loose`): whoever reads the private key signs witnesses every
verifier trusts, and whoever writes the public key picks which verify. ssh
refuses such files; a refusal here would stop every agent whose key is a
Kubernetes Secret mounted with the default mode (0644), which the docs
promise works, so it is a warning.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import stat
from pathlib import Path
from typing import IO

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from stellaops_runtime.regular_file import read_regular

MAX_KEY_FILE_BYTES = 64 * 1024  # an Ed25519 PEM is ~120 bytes; room for comments and chains
log = logging.getLogger(__name__)


class KeyError_(Exception):
    """A key file that cannot be used (the message says which file and why)."""


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def public_hex(public: Ed25519PublicKey) -> str:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def _create(path: str | Path, mode: int) -> IO[bytes]:
    """A new file at ``path``: never an existing one, never through a symlink (O_EXCL)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    except FileExistsError:
        raise KeyError_(f"{path} exists: not overwriting a key") from None
    return os.fdopen(fd, "wb")


def generate(private_path: str | Path, public_path: str | Path) -> str:
    """Write a new key pair (private 0600, public 0644 less the umask; neither path may exist);
    returns the key id. On any failure neither file is left behind."""
    if os.path.abspath(private_path) == os.path.abspath(public_path):
        raise KeyError_(f"--private and --public are the same file ({private_path})")
    for path in (private_path, public_path):
        if os.path.lexists(path):
            raise KeyError_(f"{path} exists: not overwriting a key")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pub = key.public_key()
    made: list[str | Path] = []
    try:
        spki = pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        for path, mode, data in ((private_path, 0o600, pem), (public_path, 0o644, spki)):
            with _create(path, mode) as f:
                made.append(path)
                f.write(data)
    except BaseException:
        for path in made:
            with contextlib.suppress(OSError):
                os.unlink(path)
        raise
    return key_id(pub)


def _read(path: str | Path, what: str) -> bytes:
    try:
        data = read_regular(path, MAX_KEY_FILE_BYTES)
    except OSError as e:
        raise KeyError_(f"cannot read {what} {path}: {e.strerror or e}") from None
    if len(data) > MAX_KEY_FILE_BYTES:
        raise KeyError_(f"{path} is larger than {MAX_KEY_FILE_BYTES} bytes: not a {what}")
    return data


def _warn_loose(path: str | Path, *, private: bool) -> None:
    """A WARNING when group or others can read a private key file (write a public one): the mode of
    the file a path (a Secret's symlink) leads to; nothing when it cannot be told."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return
    if private and mode & 0o077:
        log.warning(
            "private key %s is readable by group or others (mode %04o): whoever reads it can sign "
            "witnesses; chmod 600 it (a Kubernetes Secret: defaultMode: 0400)", path, mode,
        )  # fmt: skip
    elif not private and mode & 0o022:
        log.warning(
            "public key %s is writable by group or others (mode %04o): whoever writes it decides which "
            "witnesses verify; chmod 644 it", path, mode,
        )  # fmt: skip


def load_private(path: str | Path) -> Ed25519PrivateKey:
    data = _read(path, "private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise KeyError_(f"{path} is not an unencrypted PEM private key: {e}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyError_(f"{path} is a {type(key).__name__}, not an Ed25519 key")
    _warn_loose(path, private=True)
    return key


def load_public(path: str | Path) -> Ed25519PublicKey:
    data = _read(path, "public key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        try:  # a private key file holds the public key too
            return load_private(path).public_key()
        except KeyError_:
            raise KeyError_(f"{path} is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyError_(f"{path} is a {type(key).__name__}, not an Ed25519 key")
    _warn_loose(path, private=False)
    return key


def holds_pem(path: str | Path) -> bool:
    """Whether ``path`` is a regular file holding a PEM key or certificate (``-----BEGIN``): an
    output pointed at one by mistake (the public key beside the private one, a CA's certificate)
    would replace it, and the verifiers reading it would fail, or trust what replaces it."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError:  # missing, or unreadable: the write says so
        return False
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"-----BEGIN")
