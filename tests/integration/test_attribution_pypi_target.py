"""Packages pip installed with ``--target`` (no ``site-packages`` directory in the path).

``pip install --target /app/deps`` (AWS Lambda's ``/var/task``, many
multi-stage Dockerfiles) puts ``<name>-<version>.dist-info`` and the code side
by side in a directory of any name, and ``pip show -f`` (with that directory
on the path) lists the files from its ``RECORD``. Before the fix only a
``site-packages``/``dist-packages`` directory above a file was looked at, so
every file of such an install was unattributed and its package read "not
observed" while its code ran.
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

from stellaops_runtime.attribution.attributor import Attributor

FILES = {
    "stella_target/__init__.py": b"",
    "stella_target/sub/mod.py": b"X = 1\n",
    "stella_target/_ext.cpython-311-x86_64-linux-gnu.so": b"\x7fELF" + b"\0" * 60,
}


def _wheel(directory: Path) -> Path:
    """A real wheel of ``Stella.Target`` 2.0 (name normalisation differs from the import name)."""
    dist = "stella_target-2.0.dist-info"
    files = dict(FILES)
    files[f"{dist}/METADATA"] = b"Metadata-Version: 2.1\nName: Stella.Target\nVersion: 2.0\n"
    files[f"{dist}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\nTag: py3-none-any\n"
    )
    rows = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        rows.append(f"{name},sha256={digest},{len(data)}")
    rows.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = ("\n".join(rows) + "\n").encode()
    wheel = directory / "stella_target-2.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return wheel


def test_pip_install_target_directory_is_attributed(tmp_path: Path) -> None:
    root = tmp_path / "root"
    target = root / "app" / "deps"
    pip = [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--quiet"]
    pip += ["--disable-pip-version-check", "--target", str(target), str(_wheel(tmp_path))]
    subprocess.run(pip, check=True, capture_output=True, timeout=120)
    (root / "app" / "main.py").write_text("import stella_target\n")
    att = Attributor()
    for rel in FILES:
        a = att.attribute_file(image_digest="sha256:" + "dd" * 32, root=str(root), path=f"/app/deps/{rel}")
        assert (a.purl, a.source, a.evidence) == ("pkg:pypi/stella.target@2.0", "pypi", "record"), rel
    # the application's own file next to the install is listed by no RECORD: never guessed
    own = att.attribute_file(image_digest="sha256:" + "dd" * 32, root=str(root), path="/app/main.py")
    assert own.purl is None
